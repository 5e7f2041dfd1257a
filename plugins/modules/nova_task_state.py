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
  - With O(wait) (the default), the API path then waits, for at most O(timeout) seconds, until each instance
    has no task and the migrations it acted on are finished.
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
  - stackmender.openstack.wait
requirements:
  - openstacksdk >= 1.0.0 (for the API path)
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
    - After the API path's wait, C(ended_vm_state) and each migration's C(ended_status) are what Nova shows.
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
pending:
  description: When the wait times out, each instance still in a task or a migration, with what it still shows.
  returned: failure by the timeout of the wait
  type: list
  elements: dict
  sample: [{name: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, state: "task_state migrating; migration 12 running"}]
notes:
  description: Instances and migrations left alone, and why.
  returned: when there are any
  type: list
  elements: str
fingerprint:
  description: The fingerprint of the plan (see O(expected_fingerprint)); the same plan made again has the same one.
  returned: success
  type: str
  sample: "sha256:9f2c4e0b7d1a5c3e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c1e3f5a7b9d1c3e"
review:
  description: In check mode, the items the fingerprint is made of (one line per row change or API call, secrets
    by their stand-in) and the C(fingerprint); give it to O(expected_fingerprint) to apply only this plan.
  returned: check mode
  type: dict
'''

import datetime

from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.services import tasks
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    RemediationModule,
    api_only,
    api_or_db,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import uuid_list

PLACEMENT = 'placement_db'


class NovaTaskState(RemediationModule):
    module_name = 'stackmender.openstack.nova_task_state'
    argument_spec = dict(
        instance=dict(type='list', elements='str', aliases=['instances']),
        migration=dict(type='list', elements='str', aliases=['migrations']),
        action=dict(type='str', default='reset', choices=['reset', 'abort', 'force_complete']),
        state=dict(type='str', default='auto', choices=['auto', 'active', 'error']),
        older_than=dict(type='int', default=30),
        service_down_time=dict(type='int', default=60),
    )
    module_kwargs = dict(required_one_of=[['instance', 'migration']])
    uses_nova_cells = True
    method_policy = api_or_db("Nova's own actions can express this change and a cloud is configured")
    force_complete_policy = api_only('force_complete asks the source compute to finish a live migration, which only '
                                     'the Compute API can do')
    waits = True  # the base adds wait and timeout (wait_argument_spec)
    pending_what = 'instance(s) still in a task or a migration'

    def validate(self):
        self.instance_ids = uuid_list(self.params['instance'], 'instance')
        self.migration_ids, self.migration_uuids = tasks.migration_references(self.params['migration'])
        self.action = self.params['action']
        if self.params['older_than'] < 0:
            raise InputError('older_than must be 0 or more minutes, not %s' % self.params['older_than'])
        if self.params['service_down_time'] <= 0:
            raise InputError('service_down_time must be a positive number of seconds, not %s'
                             % self.params['service_down_time'])

    def methods(self):
        return self.force_complete_policy if self.action == tasks.FORCE_COMPLETE else self.method_policy

    def describe(self, plan):
        entries = plan.results.get('instances', [])
        verb = {'reset': 'reset', 'abort': 'abort', 'force_complete': 'force to complete'}[self.action]
        what = '%d instance(s) to %s, %d migration(s) to end' % (
            len(entries), verb, sum(len(entry['migrations']) for entry in entries))
        if plan.calls:
            return '%s: %d API call(s)' % (what, len(plan.calls))
        return '%s: %d row change(s)' % (what, len(plan.changes))

    def plan_db(self):
        plan = Plan()
        stamp = now()
        cells = self.nova_cells()
        for cell in cells:
            tasks.require_cell_schema(self.schema(cell.name, 'nova'))
        listed = tasks.resolve_listed(self.migration_ids, self.migration_uuids,
                                      tasks.listed_migrations(cells, self.migration_ids, self.migration_uuids))
        wanted = list(self.instance_ids) + [uuid for uuid in listed if uuid not in self.instance_ids]
        by_uuid = nova.instance_rows(cells, ', '.join(tasks.INSTANCE_COLUMNS), uuids=wanted)
        nova.require_instances(self.instance_ids, by_uuid)
        selected = tasks.select_targets(plan, self.instance_ids, listed, by_uuid)
        plan.stop_if_never_overridden()
        for entry in selected:
            tasks.choose_ending(plan, entry, tasks.unfinished_migrations(entry['cell'], entry['instance']['uuid']))
        holds, entries = [], plan.results.setdefault('instances', [])
        for entry in selected:
            if tasks.nothing_stuck(plan, entry['instance']['uuid'], entry['instance']['task_state'], entry['ending']):
                continue
            facts = tasks.instance_facts(entry, self.params['service_down_time'])
            report, found = tasks.plan_instance(plan, entry, facts, stamp, self.action, self.params['state'],
                                                self.params['older_than'])
            entries.append(report)
            holds.extend(found)
        if holds and PLACEMENT in self.targets:
            placement.require_schema(self.schema(PLACEMENT, 'placement'), 'release the holds of ended migrations')
            tasks.release_holds(plan, PLACEMENT, self.session(PLACEMENT), holds, stamp)
        elif holds:
            tasks.warn_holds_stay(plan, holds)
        if not plan.changes and not plan.notes:
            plan.note('nothing selected is stuck')
        return plan

    def plan_api(self):
        plan = Plan()
        plan.results['instances'] = tasks.plan_api(
            plan, tasks.ComputeApi(self.conn), self.instance_ids, self.migration_ids, self.migration_uuids,
            self.action, self.params['state'], self.params['older_than'],
            datetime.datetime.utcnow().replace(microsecond=0))
        if not plan.calls and not plan.notes:
            plan.note('nothing selected is stuck')
        return plan

    def api_pending(self, plan):
        return tasks.api_pending(plan, tasks.ComputeApi(self.conn))


def main():
    NovaTaskState().run()


if __name__ == '__main__':
    main()
