#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nova_instance_host
short_description: Move Nova instances off a dead compute host, by evacuation or in the databases
version_added: 0.1.0
description:
  - Moves one or many instances, or every instance of a compute host, to another compute host
    of the same cell. It is the repair after a compute node died with instances on it.
  - With O(method=api) (or V(auto) when a cloud is configured) it uses the Compute API through
    openstacksdk. The source C(nova-compute) service is forced down and disabled in one
    C(PUT /os-services/{id}) call (microversion 2.53), then each instance is evacuated to O(host)
    with C(POST /servers/{id}/action) C(evacuate). Nova then rebuilds the instance on the target,
    moves its placement allocations, re-attaches its volumes and leaves an evacuation record that
    makes the source compute destroy its stale guest when it comes back.
  - The evacuation microversion decides the power state the instance ends in, and the result says
    both. O(target_state=keep) uses microversion 2.68. An instance that was active (or in error)
    ends C(ACTIVE) and running (power state 1), a stopped one ends C(SHUTOFF) (power state 4).
    O(target_state=stopped) uses 2.95. Every evacuated instance ends C(SHUTOFF), power state 4.
  - The API path waits until each instance is on the target with no task in progress, for at most
    O(wait_timeout) seconds, and reads the service back to check that it is forced down and disabled.
  - With O(method=db) it writes the databases, for clouds whose control plane cannot evacuate.
    Use it only when the instances' disks are on shared storage or volumes that the target reaches.
    In the cell database it sets C(instances.host), C(node) and C(compute_id) (where the release has
    the column), clears C(task_state) and C(instance_extra.migration_context), and sets the
    instance's unfinished migrations to C(error).
  - With O(placement_db), the instance's allocations move from the source compute node's resource
    provider to the target's. The consumer's generation and the generations of both providers go up
    by one, as placement does on an allocation write, so Nova's cached views are refreshed. The holds
    of the abandoned migrations go with them. A migration's hold on the source becomes the
    instance's on the target, its other allocations and its consumer are deleted, and the instance's
    claim on an abandoned destination is deleted.
  - With O(cinder_db), the instance's live Cinder attachments whose C(attached_host) names the source
    host are set to the target host.
  - The plan is computed first. Check mode returns it and writes nothing. Applying runs exactly that
    plan in one transaction per database, re-reading and locking every row, and writes a journal of
    before-images that M(stackmender.openstack.journal_undo) can revert.
  - Instances already on the target host and node are left alone, so a second run reports no change.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
options:
  instance:
    description:
      - UUID of the instance to move, or a list of UUIDs moved together.
      - Exactly one of O(instance) and O(from_host) is required.
    type: list
    elements: str
    aliases: [instances]
    version_added: 0.1.0
  from_host:
    description:
      - Move every live instance whose C(host) is this compute host (C(CONF.host) of its C(nova-compute)).
    type: str
    version_added: 0.1.0
  host:
    description:
      - The target compute host, as its C(nova-compute) service names it.
    type: str
    required: true
    version_added: 0.1.0
  node:
    description:
      - The target compute node (C(compute_nodes.hypervisor_hostname)). Defaults to the only compute node
        of O(host); a host with several nodes needs it.
      - Only the database path honours it. Nova's evacuation picks the node itself, so O(method=auto)
        falls back to the database when O(node) is given.
    type: str
    version_added: 0.1.0
  service_down_time:
    description:
      - Seconds after its last report that the database path counts a service as down. It is the rule
        of Nova's database servicegroup driver. A service is up when it is not forced down and its
        C(last_seen_up), or C(created_at) if it never reported, is at most this many seconds from the
        database server's current UTC time.
      - Set it to the cloud's C([DEFAULT] service_down_time) if that differs from Nova's default of 60.
      - The API path uses the C(state) Nova's API reports instead.
    type: int
    default: 60
    version_added: 0.1.0
  target_state:
    description:
      - The state evacuated instances end in (API path only).
      - V(keep) evacuates with microversion 2.68. Active and error instances end C(ACTIVE) (power state 1,
        running), stopped ones end C(SHUTOFF) (power state 4, shutdown).
      - V(stopped) evacuates with microversion 2.95. Every instance ends C(SHUTOFF) (power state 4). It needs
        every C(nova-compute) of the cloud at service version 62 (2023.1) or later.
    type: str
    choices: [keep, stopped]
    default: keep
    version_added: 0.1.0
  wait_timeout:
    description:
      - Seconds the API path waits for all evacuations to finish. A timeout fails the task. The evacuations
        Nova already accepted keep running.
    type: int
    default: 600
    version_added: 0.1.0
notes:
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - The source C(nova-compute) is up. Evacuating or moving an instance whose host still runs it can
    start the guest twice on the same disk. On the database path the source must be down by the
    O(service_down_time) rule, or forced down.
  - The target C(nova-compute) is disabled, or is down (by the same rule, or forced down).
  - The target host has no C(host_mappings) row (database path). Without O(nova_api_db) nothing
    shows that row, so the run refuses naming O(nova_api_db) unless O(accept_unverified) is set.
  - The instance is bound to the source host by PCI devices (C(pci_devices)), a NUMA topology
    (C(instance_extra.numa_topology)), or allocations on nested resource providers of the source
    compute node.
  - Refusals that O(force) never overrides. The instance is deleted, lives in cell0, has no host or has
    live rows in several cells. The target C(nova-compute) service or compute node does not exist, the
    target is in another cell, the target host has several nodes and O(node) is not given, or the target
    compute node has no resource provider (with O(placement_db)).
  - After the database path, the instances are not running on the target. Hard reboot (or start) each
    moved instance, and bind its Neutron ports to the target (C(binding:host_id)). Refresh its volume
    attachments (C(nova-manage volume_attachment refresh)). Keep the source compute from starting the old
    guests, because without an evacuation record Nova does not destroy them there. The result's warnings
    list these follow-ups per instance.
  - Without O(placement_db) the allocations stay on the source provider. The result then warns to run
    C(nova-manage placement heal_allocations --instance UUID --force) for each instance.
  - The releases of the test matrix (2024.1, 2025.1, 2026.2) all have C(instances.compute_id), which came
    in 2023.2. On an older cell database the column is left out of the plan.
seealso:
  - module: stackmender.openstack.journal_undo
'''

EXAMPLES = r'''
- name: Show what evacuating every instance of the dead compute07 to compute12 would do
  stackmender.openstack.nova_instance_host:
    from_host: compute07
    host: compute12
    cloud: admin
  check_mode: true

- name: Evacuate them; they come back in the state they had
  stackmender.openstack.nova_instance_host:
    from_host: compute07
    host: compute12
    cloud: admin
    wait_timeout: 900
  register: evacuated

- name: Move two instances in the databases, with their placement allocations and volume attachments
  stackmender.openstack.nova_instance_host:
    instance:
      - 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
      - 3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    host: compute12
    method: db
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db: "mysql+pymysql://placement:{{ placement_db_password }}@db.example.org/placement?charset=utf8"
    cinder_db:
      config_file: /etc/cinder/cinder.conf
  register: moved

- name: Undo the database move from its journal
  stackmender.openstack.journal_undo:
    journal: "{{ moved.journal }}"
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
  sample: "2 instance(s) to move to compute12 (node compute12): 14 row change(s), applied"
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
      them, C(nova_db) or C(nova:<cell name>), C(placement_db) and C(cinder_db).
    - The API path lists the calls, each with its C(microversion).
  returned: success
  type: list
  elements: dict
  sample:
    - kind: sql
      database: "nova:cell1"
      table: instances
      action: update
      statement: "UPDATE `instances` SET `compute_id` = %s, `host` = %s, `node` = %s, `task_state` = %s,
        `updated_at` = %s WHERE `id` IN (%s)"
      params: [7, compute12, compute12, null, "2026-11-22 03:04:05", 41]
      rows: 1
    - kind: api
      service: compute
      call: "POST /servers/2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e/action evacuate"
      microversion: "2.68"
      arguments: {host: compute12}
before:
  description: Per database option (or API service), per C(table/id) (or resource), the fields the plan
    changes, as they were.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {host: compute07, node: compute07, compute_id: 3, task_state: null}}}
after:
  description: The same fields as they are after the run (or would be, in check mode); V(null) for a deleted row.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {host: compute12, node: compute12, compute_id: 7, task_state: null}}}
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
  description: The instances the database path moves (or would), with their cell, source and target.
  returned: success, database path
  type: list
  elements: dict
  sample: [{instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, cell: "nova:cell1", from_host: compute07,
            from_node: compute07, to_host: compute12, to_node: compute12, compute_id: 7}]
evacuations:
  description:
    - The evacuations of the API path. Each names the C(microversion) used, the C(expected_status) and
      C(expected_power_state) it gives, and after applying the C(status), C(power_state) (Nova's number),
      C(power_state_name), C(host) and C(node) the instance ended with.
  returned: success, API path
  type: list
  elements: dict
  sample: [{instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, from_host: compute07, to_host: compute12,
            microversion: "2.68", expected_status: ACTIVE, expected_power_state: 1, status: ACTIVE,
            power_state: 1, power_state_name: running, host: compute12, node: compute12}]
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
    - guard: source_service_up
      message: "the nova-compute service of source host compute07 is up (last report 4 s ago, service_down_time 60)"
      evidence: [{id: 3, host: compute07, binary: nova-compute, forced_down: 0, last_seen_up: "2026-11-22 03:04:01",
                  up: true, seconds_since_report: 4, service_down_time: 60, cell: "nova:cell1"}]
notes:
  description: Instances left alone because they already are on the target.
  returned: when there are any
  type: list
  elements: str
'''

import time

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.services.nova import FINISHED_MIGRATION_STATUSES
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    ApiUnsuitable,
    RemediationModule,
    api_or_db,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import (
    host_name,
    placeholders,
    uuid_list,
)

PLACEMENT = 'placement_db'
CINDER = 'cinder_db'

# Evacuation microversions: 2.68 keeps the instance's state (and drops "force"); 2.95 stops it at the target.
MICROVERSION_KEEP = '2.68'
MICROVERSION_STOPPED = '2.95'
MICROVERSION_SERVICE_UPDATE = '2.53'
POWER_STATES = {0: 'pending', 1: 'running', 3: 'paused', 4: 'shutdown', 6: 'crashed', 7: 'suspended'}
EVACUABLE_VM_STATES = ('active', 'stopped', 'error')
POLL_SECONDS = 2

SERVICE_COLUMNS = ('id', 'uuid', 'host', 'binary', 'disabled', 'disabled_reason', 'forced_down', 'last_seen_up',
                   'created_at', 'updated_at', 'deleted')


class NovaInstanceHost(RemediationModule):
    module_name = 'stackmender.openstack.nova_instance_host'
    argument_spec = dict(
        instance=dict(type='list', elements='str', aliases=['instances']),
        from_host=dict(type='str'),
        host=dict(type='str', required=True),
        node=dict(type='str'),
        service_down_time=dict(type='int', default=60),
        target_state=dict(type='str', default='keep', choices=['keep', 'stopped']),
        wait_timeout=dict(type='int', default=600),
    )
    module_kwargs = dict(required_one_of=[['instance', 'from_host']], mutually_exclusive=[['instance', 'from_host']])

    def validate(self):
        self.instance_ids = uuid_list(self.params['instance'], 'instance')
        self.from_host = None
        if self.params['from_host'] is not None:
            self.from_host = host_name(self.params['from_host'].strip(), 'from_host',
                                       'from_host: give the name of the compute host to empty')
        self.target_host = host_name((self.params['host'] or '').strip(), 'host',
                                     'host: give the name of the target compute host')
        self.target_node = (self.params['node'] or '').strip() or None
        if self.target_node:
            host_name(self.target_node, 'node')
        if self.from_host and self.from_host == self.target_host:
            raise InputError('from_host and host are both %r: the target must be another host' % self.target_host)
        for option in ('service_down_time', 'wait_timeout'):
            if self.params[option] <= 0:
                raise InputError('%s must be a positive number of seconds, not %s' % (option, self.params[option]))
        self.moved = []
        self.evacuations = []
        self._targets = {}
        self._source_services = []

    # ---------------------------------------------------------------- method

    uses_nova_cells = True
    method_policy = api_or_db('evacuation is how Nova itself moves instances off a dead host, and a cloud is configured')

    # ---------------------------------------------------------------- results

    def describe(self, plan):
        if plan.calls:
            return '%d instance(s) to evacuate to %s: %d API call(s)' % (
                len(self.evacuations), self.target_host, len(plan.calls))
        nodes = sorted(set(entry['to_node'] for entry in self.moved))
        return '%d instance(s) to move to %s (node %s): %d row change(s)' % (
            len(self.moved), self.target_host, ', '.join(nodes), len(plan.changes))

    def add_results(self, result):
        if result['method'] == 'api':
            result['evacuations'] = self.evacuations
        else:
            result['instances'] = self.moved

    # ============================================================ database path

    def plan_db(self):
        plan = Plan()
        stamp = now()
        cells = self.nova_cells()
        for cell in cells:
            self._require_nova_schema(cell)
        instances = self._select_instances(cells, plan)
        plan.stop_if_never_overridden()
        if not instances:
            plan.note('no live instance on host %s' % self.from_host if self.from_host else 'no instance selected')
            return plan

        moving = []
        by_cell = {}
        for row in instances:
            by_cell.setdefault(row['cell'].name, []).append(row)
        for cell in cells:
            rows = by_cell.get(cell.name)
            if not rows:
                continue
            target = self._target(cell, cells, plan, rows)
            if target is None:
                continue
            for row in rows:
                if row['host'] == self.target_host and row['node'] == target['node']['hypervisor_hostname']:
                    plan.note('instance %s is already on host %s (node %s)' % (row['uuid'], row['host'], row['node']))
                    continue
                row['target'] = target
                moving.append(row)
        plan.stop_if_never_overridden()
        if not moving:
            return plan

        for cell in cells:
            rows = [row for row in moving if row['cell'].name == cell.name]
            if rows:
                self._check_sources(cell, rows, plan)
                self._plan_cell(cell, rows, plan, stamp)
        if PLACEMENT in self.targets:
            self._plan_placement(moving, plan, stamp)
        else:
            plan.warn('placement was not given (placement_db): the allocations of the moved instance(s) stay on the '
                      'source compute node; run nova-manage placement heal_allocations --force --instance UUID for '
                      'each of %s' % ', '.join(row['uuid'] for row in moving))
        plan.stop_if_never_overridden()
        if CINDER in self.targets:
            self._plan_cinder(moving, plan, stamp)
        self._warn_followups(moving, plan)
        for row in moving:
            self.moved.append(dict(instance=row['uuid'], cell=row['cell'].name, from_host=row['host'],
                                   from_node=row['node'], to_host=self.target_host,
                                   to_node=row['target']['node']['hypervisor_hostname'],
                                   compute_id=row['target']['node']['id']))
        return plan

    def _require_nova_schema(self, cell):
        schema = self.schema(cell.name, 'nova')
        purpose = 'move instances between compute hosts'
        schema.require('instances', ('id', 'uuid', 'host', 'node', 'task_state', 'vm_state', 'deleted', 'updated_at'),
                       purpose=purpose)
        schema.require('services', SERVICE_COLUMNS, purpose='check the compute services')
        schema.require('compute_nodes', ('id', 'uuid', 'host', 'hypervisor_hostname', 'service_id', 'deleted'),
                       purpose=purpose)
        schema.require('migrations', ('id', 'uuid', 'instance_uuid', 'status', 'source_compute', 'source_node',
                                      'dest_compute', 'dest_node', 'deleted', 'updated_at'),
                       purpose='end unfinished migrations')
        schema.require('instance_extra', ('id', 'instance_uuid', 'migration_context', 'numa_topology', 'deleted',
                                          'updated_at'),
                       purpose='clear the migration context')

    def _select_instances(self, cells, plan):
        # compute_id exists from 2023.1 on; older cells are read without it.
        by_uuid = nova.instance_rows(
            cells, 'id, uuid, host, node, task_state, vm_state, power_state, deleted, updated_at',
            uuids=self.instance_ids, host=self.from_host or None, optional=('compute_id',),
            has_column=lambda cell, column: self.schema(cell.name, 'nova').has('instances', column))
        nova.require_instances(self.instance_ids, by_uuid)
        selected = []
        for uuid in sorted(by_uuid, key=lambda item: by_uuid[item][0]['id']):
            rows = by_uuid[uuid]
            live = [row for row in rows if not row['deleted']]
            evidence = [self._shown_instance(row) for row in rows]
            if not live:
                plan.refuse('instance_deleted', 'instance %s is deleted' % uuid, evidence, never=True)
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
            if not row['host']:
                plan.refuse('instance_without_host', 'instance %s has no host: it was never built on a compute '
                            'host; rebuild or delete it instead' % uuid, [self._shown_instance(row)], never=True)
                continue
            selected.append(row)
        return selected

    @staticmethod
    def _shown_instance(row):
        columns = ('id', 'uuid', 'host', 'node', 'compute_id', 'vm_state', 'task_state', 'power_state', 'deleted')
        shown = dict((column, row.get(column)) for column in columns if column in row)
        shown['cell'] = row['cell'].name
        return shown

    # ------------------------------------------------------------- services

    def _services(self, cell, host):
        """The live nova-compute services of ``host`` in ``cell``, each telling whether it is up."""
        return nova.compute_services(cell, [host], self.params['service_down_time'], SERVICE_COLUMNS)

    def _target(self, cell, cells, plan, rows):
        """The target service and compute node in ``cell``, after its guards; None when refused."""
        cache = self._targets
        if cell.name in cache:
            return cache[cell.name]
        cache[cell.name] = None
        host = self.target_host
        services = self._services(cell, host)
        if not services:
            elsewhere = []
            for other in cells:
                if other.name != cell.name and not other.is_cell0:
                    elsewhere.extend(self._services(other, host))
            instances = ', '.join(row['uuid'] for row in rows)
            if elsewhere:
                plan.refuse('target_in_other_cell', 'target host %s is in cell %s, instance(s) %s in %s; Nova '
                            'cannot move an instance between cells this way'
                            % (host, elsewhere[0]['cell'], instances, cell.name),
                            elsewhere + [self._shown_instance(row) for row in rows], never=True)
            else:
                deleted = cell.session.query('SELECT %s FROM services WHERE host = %%s AND deleted != 0 ORDER BY id'
                                             % ', '.join('`%s`' % column for column in SERVICE_COLUMNS), (host,))
                evidence = [dict(row, cell=cell.name) for row in deleted] or [
                    dict(host=host, binary='nova-compute', cell=cell.name, live_service_rows=0)]
                plan.refuse('target_service_missing', 'no live nova-compute service for target host %s in %s'
                            % (host, cell.name), evidence, never=True)
            return None
        service = services[0]
        if 'nova_api_db' in self.targets and cell.uuid:
            mapping = self.session('nova_api_db').query(
                'SELECT h.id, h.host, h.cell_id, c.uuid AS cell_uuid, c.name AS cell_name FROM host_mappings h '
                'LEFT JOIN cell_mappings c ON c.id = h.cell_id WHERE h.host = %s', (host,))
            if mapping and mapping[0]['cell_uuid'] != cell.uuid:
                plan.refuse('target_in_other_cell', 'target host %s is mapped to cell %s, but its instance(s) '
                            'are in %s' % (host, mapping[0]['cell_name'] or mapping[0]['cell_uuid'], cell.name),
                            mapping + [service], never=True)
                return None
            if not mapping:
                plan.refuse('target_not_mapped', 'target host %s has no host_mappings row (run nova-manage cell_v2 '
                            'discover_hosts); Nova cannot schedule or evacuate to it' % host, [service])
        elif 'nova_api_db' not in self.targets:
            plan.blind('target_not_mapped', 'nova_api_db', 'nothing shows that target host %s has a host_mappings row '
                       '(without one Nova cannot schedule or evacuate to it, nor find its cell)' % host)
        where, params = 'host = %s AND deleted = 0', [host]
        if self.target_node:
            where += ' AND hypervisor_hostname = %s'
            params.append(self.target_node)
        nodes = cell.session.query('SELECT id, uuid, host, hypervisor_hostname, service_id, deleted FROM compute_nodes '
                                   'WHERE %s ORDER BY id' % where, params)
        if not nodes:
            others = cell.session.query('SELECT id, uuid, host, hypervisor_hostname, service_id, deleted '
                                        'FROM compute_nodes WHERE host = %s ORDER BY id', (host,))
            plan.refuse('target_compute_node_missing', 'target host %s has no live compute node%s in %s'
                        % (host, ' named %s' % self.target_node if self.target_node else '', cell.name),
                        [dict(row, cell=cell.name) for row in others] or [service], never=True)
            return None
        if len(nodes) > 1:
            plan.refuse('target_node_ambiguous', 'target host %s has %d compute nodes; give node'
                        % (host, len(nodes)), [dict(row, cell=cell.name) for row in nodes], never=True)
            return None
        if service['disabled']:
            plan.refuse('target_service_disabled', 'the nova-compute service of target host %s is disabled (%s)'
                        % (host, service['disabled_reason'] or 'no reason given'), [service])
        if not service['up']:
            plan.refuse('target_service_down', 'the nova-compute service of target host %s is %s' % (
                host, 'forced down' if service['forced_down'] else 'down (last report %s s ago, service_down_time %s)'
                % (service['seconds_since_report'], self.params['service_down_time'])), [service])
        cache[cell.name] = dict(service=service, node=nodes[0])
        return cache[cell.name]

    def _check_sources(self, cell, rows, plan):
        for host in sorted(set(row['host'] for row in rows)):
            services = self._services(cell, host)
            if not services:
                plan.note('source host %s has no live nova-compute service in %s' % (host, cell.name))
                continue
            service = services[0]
            if service['up']:
                plan.refuse('source_service_up', 'the nova-compute service of source host %s is up (last report %s s '
                            'ago, service_down_time %s): make sure the host is dead and fenced, or force it down '
                            'first' % (host, service['seconds_since_report'], self.params['service_down_time']),
                            [service])

    # ---------------------------------------------------------- cell rows

    def _plan_cell(self, cell, rows, plan, stamp):
        uuids = [row['uuid'] for row in rows]
        schema = self.schema(cell.name, 'nova')
        has_compute_id = schema.has('instances', 'compute_id')
        extras = cell.session.select_in('SELECT id, instance_uuid, migration_context, numa_topology, deleted, updated_at '
                                        'FROM instance_extra WHERE instance_uuid IN ({in}) AND deleted = 0 ORDER BY id',
                                        uuids)
        finished = list(FINISHED_MIGRATION_STATUSES)
        migrations = cell.session.select_in(
            'SELECT id, uuid, instance_uuid, status, migration_type, source_compute, source_node, dest_compute, '
            'dest_node, deleted, updated_at FROM migrations WHERE instance_uuid IN ({in}) AND deleted = 0 '
            'AND status NOT IN (%s) ORDER BY id' % placeholders(len(finished)), uuids, after=finished)
        self._guard_host_bound(cell, rows, extras, plan)
        by_uuid = dict((row['uuid'], row) for row in rows)
        for row in rows:
            node = row['target']['node']
            before = dict(host=row['host'], node=row['node'], task_state=row['task_state'], updated_at=row['updated_at'])
            after = dict(host=self.target_host, node=node['hypervisor_hostname'], task_state=None, updated_at=stamp)
            if has_compute_id:
                before['compute_id'] = row['compute_id']
                after['compute_id'] = node['id']
            plan.change(cell.name, 'instances', {'id': row['id']}, before=before, after=after,
                        expect=dict(uuid=row['uuid'], deleted=0, vm_state=row['vm_state']),
                        note='the instance now lives on the target compute node; no task is in progress')
            row['migrations'] = [migration for migration in migrations if migration['instance_uuid'] == row['uuid']]
            if row['task_state']:
                plan.warn('instance %s was in task_state %s, now cleared' % (row['uuid'], row['task_state']))
        for extra in extras:
            if extra['migration_context'] is not None:
                plan.change(cell.name, 'instance_extra', {'id': extra['id']},
                            before=dict(migration_context=extra['migration_context'], updated_at=extra['updated_at']),
                            after=dict(migration_context=None, updated_at=stamp),
                            expect=dict(instance_uuid=extra['instance_uuid'], deleted=0),
                            note='the migration context of an abandoned move')
        for migration in migrations:
            plan.change(cell.name, 'migrations', {'id': migration['id']},
                        before=dict(status=migration['status'], updated_at=migration['updated_at']),
                        after=dict(status='error', updated_at=stamp),
                        expect=dict(instance_uuid=migration['instance_uuid'], deleted=0),
                        note='an unfinished migration of a moved instance is abandoned')
            by_uuid[migration['instance_uuid']].setdefault('abandoned', []).append(migration)
        self._read_nodes(cell, rows)

    def _guard_host_bound(self, cell, rows, extras, plan):
        uuids = [row['uuid'] for row in rows]
        evidence = []
        # Required, not probed: an account without SELECT on it would otherwise skip this guard silently.
        self.schema(cell.name, 'nova').require('pci_devices', ('instance_uuid', 'deleted'),
                                               purpose='refuse instances bound to their host by PCI devices')
        for device in cell.session.select_in('SELECT id, compute_node_id, address, dev_type, status, instance_uuid '
                                             'FROM pci_devices WHERE instance_uuid IN ({in}) AND deleted = 0 ORDER BY id',
                                             uuids):
            evidence.append(dict(device, kind='pci_device', cell=cell.name))
        for extra in extras:
            if extra['numa_topology'] is not None:
                evidence.append(dict(kind='numa_topology', instance_uuid=extra['instance_uuid'], cell=cell.name,
                                     instance_extra_id=extra['id']))
        for instance_uuid in sorted(set(row['instance_uuid'] for row in evidence)):
            plan.refuse('host_bound_resources', 'instance %s uses resources bound to its source host (PCI devices or '
                        'NUMA pinning); moving its record does not move them'
                        % instance_uuid, [row for row in evidence if row['instance_uuid'] == instance_uuid])

    def _read_nodes(self, cell, rows):
        """The compute node (live first, else newest) of each instance's host/node and of its abandoned migrations."""
        hosts = set(row['host'] for row in rows)
        for row in rows:
            for migration in row.get('abandoned', []):
                hosts.update(host for host in (migration['source_compute'], migration['dest_compute']) if host)
        nodes = {}
        for node in cell.session.select_in('SELECT id, uuid, host, hypervisor_hostname, deleted FROM compute_nodes '
                                           'WHERE host IN ({in}) ORDER BY deleted = 0, id', sorted(hosts)):
            # Later rows win: the live row is read last (a host's rows come in one chunk).
            nodes[(node['host'], node['hypervisor_hostname'])] = node
        for row in rows:
            row['source_node'] = nodes.get((row['host'], row['node']))
            row['abandoned_nodes'] = []
            for migration in row.get('abandoned', []):
                for key in ((migration['source_compute'], migration['source_node']),
                            (migration['dest_compute'], migration['dest_node'])):
                    if nodes.get(key):
                        row['abandoned_nodes'].append(nodes[key])

    # ------------------------------------------------------------ placement

    def _plan_placement(self, rows, plan, stamp):
        session = self.session(PLACEMENT)
        placement.require_schema(self.schema(PLACEMENT, 'placement'), 'move the allocations of the instances')
        uuids = set()
        for row in rows:
            uuids.add(row['target']['node']['uuid'])
            if row['source_node']:
                uuids.add(row['source_node']['uuid'])
            uuids.update(node['uuid'] for node in row['abandoned_nodes'])
        providers = placement.providers_by_uuid(session, uuids)
        consumers = [row['uuid'] for row in rows]
        migration_uuids = dict((row['uuid'], set(m['uuid'] for m in row.get('abandoned', []) if m['uuid']))
                               for row in rows)
        for values in migration_uuids.values():
            consumers.extend(values)
        allocations = placement.allocations_of(session, consumers)
        existing_consumers = placement.consumers_by_uuid(session, [row['uuid'] for row in rows])
        mover = placement.AllocationMove(PLACEMENT, session, stamp)
        for row in rows:
            target_node = row['target']['node']
            target = providers.get(target_node['uuid'])
            if target is None:
                plan.refuse('target_provider_missing', 'the target compute node %s (%s) has no resource provider '
                            'in placement: its nova-compute never registered it'
                            % (target_node['hypervisor_hostname'], target_node['uuid']),
                            [dict(target_node, cell=row['cell'].name)], never=True)
                continue
            own = set([row['uuid']]) | migration_uuids[row['uuid']]
            mine = [allocation for allocation in allocations if allocation['consumer_id'] in own]
            source = providers.get(row['source_node']['uuid']) if row['source_node'] else None
            if source is None:
                source = dict(id=None)
                plan.warn('the source compute node of instance %s (%s/%s) has no resource provider: run nova-manage '
                          'placement heal_allocations --force --instance %s after the move'
                          % (row['uuid'], row['host'], row['node'], row['uuid']))
            nested = [allocation for allocation in mine if allocation['consumer_id'] == row['uuid']
                      and source['id'] is not None and allocation['root_provider_id'] == source['id']
                      and allocation['resource_provider_id'] != source['id']]
            if nested:
                plan.refuse('host_bound_resources', 'instance %s has allocations on nested resource providers of its '
                            'source compute node (devices of that host); they are left there'
                            % row['uuid'], [placement.shown_allocation(allocation) for allocation in nested])
            abandoned = set(providers[node['uuid']]['id'] for node in row['abandoned_nodes'] if node['uuid'] in providers)
            abandoned.discard(source['id'])
            moved, dropped, kept = mover.move(row['uuid'], source, target, mine, migration_uuids[row['uuid']], abandoned,
                                              instance_consumer_exists=row['uuid'] in existing_consumers)
            if kept:
                plan.warn('instance %s has no placement consumer, so the hold of its abandoned migration on the source '
                          'was left; run nova-manage placement heal_allocations --force --instance %s'
                          % (row['uuid'], row['uuid']))
            if not moved and not [a for a in mine if a['consumer_id'] == row['uuid']
                                  and a['resource_provider_id'] == target['id']]:
                plan.warn('instance %s holds no allocation on its source compute node provider to move: run nova-manage '
                          'placement heal_allocations --force --instance %s' % (row['uuid'], row['uuid']))
        for change in mover.finish():
            plan.change(PLACEMENT, change['table'], change['key'], action=change.get('action', 'update'),
                        before=change['before'], after=change.get('after'), expect=change.get('expect'),
                        note=change['note'])

    # --------------------------------------------------------------- cinder

    def _plan_cinder(self, rows, plan, stamp):
        session = self.session(CINDER)
        self.schema(CINDER, 'cinder').require('volume_attachment', ('id', 'volume_id', 'instance_uuid', 'attached_host',
                                                                    'attach_status', 'deleted', 'updated_at'),
                                              purpose="update the attachments' attached_host")
        source_of = dict((row['uuid'], row['host']) for row in rows)
        attachments = session.select_in('SELECT id, volume_id, instance_uuid, attached_host, attach_status, deleted, '
                                        'updated_at FROM volume_attachment WHERE instance_uuid IN ({in}) AND deleted = 0 '
                                        'ORDER BY id', sorted(source_of))
        for attachment in attachments:
            if attachment['attached_host'] != source_of[attachment['instance_uuid']]:
                if attachment['attached_host'] != self.target_host:
                    plan.note('attachment %s of instance %s names host %s, not the source; left alone'
                              % (attachment['id'], attachment['instance_uuid'], attachment['attached_host']))
                continue
            plan.change(CINDER, 'volume_attachment', {'id': attachment['id']},
                        before=dict(attached_host=attachment['attached_host'], updated_at=attachment['updated_at']),
                        after=dict(attached_host=self.target_host, updated_at=stamp),
                        expect=dict(instance_uuid=attachment['instance_uuid'], volume_id=attachment['volume_id'],
                                    deleted=0),
                        note='the attachment now serves the target host')

    def _warn_followups(self, rows, plan):
        moved = ', '.join(row['uuid'] for row in rows)
        sources = ', '.join(sorted(set(row['host'] for row in rows)))
        plan.warn('hard reboot (or start) the moved instance(s) %s: their guests are created on %s only then, from '
                  'disks on shared storage or volumes' % (moved, self.target_host))
        plan.warn('bind the Neutron ports of %s to %s (openstack port set --host %s PORT); Nova does not heal '
                  'binding:host_id by default' % (moved, self.target_host, self.target_host))
        plan.warn('keep nova-compute on %s from starting the old guests: no evacuation record tells it to destroy them, '
                  'and two hosts could run one disk. Force the service down and disable it' % sources)
        bdms = []
        cells = []
        for row in rows:
            if row['cell'] not in cells:
                cells.append(row['cell'])
        for cell in cells:
            bdms.extend(cell.session.select_in("SELECT instance_uuid, volume_id FROM block_device_mapping WHERE "
                                               "instance_uuid IN ({in}) AND deleted = 0 AND destination_type = 'volume' "
                                               "ORDER BY id", [row['uuid'] for row in rows if row['cell'] is cell]))
        if bdms:
            plan.warn('refresh the volume connections on the target: nova-manage volume_attachment refresh for %s'
                      % ', '.join('%s %s' % (bdm['instance_uuid'], bdm['volume_id']) for bdm in bdms))
        if bdms and CINDER not in self.targets:
            plan.warn("Cinder was not given (cinder_db): the attachments' attached_host still names %s" % sources)

    # ================================================================ API path

    def plan_api(self):
        if self.target_node:
            raise ApiUnsuitable("Nova's evacuation picks the target's compute node itself, so node is honoured only "
                                "by the database path")
        plan = Plan()
        compute = self.conn.compute
        microversion = MICROVERSION_STOPPED if self.params['target_state'] == 'stopped' else MICROVERSION_KEEP
        if not api.openstack.utils.supports_microversion(compute, microversion):
            raise ApiUnsuitable('the Compute API of this cloud does not offer microversion %s' % microversion)
        target = self._api_service(self.target_host)
        if target is None:
            known = [dict(host=service.host, status=service.status, state=service.state)
                     for service in compute.services(binary='nova-compute')]
            plan.refuse('target_service_missing', 'the Compute API knows no nova-compute service on target host %s'
                        % self.target_host, known or [dict(host=self.target_host, services_found=0)], never=True)
            plan.stop_if_never_overridden()
        shown_target = self._shown_api_service(target)
        if target.status == 'disabled':
            plan.refuse('target_service_disabled', 'the nova-compute service of target host %s is disabled (%s)'
                        % (self.target_host, target.disabled_reason or 'no reason given'), [shown_target])
        if target.state != 'up' or target.is_forced_down:
            plan.refuse('target_service_down', 'the nova-compute service of target host %s is %s'
                        % (self.target_host, 'forced down' if target.is_forced_down else 'down'), [shown_target])
        servers = self._api_servers()
        by_source = {}
        for server in servers:
            shown = self._shown_server(server)
            if not server.compute_host:
                plan.refuse('instance_without_host', 'instance %s has no host: it was never scheduled (cell0) or '
                            'never built; rebuild or delete it instead' % server.id, [shown], never=True)
                continue
            if server.compute_host == self.target_host:
                plan.note('instance %s is already on host %s' % (server.id, self.target_host))
                continue
            if server.task_state:
                raise ApiUnsuitable('instance %s has task_state %s; Nova evacuates only instances with no task in '
                                    'progress' % (server.id, server.task_state))
            if server.vm_state not in EVACUABLE_VM_STATES:
                raise ApiUnsuitable('instance %s is %s; Nova evacuates only active, stopped or error instances'
                                    % (server.id, server.vm_state))
            by_source.setdefault(server.compute_host, []).append(server)
        plan.stop_if_never_overridden()
        if by_source and 'nova_api_db' in self.targets:
            self._api_same_cell(by_source, plan)
            plan.stop_if_never_overridden()
        for source_host in sorted(by_source):
            self._plan_api_source(plan, source_host, by_source[source_host], microversion)
        if not by_source and not plan.notes:
            plan.note('no instance on host %s' % self.from_host if self.from_host else 'no instance selected')
        return plan

    def _api_service(self, host):
        for service in self.conn.compute.services(binary='nova-compute', host=host):
            if service.host == host:
                return service
        return None

    @staticmethod
    def _shown_api_service(service):
        return dict(id=service.id, host=service.host, binary=service.binary, status=service.status, state=service.state,
                    forced_down=service.is_forced_down, disabled_reason=service.disabled_reason,
                    updated_at=service.updated_at)

    @staticmethod
    def _shown_server(server):
        return dict(id=server.id, status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                    power_state=server.power_state, host=server.compute_host, node=server.hypervisor_hostname)

    def _api_servers(self):
        compute = self.conn.compute
        if self.from_host:
            return list(compute.servers(details=True, all_projects=True, compute_host=self.from_host))
        servers = []
        for instance_id in self.instance_ids:
            try:
                servers.append(compute.get_server(instance_id))
            except Exception as error:
                if getattr(error, 'status_code', None) == 404:
                    raise InputError('instance %s not found through the Compute API (deleted?)' % instance_id)
                raise api.translate(error, 'reading instance %s' % instance_id)
        return servers

    def _api_same_cell(self, by_source, plan):
        session = self.session('nova_api_db')
        hosts = sorted(by_source) + [self.target_host]
        mappings = dict((row['host'], row) for row in session.select_in(
            'SELECT h.host, h.cell_id, c.name AS cell_name FROM host_mappings h LEFT JOIN cell_mappings c '
            'ON c.id = h.cell_id WHERE h.host IN ({in})', hosts))
        target = mappings.get(self.target_host)
        for source_host in sorted(by_source):
            source = mappings.get(source_host)
            if target and source and source['cell_id'] != target['cell_id']:
                message = 'source host %s is in cell %s, target host %s in %s; Nova cannot evacuate between cells' % (
                    source_host, source['cell_name'], self.target_host, target['cell_name'])
                plan.refuse('target_in_other_cell', message, [source, target], never=True)

    def _plan_api_source(self, plan, source_host, servers, microversion):
        service = self._api_service(source_host)
        if service is None:
            raise ApiUnsuitable('the Compute API knows no nova-compute service on source host %s' % source_host)
        shown = self._shown_api_service(service)
        if service.state == 'up' and not service.is_forced_down:
            plan.refuse('source_service_up', 'the nova-compute service of source host %s is up: make sure the host is '
                        'dead and fenced before evacuating from it' % source_host, [shown])
        if not service.is_forced_down or service.status != 'disabled':
            body = dict(forced_down=True, status='disabled',
                        disabled_reason='stackmender: instances evacuated to %s' % self.target_host)
            plan.call('compute', 'PUT /os-services/%s' % service.id, body,
                      (lambda service_id=service.id, body=body: self._put_service(service_id, body)),
                      microversion=MICROVERSION_SERVICE_UPDATE, resource='os-services/%s' % source_host,
                      note='fence the source in Nova: forced down, so Nova accepts the evacuation at once, and '
                           'disabled, so nothing is scheduled there',
                      before=dict(forced_down=service.is_forced_down, status=service.status),
                      after=dict(forced_down=True, status='disabled'))
        for server in servers:
            stopped = microversion == MICROVERSION_STOPPED or server.vm_state == 'stopped'
            status, power_state = ('SHUTOFF', 4) if stopped else ('ACTIVE', 1)
            body = {'evacuate': {'host': self.target_host}}
            plan.call('compute', 'POST /servers/%s/action evacuate' % server.id, body['evacuate'],
                      (lambda server_id=server.id, body=body: self._post_evacuate(server_id, body, microversion)),
                      microversion=microversion, resource='servers/%s' % server.id,
                      note='Nova rebuilds the instance on %s; at microversion %s it ends %s (power state %d, %s)'
                           % (self.target_host, microversion, status, power_state, POWER_STATES[power_state]),
                      before=dict(host=source_host, status=server.status, power_state=server.power_state),
                      after=dict(host=self.target_host, status=status, power_state=power_state))
            self.evacuations.append(dict(instance=server.id, from_host=source_host, to_host=self.target_host,
                                         microversion=microversion, expected_status=status,
                                         expected_power_state=power_state))
        self._source_services.append(source_host)

    def _put_service(self, service_id, body):
        response = self.conn.compute.put('/os-services/%s' % service_id, json=body,
                                         microversion=MICROVERSION_SERVICE_UPDATE)
        api.openstack.exceptions.raise_from_response(response)

    def _post_evacuate(self, server_id, body, microversion):
        response = self.conn.compute.post('/servers/%s/action' % server_id, json=body, microversion=microversion)
        api.openstack.exceptions.raise_from_response(response)

    def verify_api(self, plan):
        for host in self._source_services:
            service = self._api_service(host)
            if service is None or not service.is_forced_down or service.status != 'disabled':
                raise ApiError('the nova-compute service of %s is not forced down and disabled after the update; '
                               'nothing was evacuated? check the Compute API' % host,
                               service=self._shown_api_service(service) if service else None)
        compute = self.conn.compute
        deadline = time.time() + self.params['wait_timeout']
        pending = list(self.evacuations)
        while pending:
            for entry in list(pending):
                try:
                    server = compute.get_server(entry['instance'])
                except Exception as error:
                    raise api.translate(error, 'reading back instance %s' % entry['instance'])
                if server.status == 'ERROR' and not server.task_state:
                    raise ApiError('the evacuation of instance %s to %s failed: the instance is in ERROR%s'
                                   % (entry['instance'], self.target_host,
                                      ' (%s)' % server.fault.get('message') if getattr(server, 'fault', None) else ''),
                                   server=self._shown_server(server), evacuations=self.evacuations)
                if server.task_state is None and server.compute_host == self.target_host \
                        and server.status in ('ACTIVE', 'SHUTOFF'):
                    entry.update(status=server.status, power_state=server.power_state,
                                 power_state_name=POWER_STATES.get(server.power_state, 'unknown'),
                                 host=server.compute_host, node=server.hypervisor_hostname)
                    pending.remove(entry)
            if not pending:
                break
            if time.time() > deadline:
                raise ApiError('%d evacuation(s) did not finish within wait_timeout (%s s): %s. Nova keeps working '
                               'on them; re-run to wait again' % (len(pending), self.params['wait_timeout'],
                                                                  ', '.join(entry['instance'] for entry in pending)),
                               evacuations=self.evacuations)
            time.sleep(POLL_SECONDS)
        for entry in self.evacuations:
            if entry['status'] != entry['expected_status']:
                plan.warn('instance %s ended %s on %s, not %s as microversion %s implies'
                          % (entry['instance'], entry['status'], self.target_host, entry['expected_status'],
                             entry['microversion']))


def main():
    NovaInstanceHost().run()


if __name__ == '__main__':
    main()
