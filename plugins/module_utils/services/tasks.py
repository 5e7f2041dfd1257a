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

import datetime
import json
import re

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import ApiUnsuitable
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.services.nova import FINISHED_MIGRATION_STATUSES
from ansible_collections.stackmender.openstack.plugins.module_utils.services.placement import AllocationMove
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import canonical_uuid, placeholders

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


# ====================================================================== database path

INSTANCE_COLUMNS = ('id', 'uuid', 'host', 'node', 'vm_state', 'task_state', 'power_state', 'deleted', 'created_at',
                    'updated_at')
MIGRATION_COLUMNS = ('id', 'uuid', 'instance_uuid', 'migration_type', 'status', 'source_compute', 'source_node',
                     'dest_compute', 'dest_node', 'deleted', 'created_at', 'updated_at')
EXTRA_COLUMNS = ('id', 'instance_uuid', 'migration_context', 'deleted', 'updated_at')


def require_cell_schema(schema):
    """The cell tables and columns the database path reads and writes."""
    schema.require('instances', INSTANCE_COLUMNS, purpose='clear the task of instances')
    schema.require('migrations', MIGRATION_COLUMNS, purpose='end unfinished migrations')
    schema.require('instance_extra', EXTRA_COLUMNS, purpose='clear the migration context')
    schema.require('services', nova.COMPUTE_SERVICE_COLUMNS, purpose='check the compute services of the migrations')


def listed_migrations(cells, ids, uuids):
    """[(cell, migration row)] of the migrations given by id or by uuid, each row once per cell."""
    migration_sql = 'SELECT %s FROM migrations WHERE %%s IN ({in}) ORDER BY id' % ', '.join(MIGRATION_COLUMNS)
    found = []
    for cell in cells:
        seen = set()
        for row in cell.session.select_in(migration_sql % 'id', ids) + \
                cell.session.select_in(migration_sql % 'uuid', uuids):
            if row['id'] not in seen:
                seen.add(row['id'])
                found.append((cell, row))
    return found


def unfinished_migrations(cell, instance_uuid):
    """The live migrations of an instance in no finished status, by id."""
    return cell.session.query(
        'SELECT %s FROM migrations WHERE instance_uuid = %%s AND deleted = 0 AND status NOT IN (%s) ORDER BY id'
        % (', '.join(MIGRATION_COLUMNS), placeholders(len(FINISHED_MIGRATION_STATUSES))),
        [instance_uuid] + list(FINISHED_MIGRATION_STATUSES))


def instance_facts(entry, service_down_time):
    """What plan_instance needs besides the rows selected: the cell's clock, the compute services of
    the ending migrations' hosts and the instance's live instance_extra rows."""
    cell = entry['cell']
    hosts = [host for row in entry['ending'] for host in (row['source_compute'], row['dest_compute'])]
    return dict(reference=cell.session.utc_now(),
                services=nova.compute_services(cell, hosts, service_down_time) if hosts else [],
                contexts=cell.session.query('SELECT %s FROM instance_extra WHERE instance_uuid = %%s AND deleted = 0 '
                                            'ORDER BY id' % ', '.join(EXTRA_COLUMNS), (entry['instance']['uuid'],)))


def compute_node_uuids(cell, hosts):
    """{(host, node): compute node uuid} of the hosts, the live row first, else the newest."""
    found = {}
    for row in cell.session.select_in('SELECT host, hypervisor_hostname, uuid, deleted FROM compute_nodes WHERE '
                                      'host IN ({in}) ORDER BY deleted = 0, id', sorted(set(h for h in hosts if h))):
        found[(row['host'], row['hypervisor_hostname'])] = row['uuid']
    return found


def shown_instance(row):
    shown = dict((column, row.get(column)) for column in INSTANCE_COLUMNS if column in row)
    shown['cell'] = row['cell'].name
    return shown


def shown_migration(row, cell):
    return dict(row, cell=cell.name, table='migrations')


def resolve_listed(ids, uuids, found):
    """{instance uuid: [(cell, migration row)]} of the migrations found; fails on any not found and on an
    id that several cells hold (ids are numbered per cell)."""
    listed, cells_of_id, found_uuids = {}, {}, set()
    for cell, row in found:
        if row['id'] in ids:
            cells_of_id.setdefault(row['id'], []).append(cell)
        found_uuids.add(row['uuid'])
        listed.setdefault(row['instance_uuid'], []).append((cell, row))
    missing = [str(number) for number in ids if number not in cells_of_id]
    missing += [uuid for uuid in uuids if uuid not in found_uuids]
    if missing:
        raise InputError('migration(s) not found in any cell: %s' % ', '.join(missing))
    for number, where in sorted(cells_of_id.items()):
        if len(where) > 1:
            raise InputError('migration id %d exists in cells %s; give the uuid of the one to end'
                             % (number, ', '.join(cell.name for cell in where)))
    return listed


def select_targets(plan, instance_ids, listed, by_uuid):
    """[{cell, instance, listed, by_instance}] of the instances to handle, in the order asked (the instances
    given, then those of the migrations given), refusing (never overridden) a deleted instance, one live in
    several cells or in cell0, and a migration in another cell than its instance."""
    wanted = list(instance_ids) + [uuid for uuid in listed if uuid not in instance_ids]
    selected = []
    for uuid in wanted:
        candidates = by_uuid.get(uuid, [])
        live = [row for row in candidates if not row['deleted']]
        evidence = [shown_instance(row) for row in candidates]
        migrations = [row for _cell, row in listed.get(uuid, [])]
        if not live:
            plan.refuse('instance_deleted', 'instance %s is deleted%s' % (
                uuid, ' (migration(s) %s)' % ', '.join(str(row['id']) for row in migrations) if migrations else ''),
                evidence + [shown_migration(row, cell) for cell, row in listed.get(uuid, [])], never=True)
            continue
        if len(live) > 1:
            plan.refuse('instance_in_several_cells', 'instance %s has live rows in several cells (%s)'
                        % (uuid, ', '.join(row['cell'].name for row in live)), evidence, never=True)
            continue
        row = live[0]
        if row['cell'].is_cell0:
            plan.refuse('cell0', 'instance %s is in cell0, which holds instances that were never scheduled '
                        'and is never written' % uuid, [shown_instance(row)], never=True)
            continue
        for cell, migration in listed.get(uuid, []):
            if cell.name != row['cell'].name:
                plan.refuse('migration_in_other_cell', 'migration %s is in %s, its instance %s in %s'
                            % (migration['id'], cell.name, uuid, row['cell'].name),
                            [shown_migration(migration, cell), shown_instance(row)], never=True)
        selected.append(dict(cell=row['cell'], instance=row, listed=migrations, by_instance=uuid in instance_ids))
    return selected


def choose_ending(plan, entry, unfinished):
    """The migrations to end of one selected instance: all its unfinished ones when it was given, else the
    listed ones still unfinished (the others are noted)."""
    entry['unfinished'] = unfinished
    if entry['by_instance']:
        entry['ending'] = unfinished
        return
    ids = set(row['id'] for row in entry['listed'])
    entry['ending'] = [row for row in unfinished if row['id'] in ids]
    for migration in entry['listed']:
        if migration['deleted']:
            plan.note('migration %s is deleted; left alone' % migration['id'])
        elif migration['status'] in FINISHED_MIGRATION_STATUSES:
            plan.note('migration %s is already %s' % (migration['id'], migration['status']))


def nothing_stuck(plan, uuid, task_state, ending):
    """Note and say so when an instance has neither a task nor a migration to end."""
    if task_state or ending:
        return False
    plan.note('instance %s has no task in progress and no unfinished migration to end' % uuid)
    return True


def refuse_if_recent(plan, what, row, reference, changed_at, older_than):
    """The task_recent guard for one row: it changed less than ``older_than`` minutes before ``reference``."""
    if not older_than or changed_at is None or reference is None:
        return
    age = int((reference - changed_at).total_seconds())
    if age < older_than * 60:
        plan.refuse('task_recent', '%s changed %d s ago, less than older_than (%d min): Nova may still be working on '
                    'it' % (what, age, older_than), [dict(row, seconds_since_change=age, older_than_minutes=older_than)])


def warn_error_state(plan, uuid, old, new):
    if new == 'error' and old != 'error':
        plan.warn('instance %s is set to error (it was %s): hard reboot it (openstack server reboot --hard) to bring it '
                  'back' % (uuid, old))


def plan_instance(plan, entry, facts, stamp, action, state, older_than):
    """The cell row changes that end one instance's task and migrations (``facts``: see instance_facts).

    Returns (its ``instances`` result entry, [holds to release in placement]).
    """
    cell, row, ending = entry['cell'], entry['instance'], entry['ending']
    uuid = row['uuid']
    reference = facts['reference']
    if row['task_state']:
        refuse_if_recent(plan, 'instance %s (task_state %s)' % (uuid, row['task_state']), shown_instance(row),
                         reference, row['updated_at'] or row['created_at'], older_than)
    new_status = ENDED_STATUS[action]
    shown_migrations, holds = [], []
    for migration in ending:
        shown = shown_migration(migration, cell)
        refuse_if_recent(plan, 'migration %s of instance %s (%s)' % (migration['id'], uuid, migration['status']),
                         shown, reference, migration['updated_at'] or migration['created_at'], older_than)
        if migration['status'] == 'finished' and row['vm_state'] == 'resized':
            plan.refuse('resize_awaiting_confirmation', 'migration %s of instance %s is a finished resize waiting to '
                        'be confirmed or reverted (openstack server resize confirm|revert); nothing is stuck'
                        % (migration['id'], uuid), [shown, shown_instance(row)])
        hosts = (migration['source_compute'], migration['dest_compute'])
        up = [service for service in facts['services'] if service['host'] in hosts and service['up']]
        if up:
            plan.refuse('migration_host_up', 'migration %s of instance %s is %s between %s and %s, and nova-compute on '
                        '%s is up: the hypervisors may still be moving the guest; prefer action=abort through the API'
                        % (migration['id'], uuid, migration['status'], migration['source_compute'],
                           migration['dest_compute'], ', '.join(service['host'] for service in up)), up + [shown])
        side = side_of_instance(migration, row['host'])
        shown_migrations.append(dict(id=migration['id'], uuid=migration['uuid'], type=migration['migration_type'],
                                     status=migration['status'], new_status=new_status, side=side))
        plan.change(cell.name, 'migrations', {'id': migration['id']},
                    before=dict(status=migration['status'], updated_at=migration['updated_at']),
                    after=dict(status=new_status, updated_at=stamp), expect=dict(instance_uuid=uuid, deleted=0),
                    note='the unfinished migration ends as %s' % new_status)
        holds.append(dict(cell=cell, instance=row, migration=migration, side=side))
        if side is None:
            plan.warn('instance %s is on host %s, neither the source (%s) nor the destination (%s) of migration %s; '
                      'its placement hold was left alone: find where the guest runs'
                      % (uuid, row['host'], migration['source_compute'], migration['dest_compute'], migration['id']))
        elif migration['migration_type'] == 'live-migration':
            other = migration['dest_compute'] if side == 'source' else migration['source_compute']
            plan.warn('check that instance %s runs on %s only: the abandoned live migration %s may have left a guest '
                      'on %s, an inactive port binding and a volume attachment for it (consistency_info reports them)'
                      % (uuid, row['host'], migration['id'], other))
    # With no task to reset and state auto, only the migrations end: the vm_state stays.
    vm_state = reset_vm_state(state, row['vm_state']) if row['task_state'] or state != 'auto' else row['vm_state']
    if row['task_state'] or vm_state != row['vm_state']:
        plan.change(cell.name, 'instances', {'id': row['id']},
                    before=dict(task_state=row['task_state'], vm_state=row['vm_state'], updated_at=row['updated_at']),
                    after=dict(task_state=None, vm_state=vm_state, updated_at=stamp), expect=dict(uuid=uuid, deleted=0),
                    note='no task is in progress, as os-resetState leaves it')
    warn_error_state(plan, uuid, row['vm_state'], vm_state)
    ended = set(migration['id'] for migration in ending)
    staying = set(migration['id'] for migration in entry['unfinished'] if migration['id'] not in ended)
    for extra in facts['contexts']:
        if extra['migration_context'] is None:
            continue
        if context_migration_id(extra['migration_context']) in staying:
            plan.note('the migration context of instance %s refers to migration %s, which stays unfinished; kept'
                      % (uuid, context_migration_id(extra['migration_context'])))
            continue
        plan.change(cell.name, 'instance_extra', {'id': extra['id']},
                    before=dict(migration_context=extra['migration_context'], updated_at=extra['updated_at']),
                    after=dict(migration_context=None, updated_at=stamp), expect=dict(instance_uuid=uuid, deleted=0),
                    note='the migration context of an ended move')
    return dict(instance=uuid, cell=cell.name, task_state=row['task_state'], vm_state=row['vm_state'],
                new_vm_state=vm_state, migrations=shown_migrations), holds


def warn_holds_stay(plan, holds):
    """Without placement_db, the holds of the ended migrations stay: say what heals them."""
    migrations = ', '.join(hold['migration']['uuid'] or str(hold['migration']['id']) for hold in holds)
    instances = ', '.join(sorted(set(hold['instance']['uuid'] for hold in holds)))
    plan.warn('placement was not given (placement_db): the holds of the ended migration(s) %s stay; run '
              'nova-manage placement audit --delete, then nova-manage placement heal_allocations --force '
              '--instance UUID for %s' % (migrations, instances))


def release_holds(plan, option, session, holds, stamp):
    """Plan the placement row changes that release the holds of the ended migrations (see HoldRelease)."""
    release = HoldRelease(option, session, stamp)
    consumers = set()
    for hold in holds:
        consumers.update(uuid for uuid in (hold['instance']['uuid'], hold['migration']['uuid']) if uuid)
    allocations = placement.allocations_of(session, consumers)
    existing = placement.consumers_by_uuid(session, consumers)
    node_uuids = {}
    for hold in holds:
        migration = hold['migration']
        node_uuids.update(compute_node_uuids(hold['cell'], (migration['source_compute'], migration['dest_compute'])))
    providers = placement.providers_by_uuid(session, node_uuids.values())

    def root_of(host, node):
        provider = providers.get(node_uuids.get((host, node)))
        return provider['id'] if provider else None

    for hold in holds:
        instance, migration, side = hold['instance']['uuid'], hold['migration'], hold['side']
        if side is None:
            continue
        mine = [row for row in allocations if row['consumer_id'] in (instance, migration['uuid'])]
        source = root_of(migration['source_compute'], migration['source_node'])
        dest = root_of(migration['dest_compute'], migration['dest_node'])
        if side == 'source' and any(row['consumer_id'] == migration['uuid'] for row in mine):
            if instance not in existing:
                # Nova's rollback (revert_allocation_for_migration: move_allocations from the migration to the
                # instance) creates the instance's consumer in placement when it has none.
                if migration['uuid'] not in existing or \
                        not release.create_consumer(instance, existing[migration['uuid']]):
                    plan.warn('neither instance %s nor migration %s has a placement consumer, so the hold was left; '
                              'run nova-manage placement heal_allocations --force --instance %s'
                              % (instance, migration['id'], instance))
                    continue
                existing[instance] = dict(existing[migration['uuid']], uuid=instance)
            release.revert(instance, migration['uuid'], mine)
        elif side == 'source':
            release.release_destination(instance, mine, dest if dest != source else None)
        else:
            release.confirm(instance, migration['uuid'], mine, source if source != dest else None)
    for change in release.finish():
        plan.change(option, change['table'], change['key'], action=change.get('action', 'update'),
                    before=change['before'], after=change.get('after'), expect=change.get('expect'),
                    note=change['note'])


# ========================================================================== API path

def api_time(text):
    """A naive UTC datetime of an API timestamp (``2026-11-22T03:04:05Z`` or with microseconds), or None."""
    if not text:
        return None
    value = str(text).replace('Z', '').split('+', maxsplit=1)[0]
    for layout in ('%Y-%m-%dT%H:%M:%S.%f', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S.%f', '%Y-%m-%d %H:%M:%S'):
        try:
            return datetime.datetime.strptime(value, layout)
        except ValueError:
            continue
    return None


class ComputeApi(object):
    """The Compute API reads and calls of the API path, on an openstacksdk connection; servers as dicts."""

    def __init__(self, conn):
        self.conn = conn

    def server(self, instance_id):
        try:
            server = self.conn.compute.get_server(instance_id)
        except Exception as error:
            if getattr(error, 'status_code', None) == 404:
                raise InputError('instance %s not found through the Compute API (deleted?)' % instance_id)
            raise api.translate(error, 'reading instance %s' % instance_id)
        return dict(id=server.id, status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                    host=server.compute_host, updated=server.updated_at)

    def migrations(self, instance_id):
        try:
            response = self.conn.compute.get('/os-migrations?instance_uuid=%s' % instance_id,
                                             microversion=MICROVERSION_MIGRATIONS)
            api.openstack.exceptions.raise_from_response(response)
        except Exception as error:
            raise api.translate(error, 'listing the migrations of instance %s' % instance_id)
        return [m for m in response.json().get('migrations', []) if m.get('instance_uuid') == instance_id]

    def compute_state(self, host):
        """``up``, ``down`` (or forced down) or ``unknown`` of the nova-compute service of ``host``."""
        services = [service for service in self.conn.compute.services(binary='nova-compute', host=host)
                    if service.host == host]
        if not services:
            return 'unknown'
        return 'up' if services[0].state == 'up' and not services[0].is_forced_down else 'down'

    def post(self, path, body, microversion):
        api.openstack.exceptions.raise_from_response(self.conn.compute.post(path, json=body, microversion=microversion))

    def delete(self, path, microversion):
        api.openstack.exceptions.raise_from_response(self.conn.compute.delete(path, microversion=microversion))


def shown_api_migration(migration):
    keys = ('id', 'uuid', 'migration_type', 'status', 'source_compute', 'dest_compute', 'updated_at')
    return dict((key, migration.get(key)) for key in keys)


def plan_api(plan, compute, instance_ids, migration_ids, migration_uuids, action, state, older_than, reference):
    """The Compute API calls for the instances given (``compute``: see ComputeApi); the ``instances`` result
    entries are returned. ApiUnsuitable when the API cannot do it (method auto then falls back to the
    database); for force_complete, which has no database path, an InputError."""
    try:
        return _plan_api(plan, compute, instance_ids, migration_ids, migration_uuids, action, state, older_than,
                         reference)
    except ApiUnsuitable as unsuitable:
        if action == FORCE_COMPLETE:
            raise InputError('the API path cannot force this migration to complete: %s' % unsuitable)
        raise


def _plan_api(plan, compute, instance_ids, migration_ids, migration_uuids, action, state, older_than, reference):
    if not instance_ids:
        raise ApiUnsuitable('the Compute API finds migrations only through their instance; give instance too')
    wanted = set(migration_ids) | set(migration_uuids)
    matched, entries = set(), []
    for instance_id in instance_ids:
        server = compute.server(instance_id)
        migrations = compute.migrations(instance_id)
        listed = [m for m in migrations if m.get('id') in wanted or m.get('uuid') in wanted]
        matched.update(m.get(key) for m in listed for key in ('id', 'uuid'))
        ending = [m for m in (listed if wanted else migrations) if m.get('status') not in FINISHED_MIGRATION_STATUSES]
        if server['task_state']:
            refuse_if_recent(plan, 'instance %s (task_state %s)' % (server['id'], server['task_state']), server,
                             reference, api_time(server['updated']), older_than)
        if action == RESET:
            entry = _plan_api_reset(plan, compute, server, ending, state)
        else:
            entry = _plan_api_live(plan, compute, server, ending, action, older_than, reference)
        if entry:
            entries.append(entry)
    unmatched = [str(value) for value in list(migration_ids) + list(migration_uuids) if value not in matched]
    if unmatched:
        raise ApiUnsuitable('migration(s) %s are not migrations of the instance(s) given, as the Compute API lists '
                            'them' % ', '.join(unmatched))
    return entries


def _plan_api_reset(plan, compute, server, ending, state):
    if ending:
        named = ', '.join('%s (%s)' % (m.get('id'), m.get('status')) for m in ending)
        raise ApiUnsuitable('os-resetState clears the task of instance %s but leaves migration(s) %s unfinished, with '
                            'their placement hold; the database path ends them (or action=abort for a live migration)'
                            % (server['id'], named))
    if nothing_stuck(plan, server['id'], server['task_state'], ending):
        return None
    vm_state = reset_vm_state(state, server['vm_state'])
    body = {'os-resetState': {'state': vm_state}}
    plan.call('compute', 'POST /servers/%s/action os-resetState' % server['id'], body['os-resetState'],
              lambda path='/servers/%s/action' % server['id']: compute.post(path, body, MICROVERSION_RESET_STATE),
              microversion=MICROVERSION_RESET_STATE, resource='servers/%s' % server['id'],
              note='sets vm_state %s and clears task_state; nothing else' % vm_state,
              before=dict(vm_state=server['vm_state'], task_state=server['task_state']),
              after=dict(vm_state=vm_state, task_state=None))
    warn_error_state(plan, server['id'], server['vm_state'], vm_state)
    return dict(instance=server['id'], task_state=server['task_state'], vm_state=server['vm_state'],
                new_vm_state=vm_state, migrations=[])


def _plan_api_live(plan, compute, server, ending, action, older_than, reference):
    aborting = action == ABORT
    unsuitable = ApiUnsuitable if aborting else InputError
    verb = 'abort' if aborting else 'force-complete'
    uuid = server['id']
    if not ending:
        if server['task_state']:
            raise unsuitable('instance %s (task_state %s) has no unfinished migration for Nova to %s'
                             % (uuid, server['task_state'], verb))
        nothing_stuck(plan, uuid, None, ending)
        return None
    entry = dict(instance=uuid, task_state=server['task_state'], vm_state=server['vm_state'],
                 new_vm_state=server['vm_state'], migrations=[])
    for migration in ending:
        mid, status = migration.get('id'), migration.get('status')
        if migration.get('migration_type') != 'live-migration':
            raise unsuitable('migration %s of instance %s is a %s; Nova can %s only live migrations'
                             % (mid, uuid, migration.get('migration_type'), verb))
        if server['task_state'] != 'migrating':
            raise unsuitable('instance %s has task_state %s; Nova can %s a live migration only while it is migrating'
                             % (uuid, server['task_state'], verb))
        if aborting and status not in ABORTABLE:
            raise ApiUnsuitable('live migration %s of instance %s is %s; Nova aborts only running, queued or '
                                'preparing ones' % (mid, uuid, status))
        if not aborting and (status != 'running' or server['vm_state'] != 'active'):
            raise InputError('live migration %s of instance %s is %s on a %s instance; Nova forces only a running live '
                             'migration of an active instance to complete' % (mid, uuid, status, server['vm_state']))
        host = migration.get('source_compute')
        source_state = compute.compute_state(host)
        if source_state != 'up':
            raise unsuitable('nova-compute on %s, the source of live migration %s, is %s; Nova asks it to %s the '
                             'migration' % (host, mid, source_state, verb))
        refuse_if_recent(plan, 'migration %s of instance %s (%s)' % (mid, uuid, status), shown_api_migration(migration),
                         reference, api_time(migration.get('updated_at')), older_than)
        path = '/servers/%s/migrations/%s' % (uuid, mid)
        if aborting:
            microversion, expected = ABORTABLE[status], 'cancelled'
            plan.call('compute', 'DELETE %s' % path, {},
                      lambda path=path, microversion=microversion: compute.delete(path, microversion),
                      microversion=microversion, resource=path[1:],
                      note='the source compute rolls the live migration back and sets it cancelled',
                      before=dict(status=status), after=dict(status=expected))
        else:
            microversion, expected = MICROVERSION_FORCE_COMPLETE, 'completed'
            plan.call('compute', 'POST %s/action force_complete' % path, {},
                      lambda path=path, microversion=microversion: compute.post(path + '/action',
                                                                                {'force_complete': None}, microversion),
                      microversion=microversion, resource=path[1:],
                      note='the source compute pauses the guest so that the copy completes',
                      before=dict(status=status), after=dict(status=expected))
        entry['migrations'].append(dict(id=mid, uuid=migration.get('uuid'), type='live-migration', status=status,
                                        new_status=expected))
    return entry


def wait_state(plan, entry, server, statuses):
    """What keeps one instance acted on through the API from being done (None when done).

    Done is no task and every migration acted on finished (``statuses``: {migration id: status});
    the entry then records the ``ended_vm_state`` and each migration's ``ended_status``, and a
    migration that ended otherwise than planned is warned about.
    """
    running = ['migration %s %s' % (m['id'], statuses.get(m['id'])) for m in entry['migrations']
               if statuses.get(m['id']) not in FINISHED_MIGRATION_STATUSES]
    if server['task_state'] or running:
        return '; '.join((['task_state %s' % server['task_state']] if server['task_state'] else []) + running)
    entry['ended_vm_state'] = server['vm_state']
    for migration in entry['migrations']:
        migration['ended_status'] = statuses.get(migration['id'])
        if migration['ended_status'] != migration['new_status']:
            plan.warn('migration %s of instance %s ended %s, not %s' % (
                migration['id'], entry['instance'], migration['ended_status'], migration['new_status']))
    return None


def api_pending(plan, compute):
    """{instance uuid: what it still does} of the instances acted on that are not done yet (see wait_state)."""
    pending = {}
    for entry in plan.results.get('instances', []):
        if 'ended_vm_state' in entry:
            continue
        statuses = dict((m.get('id'), m.get('status')) for m in compute.migrations(entry['instance'])) \
            if entry['migrations'] else {}
        state = wait_state(plan, entry, compute.server(entry['instance']), statuses)
        if state:
            pending[entry['instance']] = state
    return pending
