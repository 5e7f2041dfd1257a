#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nova_network_info_cache
short_description: Repair Nova network info caches a failed move left with a failed binding
version_added: 0.1.0
description:
  - Finds and rewrites the VIFs of Nova's network info cache (C(instance_info_caches.network_info)) that a
    failed live migration or evacuation left behind, for one or many instances, or every instance of a
    compute host.
  - A VIF is repaired when its C(type) is C(binding_failed) or C(unbound), when its C(profile) still holds
    C(migrating_to), or when it has no C(network). The last one makes C(GET /servers/detail) and
    C(GET /servers/{id}) answer 500, because Nova's API reads the network label of every cached VIF.
    A VIF whose binding failed makes nova-compute set the instance to C(ERROR) when it starts.
  - Nova has no API that writes the cache, and its own refresh (the C(network-changed) external event, or
    the C(_heal_instance_info_cache) periodic task, off by default since 2025.1) needs the instance's
    C(nova-compute) to run. So the module writes the cache row in the cell database (O(method) is
    V(auto) or V(db); V(api) is refused), in one transaction with a journal of before-images that
    M(stackmender.openstack.journal_undo) can revert.
  - O(binding_from) says where the binding comes from.
  - With O(binding_from=neutron) (or V(auto) without O(vif_type), when a cloud is configured) the module
    reads the instance's ports (C(GET /v2.0/ports?device_id=UUID)) and copies each port's
    C(binding:vif_type), C(binding:vif_details), C(binding:profile) and C(binding:vnic_type) into its VIF.
    A VIF without a network gets it rebuilt from the port's fixed IPs, network and subnets (floating IPs
    come back with Nova's next refresh).
  - With O(binding_from=options) (or V(auto) with O(vif_type)) the operator gives the binding
    (O(vif_type), O(binding_host), and optionally O(vif_details), O(profile), O(vnic_type)), for when
    Neutron cannot be asked. It is applied to every VIF that needs repair, or to the ports of O(port) only.
  - The plan is computed first; check mode returns it and writes nothing. VIFs that need no repair are
    left alone, so a second run reports no change.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
requirements:
  - openstacksdk >= 1.0.0 (to read the binding from Neutron)
options:
  instance:
    description:
      - UUID of the instance whose cache to repair, or a list of UUIDs.
      - Exactly one of O(instance) and O(host) is required.
    type: list
    elements: str
    aliases: [instances]
    version_added: 0.1.0
  host:
    description:
      - Repair the caches of every live instance whose C(host) is this compute host.
    type: str
    version_added: 0.1.0
  binding_from:
    description:
      - Where the binding written into the cache comes from.
      - V(neutron) reads it from the instance's Neutron ports, through the cloud (O(cloud), or the
        environment's C(OS_CLOUD)/C(clouds.yaml)).
      - V(options) takes it from O(vif_type), O(binding_host) and the options that go with them, for when
        Neutron cannot be asked.
      - V(auto) takes the options when O(vif_type) and O(binding_host) are given, else Neutron when a cloud
        is configured, else refuses naming both ways.
    type: str
    choices: [auto, neutron, options]
    default: auto
    version_added: 0.1.0
  port:
    description:
      - Only repair the VIFs of these Neutron port UUIDs. By default every VIF that needs repair is.
    type: list
    elements: str
    aliases: [ports]
    version_added: 0.1.0
  vif_type:
    description:
      - The port's C(binding:vif_type) as Neutron reports it (for example V(ovs)), confirmed by the operator.
        It gives the binding from the options (O(binding_from=options)). It cannot be V(binding_failed) or V(unbound).
    type: str
    version_added: 0.1.0
  binding_host:
    description:
      - The host the port is bound to in Neutron (C(binding:host_id)), confirmed by the operator. Required
        with O(vif_type). The C(port_bound_elsewhere) guard refuses when it is not the instance's host.
    type: str
    version_added: 0.1.0
  vif_details:
    description:
      - The port's C(binding:vif_details) (O(binding_from=options)). Defaults to an empty dict.
    type: dict
    version_added: 0.1.0
  profile:
    description:
      - The port's C(binding:profile) (O(binding_from=options)). Defaults to the cached profile without C(migrating_to).
    type: dict
    version_added: 0.1.0
  vnic_type:
    description:
      - The port's C(binding:vnic_type) (O(binding_from=options)). Defaults to the cached one.
    type: str
    version_added: 0.1.0
notes:
  - The module always needs O(nova_db) (one cell) or O(nova_api_db) (every cell through C(cell_mappings)),
    because the cache is written in the database whatever the binding comes from. O(method=api) is refused,
    as Nova has no API that writes the cache. O(binding_from) chooses where the binding comes from.
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - The instance has a C(task_state), or an unfinished migration. Nova itself may be rewriting the cache.
  - The port is bound to another host than the instance's (C(binding:host_id), or O(binding_host)). Bind
    the port to the instance's host in Neutron first (C(openstack port set --host HOST PORT)).
  - The Neutron port's profile still holds C(migrating_to) (O(binding_from=neutron)). With O(force) the
    cache gets the profile without it.
  - Refusals that O(force) never overrides. The instance does not exist, is deleted, lives in cell0, or has
    no cache row. The cache is not a JSON list of VIFs. With O(binding_from=neutron), a port of the cache
    is not in Neutron, or Neutron's own binding failed (C(binding_failed) or C(unbound)). With
    O(binding_from=options), a VIF has no network, which only Neutron can rebuild.
  - After the repair, hard reboot an instance that nova-compute set to C(ERROR) at start-up; the result's
    warnings name them.
seealso:
  - module: stackmender.openstack.consistency_info
  - module: stackmender.openstack.journal_undo
'''

EXAMPLES = r'''
- name: Show what repairing the caches of compute07's instances from Neutron would do
  stackmender.openstack.nova_network_info_cache:
    host: compute07
    cloud: admin
    nova_api_db:
      config_file: /etc/nova/nova.conf
  check_mode: true
  diff: true

- name: Repair one instance from its Neutron ports
  stackmender.openstack.nova_network_info_cache:
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    cloud: admin
    nova_api_db:
      config_file: /etc/nova/nova.conf
  register: repaired

- name: Neutron is down; write the binding the operator read from the port
  stackmender.openstack.nova_network_info_cache:
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    port: 5d1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b
    binding_from: options
    vif_type: ovs
    binding_host: compute07
    vif_details: {port_filter: true, connectivity: l2, bridge_name: br-int, datapath_type: system}
    nova_api_db: /etc/nova/nova.conf
  register: written

- name: Undo it
  stackmender.openstack.journal_undo:
    journal: "{{ written.journal }}"
    nova_api_db:
      config_file: /etc/nova/nova.conf
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "1 instance cache(s) to rewrite, 1 VIF(s) (binding from Neutron): 1 row change(s), applied"
method:
  description: How the cache was written, always V(db) (Nova has no API that writes it).
  returned: success
  type: str
  sample: db
method_reason:
  description: Why that path, or V(requested).
  returned: success
  type: str
binding_from:
  description: Where the binding came from, V(neutron) (the instances' ports) or V(options) (the operator's).
  returned: success
  type: str
  sample: neutron
plan:
  description: The statements the run executes (or would in check mode), with parameters. The cache row is
    named by the database option that reaches it, C(nova_db) or C(nova:<cell name>).
  returned: success
  type: list
  elements: dict
  sample:
    - kind: sql
      database: "nova:cell1"
      table: instance_info_caches
      action: update
      statement: "UPDATE `instance_info_caches` SET `network_info` = %s, `updated_at` = %s WHERE `id` IN (%s)"
      params: ["[{\"id\": \"5d1c7a3e-...\", ...}]", "2026-11-22 03:04:05", 12]
      rows: 1
before:
  description: Per database option, per C(instance_info_caches/id), the cache text and C(updated_at) as they were.
  returned: success
  type: dict
after:
  description: The same fields after the run (or as they would be, in check mode).
  returned: success
  type: dict
diff:
  description: RV(before) and RV(after) in Ansible's diff format.
  returned: in diff mode, when something changes
  type: dict
journal:
  description: Path of the journal of before-images; V(null) in check mode or when nothing changed.
  returned: success
  type: str
caches:
  description:
    - Per instance whose cache is (or would be) rewritten, its cell and host and each repaired VIF. C(defects)
      lists what was wrong (C(binding_failed), C(unbound), C(migrating_to), C(no_network)); C(before) and
      C(after) show the VIF's binding fields (no addresses).
  returned: success
  type: list
  elements: dict
  sample: [{instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, cell: "nova:cell1", host: compute07,
            vifs: [{port: 5d1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b, defects: [binding_failed, migrating_to],
                    before: {type: binding_failed, profile: {migrating_to: compute08}},
                    after: {type: ovs, profile: {}}}]}]
force:
  description: Whether O(force) was set.
  returned: success
  type: bool
forced_guards:
  description: The guards O(force) overrode, with their evidence.
  returned: when force overrode a guard
  type: list
  elements: dict
guards:
  description: On refusal, each guard that failed, its message and the evidence.
  returned: failure by a guard
  type: list
  elements: dict
  sample:
    - guard: port_bound_elsewhere
      message: "port 5d1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b of instance 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e is bound
        to compute08 in Neutron, the instance is on compute07"
      evidence: [{port: 5d1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b, binding_host: compute08, instance_host: compute07}]
notes:
  description: Instances and VIFs left alone, and why.
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
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import network_info
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    RemediationModule,
    db_only,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import (
    host_name,
    uuid_list,
)

BINDING_OPTIONS = ('vif_type', 'binding_host', 'vif_details', 'profile', 'vnic_type')
FROM_NEUTRON = 'neutron'
FROM_OPTIONS = 'options'


class NovaNetworkInfoCache(RemediationModule):
    module_name = 'stackmender.openstack.nova_network_info_cache'
    argument_spec = dict(
        instance=dict(type='list', elements='str', aliases=['instances']),
        host=dict(type='str'),
        port=dict(type='list', elements='str', aliases=['ports']),
        binding_from=dict(type='str', default='auto', choices=['auto', FROM_NEUTRON, FROM_OPTIONS]),
        vif_type=dict(type='str'),
        binding_host=dict(type='str'),
        vif_details=dict(type='dict'),
        profile=dict(type='dict'),
        vnic_type=dict(type='str'),
    )
    module_kwargs = dict(required_one_of=[['instance', 'host']], mutually_exclusive=[['instance', 'host']],
                         required_together=[['vif_type', 'binding_host']])
    uses_nova_cells = True
    method_policy = db_only('Nova has no API that writes the network info cache')

    def validate(self):
        self.instance_ids = uuid_list(self.params['instance'], 'instance')
        self.host = None
        if self.params['host'] is not None:
            self.host = host_name(self.params['host'], 'host',
                                  'host: give the name of the compute host whose instances to repair')
        self.port_ids = set(uuid_list(self.params['port'], 'port'))
        self.operator_binding = None
        if self.params['vif_type'] is not None:
            vif_type = self.params['vif_type'].strip()
            if not vif_type:
                raise InputError('vif_type: give the binding:vif_type Neutron reports for the port, such as ovs')
            if vif_type in network_info.FAILED_VIF_TYPES:
                raise InputError('vif_type: %s is no binding; give the type of a bound port, such as ovs' % vif_type)
            binding_host = host_name(self.params['binding_host'], 'binding_host',
                                     'binding_host: give the host the port is bound to (binding:host_id)')
            vnic_type = self.params['vnic_type']
            if vnic_type is not None and not vnic_type.strip():
                raise InputError('vnic_type: give the binding:vnic_type, such as normal, or leave it out')
            self.operator_binding = dict(vif_type=vif_type, host=binding_host,
                                         vif_details=self.params['vif_details'] or {},
                                         profile=self.params['profile'], vnic_type=vnic_type, active=True)
        else:
            given = [option for option in BINDING_OPTIONS if self.params[option] is not None]
            if given:
                raise InputError('%s describe the binding for binding_from=options and need vif_type and '
                                 'binding_host' % ', '.join(given))
        self.binding_from = self._binding_source()

    def _binding_source(self):
        """Where the binding comes from: the options when they give it, else Neutron when a cloud is configured."""
        wanted = self.params['binding_from']
        if wanted == FROM_OPTIONS or (wanted == 'auto' and self.operator_binding):
            if not self.operator_binding:
                raise InputError('binding_from=options takes the binding from the options: give vif_type and '
                                 'binding_host (and vif_details, profile or vnic_type where they are not the defaults)')
            return FROM_OPTIONS
        if self.operator_binding:
            raise InputError('binding_from=neutron reads the binding from the Neutron ports: vif_type and binding_host '
                             'are for binding_from=options')
        if wanted == FROM_NEUTRON or (api.HAS_OPENSTACKSDK and api.cloud_configured(self.params.get('cloud'))):
            self.require_openstacksdk()
            return FROM_NEUTRON
        raise InputError('nothing to take the binding from: configure a cloud (binding_from=neutron reads it from '
                         'the instances\' Neutron ports) or give vif_type and binding_host (binding_from=options)')

    def describe(self, plan):
        caches = plan.results['caches']
        vifs = sum(len(entry['vifs']) for entry in caches)
        return '%d instance cache(s) to rewrite, %d VIF(s) (binding from %s): %d row change(s)' % (
            len(caches), vifs, 'Neutron' if self.binding_from == FROM_NEUTRON else 'the options', len(plan.changes))

    # ------------------------------------------------------------------ plan

    def plan_db(self):
        plan = Plan()
        plan.results.update(binding_from=self.binding_from, caches=[])
        stamp = now()
        cells = self.nova_cells()
        for cell in cells:
            schema = self.schema(cell.name, 'nova')
            schema.require('instances', ('id', 'uuid', 'host', 'vm_state', 'task_state', 'deleted'),
                           purpose='select the instances')
            schema.require('instance_info_caches', ('id', 'instance_uuid', 'network_info', 'deleted', 'updated_at'),
                           purpose='rewrite the network info cache')
            schema.require('migrations', ('id', 'instance_uuid', 'status', 'migration_type', 'source_compute',
                                          'dest_compute', 'deleted'), purpose='check for unfinished migrations')
            schema.require('services', ('id', 'host', 'binary', 'deleted'), purpose='check the host name')
        instances = self._select_instances(cells, plan)
        plan.stop_if_never_overridden()
        work = []
        for row in instances:
            vifs = self._read_cache(row, plan)
            if vifs is None:
                continue
            row['vifs'] = vifs
            broken = []
            for vif in vifs:
                defects = network_info.vif_defects(vif)
                if self.port_ids and vif['id'] not in self.port_ids:
                    continue
                if defects:
                    broken.append((vif, defects))
            if not broken:
                plan.note('instance %s: no VIF of its cache needs repair%s' % (
                    row['uuid'], ' among ports %s' % ', '.join(sorted(self.port_ids)) if self.port_ids else ''))
                continue
            row['broken'] = broken
            work.append(row)
        plan.stop_if_never_overridden()
        missing_ports = set(self.port_ids)
        for row in instances:
            for vif in row.get('vifs') or []:
                missing_ports.discard(vif['id'])
        if self.instance_ids and missing_ports:
            raise InputError('port(s) %s are in no cache of the selected instance(s)' % ', '.join(sorted(missing_ports)))
        if not work:
            if not instances:
                if not network_info.compute_host_known(cells, self.host):
                    raise InputError('host: no nova-compute service is named %r in any cell (names are matched '
                                     'exactly)' % self.host)
                plan.note('no live instance on host %s' % self.host)
            return plan
        self._guard_instances(work, plan)
        for row in work:
            if self.binding_from == FROM_NEUTRON:
                self._plan_from_neutron(row, plan)
            else:
                self._plan_from_options(row, plan)
        plan.stop_if_never_overridden()
        for row in work:
            if not row.get('repairs'):
                continue
            repaired = dict((vif['id'], vif) for vif in row['repairs'])
            new_vifs = [repaired.get(vif['id'], vif) for vif in row['vifs']]
            cache = row['cache']
            plan.change(row['cell'].name, 'instance_info_caches', {'id': cache['id']},
                        before=dict(network_info=cache['network_info'], updated_at=cache['updated_at']),
                        after=dict(network_info=network_info.dump_cache(new_vifs), updated_at=stamp),
                        expect=dict(instance_uuid=row['uuid'], deleted=0),
                        note='the cached VIFs carry the port binding %s' % (
                            'Neutron reports' if self.binding_from == FROM_NEUTRON else 'the operator confirmed'))
            plan.results['caches'].append(dict(instance=row['uuid'], cell=row['cell'].name, host=row['host'], vifs=[
                dict(port=vif['id'], defects=defects, before=network_info.summary(vif),
                     after=network_info.summary(repaired[vif['id']]))
                for vif, defects in row['broken'] if vif['id'] in repaired]))
            if row['vm_state'] == 'error':
                plan.warn('instance %s is in ERROR (nova-compute sets it so when it cannot plug a failed binding): '
                          'hard reboot it once the cache is repaired' % row['uuid'])
        return plan

    def _select_instances(self, cells, plan):
        by_uuid = nova.instance_rows(cells, 'id, uuid, host, node, vm_state, task_state, deleted',
                                     uuids=self.instance_ids, host=self.host or None)
        nova.require_instances(self.instance_ids, by_uuid)
        selected = []
        for uuid in sorted(by_uuid, key=lambda item: by_uuid[item][0]['id']):
            rows = by_uuid[uuid]
            live = [row for row in rows if not row['deleted']]
            if not live:
                plan.refuse('instance_deleted', 'instance %s is deleted' % uuid, [self._shown(row) for row in rows], never=True)
                continue
            if len(live) > 1:
                plan.refuse('instance_in_several_cells', 'instance %s has live rows in several cells' % uuid,
                            [self._shown(row) for row in live], never=True)
                continue
            row = live[0]
            if row['cell'].is_cell0:
                plan.refuse('cell0', 'instance %s is in cell0: it was never scheduled and has no ports bound; '
                            'cell0 is never written' % uuid, [self._shown(row)], never=True)
                continue
            selected.append(row)
        return selected

    @staticmethod
    def _shown(row):
        shown = dict((key, row.get(key)) for key in ('id', 'uuid', 'host', 'node', 'vm_state', 'task_state', 'deleted'))
        shown['cell'] = row['cell'].name
        return shown

    def _read_cache(self, row, plan):
        caches = network_info.info_cache_rows(row['cell'].session, row['uuid'])
        if not caches:
            plan.refuse('cache_missing', 'instance %s has no network info cache row: there is nothing to repair '
                        'in place; Nova creates the row with the instance' % row['uuid'], [self._shown(row)], never=True)
            return None
        row['cache'] = caches[0]
        try:
            return network_info.parse_cache(caches[0]['network_info'])
        except network_info.CacheUnreadable as error:
            text = caches[0]['network_info']
            plan.refuse('cache_unreadable', 'the network info cache of instance %s cannot be repaired in place: '
                        '%s' % (row['uuid'], error),
                        [dict(table='instance_info_caches', id=caches[0]['id'], instance_uuid=row['uuid'],
                              length=len(text) if text is not None else None,
                              starts_with=text[:40] if text else text)], never=True)
            return None

    def _guard_instances(self, rows, plan):
        for row in rows:
            if row['task_state']:
                plan.refuse('instance_task_in_progress', 'instance %s has task_state %s: Nova may be rewriting its '
                            'cache right now' % (row['uuid'], row['task_state']), [self._shown(row)])
        by_cell = {}
        for row in rows:
            by_cell.setdefault(row['cell'].name, (row['cell'], []))[1].append(row['uuid'])
        for cell, uuids in by_cell.values():
            for migration in network_info.unfinished_migrations_of(cell, uuids):
                plan.refuse('migration_in_progress', 'instance %s has an unfinished %s (migration %s, %s, %s -> '
                            '%s): its ports may legitimately be migrating'
                            % (migration['instance_uuid'], migration['migration_type'] or 'migration',
                               migration['id'], migration['status'], migration['source_compute'],
                               migration['dest_compute']), [dict(migration, cell=cell.name)])

    # ----------------------------------------------------- binding sources

    def _plan_from_options(self, row, plan):
        binding = self.operator_binding
        if binding['host'] != row['host']:
            plan.refuse('port_bound_elsewhere', 'binding_host %s is not the host of instance %s (%s): bind the port to '
                        'the instance host in Neutron first' % (binding['host'], row['uuid'], row['host']),
                        [dict(instance=row['uuid'], instance_host=row['host'], binding_host=binding['host'])])
        row['repairs'] = []
        for vif, defects in row['broken']:
            if network_info.DEFECT_NO_NETWORK in defects:
                plan.refuse('network_needs_neutron', 'VIF %s of instance %s has no network; only Neutron can '
                            'rebuild it (binding_from=neutron)' % (vif['id'], row['uuid']), [network_info.summary(vif)],
                            never=True)
                continue
            chosen = dict(binding)
            if chosen['profile'] is None:
                chosen['profile'] = network_info.without_migrating_to(vif.get('profile'))
            if chosen['vnic_type'] is None:
                chosen['vnic_type'] = vif.get('vnic_type') or 'normal'
            row['repairs'].append(network_info.repaired_vif(vif, chosen))

    def _plan_from_neutron(self, row, plan):
        by_id = network_info.instance_ports(self.conn, row['uuid'])
        row['repairs'] = []
        for vif, defects in row['broken']:
            port = by_id.get(vif['id'])
            evidence = dict(instance=row['uuid'], instance_host=row['host'], port=vif['id'], cached=network_info.summary(vif))
            if port is None:
                plan.refuse('port_missing', 'port %s of the cache of instance %s is not a port of that instance in '
                            'Neutron (GET /v2.0/ports?device_id=%s)' % (vif['id'], row['uuid'], row['uuid']),
                            [dict(evidence, neutron_ports=sorted(by_id))], never=True)
                continue
            binding = network_info.binding_from_port(port)
            evidence['neutron'] = dict(binding_host=binding['host'], vif_type=binding['vif_type'],
                                       profile=binding['profile'], vnic_type=binding['vnic_type'],
                                       status=port.get('status'))
            if binding['vif_type'] in network_info.FAILED_VIF_TYPES or not binding['vif_type']:
                plan.refuse('neutron_binding_failed', 'port %s of instance %s is %s in Neutron too: copying it '
                            'repairs nothing. Bind it in Neutron first (openstack port set --host %s %s)'
                            % (vif['id'], row['uuid'], binding['vif_type'], row['host'], vif['id']), [evidence], never=True)
                continue
            if binding['host'] != row['host']:
                plan.refuse('port_bound_elsewhere', 'port %s of instance %s is bound to %s in Neutron, the instance is '
                            'on %s: bind the port to the instance host first (openstack port set --host %s %s)'
                            % (vif['id'], row['uuid'], binding['host'], row['host'], row['host'], vif['id']),
                            [evidence])
            if network_info.MIGRATING_TO in binding['profile']:
                plan.refuse('port_profile_migrating', 'port %s of instance %s still has migrating_to %s in its '
                            'binding:profile in Neutron, and no migration runs: remove it there (openstack port unset '
                            '--binding-profile migrating_to %s); with force the cache gets the profile without it'
                            % (vif['id'], row['uuid'], binding['profile'][network_info.MIGRATING_TO], vif['id']),
                            [evidence])
                binding['profile'] = network_info.without_migrating_to(binding['profile'])
            network = None
            if network_info.DEFECT_NO_NETWORK in defects:
                network = network_info.port_network(self.conn, port, binding)
            row['repairs'].append(network_info.repaired_vif(vif, binding, network))


def main():
    NovaNetworkInfoCache().run()


if __name__ == '__main__':
    main()
