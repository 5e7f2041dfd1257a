# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which rows make up a Nova instance, and how Nova itself retires them.

The knowledge here follows Nova's own code of the supported releases:

- ``instance_destroy`` (nova/db/main/api.py) soft-deletes the instance row and
  then, in the same transaction, the live rows of its child tables
  (``CHILD_TABLES``). A soft delete is oslo.db's: ``deleted`` takes the row's
  own ``id``, ``deleted_at`` is set and ``updated_at`` is kept. The EC2 id
  mapping is found by its ``uuid`` column instead of ``instance_uuid``.
  ``console_auth_tokens`` have no ``deleted`` column and are deleted.
  ``instance_actions`` and their events are kept on purpose: they tell
  operators what happened to a deleted instance.
- Before that, the local delete of the compute API (``_local_delete`` and
  ``_do_delete`` in nova/compute/api.py) saves the instance with
  ``vm_state = deleted``, ``task_state = NULL``, ``progress = 0`` and
  ``terminated_at`` set, and marks the ``nova_api`` instance mapping
  ``queued_for_delete``.
- ``instance_destroy(hard_delete=True)`` deletes the rows instead, including the
  ones already soft-deleted, the instance actions and their events.
  ``nova-manage db archive_deleted_rows`` also deletes the API records of an
  archived instance: its mapping, request spec and server group membership.

- ``instance_destroy`` also deletes the instance's ``tags`` (no ``deleted``
  column either). Their key is the pair (resource_id, tag): see ``TAG_TABLE``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import quote_identifier

# (table, column naming the instance), in the order instance_destroy soft-deletes them.
CHILD_TABLES = (
    ('security_group_instance_association', 'instance_uuid'),
    ('instance_info_caches', 'instance_uuid'),
    ('instance_metadata', 'instance_uuid'),
    ('instance_faults', 'instance_uuid'),
    ('instance_extra', 'instance_uuid'),
    ('instance_system_metadata', 'instance_uuid'),
    ('block_device_mapping', 'instance_uuid'),
    ('migrations', 'instance_uuid'),
    ('virtual_interfaces', 'instance_uuid'),
    ('instance_id_mappings', 'uuid'),
)

# Tables without a ``deleted`` column whose rows instance_destroy deletes.
HARD_DELETED_TABLES = (
    ('console_auth_tokens', 'instance_uuid'),
)

# The table of instance tags, the column naming the instance and its key (two columns, no id):
# instance_destroy deletes the rows.
TAG_TABLE = ('tags', 'resource_id', ('resource_id', 'tag'))

# Kept by a soft delete, deleted by a hard one (events first: they reference their action).
ACTION_TABLES = ('instance_actions_events', 'instance_actions')

# Tables whose rows reference instances.uuid by foreign key without a ``deleted`` column
# and that no Nova delete path removes: a purge cannot delete the instance row while they exist.
BLOCKING_TABLES = (
    ('share_mapping', 'instance_uuid'),
)

# nova_api rows of an instance that a purge deletes, as archive_deleted_rows does.
API_PURGED_TABLES = (
    ('instance_group_member', 'instance_uuid'),
    ('request_specs', 'instance_uuid'),
    ('instance_mappings', 'instance_uuid'),
)

INSTANCE_COLUMNS = ('id', 'uuid', 'host', 'node', 'vm_state', 'task_state', 'power_state', 'progress',
                    'terminated_at', 'locked', 'disable_terminate', 'updated_at', 'deleted', 'deleted_at')

# What a result shows of a row that a purge deletes (the journal keeps the whole row).
SHOWN_COLUMNS = ('id', 'uuid', 'instance_uuid', 'volume_id', 'action', 'event', 'status', 'deleted')

# Nova's task states of a delete: a stuck delete is what this module finishes, not a task to protect.
DELETE_TASK_STATES = ('deleting', 'soft-deleting')


def require_cell_schema(schema, purge):
    """Fail before planning unless every table the plan reads or writes is there."""
    purpose = 'delete instances as Nova does'
    schema.require('instances', INSTANCE_COLUMNS, purpose=purpose)
    schema.require('services', ('id', 'host', 'binary', 'disabled', 'forced_down', 'last_seen_up', 'created_at',
                                'deleted'), purpose='check the compute service of the instance')
    for table, column in CHILD_TABLES:
        schema.require(table, ('id', column, 'deleted', 'deleted_at'), purpose=purpose)
    schema.require('block_device_mapping', ('volume_id', 'destination_type', 'delete_on_termination'),
                   purpose='name the volumes of the instance')
    schema.require('migrations', ('status', 'source_compute', 'dest_compute'), purpose='find unfinished migrations')
    for table, column in HARD_DELETED_TABLES:
        schema.require(table, ('id', column), purpose=purpose)
    schema.require(TAG_TABLE[0], TAG_TABLE[2], purpose=purpose)
    if purge:
        schema.require('instance_actions', ('id', 'instance_uuid'), purpose='purge the instance actions')
        schema.require('instance_actions_events', ('id', 'action_id'), purpose='purge the instance action events')


def shown(row):
    """The identifying fields of a row, for results and guards."""
    return dict((column, row[column]) for column in SHOWN_COLUMNS if column in row)


def rows_of(session, table, column, uuids, live_only=True, columns='*', order=('id',)):
    """Rows of ``table`` whose ``column`` names one of the instances, in ``order`` (by default id order)."""
    where = ' AND deleted = 0' if live_only else ''
    return session.select_in('SELECT %s FROM %s WHERE %s IN ({in})%s ORDER BY %s'
                             % (columns, quote_identifier(table), quote_identifier(column), where,
                                ', '.join(quote_identifier(part) for part in order)), sorted(uuids))


def action_rows(session, uuids):
    """(events, actions) of the instances, every row (instance actions are never soft-deleted)."""
    actions = rows_of(session, 'instance_actions', 'instance_uuid', uuids, live_only=False,
                      columns='id, instance_uuid, action, deleted')
    events = session.select_in('SELECT id, action_id, event, deleted FROM instance_actions_events '
                               'WHERE action_id IN ({in}) ORDER BY id', [row['id'] for row in actions])
    return events, actions


def volume_status_after_detach(volume, remaining):
    """(status, attach_status) Cinder's ``volume_detached`` gives a volume after detaching.

    ``remaining`` are the volume's live attachments that stay. Those in an
    ``error_*`` state do not count; of the others the first attach_status in
    alphabetical order decides (attached > attaching > detaching > reserved).
    A volume being migrated or uploaded keeps its status.
    """
    states = sorted(row['attach_status'] for row in remaining
                    if row['attach_status'] and not row['attach_status'].startswith('error_'))
    attach_status = states[0] if states else 'detached'
    status = {'attached': 'in-use', 'detached': 'available'}.get(attach_status, attach_status)
    migration = volume.get('migration_status')
    if attach_status == 'detached' and ((migration and migration not in ('success', 'error'))
                                        or (not migration and volume['status'] == 'uploading')):
        status = volume['status']
    return status, attach_status
