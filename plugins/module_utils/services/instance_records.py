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

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import DELETE, quote_identifier
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services.nova import FINISHED_MIGRATION_STATUSES

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


# ---------------------------------------------------------------------------
# Readers of what a delete of instances changes (plain rows, for the plan functions below)

def cell_rows(session, uuids, purge, has_column):
    """What a delete of ``uuids`` changes in one cell, as plain rows.

    A dict: ``children`` [(table, column, rows)] of CHILD_TABLES (the live rows; every
    row with ``purge``), ``hard`` [(table, column, rows)] of HARD_DELETED_TABLES,
    ``tags``; with ``purge`` also ``blocking`` [(table, column, rows)] of
    BLOCKING_TABLES that the cell has (``has_column(table, column)``), ``actions`` and ``events``.
    """
    found = dict(children=[(table, column, rows_of(session, table, column, uuids, live_only=not purge))
                           for table, column in CHILD_TABLES],
                 hard=[(table, column, rows_of(session, table, column, uuids, live_only=False,
                                               columns='id, %s' % quote_identifier(column)))
                       for table, column in HARD_DELETED_TABLES],
                 blocking=[], actions=[], events=[])
    table, column, key = TAG_TABLE
    found['tags'] = rows_of(session, table, column, uuids, live_only=False, order=key,
                            columns=', '.join(quote_identifier(part) for part in key))
    if purge:
        found['blocking'] = [(table, column, rows_of(session, table, column, uuids, live_only=False))
                             for table, column in BLOCKING_TABLES if has_column(table, column)]
        found['events'], found['actions'] = action_rows(session, uuids)
    return found


def live_migrations(session, uuids):
    """The live ``migrations`` rows of the instances (the guard looks for unfinished ones)."""
    return rows_of(session, 'migrations', 'instance_uuid', uuids,
                   columns='id, uuid, instance_uuid, status, migration_type, source_compute, dest_compute, deleted')


def instance_volume_bdms(found, uuids):
    """Every BDM row (deleted ones too) of a volume of the instances, read in the cell of each (``found``)."""
    cells = {}
    for uuid in sorted(uuids):
        row = found.get(uuid)
        if row is not None:
            cells.setdefault(row['cell'].name, (row['cell'], []))[1].append(uuid)
    bdms = []
    for name in sorted(cells):
        cell, in_cell = cells[name]
        bdms.extend(row for row in rows_of(cell.session, 'block_device_mapping', 'instance_uuid', in_cell,
                                           live_only=False, columns='id, instance_uuid, volume_id, destination_type, '
                                                                    'delete_on_termination')
                    if row['destination_type'] == 'volume' and row['volume_id'])
    return bdms


def require_cinder_schema(schema):
    purpose = 'detach the volumes of the instances'
    schema.require('volume_attachment', ('id', 'volume_id', 'instance_uuid', 'attach_status', 'detach_time',
                                         'deleted', 'deleted_at'), purpose=purpose)
    schema.require('volumes', ('id', 'status', 'attach_status', 'migration_status', 'deleted'), purpose=purpose)
    schema.require('volume_admin_metadata', ('id', 'volume_id', 'key', 'deleted', 'deleted_at'), purpose=purpose)
    schema.require('attachment_specs', ('id', 'attachment_id', 'deleted', 'deleted_at'), purpose=purpose)


ATTACHMENT_COLUMNS = 'id, volume_id, instance_uuid, attach_status, detach_time, deleted, deleted_at'


def cinder_rows(session, uuids):
    """The Cinder rows a detach of the instances' volumes changes, or None when they have no live attachment.

    A dict: ``detaching`` (the instances' live attachments), ``attachments`` (every live
    attachment of those volumes), ``specs``, ``admin_metadata`` and ``volumes``.
    """
    detaching = rows_of(session, 'volume_attachment', 'instance_uuid', uuids, columns=ATTACHMENT_COLUMNS)
    if not detaching:
        return None
    volume_ids = sorted(set(row['volume_id'] for row in detaching))
    return dict(detaching=detaching,
                specs=rows_of(session, 'attachment_specs', 'attachment_id', [row['id'] for row in detaching],
                              columns='id, attachment_id, deleted, deleted_at'),
                admin_metadata=rows_of(session, 'volume_admin_metadata', 'volume_id', volume_ids,
                                       columns='id, volume_id, `key`, deleted, deleted_at'),
                attachments=rows_of(session, 'volume_attachment', 'volume_id', volume_ids, columns=ATTACHMENT_COLUMNS),
                volumes=rows_of(session, 'volumes', 'id', volume_ids,
                                columns='id, status, attach_status, migration_status, deleted'))


# ---------------------------------------------------------------------------
# Planning a delete of instances: pure functions on rows (dicts; an instance row's ``cell`` has
# ``name`` and ``is_cell0``). Each adds to ``plan`` and returns the uuids it changed.

def shown_instance(row):
    shown = dict((column, row.get(column)) for column in ('id', 'uuid', 'host', 'node', 'vm_state', 'task_state',
                                                          'disable_terminate', 'deleted') if column in row)
    shown['cell'] = row['cell'].name
    return shown


def pick_instances(plan, uuids, by_uuid):
    """({uuid: its row}, [uuids in no cell]) from nova.instance_rows: the live row, else the newest deleted one.

    An instance live in several cells, or in cell0, is refused (force never lifts it).
    """
    found, missing = {}, []
    for uuid in uuids:
        rows = by_uuid.get(uuid, [])
        live = [row for row in rows if not row['deleted']]
        evidence = [shown_instance(row) for row in rows]
        if len(live) > 1:
            plan.refuse('instance_in_several_cells', 'instance %s has live rows in several cells (%s)'
                        % (uuid, ', '.join(row['cell'].name for row in live)), evidence, never=True)
            continue
        row = live[0] if live else (rows[-1] if rows else None)
        if row is None:
            missing.append(uuid)
        elif row['cell'].is_cell0:
            plan.refuse('cell0', 'instance %s is in cell0 (it was never scheduled); the database path never writes '
                        'cell0: delete it through the API (method=api), where Nova needs no compute host for it'
                        % uuid, evidence, never=True)
        else:
            found[uuid] = row
    return found, missing


def gone_instances(plan, missing, absent, purge):
    """The uuids of ``missing`` (in no cell read) that a purge cleans up: Nova has no trace of them.

    ``absent`` is {uuid: cells.Absence}. A build request is refused; without ``purge`` an
    unknown uuid is an input error; a purge refuses a uuid nova_api still maps.
    """
    unknown = []
    for uuid in missing:
        absence = absent[uuid]
        if absence.kind == 'building':
            plan.refuse('build_request', '%s (method=api)' % absence.explain(), absence.evidence, never=True)
        elif not purge:
            unknown.append(absence.explain())
        elif not absence.gone:
            plan.refuse('instance_not_in_cells_read', '%s: its nova_api records, allocations and volumes are not '
                        'purged' % absence.explain(), absence.evidence, never=True)
    if unknown:
        raise InputError('nothing to delete: %s' % '; '.join(unknown))
    return [uuid for uuid in missing if absent[uuid].gone]


def guard_live(plan, live, services, migrations, service_down_time):
    """Refuse to delete live instances that their compute or a task still works on.

    ``services`` is {host: nova.compute_services row}; ``migrations`` the instances' live migrations.
    """
    for row in live:
        shown = shown_instance(row)
        service = services.get(row['host'])
        if service is not None and service['up']:
            plan.refuse('compute_service_up', 'the nova-compute service of host %s is up (last report %s s ago, '
                        'service_down_time %s): delete instance %s through the API (method=api); that compute '
                        'deletes its guest' % (row['host'], service['seconds_since_report'], service_down_time,
                                               row['uuid']), [service, shown])
        if row['task_state'] and row['task_state'] not in DELETE_TASK_STATES:
            plan.refuse('task_in_progress', 'instance %s has task_state %s in progress'
                        % (row['uuid'], row['task_state']), [shown])
        unfinished = [migration for migration in migrations if migration['instance_uuid'] == row['uuid']
                      and migration['status'] not in FINISHED_MIGRATION_STATUSES]
        if unfinished:
            plan.refuse('migration_in_progress', 'instance %s has %d unfinished migration(s)'
                        % (row['uuid'], len(unfinished)), unfinished)
        if row['disable_terminate']:
            plan.refuse('termination_disabled', 'instance %s has disable_terminate set; Nova itself would not '
                        'delete it' % row['uuid'], [shown])


def _purge_row(plan, option, table, row, why):
    plan.change(option, table, {'id': row['id']}, action=DELETE, before=shown(row), note='purge %s' % why)


def plan_cell(plan, option, instances, found, stamp, purge):
    """One cell's rows of the delete of ``instances`` (their rows), from :func:`cell_rows` (``found``)."""
    changed = set()
    for table, column, rows in found['blocking']:
        for row in rows:
            plan.refuse('purge_blocked', 'instance %s has %s rows, which no Nova delete removes and which keep its '
                        'row by foreign key; remove them first or do not purge' % (row[column], table),
                        [dict(row, table=table)], never=True)
    by_action = dict((row['id'], row['instance_uuid']) for row in found['actions'])
    for row in found['events']:
        _purge_row(plan, option, 'instance_actions_events', row, 'an event of an action of the instance')
        changed.add(by_action[row['action_id']])
    for row in found['actions']:
        _purge_row(plan, option, 'instance_actions', row, 'an action of the instance')
        changed.add(row['instance_uuid'])
    # The instance first, as instance_destroy does; a purge deletes it last (its children reference it).
    for row in ([] if purge else instances):
        if row['deleted']:
            continue
        plan.change(option, 'instances', {'id': row['id']},
                    before=dict((column, row[column]) for column in ('vm_state', 'task_state', 'progress',
                                                                     'terminated_at', 'updated_at', 'deleted',
                                                                     'deleted_at')),
                    after=dict(vm_state='deleted', task_state=None, progress=0, terminated_at=stamp,
                               updated_at=stamp, deleted_at=stamp),
                    from_key=('deleted',), expect=dict(uuid=row['uuid'], host=row['host']),
                    note="Nova's local delete: vm_state deleted, no task, terminated, then soft-deleted")
        changed.add(row['uuid'])
    for table, column, rows in found['children']:
        for row in rows:
            changed.add(row[column])
            if purge:
                _purge_row(plan, option, table, row, 'a row of the instance (hard delete, as instance_destroy with '
                                                     'hard_delete does)')
                continue
            plan.change(option, table, {'id': row['id']},
                        before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                        after=dict(deleted_at=stamp), from_key=('deleted',), expect={column: row[column]},
                        note="soft-delete as Nova's instance_destroy does (deleted = id, updated_at kept)")
    for table, column, rows in found['hard']:
        for row in rows:
            changed.add(row[column])
            plan.change(option, table, {'id': row['id']}, action=DELETE, before=dict(row),
                        note='instance_destroy deletes them (the table has no deleted column)')
    table, column, key = TAG_TABLE
    # Keyed by the pair: the executor deletes exactly these rows and the journal keeps each one for undo.
    for row in found['tags']:
        changed.add(row[column])
        plan.change(option, table, dict((part, row[part]) for part in key), action=DELETE, before=dict(row),
                    note='instance_destroy deletes the tags of the instance')
    for row in (instances if purge else []):
        _purge_row(plan, option, 'instances', row, 'the instance (hard delete)')
        changed.add(row['uuid'])
    return changed


def plan_mappings(plan, option, mappings, stamp):
    """Mark the instance mappings (cells.instance_mappings) queued_for_delete, as Nova's delete does."""
    changed = set()
    for uuid in sorted(mappings):
        row = mappings[uuid]
        if not row['queued_for_delete']:
            plan.change(option, 'instance_mappings', {'id': row['id']},
                        before=dict(queued_for_delete=row['queued_for_delete'], updated_at=row['updated_at']),
                        after=dict(queued_for_delete=1, updated_at=stamp), expect=dict(instance_uuid=uuid),
                        note="Nova's delete marks the mapping queued_for_delete")
            changed.add(uuid)
    return changed


def plan_api_purge(plan, option, rows_by_table):
    """Delete the nova_api records of purged instances ({table: rows} of API_PURGED_TABLES)."""
    changed = set()
    for table, column in API_PURGED_TABLES:
        for row in rows_by_table.get(table, []):
            plan.change(option, table, {'id': row['id']}, action=DELETE, before=dict(row),
                        note='archive_deleted_rows deletes the API records of a purged instance')
            changed.add(row[column])
    return changed


def plan_allocations(plan, option, allocations, consumers, allocation_columns):
    """Delete the instances' allocations and consumers ({uuid: row}), as DELETE /allocations/{consumer} does."""
    changed = set()
    for row in allocations:
        plan.change(option, 'allocations', {'id': row['id']}, action=DELETE,
                    before=dict((column, row[column]) for column in allocation_columns),
                    note='DELETE /allocations/{consumer}, as Nova asks placement when it deletes locally')
        changed.add(row['consumer_id'])
    for uuid in sorted(consumers):
        row = consumers[uuid]
        plan.change(option, 'consumers', {'id': row['id']}, action=DELETE,
                    before=dict(uuid=row['uuid'], generation=row['generation'], updated_at=row['updated_at']),
                    note='a consumer left without allocations is deleted, as placement does')
        changed.add(uuid)
    return changed


def plan_detach(plan, option, found, stamp):
    """Detach the instances' volumes in Cinder (``found``: :func:`cinder_rows`), as its attachment delete does."""
    if not found:
        return set()
    ids = set(row['id'] for row in found['detaching'])
    for volume in found['volumes']:
        changes, _status = cinder.detach_changes(
            volume, [row for row in found['attachments'] if row['volume_id'] == volume['id']], stamp,
            detaching=ids, specs=found['specs'], admin_metadata=found['admin_metadata'])
        for change in changes:
            plan.change(option, **change)
    return set(row['instance_uuid'] for row in found['detaching'])


def delete_report(plan, uuids, found, changed, purge):
    """The ``instances`` result: each instance changed and the action taken; notes for the others."""
    entries = []
    for uuid in uuids:
        row = found.get(uuid)
        if uuid not in changed:
            plan.note('instance %s is in no cell: nothing of it is left to purge' % uuid if row is None else
                      'instance %s is already deleted%s' % (uuid, ' and purged' if purge else ''))
            continue
        action = 'purge' if purge else ('soft-delete' if row and not row['deleted'] else 'cleanup')
        entries.append(dict(instance=uuid, cell=row['cell'].name if row else None, host=row['host'] if row else None,
                            vm_state=row['vm_state'] if row else None, task_state=row['task_state'] if row else None,
                            action=action))
    return entries


def followup_warnings(bdms, changed, given):
    """What the database path leaves for the operator to do; ``given`` names the options given."""
    warnings = []
    keep = sorted(set(row['volume_id'] for row in bdms if row['delete_on_termination']))
    if keep:
        warnings.append('volume(s) %s were to be deleted with their instance (delete_on_termination); they are only '
                        'detached: delete them with openstack volume delete if they are no longer wanted'
                        % ', '.join(keep))
    names = ', '.join(sorted(changed))
    if bdms and 'cinder_db' not in given:
        warnings.append('Cinder was not given (cinder_db): the attachments of volume(s) %s remain; delete them with '
                        'openstack volume attachment delete' % ', '.join(sorted(set(row['volume_id'] for row in bdms))))
    if 'placement_db' not in given:
        warnings.append('placement was not given (placement_db): delete the allocations of %s with openstack '
                        'resource provider allocation delete UUID' % names)
    if 'nova_api_db' not in given:
        warnings.append('nova_api was not given (nova_db only): the instance mapping(s) of %s are not marked '
                        'queued_for_delete' % names)
    warnings.append('delete (or unbind) the Neutron ports of %s: openstack port list --device-id UUID; the database '
                    'path cannot release them' % names)
    return warnings
