#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nova_instance_delete
short_description: Delete Nova instances whose compute host is gone, through the API or in the databases
version_added: 0.1.0
description:
  - Deletes one or many Nova instances and every record that belongs to them. It is the repair for
    instances stuck on a compute host that died, and the safe form of the hand SQL that deletes one.
  - With O(method=api) (or V(auto) when a cloud is configured) it uses the Compute API through
    openstacksdk. It calls C(DELETE /servers/{id}) for each instance and waits up to O(timeout) seconds
    until Nova no longer returns it. When the instance's C(nova-compute) is down, Nova deletes the
    instance itself without the compute host (its local delete). It releases the ports, deletes the
    Cinder attachments, deletes the placement allocations and retires the database rows.
  - An instance in C(vm_state) C(resized) is first reset to C(error) with C(os-resetState). Otherwise Nova's
    delete confirms the resize on the source compute and waits for a host that does not answer.
  - The API path refuses an instance whose delete Nova already handed to a compute that Nova still counts
    as up. Nova ignores a repeated delete then. Wait until the service is down (C(service_down_time)),
    or force the service down, and run again.
  - With O(method=db) it writes the databases the way Nova's local delete does. In the cell database the
    instance row gets C(vm_state=deleted), no task, C(progress=0), C(terminated_at) and C(deleted_at), and
    C(deleted) takes the row's id. The live rows of its child tables are soft-deleted as Nova's
    C(instance_destroy) does. These are C(security_group_instance_association), C(instance_info_caches),
    C(instance_metadata), C(instance_faults), C(instance_extra), C(instance_system_metadata),
    C(block_device_mapping), C(migrations), C(virtual_interfaces) and C(instance_id_mappings). Its
    C(console_auth_tokens) and C(tags) are deleted, as C(instance_destroy) deletes them (the journal keeps
    each row, so M(stackmender.openstack.journal_undo) puts them back). Its C(instance_actions) stay, as in Nova.
  - With O(nova_api_db) the instance mapping gets C(queued_for_delete=1).
  - With O(placement_db) the instance's allocations and its consumer are deleted, as placement's
    C(DELETE /allocations/{consumer}) does. That call does not change provider generations, and neither does this.
  - With O(cinder_db) each live attachment of the instance is marked detached and soft-deleted, with its
    C(attachment_specs), as Cinder's attachment delete does. The volume's C(attached_mode) admin metadata
    is soft-deleted. The volume becomes C(available) and C(detached) when no attachment remains, and
    C(in-use) when another attachment stays. Volumes with C(delete_on_termination) are not deleted. The
    result warns about them.
  - An instance that is already deleted gets only the leftovers of an earlier incomplete delete cleaned
    up. These are live child rows, the mapping, allocations and attachments. A second run reports no change.
  - O(purge=true) (database path only) deletes the rows instead, as Nova's C(instance_destroy) with
    C(hard_delete) does. That covers the instance, every row of its child tables (soft-deleted or not),
    its actions and their events. In C(nova_api) it deletes the instance mapping, the request spec and the
    server group membership, as C(nova-manage db archive_deleted_rows) does after archiving. The rows are
    not copied to the C(shadow_*) tables. The journal keeps each deleted row whole, so
    M(stackmender.openstack.journal_undo) can put it back.
  - The plan is computed first. Check mode returns it and writes nothing. Applying runs exactly that
    plan in one transaction per database, re-reading and locking every row, and writes a journal of
    before-images that M(stackmender.openstack.journal_undo) can revert.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
options:
  instance:
    description:
      - UUID of the instance to delete, or a list of UUIDs deleted together.
    type: list
    elements: str
    required: true
    aliases: [instances]
    version_added: 0.1.0
  purge:
    description:
      - Delete the rows instead of soft-deleting them (database path only). The rows are not archived.
    type: bool
    default: false
    version_added: 0.1.0
  service_down_time:
    description:
      - Seconds after its last report that the database path counts a C(nova-compute) service as down.
        This is the rule of Nova's database servicegroup driver. Set it to the cloud's
        C([DEFAULT] service_down_time) if that differs from Nova's default of 60.
      - The API path uses the C(state) that Nova's API reports instead.
    type: int
    default: 60
    version_added: 0.1.0
  timeout:
    description:
      - Seconds the API path waits for Nova to finish the deletes. A timeout fails the task. The deletes
        Nova accepted go on.
    type: int
    default: 300
    version_added: 0.1.0
notes:
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - The instance's C(nova-compute) service is up (database path). That compute still runs the guest and
    deletes it properly when asked. Use O(method=api).
  - The instance has a task in progress (C(task_state) other than C(deleting)), or an unfinished migration
    (database path). On the API path this guard applies only while its compute is up.
  - The instance has C(disable_terminate) set. Nova's own delete silently does nothing then.
  - Refusals that O(force) never overrides. The instance is in cell0 on the database path. Nova's API
    deletes those itself, since no compute is involved, and cell0 is never written. The instance has live
    rows in several cells, or it has only a C(nova_api) mapping without a cell (a build request; use the
    API). A purge meets C(share_mapping) rows.
  - After the database path, the Neutron ports of the instance still exist and stay bound. Delete them
    (C(openstack port delete)) or unbind them. When the dead compute host comes back, C(nova-compute)
    reaps the guest of a deleted instance (C(running_deleted_instance_action), default C(reap)).
seealso:
  - module: stackmender.openstack.journal_undo
  - module: stackmender.openstack.nova_instance_host
'''

EXAMPLES = r'''
- name: Show what deleting two instances stranded on a dead compute would do
  stackmender.openstack.nova_instance_delete:
    instance:
      - 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
      - 3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    cloud: admin
  check_mode: true

- name: Delete them through Nova (its local delete, as the compute is down)
  stackmender.openstack.nova_instance_delete:
    instance:
      - 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
      - 3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    cloud: admin
    timeout: 600

- name: The control plane cannot do it; delete in the databases as Nova would
  stackmender.openstack.nova_instance_delete:
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    method: db
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db: "mysql+pymysql://placement:{{ placement_db_password }}@db.example.org/placement?charset=utf8"
    cinder_db:
      config_file: /etc/cinder/cinder.conf
  register: deleted

- name: Undo it from its journal
  stackmender.openstack.journal_undo:
    journal: "{{ deleted.journal }}"
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db: "mysql+pymysql://placement:{{ placement_db_password }}@db.example.org/placement?charset=utf8"
    cinder_db:
      config_file: /etc/cinder/cinder.conf
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "1 instance(s) to soft-delete: 14 row change(s), applied"
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
      parameters. Rows of one shape are one statement. Rows are named by the database option that reaches
      them, C(nova_db) or C(nova:<cell name>), C(nova_api_db), C(placement_db) and C(cinder_db).
    - The API path lists the calls, each with its C(microversion).
  returned: success
  type: list
  elements: dict
  sample:
    - kind: sql
      database: "nova:cell1"
      table: instances
      action: update
      statement: "UPDATE `instances` SET `deleted` = `id`, `deleted_at` = %s, `progress` = %s, `task_state` = %s,
        `terminated_at` = %s, `updated_at` = %s, `vm_state` = %s WHERE `id` IN (%s)"
      params: ["2026-11-22 03:04:05", 0, null, "2026-11-22 03:04:05", "2026-11-22 03:04:05", deleted, 41]
      rows: 1
    - kind: api
      service: compute
      call: "DELETE /servers/2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e"
      microversion: "2.1"
      arguments: {}
before:
  description: Per database option (or API service), per C(table/id) (or resource), the fields the plan
    changes, as they were.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {vm_state: error, task_state: deleting, deleted: 0}}}
after:
  description: The same fields as they are after the run (or would be, in check mode); V(null) for a deleted row.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {vm_state: deleted, task_state: null, deleted: 41}}}
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
    - The instances the run deletes (or would), each with its C(cell) (database path), C(host), C(vm_state) and
      C(task_state) before the run and the C(action) taken (V(soft-delete), V(purge), V(cleanup) of the
      leftovers of an instance already deleted, or V(api-delete)).
  returned: success
  type: list
  elements: dict
  sample: [{instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, cell: "nova:cell1", host: compute07,
            vm_state: active, task_state: deleting, action: soft-delete}]
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
    - guard: compute_service_up
      message: "the nova-compute service of host compute07 is up (last report 4 s ago, service_down_time 60):
        delete instance 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e through the API (method=api)"
      evidence: [{id: 3, host: compute07, binary: nova-compute, forced_down: 0, up: true, seconds_since_report: 4}]
notes:
  description: Instances left alone because nothing of them is left to delete.
  returned: when there are any
  type: list
  elements: str
'''

import time

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import instance_records
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.services.nova import FINISHED_MIGRATION_STATUSES
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import DELETE, Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    RemediationModule,
    api_or_db,
    db_only,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import uuid_list

NOVA_API = 'nova_api_db'
PLACEMENT = 'placement_db'
CINDER = 'cinder_db'
MICROVERSION = '2.1'
POLL_SECONDS = 2


class NovaInstanceDelete(RemediationModule):
    module_name = 'stackmender.openstack.nova_instance_delete'
    argument_spec = dict(
        instance=dict(type='list', elements='str', required=True, aliases=['instances']),
        purge=dict(type='bool', default=False),
        service_down_time=dict(type='int', default=60),
        timeout=dict(type='int', default=300),
    )

    def validate(self):
        self.instance_ids = uuid_list(self.params['instance'], 'instance')
        for option in ('service_down_time', 'timeout'):
            if self.params[option] <= 0:
                raise InputError('%s must be a positive number of seconds, not %s' % (option, self.params[option]))
        self.deleted = []
        self.gone = []  # purged uuids of which no cell and nothing in nova_api has a trace (see _refuse_absent)

    # ---------------------------------------------------------------- method

    uses_nova_cells = True
    method_policy = api_or_db("Nova's own delete does everything this module would, and a cloud is configured")
    purge_policy = db_only('purge deletes database rows, which the Compute API cannot do')

    def methods(self):
        return self.purge_policy if self.params['purge'] else self.method_policy

    # ---------------------------------------------------------------- results

    def describe(self, plan):
        if plan.calls:
            return '%d instance(s) to delete through the Compute API: %d API call(s)' % (
                len(self.deleted), len(plan.calls))
        return '%d instance(s) to %s: %d row change(s)' % (
            len(self.deleted), 'purge' if self.params['purge'] else 'soft-delete', len(plan.changes))

    def add_results(self, result):
        result['instances'] = self.deleted

    # ============================================================ database path

    def plan_db(self):
        plan = Plan()
        stamp = now()
        purge = self.params['purge']
        cells = self.nova_cells()
        for cell in cells:
            instance_records.require_cell_schema(self.schema(cell.name, 'nova'), purge and not cell.is_cell0)
        found = self._find(cells, plan)
        plan.stop_if_never_overridden()
        by_cell = {}
        for uuid in self.instance_ids:
            row = found.get(uuid)
            if row is not None:
                by_cell.setdefault(row['cell'].name, []).append(row)
        touched = []
        for cell in cells:
            rows = by_cell.get(cell.name)
            if rows:
                touched.extend(self._plan_cell(cell, rows, plan, stamp))
        plan.stop_if_never_overridden()
        uuids = [uuid for uuid in self.instance_ids if uuid in found or (purge and uuid in self.gone)]
        api_changed = self._plan_api_rows(uuids, plan, stamp) if NOVA_API in self.targets else set()
        placement_changed = self._plan_placement(uuids, plan) if PLACEMENT in self.targets else set()
        cinder_changed = self._plan_cinder(uuids, plan, stamp) if CINDER in self.targets else set()
        changed = set(touched) | api_changed | placement_changed | cinder_changed
        for uuid in self.instance_ids:
            row = found.get(uuid)
            if uuid not in changed:
                if row is None:
                    plan.note('instance %s is in no cell: nothing of it is left to purge' % uuid)
                else:
                    plan.note('instance %s is already deleted%s' % (uuid, ' and purged' if purge else ''))
                continue
            self.deleted.append(dict(instance=uuid, cell=row['cell'].name if row else None,
                                     host=row['host'] if row else None, vm_state=row['vm_state'] if row else None,
                                     task_state=row['task_state'] if row else None,
                                     action=self._action(row, purge)))
        if changed:
            self._warn_followups(plan, found, changed)
        return plan

    @staticmethod
    def _action(row, purge):
        if purge:
            return 'purge'
        return 'soft-delete' if row and not row['deleted'] else 'cleanup'

    def _find(self, cells, plan):
        """{uuid: instance row}: the live row, else the newest deleted one; refuses what cannot be deleted here."""
        by_uuid = nova.instance_rows(cells, ', '.join('`%s`' % column for column in instance_records.INSTANCE_COLUMNS),
                                     uuids=self.instance_ids)
        found = {}
        missing = []
        for uuid in self.instance_ids:
            rows = by_uuid.get(uuid, [])
            live = [row for row in rows if not row['deleted']]
            evidence = [self._shown_instance(row) for row in rows]
            if len(live) > 1:
                plan.refuse('instance_in_several_cells', 'instance %s has live rows in several cells (%s)'
                            % (uuid, ', '.join(row['cell'].name for row in live)), evidence, never=True)
                continue
            row = live[0] if live else (rows[-1] if rows else None)
            if row is None:
                missing.append(uuid)
                continue
            if row['cell'].is_cell0:
                plan.refuse('cell0', 'instance %s is in cell0 (it was never scheduled); the database path never '
                            'writes cell0: delete it through the API (method=api), where Nova needs no compute '
                            'host for it' % uuid, evidence, never=True)
                continue
            found[uuid] = row
        if missing:
            self._refuse_absent(missing, plan)
        return found

    def _refuse_absent(self, missing, plan):
        """Instances in none of the cells read: purged only when Nova has no trace of them anywhere."""
        absent = self.absent_instances(missing)
        unknown = []
        for uuid in missing:
            absence = absent[uuid]
            if absence.kind == 'building':
                plan.refuse('build_request', '%s (method=api)' % absence.explain(), absence.evidence, never=True)
            elif not self.params['purge']:
                unknown.append(absence.explain())
            elif not absence.gone:
                plan.refuse('instance_not_in_cells_read', '%s: its nova_api records, allocations and volumes '
                            'are not purged' % absence.explain(), absence.evidence, never=True)
        if unknown:
            raise InputError('nothing to delete: %s' % '; '.join(unknown))
        self.gone = [uuid for uuid in missing if absent[uuid].gone]

    @staticmethod
    def _shown_instance(row):
        shown = dict((column, row.get(column)) for column in ('id', 'uuid', 'host', 'node', 'vm_state', 'task_state',
                                                              'disable_terminate', 'deleted') if column in row)
        shown['cell'] = row['cell'].name
        return shown

    # ------------------------------------------------------------- services

    def _compute_services(self, cell, hosts):
        """{host: its first live nova-compute service}, each telling whether it is up."""
        found = {}
        for row in nova.compute_services(cell, sorted(hosts), self.params['service_down_time']):
            found.setdefault(row['host'], row)
        return found

    # ---------------------------------------------------------- cell rows

    def _plan_cell(self, cell, rows, plan, stamp):
        """Plan one cell's rows; returns the uuids with a change."""
        purge = self.params['purge']
        live = [row for row in rows if not row['deleted']]
        uuids = [row['uuid'] for row in rows]
        self._guard_live(cell, live, plan)
        changed = set()
        if purge:
            for table, column in instance_records.BLOCKING_TABLES:
                if self.schema(cell.name, 'nova').has(table, column):
                    for blocking in instance_records.rows_of(cell.session, table, column, uuids, live_only=False):
                        plan.refuse('purge_blocked', 'instance %s has %s rows, which no Nova delete removes and '
                                    'which keep its row by foreign key; remove them first or do not purge'
                                    % (blocking[column], table), [dict(blocking, table=table)], never=True)
            events, actions = instance_records.action_rows(cell.session, uuids)
            by_action = dict((row['id'], row['instance_uuid']) for row in actions)
            for row in events:
                self._purge_row(plan, cell, 'instance_actions_events', row, 'an event of an action of the instance')
                changed.add(by_action[row['action_id']])
            for row in actions:
                self._purge_row(plan, cell, 'instance_actions', row, 'an action of the instance')
                changed.add(row['instance_uuid'])
        # The instance first, as instance_destroy does; a purge deletes it last (its children reference it).
        if not purge:
            for row in live:
                plan.change(cell.name, 'instances', {'id': row['id']},
                            before=dict(vm_state=row['vm_state'], task_state=row['task_state'],
                                        progress=row['progress'], terminated_at=row['terminated_at'],
                                        updated_at=row['updated_at'], deleted=row['deleted'],
                                        deleted_at=row['deleted_at']),
                            after=dict(vm_state='deleted', task_state=None, progress=0, terminated_at=stamp,
                                       updated_at=stamp, deleted_at=stamp),
                            from_key=('deleted',), expect=dict(uuid=row['uuid'], host=row['host']),
                            note="Nova's local delete: vm_state deleted, no task, terminated, then soft-deleted")
                changed.add(row['uuid'])
        for table, column in instance_records.CHILD_TABLES:
            for row in instance_records.rows_of(cell.session, table, column, uuids, live_only=not purge):
                changed.add(row[column])
                if purge:
                    self._purge_row(plan, cell, table, row, 'a row of the instance (hard delete, as instance_destroy '
                                                            'with hard_delete does)')
                    continue
                plan.change(cell.name, table, {'id': row['id']},
                            before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                            after=dict(deleted_at=stamp), from_key=('deleted',), expect={column: row[column]},
                            note="soft-delete as Nova's instance_destroy does (deleted = id, updated_at kept)")
        for table, column in instance_records.HARD_DELETED_TABLES:
            for row in instance_records.rows_of(cell.session, table, column, uuids, live_only=False,
                                       columns='id, %s' % instance_records.quote_identifier(column)):
                changed.add(row[column])
                plan.change(cell.name, table, {'id': row['id']}, action=DELETE, before=dict(row),
                            note='instance_destroy deletes them (the table has no deleted column)')
        table, column, key = instance_records.TAG_TABLE
        # Keyed by the pair: the executor deletes exactly these rows and the journal keeps each one for undo.
        for row in instance_records.rows_of(cell.session, table, column, uuids, live_only=False, order=key,
                                   columns=', '.join(instance_records.quote_identifier(part) for part in key)):
            changed.add(row[column])
            plan.change(cell.name, table, dict((part, row[part]) for part in key), action=DELETE, before=dict(row),
                        note='instance_destroy deletes the tags of the instance')
        if purge:
            for row in rows:
                self._purge_row(plan, cell, 'instances', row, 'the instance (hard delete)')
                changed.add(row['uuid'])
        return changed

    def _purge_row(self, plan, cell, table, row, why):
        plan.change(cell.name, table, {'id': row['id']}, action=DELETE, before=instance_records.shown(row),
                    note='purge %s' % why)

    def _guard_live(self, cell, live, plan):
        if not live:
            return
        services = self._compute_services(cell, set(row['host'] for row in live if row['host']))
        migrations = instance_records.rows_of(cell.session, 'migrations', 'instance_uuid', [row['uuid'] for row in live],
                                     columns='id, uuid, instance_uuid, status, migration_type, source_compute, '
                                             'dest_compute, deleted')
        for row in live:
            shown = self._shown_instance(row)
            service = services.get(row['host'])
            if service is not None and service['up']:
                plan.refuse('compute_service_up', 'the nova-compute service of host %s is up (last report %s s ago, '
                            'service_down_time %s): delete instance %s through the API (method=api); that compute '
                            'deletes its guest' % (row['host'], service['seconds_since_report'],
                                                   self.params['service_down_time'], row['uuid']), [service, shown])
            if row['task_state'] and row['task_state'] not in instance_records.DELETE_TASK_STATES:
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

    # ------------------------------------------------------------ nova_api

    def _plan_api_rows(self, uuids, plan, stamp):
        session = self.session(NOVA_API)
        schema = self.schema(NOVA_API, 'nova_api')
        schema.require('instance_mappings', ('id', 'instance_uuid', 'cell_id', 'queued_for_delete', 'updated_at'),
                       purpose='mark the instance mapping queued for delete')
        changed = set()
        if self.params['purge']:
            schema.require('request_specs', ('id', 'instance_uuid'), purpose='purge the request specs')
            schema.require('instance_group_member', ('id', 'instance_uuid'), purpose='purge server group memberships')
            for table, column in instance_records.API_PURGED_TABLES:
                for row in instance_records.rows_of(session, table, column, uuids, live_only=False,
                                           columns='id, %s' % instance_records.quote_identifier(column)):
                    plan.change(NOVA_API, table, {'id': row['id']}, action=DELETE, before=dict(row),
                                note='archive_deleted_rows deletes the API records of a purged instance')
                    changed.add(row[column])
            return changed
        for row in instance_records.rows_of(session, 'instance_mappings', 'instance_uuid', uuids, live_only=False,
                                   columns='id, instance_uuid, queued_for_delete, updated_at'):
            if not row['queued_for_delete']:
                plan.change(NOVA_API, 'instance_mappings', {'id': row['id']},
                            before=dict(queued_for_delete=row['queued_for_delete'], updated_at=row['updated_at']),
                            after=dict(queued_for_delete=1, updated_at=stamp),
                            expect=dict(instance_uuid=row['instance_uuid']),
                            note="Nova's delete marks the mapping queued_for_delete")
                changed.add(row['instance_uuid'])
        return changed

    # ------------------------------------------------------------ placement

    def _plan_placement(self, uuids, plan):
        session = self.session(PLACEMENT)
        placement.require_schema(self.schema(PLACEMENT, 'placement'), 'delete the allocations of the instances')
        changed = set()
        for row in placement.allocations_of(session, uuids):
            plan.change(PLACEMENT, 'allocations', {'id': row['id']}, action=DELETE,
                        before=dict((column, row[column]) for column in placement.ALLOCATION_COLUMNS),
                        note='DELETE /allocations/{consumer}, as Nova asks placement when it deletes locally')
            changed.add(row['consumer_id'])
        consumers = placement.consumers_by_uuid(session, uuids)
        for uuid in sorted(consumers):
            row = consumers[uuid]
            plan.change(PLACEMENT, 'consumers', {'id': row['id']}, action=DELETE,
                        before=dict(uuid=row['uuid'], generation=row['generation'], updated_at=row['updated_at']),
                        note='a consumer left without allocations is deleted, as placement does')
            changed.add(uuid)
        return changed

    # --------------------------------------------------------------- cinder

    def _plan_cinder(self, uuids, plan, stamp):
        session = self.session(CINDER)
        schema = self.schema(CINDER, 'cinder')
        purpose = 'detach the volumes of the instances'
        schema.require('volume_attachment', ('id', 'volume_id', 'instance_uuid', 'attach_status', 'detach_time',
                                             'deleted', 'deleted_at'), purpose=purpose)
        schema.require('volumes', ('id', 'status', 'attach_status', 'migration_status', 'deleted'), purpose=purpose)
        schema.require('volume_admin_metadata', ('id', 'volume_id', 'key', 'deleted', 'deleted_at'), purpose=purpose)
        schema.require('attachment_specs', ('id', 'attachment_id', 'deleted', 'deleted_at'), purpose=purpose)
        detached = instance_records.rows_of(session, 'volume_attachment', 'instance_uuid', uuids,
                                   columns='id, volume_id, instance_uuid, attach_status, detach_time, deleted, '
                                           'deleted_at')
        if not detached:
            return set()
        ids = [row['id'] for row in detached]
        volume_ids = sorted(set(row['volume_id'] for row in detached))
        specs = instance_records.rows_of(session, 'attachment_specs', 'attachment_id', ids,
                                columns='id, attachment_id, deleted, deleted_at')
        for row in specs:
            plan.change(CINDER, 'attachment_specs', {'id': row['id']},
                        before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                        after=dict(deleted=1, deleted_at=stamp), expect=dict(attachment_id=row['attachment_id']),
                        note="soft-deleted with its attachment, as Cinder's attachment_destroy does")
        for row in detached:
            plan.change(CINDER, 'volume_attachment', {'id': row['id']},
                        before=dict(attach_status=row['attach_status'], detach_time=row['detach_time'],
                                    deleted=row['deleted'], deleted_at=row['deleted_at']),
                        after=dict(attach_status='detached', detach_time=stamp, deleted=1, deleted_at=stamp),
                        expect=dict(instance_uuid=row['instance_uuid'], volume_id=row['volume_id']),
                        note="Cinder's attachment delete: detached and soft-deleted")
        metadata = instance_records.rows_of(session, 'volume_admin_metadata', 'volume_id', volume_ids,
                                   columns='id, volume_id, `key`, deleted, deleted_at')
        for row in metadata:
            if row['key'] == 'attached_mode':
                plan.change(CINDER, 'volume_admin_metadata', {'id': row['id']},
                            before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                            after=dict(deleted=1, deleted_at=stamp),
                            expect=dict(volume_id=row['volume_id'], key='attached_mode'),
                            note='Cinder drops attached_mode when it finishes a detach')
        others = instance_records.rows_of(session, 'volume_attachment', 'volume_id', volume_ids,
                                 columns='id, volume_id, instance_uuid, attach_status')
        volumes = instance_records.rows_of(session, 'volumes', 'id', volume_ids,
                                  columns='id, status, attach_status, migration_status, deleted')
        for volume in volumes:
            remaining = [row for row in others if row['volume_id'] == volume['id'] and row['id'] not in ids]
            status, attach_status = instance_records.volume_status_after_detach(volume, remaining)
            if (status, attach_status) != (volume['status'], volume['attach_status']):
                plan.change(CINDER, 'volumes', {'id': volume['id']},
                            before=dict(status=volume['status'], attach_status=volume['attach_status']),
                            after=dict(status=status, attach_status=attach_status),
                            expect=dict(migration_status=volume['migration_status'], deleted=0),
                            note='the status Cinder gives a volume from its remaining attachments (%d)'
                                 % len(remaining))
        return set(row['instance_uuid'] for row in detached)

    def _warn_followups(self, plan, found, changed):
        cells = {}
        for uuid in changed:
            row = found.get(uuid)
            if row is not None:
                cells.setdefault(row['cell'].name, (row['cell'], []))[1].append(uuid)
        volumes = []
        for name in sorted(cells):
            cell, uuids = cells[name]
            for row in instance_records.rows_of(cell.session, 'block_device_mapping', 'instance_uuid', uuids, live_only=False,
                                       columns='id, instance_uuid, volume_id, destination_type, '
                                               'delete_on_termination'):
                if row['destination_type'] == 'volume' and row['volume_id']:
                    volumes.append(row)
        keep = sorted(set(row['volume_id'] for row in volumes if row['delete_on_termination']))
        if keep:
            plan.warn('volume(s) %s were to be deleted with their instance (delete_on_termination); they are only '
                      'detached: delete them with openstack volume delete if they are no longer wanted'
                      % ', '.join(keep))
        if volumes and CINDER not in self.targets:
            names = ', '.join(sorted(set(row['volume_id'] for row in volumes)))
            plan.warn('Cinder was not given (cinder_db): the attachments of volume(s) %s remain; delete them with '
                      'openstack volume attachment delete' % names)
        if PLACEMENT not in self.targets:
            plan.warn('placement was not given (placement_db): delete the allocations of %s with openstack resource '
                      'provider allocation delete UUID' % ', '.join(sorted(changed)))
        if NOVA_API not in self.targets:
            plan.warn('nova_api was not given (nova_db only): the instance mapping(s) of %s are not marked '
                      'queued_for_delete' % ', '.join(sorted(changed)))
        plan.warn('delete (or unbind) the Neutron ports of %s: openstack port list --device-id UUID; the database '
                  'path cannot release them' % ', '.join(sorted(changed)))

    # ================================================================ API path

    def plan_api(self):
        plan = Plan()
        compute = self.conn.compute
        services = {}
        for uuid in self.instance_ids:
            server = self._api_server(uuid)
            if server is None:
                plan.note('instance %s is already deleted' % uuid)
                continue
            shown = self._shown_server(server)
            host = server.compute_host
            if host and host not in services:
                services[host] = [service for service in compute.services(binary='nova-compute', host=host)
                                  if service.host == host]
            service = services.get(host, [None])[0] if services.get(host) else None
            up = service is not None and service.state == 'up' and not service.is_forced_down
            evidence = [shown] + ([self._shown_service(service)] if service is not None else [])
            if up and server.task_state in instance_records.DELETE_TASK_STATES:
                plan.refuse('delete_already_cast', 'instance %s is already %s on host %s, whose nova-compute '
                            'Nova counts as up: Nova ignores another delete until that compute finishes it. If '
                            'the host is dead, wait until Nova counts the service down (service_down_time) or '
                            'force it down, then run again' % (uuid, server.task_state, host), evidence, never=True)
                continue
            if up and server.task_state:
                plan.refuse('task_in_progress', 'instance %s has task_state %s in progress on host %s, whose '
                            'nova-compute is up' % (uuid, server.task_state, host), evidence)
            if getattr(server, 'is_locked', False):
                plan.note('instance %s is locked; an administrator deletes it anyway' % uuid)
            if server.vm_state == 'resized':
                body = {'os-resetState': {'state': 'error'}}
                plan.call('compute', 'POST /servers/%s/action os-resetState' % uuid, body['os-resetState'],
                          (lambda server_id=uuid, body=body: self._post(
                              '/servers/%s/action' % server_id, body)),
                          microversion=MICROVERSION, resource='servers/%s' % uuid,
                          note="a resized instance makes Nova's delete confirm the resize on the source compute "
                               "first; reset to error so the delete does not wait for it",
                          before=dict(vm_state=server.vm_state), after=dict(vm_state='error'))
            plan.call('compute', 'DELETE /servers/%s' % uuid, {},
                      (lambda server_id=uuid: self._delete(server_id)),
                      microversion=MICROVERSION, resource='servers/%s' % uuid,
                      note=('Nova deletes the instance itself (local delete): its compute is %s'
                            % ('down' if not up else 'up and deletes the guest')) if host else
                      'the instance has no host; Nova deletes it without a compute',
                      before=dict(status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                                  host=host),
                      after=dict(status='DELETED'))
            self.deleted.append(dict(instance=uuid, host=host, vm_state=server.vm_state,
                                     task_state=server.task_state, action='api-delete',
                                     compute_service='down' if host and not up else ('up' if up else None)))
        plan.stop_if_never_overridden()
        return plan

    def _api_server(self, uuid):
        """The server, or None when Nova no longer shows it (deleted); unknown ids are an input error."""
        compute = self.conn.compute
        try:
            return compute.get_server(uuid)
        except Exception as error:
            if getattr(error, 'status_code', None) != 404:
                raise api.translate(error, 'reading instance %s' % uuid)
        response = compute.get('/servers/detail', params={'deleted': 'True', 'all_tenants': 'True', 'uuid': uuid},
                               microversion=MICROVERSION)
        api.openstack.exceptions.raise_from_response(response)
        if [server for server in response.json().get('servers', []) if server.get('id') == uuid]:
            return None
        raise InputError('instance %s not found through the Compute API, not even among the deleted ones' % uuid)

    @staticmethod
    def _shown_server(server):
        return dict(id=server.id, status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                    host=server.compute_host)

    @staticmethod
    def _shown_service(service):
        return dict(id=service.id, host=service.host, binary=service.binary, status=service.status,
                    state=service.state, forced_down=service.is_forced_down, updated_at=service.updated_at)

    def _post(self, path, body):
        response = self.conn.compute.post(path, json=body, microversion=MICROVERSION)
        api.openstack.exceptions.raise_from_response(response)

    def _delete(self, server_id):
        response = self.conn.compute.delete('/servers/%s' % server_id, microversion=MICROVERSION)
        if response.status_code == 404:
            return
        api.openstack.exceptions.raise_from_response(response)

    def verify_api(self, plan):
        compute = self.conn.compute
        deadline = time.time() + self.params['timeout']
        pending = [entry['instance'] for entry in self.deleted]
        last = {}
        while pending:
            for uuid in list(pending):
                try:
                    server = compute.get_server(uuid)
                except Exception as error:
                    if getattr(error, 'status_code', None) == 404:
                        pending.remove(uuid)
                        continue
                    raise api.translate(error, 'reading back instance %s' % uuid)
                last[uuid] = self._shown_server(server)
            if not pending:
                break
            if time.time() > deadline:
                raise ApiError('%d instance(s) still exist %s s after their delete: %s. Nova keeps working on the '
                               'deletes it accepted; re-run to check again'
                               % (len(pending), self.params['timeout'], ', '.join(pending)),
                               servers=[last[uuid] for uuid in pending if uuid in last])
            time.sleep(POLL_SECONDS)


def main():
    NovaInstanceDelete().run()


if __name__ == '__main__':
    main()
