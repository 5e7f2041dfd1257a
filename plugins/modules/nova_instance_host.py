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
  - The API path reads the source service back after its update, to check that it is forced down and
    disabled, before any evacuation. With O(wait) it then waits until each instance is on the target with
    no task in progress, for at most O(timeout) seconds for all of them. The evacuations run side by side,
    but each rebuilds a guest, so give more than the default for many instances or large images (for example
    600 for a batch of five).
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
  - stackmender.openstack.wait
  - stackmender.openstack.attributes
requirements:
  - openstacksdk >= 1.0.0 (for the API path)
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
    timeout: 900
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
      C(expected_power_state) it gives, and after applying (with O(wait)) the C(status), C(power_state)
      (Nova's number), C(power_state_name), C(host) and C(node) the instance ended with.
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

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.services import evacuation
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    ApiUnsuitable,
    RemediationModule,
    api_or_db,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import host_name, uuid_list
from ansible_collections.stackmender.openstack.plugins.module_utils.services.evacuation import (
    CINDER,
    PLACEMENT,
    add_changes,
    refuse_all,
)


class NovaInstanceHost(RemediationModule):
    module_name = 'stackmender.openstack.nova_instance_host'
    argument_spec = dict(
        instance=dict(type='list', elements='str', aliases=['instances']),
        from_host=dict(type='str'),
        host=dict(type='str', required=True),
        node=dict(type='str'),
        service_down_time=dict(type='int', default=60),
        target_state=dict(type='str', default='keep', choices=['keep', 'stopped']),
    )
    module_kwargs = dict(required_one_of=[['instance', 'from_host']], mutually_exclusive=[['instance', 'from_host']])
    uses_nova_cells = True
    method_policy = api_or_db('evacuation is how Nova itself moves instances off a dead host, and a cloud is configured')
    waits = True
    pending_what = 'evacuation(s) not finished'

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
        if self.params['service_down_time'] <= 0:
            raise InputError('service_down_time must be a positive number of seconds, not %s'
                             % self.params['service_down_time'])

    def describe(self, plan):
        if plan.calls:
            return '%d instance(s) to evacuate to %s: %d API call(s)' % (
                len(plan.results['evacuations']), self.target_host, len(plan.calls))
        moved = plan.results['instances']
        return '%d instance(s) to move to %s (node %s): %d row change(s)' % (
            len(moved), self.target_host, ', '.join(sorted(set(entry['to_node'] for entry in moved))), len(plan.changes))

    # ============================================================ database path

    def plan_db(self):
        plan = Plan()
        plan.results['instances'] = []
        stamp = now()
        cells = self.nova_cells()
        for cell in cells:
            evacuation.require_nova_schema(self.schema(cell.name, 'nova'))
        by_uuid = evacuation.read_instances(cells, self.instance_ids, self.from_host,
                                            lambda cell, column: self.schema(cell.name, 'nova').has('instances', column))
        instances, findings = evacuation.select_instances(by_uuid)
        refuse_all(plan, findings)
        plan.stop_if_never_overridden()
        if not instances:
            plan.note('no live instance on host %s' % self.from_host if self.from_host else 'no instance selected')
            return plan
        moving = []
        for cell in cells:
            rows = [row for row in instances if row['cell'] == cell.name]
            if rows:
                moving.extend(self._rows_with_target(cell, cells, rows, plan))
        plan.stop_if_never_overridden()
        if not moving:
            return plan
        for cell in cells:
            rows = [row for row in moving if row['cell'] == cell.name]
            if rows:
                self._plan_cell(cell, rows, plan, stamp)
        if PLACEMENT in self.targets:
            self._plan_placement(moving, plan, stamp)
        else:
            plan.warn('placement was not given (placement_db): the allocations of the moved instance(s) stay on the '
                      'source compute node; run nova-manage placement heal_allocations --force --instance UUID for '
                      'each of %s' % ', '.join(row['uuid'] for row in moving))
        plan.stop_if_never_overridden()
        if CINDER in self.targets:
            self.schema(CINDER, 'cinder').require('volume_attachment', ('id', 'volume_id', 'instance_uuid', 'attached_host',
                                                                        'attach_status', 'deleted', 'updated_at'),
                                                  purpose="update the attachments' attached_host")
            attachments = evacuation.read_attachments(self.session(CINDER), [row['uuid'] for row in moving])
            changes, notes = evacuation.attachment_changes(attachments, dict((row['uuid'], row['host']) for row in moving),
                                                           self.target_host, stamp)
            add_changes(plan, changes)
            for note in notes:
                plan.note(note)
        bdms = []
        for cell in cells:
            uuids = [row['uuid'] for row in moving if row['cell'] == cell.name]
            if uuids:
                bdms.extend(evacuation.read_volume_bdms(cell, uuids))
        for warning in evacuation.followup_warnings(moving, self.target_host, bdms, CINDER in self.targets):
            plan.warn(warning)
        plan.results['instances'] = evacuation.moved_instances(moving, self.target_host)
        return plan

    def _rows_with_target(self, cell, cells, rows, plan):
        """The rows of ``cell`` that move, each with its ``target``, after the target's guards."""
        api_session = self.session('nova_api_db') if 'nova_api_db' in self.targets and cell.uuid else None
        facts = evacuation.read_target(cell, cells, self.target_host, self.target_node, self.params['service_down_time'],
                                       api_session)
        target, findings, blind = evacuation.check_target(facts, rows, self.target_host, self.target_node, cell.name,
                                                          cell.uuid, self.params['service_down_time'])
        refuse_all(plan, findings)
        if blind and 'nova_api_db' not in self.targets:
            plan.blind('target_not_mapped', 'nova_api_db', blind)
        if target is None:
            return []
        moving = []
        for row in rows:
            if row['host'] == self.target_host and row['node'] == target['node']['hypervisor_hostname']:
                plan.note('instance %s is already on host %s (node %s)' % (row['uuid'], row['host'], row['node']))
                continue
            row['target'] = target
            moving.append(row)
        return moving

    def _plan_cell(self, cell, rows, plan, stamp):
        hosts = [row['host'] for row in rows]
        services = nova.compute_services(cell, sorted(set(hosts)), self.params['service_down_time'],
                                         evacuation.SERVICE_COLUMNS)
        findings, notes = evacuation.check_sources(services, hosts, cell.name, self.params['service_down_time'])
        refuse_all(plan, findings)
        for note in notes:
            plan.note(note)
        evacuation.require_pci_devices(self.schema(cell.name, 'nova'))
        read = evacuation.read_cell(cell, [row['uuid'] for row in rows])
        refuse_all(plan, evacuation.host_bound_findings(cell.name, read['devices'], read['extras']))
        changes, warnings = evacuation.cell_changes(rows, read['extras'], read['migrations'], self.target_host,
                                                    self.schema(cell.name, 'nova').has('instances', 'compute_id'), stamp)
        add_changes(plan, changes)
        for warning in warnings:
            plan.warn(warning)
        nodes = evacuation.read_nodes(cell, evacuation.node_hosts(rows, read['migrations']))
        evacuation.attach_nodes(rows, read['migrations'], nodes)

    def _plan_placement(self, rows, plan, stamp):
        session = self.session(PLACEMENT)
        placement.require_schema(self.schema(PLACEMENT, 'placement'), 'move the allocations of the instances')
        providers = placement.providers_by_uuid(session, evacuation.provider_uuids(rows))
        consumers = [row['uuid'] for row in rows]
        for uuids in evacuation.migration_consumers(rows).values():
            consumers.extend(uuids)
        mover = placement.AllocationMove(PLACEMENT, session, stamp)
        findings, warnings = evacuation.plan_allocation_moves(
            rows, providers, placement.allocations_of(session, consumers),
            placement.consumers_by_uuid(session, [row['uuid'] for row in rows]), mover)
        refuse_all(plan, findings)
        for warning in warnings:
            plan.warn(warning)
        add_changes(plan, [dict(planned, database=PLACEMENT) for planned in mover.finish()])

    # ================================================================ API path

    def plan_api(self):
        if self.target_node:
            raise ApiUnsuitable("Nova's evacuation picks the target's compute node itself, so node is honoured only "
                                "by the database path")
        plan = Plan()
        plan.results['evacuations'] = []
        stopped = self.params['target_state'] == 'stopped'
        microversion = evacuation.MICROVERSION_STOPPED if stopped else evacuation.MICROVERSION_KEEP
        if not api.openstack.utils.supports_microversion(self.conn.compute, microversion):
            raise ApiUnsuitable('the Compute API of this cloud does not offer microversion %s' % microversion)
        target = evacuation.api_service(self.conn, self.target_host)
        known = evacuation.api_known_services(self.conn) if target is None else ()
        refuse_all(plan, evacuation.target_service_findings(target, self.target_host, known))
        plan.stop_if_never_overridden()
        servers = evacuation.api_servers(self.conn, self.from_host, self.instance_ids)
        by_source, findings, notes = evacuation.sort_servers(servers, self.target_host)
        refuse_all(plan, findings)
        for note in notes:
            plan.note(note)
        plan.stop_if_never_overridden()
        if by_source and 'nova_api_db' in self.targets:
            mappings = evacuation.api_host_cells(self.session('nova_api_db'), list(by_source) + [self.target_host])
            refuse_all(plan, evacuation.cell_findings(by_source, self.target_host, mappings))
            plan.stop_if_never_overridden()
        for source_host in sorted(by_source):
            self._plan_api_source(plan, source_host, by_source[source_host], microversion)
        if not by_source and not plan.notes:
            plan.note('no instance on host %s' % self.from_host if self.from_host else 'no instance selected')
        return plan

    def _plan_api_source(self, plan, source_host, servers, microversion):
        service = evacuation.api_service(self.conn, source_host)
        if service is None:
            raise ApiUnsuitable('the Compute API knows no nova-compute service on source host %s' % source_host)
        refuse_all(plan, evacuation.source_service_findings(service, source_host))
        if evacuation.needs_fencing(service):
            body = dict(forced_down=True, status='disabled',
                        disabled_reason='stackmender: instances evacuated to %s' % self.target_host)
            plan.call('compute', 'PUT /os-services/%s' % service['id'], body,
                      (lambda service_id=service['id'], body=body:
                       evacuation.put_service(self.conn, service_id, source_host, body)),
                      microversion=evacuation.MICROVERSION_SERVICE_UPDATE, resource='os-services/%s' % source_host,
                      note='fence the source in Nova: forced down, so Nova accepts the evacuation at once, and '
                           'disabled, so nothing is scheduled there',
                      before=dict(forced_down=service['forced_down'], status=service['status']),
                      after=dict(forced_down=True, status='disabled'))
        for server in servers:
            entry = evacuation.evacuation_entry(server, source_host, self.target_host, microversion)
            status, power_state = entry['expected_status'], entry['expected_power_state']
            body = {'evacuate': {'host': self.target_host}}
            plan.call('compute', 'POST /servers/%s/action evacuate' % server['id'], body['evacuate'],
                      (lambda server_id=server['id'], body=body:
                       evacuation.post_evacuate(self.conn, server_id, body, microversion)),
                      microversion=microversion, resource='servers/%s' % server['id'],
                      note='Nova rebuilds the instance on %s; at microversion %s it ends %s (power state %d, %s)'
                           % (self.target_host, microversion, status, power_state, evacuation.POWER_STATES[power_state]),
                      before=dict(host=source_host, status=server['status'], power_state=server['power_state']),
                      after=dict(host=self.target_host, status=status, power_state=power_state))
            plan.results['evacuations'].append(entry)

    def api_pending(self, plan):
        pending, warnings = evacuation.pending_evacuations(
            plan.results['evacuations'], lambda uuid: evacuation.api_server(self.conn, uuid), self.target_host)
        for warning in warnings:
            plan.warn(warning)
        return pending


def main():
    NovaInstanceHost().run()


if __name__ == '__main__':
    main()
