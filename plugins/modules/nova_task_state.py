#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nova_task_state
short_description: End stuck Nova tasks and unfinished migrations
version_added: 0.1.0
description:
  - Clears the C(task_state) of instances stuck in a task, and ends their unfinished migrations.
    An instance stays in C(migrating), C(resize_migrating), C(rebuilding) or C(image_snapshot) forever
    when the compute that worked on it restarted or lost its message. Nova then refuses every other
    action on it.
  - O(action=reset) (the default) clears the task. With O(method=api) (or V(auto) when a cloud is
    configured) it calls C(POST /servers/{id}/action) C(os-resetState) (microversion 2.1), which sets
    C(vm_state) and clears C(task_state), and nothing else. An instance with an unfinished migration
    cannot be reset through the API, because the migration and its placement hold would stay. V(auto)
    then falls back to the database path, and O(method=api) fails saying so.
  - O(action=abort) aborts an in-progress live migration through the API with
    C(DELETE /servers/{id}/migrations/{migration}). Microversion 2.24 is used for a C(running) migration,
    2.65 for a C(queued) or C(preparing) one. Nova requires C(task_state) C(migrating). The source compute
    rolls the migration back and sets it C(cancelled). Other migrations (resize, cold migration,
    evacuation), a C(post-migrating) live migration, or a source compute that is down make V(auto) fall
    back to the database path.
  - O(action=force_complete) forces a C(running) live migration to complete with
    C(POST /servers/{id}/migrations/{migration}/action) C(force_complete) (microversion 2.22). Nova requires
    C(vm_state) C(active) and C(task_state) C(migrating). It exists only on the API path.
  - The API path waits, for at most O(wait_timeout) seconds, until each instance has no task and the
    migrations it acted on are finished.
  - The database path writes the cell database. The instance's C(task_state) is cleared and its
    C(vm_state) set as C(os-resetState) would (see O(state)). Its unfinished migrations (status not
    C(confirmed), C(reverted), C(error), C(failed), C(completed), C(cancelled) or C(done)) are set to
    C(error) (O(action=reset)) or C(cancelled) (O(action=abort)). C(instance_extra.migration_context) is
    cleared unless it refers to a migration that stays unfinished.
  - With O(placement_db), the holds of the ended migrations are released the way Nova's rollback or
    confirm would. When the instance is still on the migration's source host, the migration's
    allocations (its consumer is the migration uuid) become the instance's again and replace what the
    instance held. This is Nova's C(revert_allocation_for_migration), which moves the allocations of the
    migration's consumer to the instance's. An instance without a placement consumer gets one, as
    placement creates it for that move, with the migration consumer's project and user and generation 1.
    When the instance is on the destination, the migration's allocations are deleted.
    An evacuation holds both hosts under the instance, so the claim on the host it is not on is deleted.
    Consumers left without allocations are deleted, and the touched consumers and providers get their
    generations bumped, as placement does.
  - The plan is computed first. Check mode returns it and writes nothing. Applying runs exactly that
    plan in one transaction per database, re-reading and locking every row, and writes a journal of
    before-images that M(stackmender.openstack.journal_undo) can revert.
  - Instances with no task and no unfinished migration to end are left alone, so a second run reports
    no change.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
options:
  instance:
    description:
      - UUID of an instance stuck in a task, or a list of UUIDs handled together.
      - Its unfinished migrations are ended with it.
      - At least one of O(instance) and O(migration) is required.
    type: list
    elements: str
    aliases: [instances]
    version_added: 0.1.0
  migration:
    description:
      - Unfinished migrations to end, each by its id (C(migrations.id), as C(openstack server migration
        list) shows it) or its uuid. The instance of each is handled too, but its other migrations are not.
      - Migration ids are numbered per cell database. With O(nova_api_db) and several cells, an id found
        in more than one cell is refused; give the uuid.
      - The API path finds migrations only through their instance, so it needs O(instance) as well.
    type: list
    elements: str
    aliases: [migrations]
    version_added: 0.1.0
  action:
    description:
      - V(reset) clears the task and ends the unfinished migrations as failed (C(error)).
      - V(abort) aborts a live migration through the API. The database path ends the migrations as
        C(cancelled).
      - V(force_complete) asks Nova to complete a running live migration (API only).
    type: str
    choices: [reset, abort, force_complete]
    default: reset
    version_added: 0.1.0
  state:
    description:
      - The C(vm_state) a reset leaves, one of the two C(os-resetState) offers.
      - V(auto) keeps C(active) for an active instance and sets C(error) for any other, because
        C(os-resetState) can set no other state. A hard reboot then brings an instance in error back.
        An instance with no task, whose migrations alone are ended, keeps its C(vm_state) with V(auto).
    type: str
    choices: [auto, active, error]
    default: auto
    version_added: 0.1.0
  older_than:
    description:
      - Minutes since the instance's or the migration's last change (C(updated_at), else C(created_at))
        under which the task counts as possibly still running. Such a task is refused by the
        C(task_recent) guard unless O(force) is set.
      - V(0) turns the guard off.
    type: int
    default: 30
    version_added: 0.1.0
  service_down_time:
    description:
      - Seconds after its last report that the database path counts a C(nova-compute) service as down,
        Nova's C([DEFAULT] service_down_time). A service is up when it is not forced down and its
        C(last_seen_up), or C(created_at) if it never reported, is at most this many seconds from the
        database server's current UTC time.
    type: int
    default: 60
    version_added: 0.1.0
  wait_timeout:
    description:
      - Seconds the API path waits for the instances to leave their task and for aborted or forced
        migrations to finish. A timeout fails the task; Nova keeps working on the requests it accepted.
    type: int
    default: 300
    version_added: 0.1.0
notes:
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - C(task_recent). The instance (with a task) or a migration to end changed less than O(older_than)
    minutes ago, so Nova may still be working on it.
  - C(migration_host_up). The database path would end a migration whose source or destination
    C(nova-compute) is up. The hypervisors may still be copying the guest, and ending the record could
    leave it running on both hosts or on neither. Prefer O(action=abort) through the API.
  - C(resize_awaiting_confirmation). The migration is a finished resize waiting for the user to confirm
    or revert it (C(openstack server resize confirm|revert)); nothing is stuck.
  - Refusals that O(force) never overrides. The instance is deleted, lives in cell0 (never written),
    or has live rows in several cells. A migration id exists in several cells.
  - After the database path, check where each instance really runs. A live migration abandoned
    mid-way can leave a paused guest on the destination, an inactive Neutron port binding and a Cinder
    attachment for the destination host. M(stackmender.openstack.consistency_info) reports those.
    When the guest runs on the destination while Nova records the source,
    M(stackmender.openstack.nova_instance_host) moves the record.
  - Without O(placement_db), the holds of ended migrations stay in placement. The result then warns
    to run C(nova-manage placement audit --delete) and C(heal_allocations).
seealso:
  - module: stackmender.openstack.consistency_info
  - module: stackmender.openstack.nova_instance_host
  - module: stackmender.openstack.journal_undo
'''

EXAMPLES = r'''
- name: Show what clearing the stuck task of an instance would do
  stackmender.openstack.nova_task_state:
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    cloud: admin
  check_mode: true

- name: Abort a live migration that makes no progress
  stackmender.openstack.nova_task_state:
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    migration: 4711
    action: abort
    cloud: admin

- name: End a migration abandoned by a compute restart, with its placement hold, in the databases
  stackmender.openstack.nova_task_state:
    migration: 8b1f0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    method: db
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db: "mysql+pymysql://placement:{{ placement_db_password }}@db.example.org/placement?charset=utf8"
  register: ended

- name: Undo it from its journal
  stackmender.openstack.journal_undo:
    journal: "{{ ended.journal }}"
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db: "mysql+pymysql://placement:{{ placement_db_password }}@db.example.org/placement?charset=utf8"
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "1 instance(s) to reset, 1 migration(s) to end: 9 row change(s), applied"
method:
  description: The path taken, V(api) or V(db).
  returned: success
  type: str
  sample: db
method_reason:
  description: Why O(method=auto) chose that path, or V(requested).
  returned: success
  type: str
plan:
  description:
    - The database path lists the statements the run executes (or would in check mode), in order, with
      parameters. Rows are named by the database option that reaches them, C(nova_db) or
      C(nova:<cell name>), and C(placement_db).
    - The API path lists the calls, each with its C(microversion).
  returned: success
  type: list
  elements: dict
  sample:
    - kind: api
      service: compute
      call: "POST /servers/2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e/action os-resetState"
      microversion: "2.1"
      arguments: {state: active}
before:
  description: Per database option (or API service), per C(table/id) (or resource), the fields the plan
    changes, as they were.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {task_state: migrating, vm_state: active}}}
after:
  description: The same fields as they are after the run (or would be, in check mode); V(null) for a deleted row.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {task_state: null, vm_state: active}}}
diff:
  description: RV(before) and RV(after) in Ansible's diff format.
  returned: in diff mode, when something changes
  type: dict
journal:
  description: Path of the journal of before-images (on the API path, of the calls and their outcomes);
    V(null) in check mode or when nothing changed.
  returned: success
  type: str
instances:
  description:
    - The instances acted on (or that would be), each with its cell (database path), the C(task_state) and
      C(vm_state) it had and the C(vm_state) it gets, and the migrations ended or acted on with the status
      they had and get. C(side) says whether the instance stands on the migration's C(source) or C(dest).
  returned: success
  type: list
  elements: dict
  sample: [{instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, cell: "nova:cell1", task_state: migrating,
            vm_state: active, new_vm_state: active,
            migrations: [{id: 12, uuid: 8b1f0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, type: live-migration,
                          status: running, new_status: error, side: source}]}]
force:
  description: Whether O(force) was set.
  returned: success
  type: bool
forced_guards:
  description: The guards O(force) overrode, with their evidence.
  returned: when force overrode a guard
  type: list
  elements: dict
calls:
  description: On the API path, every planned call with its C(outcome) (V(done), V(failed) or V(not run)).
    A failure midway returns it too, and its message names the calls done and those not run.
  returned: when API calls ran
  type: list
  elements: dict
  version_added: 0.1.0
guards:
  description: On refusal, each guard that failed, its message and the evidence rows.
  returned: failure by a guard
  type: list
  elements: dict
  sample:
    - guard: migration_host_up
      message: "migration 12 of instance 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e is running between compute1 and
        compute3, and nova-compute on compute1, compute3 is up: the hypervisors may still be moving the guest"
      evidence: [{id: 3, host: compute1, binary: nova-compute, up: true, seconds_since_report: 4}]
notes:
  description: Instances and migrations left alone, and why.
  returned: when there are any
  type: list
  elements: str
'''

import datetime
import time

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.services import tasks
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.services.nova import FINISHED_MIGRATION_STATUSES
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    ApiUnsuitable,
    RemediationModule,
    api_only,
    api_or_db,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders, uuid_list

PLACEMENT = 'placement_db'
INSTANCE_COLUMNS = ('id', 'uuid', 'host', 'node', 'vm_state', 'task_state', 'power_state', 'deleted', 'created_at',
                    'updated_at')
MIGRATION_COLUMNS = ('id', 'uuid', 'instance_uuid', 'migration_type', 'status', 'source_compute', 'source_node',
                     'dest_compute', 'dest_node', 'deleted', 'created_at', 'updated_at')
POLL_SECONDS = 2


def _utc(text):
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


class NovaTaskState(RemediationModule):
    module_name = 'stackmender.openstack.nova_task_state'
    argument_spec = dict(
        instance=dict(type='list', elements='str', aliases=['instances']),
        migration=dict(type='list', elements='str', aliases=['migrations']),
        action=dict(type='str', default='reset', choices=['reset', 'abort', 'force_complete']),
        state=dict(type='str', default='auto', choices=['auto', 'active', 'error']),
        older_than=dict(type='int', default=30),
        service_down_time=dict(type='int', default=60),
        wait_timeout=dict(type='int', default=300),
    )
    module_kwargs = dict(required_one_of=[['instance', 'migration']])

    def validate(self):
        self.instance_ids = uuid_list(self.params['instance'], 'instance')
        self.migration_ids, self.migration_uuids = tasks.migration_references(self.params['migration'])
        self.action = self.params['action']
        if self.params['older_than'] < 0:
            raise InputError('older_than must be 0 or more minutes, not %s' % self.params['older_than'])
        for option in ('service_down_time', 'wait_timeout'):
            if self.params[option] <= 0:
                raise InputError('%s must be a positive number of seconds, not %s' % (option, self.params[option]))
        self.report = []
        self._waits = []

    # ---------------------------------------------------------------- method

    uses_nova_cells = True
    method_policy = api_or_db("Nova's own actions can express this change and a cloud is configured")
    force_complete_policy = api_only('force_complete asks the source compute to finish a live migration, which only '
                                     'the Compute API can do')

    def methods(self):
        return self.force_complete_policy if self.action == tasks.FORCE_COMPLETE else self.method_policy

    # ---------------------------------------------------------------- results

    def describe(self, plan):
        ended = sum(len(entry['migrations']) for entry in self.report)
        verb = {'reset': 'reset', 'abort': 'abort', 'force_complete': 'force to complete'}[self.action]
        what = '%d instance(s) to %s, %d migration(s) to end' % (len(self.report), verb, ended)
        if plan.calls:
            return '%s: %d API call(s)' % (what, len(plan.calls))
        return '%s: %d row change(s)' % (what, len(plan.changes))

    def add_results(self, result):
        result['instances'] = self.report

    def _recent(self, plan, what, row, reference, changed_at):
        """The task_recent guard for one row: it changed less than older_than minutes before ``reference``."""
        minutes = self.params['older_than']
        if not minutes or changed_at is None or reference is None:
            return
        age = int((reference - changed_at).total_seconds())
        if age < minutes * 60:
            evidence = dict(row, seconds_since_change=age, older_than_minutes=minutes)
            plan.refuse('task_recent', '%s changed %d s ago, less than older_than (%d min): Nova may still be '
                        'working on it' % (what, age, minutes), [evidence])

    # ============================================================ database path

    def plan_db(self):
        if self.action == tasks.FORCE_COMPLETE:
            raise InputError('action=force_complete has no database path')
        plan = Plan()
        stamp = now()
        cells = self.nova_cells()
        for cell in cells:
            self._require_nova_schema(cell)
        selected = self._select_targets(cells, plan)
        plan.stop_if_never_overridden()
        holds = []
        for entry in selected:
            self._plan_instance(entry, plan, stamp, holds)
        if holds and PLACEMENT in self.targets:
            self._plan_placement(holds, plan, stamp)
        elif holds:
            migrations = ', '.join(hold['migration']['uuid'] or str(hold['migration']['id']) for hold in holds)
            instances = ', '.join(sorted(set(hold['instance']['uuid'] for hold in holds)))
            plan.warn('placement was not given (placement_db): the holds of the ended migration(s) %s stay; run '
                      'nova-manage placement audit --delete, then nova-manage placement heal_allocations --force '
                      '--instance UUID for %s' % (migrations, instances))
        if not plan.changes and not plan.notes:
            plan.note('nothing selected is stuck')
        return plan

    def _require_nova_schema(self, cell):
        schema = self.schema(cell.name, 'nova')
        schema.require('instances', INSTANCE_COLUMNS, purpose='clear the task of instances')
        schema.require('migrations', MIGRATION_COLUMNS, purpose='end unfinished migrations')
        schema.require('instance_extra', ('id', 'instance_uuid', 'migration_context', 'deleted', 'updated_at'),
                       purpose='clear the migration context')
        schema.require('services', nova.COMPUTE_SERVICE_COLUMNS, purpose='check the compute services of the migrations')

    def _select_targets(self, cells, plan):
        """[{cell, instance row, migrations to end, listed}] after the hard guards."""
        migration_sql = 'SELECT %s FROM migrations WHERE %%s IN ({in}) ORDER BY id' % ', '.join(MIGRATION_COLUMNS)
        listed = {}  # instance uuid -> [(cell, migration row)]
        found_ids, found_uuids = {}, set()
        for cell in cells:
            seen = set()
            for row in cell.session.select_in(migration_sql % 'id', self.migration_ids):
                found_ids.setdefault(row['id'], []).append(cell)
                seen.add(row['id'])
                listed.setdefault(row['instance_uuid'], []).append((cell, row))
            for row in cell.session.select_in(migration_sql % 'uuid', self.migration_uuids):
                found_uuids.add(row['uuid'])
                if row['id'] not in seen:
                    seen.add(row['id'])
                    listed.setdefault(row['instance_uuid'], []).append((cell, row))
        missing = [str(number) for number in self.migration_ids if number not in found_ids]
        missing += [uuid for uuid in self.migration_uuids if uuid not in found_uuids]
        if missing:
            raise InputError('migration(s) not found in any cell: %s' % ', '.join(missing))
        for number, where in sorted(found_ids.items()):
            if len(where) > 1:
                raise InputError('migration id %d exists in cells %s; give the uuid of the one to end'
                                 % (number, ', '.join(cell.name for cell in where)))
        wanted = list(self.instance_ids) + [uuid for uuid in listed if uuid not in self.instance_ids]
        by_uuid = nova.instance_rows(cells, ', '.join(INSTANCE_COLUMNS), uuids=wanted)
        nova.require_instances(self.instance_ids, by_uuid)
        selected = []
        for uuid in wanted:
            candidates = by_uuid.get(uuid, [])
            live = [row for row in candidates if not row['deleted']]
            evidence = [self._shown_instance(row) for row in candidates]
            migrations = [row for _cell, row in listed.get(uuid, [])]
            if not live:
                plan.refuse('instance_deleted', 'instance %s is deleted%s' % (
                    uuid, ' (migration(s) %s)' % ', '.join(str(row['id']) for row in migrations) if migrations else ''),
                    evidence + [self._shown_migration(row, cell) for cell, row in listed.get(uuid, [])], never=True)
                continue
            if len(live) > 1:
                plan.refuse('instance_in_several_cells', 'instance %s has live rows in several cells (%s)'
                            % (uuid, ', '.join(row['cell'].name for row in live)), evidence, never=True)
                continue
            row = live[0]
            if row['cell'].is_cell0:
                plan.refuse('cell0', 'instance %s is in cell0, which holds instances that were never scheduled '
                            'and is never written' % uuid, [self._shown_instance(row)], never=True)
                continue
            for cell, migration in listed.get(uuid, []):
                if cell.name != row['cell'].name:
                    plan.refuse('migration_in_other_cell', 'migration %s is in %s, its instance %s in %s'
                                % (migration['id'], cell.name, uuid, row['cell'].name),
                                [self._shown_migration(migration, cell), self._shown_instance(row)], never=True)
            selected.append(dict(cell=row['cell'], instance=row, listed=migrations,
                                 by_instance=uuid in self.instance_ids))
        for entry in selected:
            unfinished = entry['cell'].session.query(
                'SELECT %s FROM migrations WHERE instance_uuid = %%s AND deleted = 0 AND status NOT IN (%s) ORDER BY id'
                % (', '.join(MIGRATION_COLUMNS), placeholders(len(FINISHED_MIGRATION_STATUSES))),
                [entry['instance']['uuid']] + list(FINISHED_MIGRATION_STATUSES))
            entry['unfinished'] = unfinished
            if entry['by_instance']:
                entry['ending'] = unfinished
            else:
                ids = set(row['id'] for row in entry['listed'])
                entry['ending'] = [row for row in unfinished if row['id'] in ids]
                for migration in entry['listed']:
                    if migration['deleted']:
                        plan.note('migration %s is deleted; left alone' % migration['id'])
                    elif migration['status'] in FINISHED_MIGRATION_STATUSES:
                        plan.note('migration %s is already %s' % (migration['id'], migration['status']))
        return selected

    @staticmethod
    def _shown_instance(row):
        shown = dict((column, row.get(column)) for column in INSTANCE_COLUMNS if column in row)
        shown['cell'] = row['cell'].name
        return shown

    @staticmethod
    def _shown_migration(row, cell):
        return dict(row, cell=cell.name, table='migrations')

    def _plan_instance(self, entry, plan, stamp, holds):
        cell, row = entry['cell'], entry['instance']
        uuid = row['uuid']
        ending = entry['ending']
        if not row['task_state'] and not ending:
            plan.note('instance %s has no task in progress and no unfinished migration to end' % uuid)
            return
        reference = cell.session.utc_now()
        if row['task_state']:
            self._recent(plan, 'instance %s (task_state %s)' % (uuid, row['task_state']), self._shown_instance(row),
                         reference, row['updated_at'] or row['created_at'])
        new_status = tasks.ENDED_STATUS[self.action]
        shown_migrations = []
        for migration in ending:
            shown = self._shown_migration(migration, cell)
            self._recent(plan, 'migration %s of instance %s (%s)' % (migration['id'], uuid, migration['status']),
                         shown, reference, migration['updated_at'] or migration['created_at'])
            if migration['status'] == 'finished' and row['vm_state'] == 'resized':
                plan.refuse('resize_awaiting_confirmation', 'migration %s of instance %s is a finished resize waiting '
                            'to be confirmed or reverted (openstack server resize confirm|revert); nothing is stuck'
                            % (migration['id'], uuid), [shown, self._shown_instance(row)])
            hosts = (migration['source_compute'], migration['dest_compute'])
            up = [service for service in nova.compute_services(cell, hosts, self.params['service_down_time'])
                  if service['up']]
            if up:
                plan.refuse('migration_host_up', 'migration %s of instance %s is %s between %s and %s, and nova-compute '
                            'on %s is up: the hypervisors may still be moving the guest; prefer action=abort through '
                            'the API' % (migration['id'], uuid, migration['status'], migration['source_compute'],
                                         migration['dest_compute'], ', '.join(service['host'] for service in up)),
                            up + [shown])
            side = tasks.side_of_instance(migration, row['host'])
            shown_migrations.append(dict(id=migration['id'], uuid=migration['uuid'], type=migration['migration_type'],
                                         status=migration['status'], new_status=new_status, side=side))
            plan.change(cell.name, 'migrations', {'id': migration['id']},
                        before=dict(status=migration['status'], updated_at=migration['updated_at']),
                        after=dict(status=new_status, updated_at=stamp),
                        expect=dict(instance_uuid=uuid, deleted=0),
                        note='the unfinished migration ends as %s' % new_status)
            holds.append(dict(cell=cell, instance=row, migration=migration, side=side))
            if side is None:
                plan.warn('instance %s is on host %s, neither the source (%s) nor the destination (%s) of migration %s; '
                          'its placement hold was left alone: find where the guest runs' % (
                              uuid, row['host'], migration['source_compute'], migration['dest_compute'],
                              migration['id']))
            elif migration['migration_type'] == 'live-migration':
                other = migration['dest_compute'] if side == 'source' else migration['source_compute']
                plan.warn('check that instance %s runs on %s only: the abandoned live migration %s may have left a '
                          'guest on %s, an inactive port binding and a volume attachment for it '
                          '(consistency_info reports them)' % (uuid, row['host'], migration['id'], other))
        if row['task_state'] or self.params['state'] != 'auto':
            vm_state = tasks.reset_vm_state(self.params['state'], row['vm_state'])
        else:
            vm_state = row['vm_state']  # no task to reset: only the migrations end
        if row['task_state'] or vm_state != row['vm_state']:
            plan.change(cell.name, 'instances', {'id': row['id']},
                        before=dict(task_state=row['task_state'], vm_state=row['vm_state'], updated_at=row['updated_at']),
                        after=dict(task_state=None, vm_state=vm_state, updated_at=stamp),
                        expect=dict(uuid=uuid, deleted=0),
                        note='no task is in progress, as os-resetState leaves it')
        if vm_state == 'error' and row['vm_state'] != 'error':
            plan.warn('instance %s is set to error (it was %s): hard reboot it (openstack server reboot --hard) to '
                      'bring it back' % (uuid, row['vm_state']))
        ended = set(migration['id'] for migration in ending)
        staying = set(migration['id'] for migration in entry['unfinished'] if migration['id'] not in ended)
        for extra in cell.session.query('SELECT id, instance_uuid, migration_context, deleted, updated_at FROM '
                                        'instance_extra WHERE instance_uuid = %s AND deleted = 0 ORDER BY id', (uuid,)):
            if extra['migration_context'] is None:
                continue
            if tasks.context_migration_id(extra['migration_context']) in staying:
                plan.note('the migration context of instance %s refers to migration %s, which stays unfinished; kept'
                          % (uuid, tasks.context_migration_id(extra['migration_context'])))
                continue
            plan.change(cell.name, 'instance_extra', {'id': extra['id']},
                        before=dict(migration_context=extra['migration_context'], updated_at=extra['updated_at']),
                        after=dict(migration_context=None, updated_at=stamp),
                        expect=dict(instance_uuid=uuid, deleted=0),
                        note='the migration context of an ended move')
        self.report.append(dict(instance=uuid, cell=cell.name, task_state=row['task_state'], vm_state=row['vm_state'],
                                new_vm_state=vm_state, migrations=shown_migrations))

    # ------------------------------------------------------------ placement

    def _node_uuids(self, cell, keys):
        """{(host, node): compute node uuid}, the live row first, else the newest."""
        found = {}
        hosts = sorted(set(host for host, _node in keys if host))
        for row in cell.session.select_in('SELECT host, hypervisor_hostname, uuid, deleted FROM compute_nodes WHERE '
                                          'host IN ({in}) ORDER BY deleted = 0, id', hosts):
            found[(row['host'], row['hypervisor_hostname'])] = row['uuid']
        return found

    def _plan_placement(self, holds, plan, stamp):
        session = self.session(PLACEMENT)
        placement.require_schema(self.schema(PLACEMENT, 'placement'), 'release the holds of ended migrations')
        release = tasks.HoldRelease(PLACEMENT, session, stamp)
        consumers = set()
        for hold in holds:
            consumers.add(hold['instance']['uuid'])
            if hold['migration']['uuid']:
                consumers.add(hold['migration']['uuid'])
        allocations = placement.allocations_of(session, consumers)
        existing = placement.consumers_by_uuid(session, consumers)
        node_uuids = {}
        for hold in holds:
            migration = hold['migration']
            keys = ((migration['source_compute'], migration['source_node']),
                    (migration['dest_compute'], migration['dest_node']))
            node_uuids.update(self._node_uuids(hold['cell'], keys))
        providers = placement.providers_by_uuid(session, node_uuids.values())

        def root_of(host, node):
            provider = providers.get(node_uuids.get((host, node)))
            return provider['id'] if provider else None

        for hold in holds:
            instance, migration, side = hold['instance']['uuid'], hold['migration'], hold['side']
            if side is None:
                continue
            mine = [row for row in allocations if row['consumer_id'] in (instance, migration['uuid'])]
            held = [row for row in mine if row['consumer_id'] == migration['uuid']]
            source = root_of(migration['source_compute'], migration['source_node'])
            dest = root_of(migration['dest_compute'], migration['dest_node'])
            if side == 'source' and held:
                if instance not in existing:
                    # Nova's rollback (revert_allocation_for_migration: move_allocations from the migration to the
                    # instance) creates the instance's consumer in placement when it has none.
                    if migration['uuid'] not in existing or \
                            not release.create_consumer(instance, existing[migration['uuid']]):
                        plan.warn('neither instance %s nor migration %s has a placement consumer, so the hold was '
                                  'left; run nova-manage placement heal_allocations --force --instance %s'
                                  % (instance, migration['id'], instance))
                        continue
                    existing[instance] = dict(existing[migration['uuid']], uuid=instance)
                release.revert(instance, migration['uuid'], mine)
            elif side == 'source':
                release.release_destination(instance, mine, dest if dest != source else None)
            else:
                release.confirm(instance, migration['uuid'], mine, source if source != dest else None)
        for change in release.finish():
            plan.change(PLACEMENT, change['table'], change['key'], action=change.get('action', 'update'),
                        before=change['before'], after=change.get('after'), expect=change.get('expect'),
                        note=change['note'])

    # ================================================================ API path

    def plan_api(self):
        try:
            return self._plan_api()
        except ApiUnsuitable as unsuitable:
            if self.action == tasks.FORCE_COMPLETE:
                raise InputError('the API path cannot force this migration to complete: %s' % unsuitable)
            raise

    def _plan_api(self):
        if not self.instance_ids:
            raise ApiUnsuitable('the Compute API finds migrations only through their instance; give instance too')
        plan = Plan()
        reference = datetime.datetime.utcnow().replace(microsecond=0)
        wanted = set(self.migration_ids) | set(self.migration_uuids)
        matched = set()
        for instance_id in self.instance_ids:
            server = self._api_server(instance_id)
            migrations = self._api_migrations(instance_id)
            listed = [m for m in migrations if m.get('id') in wanted or m.get('uuid') in wanted]
            matched.update(m.get('id') for m in listed)
            matched.update(m.get('uuid') for m in listed)
            unfinished = [m for m in migrations if m.get('status') not in FINISHED_MIGRATION_STATUSES]
            ending = [m for m in (listed if wanted else unfinished) if m.get('status') not in FINISHED_MIGRATION_STATUSES]
            shown = self._shown_server(server)
            if server.task_state:
                self._recent(plan, 'instance %s (task_state %s)' % (instance_id, server.task_state), shown,
                             reference, _utc(server.updated_at))
            if self.action == tasks.RESET:
                self._plan_api_reset(plan, server, ending, shown)
            else:
                self._plan_api_live(plan, server, ending, shown, reference)
        unmatched = [str(value) for value in self.migration_ids + self.migration_uuids if value not in matched]
        if unmatched:
            raise ApiUnsuitable('migration(s) %s are not migrations of the instance(s) given, as the Compute API lists '
                                'them' % ', '.join(unmatched))
        if not plan.calls and not plan.notes:
            plan.note('nothing selected is stuck')
        return plan

    def _api_server(self, instance_id):
        try:
            return self.conn.compute.get_server(instance_id)
        except Exception as error:
            if getattr(error, 'status_code', None) == 404:
                raise InputError('instance %s not found through the Compute API (deleted?)' % instance_id)
            raise api.translate(error, 'reading instance %s' % instance_id)

    def _api_migrations(self, instance_id):
        try:
            response = self.conn.compute.get('/os-migrations?instance_uuid=%s' % instance_id,
                                             microversion=tasks.MICROVERSION_MIGRATIONS)
            api.openstack.exceptions.raise_from_response(response)
        except Exception as error:
            raise api.translate(error, 'listing the migrations of instance %s' % instance_id)
        return [m for m in response.json().get('migrations', []) if m.get('instance_uuid') == instance_id]

    @staticmethod
    def _shown_server(server):
        return dict(id=server.id, status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                    host=server.compute_host, updated=server.updated_at)

    @staticmethod
    def _shown_api_migration(migration):
        keys = ('id', 'uuid', 'migration_type', 'status', 'source_compute', 'dest_compute', 'updated_at')
        return dict((key, migration.get(key)) for key in keys)

    def _plan_api_reset(self, plan, server, ending, shown):
        if ending:
            named = ', '.join('%s (%s)' % (m.get('id'), m.get('status')) for m in ending)
            raise ApiUnsuitable('os-resetState clears the task of instance %s but leaves migration(s) %s unfinished, '
                                'with their placement hold; the database path ends them (or action=abort for a live '
                                'migration)' % (server.id, named))
        if not server.task_state:
            plan.note('instance %s has no task in progress and no unfinished migration to end' % server.id)
            return
        state = tasks.reset_vm_state(self.params['state'], server.vm_state)
        body = {'os-resetState': {'state': state}}
        plan.call('compute', 'POST /servers/%s/action os-resetState' % server.id, body['os-resetState'],
                  (lambda server_id=server.id, body=body: self._post(
                      '/servers/%s/action' % server_id, body, tasks.MICROVERSION_RESET_STATE)),
                  microversion=tasks.MICROVERSION_RESET_STATE, resource='servers/%s' % server.id,
                  note='sets vm_state %s and clears task_state; nothing else' % state,
                  before=dict(vm_state=server.vm_state, task_state=server.task_state),
                  after=dict(vm_state=state, task_state=None))
        if state == 'error' and server.vm_state != 'error':
            plan.warn('instance %s is set to error (it was %s): hard reboot it (openstack server reboot --hard) to '
                      'bring it back' % (server.id, server.vm_state))
        self._waits.append(dict(instance=server.id, migrations={}))
        self.report.append(dict(instance=server.id, task_state=server.task_state, vm_state=server.vm_state,
                                new_vm_state=state, migrations=[]))

    def _plan_api_live(self, plan, server, ending, shown, reference):
        aborting = self.action == tasks.ABORT
        unsuitable = ApiUnsuitable if aborting else InputError
        verb = 'abort' if aborting else 'force-complete'
        if not ending:
            if server.task_state:
                raise unsuitable('instance %s (task_state %s) has no unfinished migration for Nova to %s'
                                 % (server.id, server.task_state, verb))
            plan.note('instance %s has no task in progress and no unfinished migration to end' % server.id)
            return
        entry = dict(instance=server.id, task_state=server.task_state, vm_state=server.vm_state,
                     new_vm_state=server.vm_state, migrations=[])
        waits = {}
        for migration in ending:
            mid = migration.get('id')
            if migration.get('migration_type') != 'live-migration':
                raise unsuitable('migration %s of instance %s is a %s; Nova can %s only live migrations'
                                 % (mid, server.id, migration.get('migration_type'), verb))
            if server.task_state != 'migrating':
                raise unsuitable('instance %s has task_state %s; Nova can %s a live migration only while it is '
                                 'migrating' % (server.id, server.task_state, verb))
            status = migration.get('status')
            if aborting and status not in tasks.ABORTABLE:
                raise ApiUnsuitable('live migration %s of instance %s is %s; Nova aborts only running, queued or '
                                    'preparing ones' % (mid, server.id, status))
            if not aborting and (status != 'running' or server.vm_state != 'active'):
                raise InputError('live migration %s of instance %s is %s on a %s instance; Nova forces only a running '
                                 'live migration of an active instance to complete' % (mid, server.id, status,
                                                                                       server.vm_state))
            self._api_source_up(migration, unsuitable, verb)
            self._recent(plan, 'migration %s of instance %s (%s)' % (mid, server.id, status),
                         self._shown_api_migration(migration), reference, _utc(migration.get('updated_at')))
            if aborting:
                microversion = tasks.ABORTABLE[status]
                plan.call('compute', 'DELETE /servers/%s/migrations/%s' % (server.id, mid), {},
                          (lambda server_id=server.id, mid=mid, microversion=microversion: self._delete(
                              '/servers/%s/migrations/%s' % (server_id, mid), microversion)),
                          microversion=microversion, resource='servers/%s/migrations/%s' % (server.id, mid),
                          note='the source compute rolls the live migration back and sets it cancelled',
                          before=dict(status=status), after=dict(status='cancelled'))
                expected = 'cancelled'
            else:
                body = {'force_complete': None}
                microversion = tasks.MICROVERSION_FORCE_COMPLETE
                plan.call('compute', 'POST /servers/%s/migrations/%s/action force_complete' % (server.id, mid), {},
                          (lambda server_id=server.id, mid=mid, body=body: self._post(
                              '/servers/%s/migrations/%s/action' % (server_id, mid), body, microversion)),
                          microversion=microversion, resource='servers/%s/migrations/%s' % (server.id, mid),
                          note='the source compute pauses the guest so that the copy completes',
                          before=dict(status=status), after=dict(status='completed'))
                expected = 'completed'
            waits[mid] = expected
            entry['migrations'].append(dict(id=mid, uuid=migration.get('uuid'), type='live-migration',
                                            status=status, new_status=expected))
        self._waits.append(dict(instance=server.id, migrations=waits))
        self.report.append(entry)

    def _api_source_up(self, migration, unsuitable, verb):
        host = migration.get('source_compute')
        services = [service for service in self.conn.compute.services(binary='nova-compute', host=host)
                    if service.host == host]
        if not services or services[0].state != 'up' or services[0].is_forced_down:
            raise unsuitable('nova-compute on %s, the source of live migration %s, is %s; Nova asks it to %s the '
                             'migration' % (host, migration.get('id'), 'unknown' if not services else 'down', verb))

    def _post(self, path, body, microversion):
        response = self.conn.compute.post(path, json=body, microversion=microversion)
        api.openstack.exceptions.raise_from_response(response)

    def _delete(self, path, microversion):
        response = self.conn.compute.delete(path, microversion=microversion)
        api.openstack.exceptions.raise_from_response(response)

    def verify_api(self, plan):
        deadline = time.time() + self.params['wait_timeout']
        pending = list(self._waits)
        while pending:
            for wait in list(pending):
                server = self._api_server(wait['instance'])
                statuses = dict((m.get('id'), m.get('status')) for m in self._api_migrations(wait['instance'])) \
                    if wait['migrations'] else {}
                running = [mid for mid in wait['migrations'] if statuses.get(mid) not in FINISHED_MIGRATION_STATUSES]
                if not server.task_state and not running:
                    for entry in self.report:
                        if entry['instance'] == wait['instance']:
                            entry['ended_vm_state'] = server.vm_state
                            for migration in entry['migrations']:
                                migration['ended_status'] = statuses.get(migration['id'])
                                if migration['ended_status'] != migration['new_status']:
                                    plan.warn('migration %s of instance %s ended %s, not %s'
                                              % (migration['id'], wait['instance'], migration['ended_status'],
                                                 migration['new_status']))
                    pending.remove(wait)
            if not pending:
                break
            if time.time() > deadline:
                raise ApiError('%d instance(s) still have a task or a migration in progress after wait_timeout (%s s): '
                               '%s. Nova keeps working on them; re-run to check again'
                               % (len(pending), self.params['wait_timeout'],
                                  ', '.join(wait['instance'] for wait in pending)), instances=self.report)
            time.sleep(POLL_SECONDS)


def main():
    NovaTaskState().run()


if __name__ == '__main__':
    main()
