# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Stuck Nova tasks and unfinished migrations: the rules ``nova_task_state`` plans with.

What Nova's API offers (nova/api/openstack/compute/):

- ``os-resetState`` (``admin_actions.py``) sets ``vm_state`` to ``active`` or
  ``error`` and ``task_state`` to None, nothing else: migrations, migration
  context and placement holds stay as they are. It exists since 2.1.
- ``DELETE /servers/{id}/migrations/{mid}`` (``server_migrations.py``, 2.24)
  aborts a live migration. Nova requires ``task_state`` ``migrating`` and the
  migration ``running``; from 2.65 also ``queued`` or ``preparing``. It is a
  message to the source compute, which rolls the migration back and sets it
  ``cancelled``.
- ``POST /servers/{id}/migrations/{mid}/action force_complete`` (2.22) needs
  ``vm_state`` ``active``, ``task_state`` ``migrating`` and the migration
  ``running``; the source compute then pauses the guest so the copy converges.

The database path ends a migration the way Nova's own rollback or confirm
would leave the records. While a move is in flight, placement holds the
instance's old resources under the migration's uuid as consumer and the new
ones under the instance. :class:`HoldRelease` plans the two outcomes:
``revert`` (the instance stays on the source: the migration's allocations
become the instance's, as ``move_allocations`` does on a rollback) and
``confirm`` (the instance is on the destination: the migration's hold is
deleted, as a confirmed resize does).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.services.placement import AllocationMove
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import canonical_uuid

RESET = 'reset'
ABORT = 'abort'
FORCE_COMPLETE = 'force_complete'

# The status a migration ended by the database path gets, per action.
ENDED_STATUS = {RESET: 'error', ABORT: 'cancelled'}

MICROVERSION_RESET_STATE = '2.1'
MICROVERSION_FORCE_COMPLETE = '2.22'
MICROVERSION_ABORT = '2.24'
MICROVERSION_ABORT_QUEUED = '2.65'
# os-migrations with uuid and paging.
MICROVERSION_MIGRATIONS = '2.59'

ABORTABLE = {'running': MICROVERSION_ABORT, 'queued': MICROVERSION_ABORT_QUEUED,
             'preparing': MICROVERSION_ABORT_QUEUED}
# The migration statuses Nova's own server-migrations listing calls in progress.
LIVE_IN_PROGRESS = ('queued', 'preparing', 'running', 'post-migrating')

_MIGRATION_ID = re.compile(r'^[0-9]{1,18}$')


def migration_references(values, option='migration'):
    """(ids, uuids) of a list of migration ids (integers) and uuids, each distinct, in the order given."""
    if values is None:
        return [], []
    if isinstance(values, (str, int)):
        values = [values]
    if not isinstance(values, list) or not values:
        raise InputError('%s: give a list of migration ids or uuids' % option)
    ids, uuids = [], []
    for value in values:
        if isinstance(value, bool):
            raise InputError('%s: %r is neither a migration id nor a uuid' % (option, value))
        text = str(value).strip() if isinstance(value, (str, int)) else None
        if text is not None and _MIGRATION_ID.match(text):
            number = int(text)
            if number <= 0:
                raise InputError('%s: %s is not a migration id (they start at 1)' % (option, text))
            if number not in ids:
                ids.append(number)
            continue
        if not isinstance(value, str):
            raise InputError('%s: %r is neither a migration id nor a uuid' % (option, value))
        try:
            uuid = canonical_uuid(value, option)
        except InputError as error:
            raise InputError('%s (nor a migration id)' % error.msg)
        if uuid not in uuids:
            uuids.append(uuid)
    return ids, uuids


def reset_vm_state(state, vm_state):
    """The ``vm_state`` a reset leaves: the one asked for, or with ``auto`` active stays active and
    anything else becomes error (os-resetState offers only those two)."""
    if state != 'auto':
        return state
    return 'active' if vm_state == 'active' else 'error'


def context_migration_id(migration_context):
    """The migration id a serialized MigrationContext refers to, or None when it cannot be read."""
    if not migration_context:
        return None
    try:
        data = json.loads(migration_context)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    data = data.get('nova_object.data', data)
    value = data.get('migration_id') if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


def side_of_instance(migration, instance_host):
    """Where the instance stands relative to a migration it abandons: ``source``, ``dest`` or None.

    A resize that finished (waiting for confirmation) has the instance on the
    destination even when both are one host.
    """
    source, dest = migration['source_compute'], migration['dest_compute']
    if migration['status'] == 'finished' and instance_host == dest:
        return 'dest'
    if instance_host and instance_host == source:
        return 'source'
    if instance_host and instance_host == dest:
        return 'dest'
    return None


class HoldRelease(AllocationMove):
    """Placement row changes that end the holds of abandoned migrations.

    Reuses :class:`AllocationMove`'s bookkeeping (each touched consumer and
    provider gets one generation bump in ``finish``; a consumer left without
    allocations is deleted).
    """

    def __init__(self, option, session, stamp):
        super(HoldRelease, self).__init__(option, session, stamp)
        self._planned = set()

    def _drop_once(self, row, why):
        if row['id'] in self._planned:
            return 0
        self._planned.add(row['id'])
        self.drop(row, why)
        return 1

    def revert(self, instance_uuid, migration_uuid, allocations):
        """The instance stays on the source: its allocations become exactly the migration's.

        Returns the number of allocation rows changed.
        """
        changed = 0
        for row in allocations:
            if row['consumer_id'] == instance_uuid:
                changed += self._drop_once(row, 'the instance takes back the allocations it had before the migration')
        for row in allocations:
            if row['consumer_id'] != migration_uuid or row['id'] in self._planned:
                continue
            self._planned.add(row['id'])
            self.changes.append(dict(
                table='allocations', key={'id': row['id']},
                before=dict(consumer_id=migration_uuid, updated_at=row['updated_at']),
                after=dict(consumer_id=instance_uuid, updated_at=self.stamp),
                expect=dict(resource_provider_id=row['resource_provider_id'],
                            resource_class_id=row['resource_class_id'], used=row['used']),
                note="the abandoned migration's hold on the source is the instance's again, as a rollback leaves it"))
            self.touch_provider(row['resource_provider_id'])
            self.touched_consumers.add(instance_uuid)
            self.emptied_consumers.add(migration_uuid)
            changed += 1
        return changed

    def confirm(self, instance_uuid, migration_uuid, allocations, leave_root_id):
        """The instance is on the destination: the migration's hold goes, and so does any claim of the
        instance on the provider tree it left (``leave_root_id``, an evacuation's double allocation)."""
        changed = 0
        for row in allocations:
            if row['consumer_id'] == migration_uuid:
                changed += self._drop_once(row, 'hold of an abandoned migration on the host the instance left')
                self.emptied_consumers.add(migration_uuid)
            elif (row['consumer_id'] == instance_uuid and leave_root_id is not None
                  and row['root_provider_id'] == leave_root_id):
                changed += self._drop_once(row, 'claim of the instance on the host it left')
        return changed

    def release_destination(self, instance_uuid, allocations, leave_root_id):
        """The instance stays on the source and the migration holds nothing (an evacuation): its claim on
        the destination's provider tree goes."""
        changed = 0
        for row in allocations:
            if row['consumer_id'] == instance_uuid and leave_root_id is not None \
                    and row['root_provider_id'] == leave_root_id:
                changed += self._drop_once(row, 'claim of the instance on the destination of an abandoned migration')
        return changed
