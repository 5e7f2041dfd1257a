"""nova_instance_host's plan functions (services/evacuation.py) on plain rows, without a database."""

import datetime

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import ApiUnsuitable
from ansible_collections.stackmender.openstack.plugins.module_utils.services import evacuation
from ansible_collections.stackmender.openstack.plugins.module_utils.services.placement import AllocationMove

STAMP = datetime.datetime(2026, 11, 22, 3, 4, 5)
EARLIER = datetime.datetime(2026, 11, 1, 0, 0, 0)
TARGET = 'compute12'


def instance(uuid, row_id, cell='nova:cell1', host='compute07', deleted=0, cell0=False, **columns):
    row = dict(id=row_id, uuid=uuid, host=host, node=host, compute_id=3, task_state=None, vm_state='active',
               power_state=1, deleted=deleted, updated_at=EARLIER, cell=cell, cell0=cell0)
    row.update(columns)
    return row


def service(host, up=False, disabled=0, forced_down=0, cell='nova:cell1', service_id=1):
    return dict(id=service_id, host=host, binary='nova-compute', disabled=disabled, disabled_reason=None,
                forced_down=forced_down, up=up, seconds_since_report=7 if up else 3600, service_down_time=60, cell=cell)


def node(node_id, host, uuid=None, deleted=0, hypervisor_hostname=None):
    return dict(id=node_id, uuid=uuid or 'cn-%s' % host, host=host, hypervisor_hostname=hypervisor_hostname or host,
                service_id=1, deleted=deleted, cell='nova:cell1')


def guards(findings):
    return [(found['guard'], found['never']) for found in findings]


# ------------------------------------------------------------------ instances


def test_select_instances_refuses_what_cannot_move_and_keeps_id_order():
    by_uuid = {
        'b': [instance('b', 9)],
        'gone': [instance('gone', 2, deleted=2)],
        'twice': [instance('twice', 3), instance('twice', 4, cell='nova:cell2')],
        'zero': [instance('zero', 5, cell='nova:cell0', cell0=True, host=None)],
        'unbuilt': [instance('unbuilt', 6, host=None)],
    }
    selected, findings = evacuation.select_instances(by_uuid)
    assert [row['uuid'] for row in selected] == ['b']
    assert guards(findings) == [('instance_deleted', True), ('instance_in_several_cells', True), ('cell0', True),
                                ('instance_without_host', True)]
    assert 'nova:cell1, nova:cell2' in findings[1]['message']
    assert [row['cell'] for row in findings[1]['evidence']] == ['nova:cell1', 'nova:cell2']


def test_select_instances_takes_the_live_row_when_another_cell_holds_a_deleted_one():
    selected, findings = evacuation.select_instances({'a': [instance('a', 7, deleted=7), instance('a', 1, cell='nova:cell2')]})
    assert findings == []
    assert [(row['uuid'], row['cell']) for row in selected] == [('a', 'nova:cell2')]


# --------------------------------------------------------------------- target


def facts(**overrides):
    found = dict(services=[service(TARGET, up=True)], elsewhere=[], deleted=[],
                 mapping=[dict(id=1, host=TARGET, cell_id=1, cell_uuid='uuid-1', cell_name='cell1')],
                 nodes=[node(7, TARGET)], others=[])
    found.update(overrides)
    return found


def check(found, node_name=None):
    return evacuation.check_target(found, [instance('a', 1)], TARGET, node_name, 'nova:cell1', 'uuid-1', 60)


def test_a_live_mapped_target_with_one_node_is_the_target():
    target, findings, blind = check(facts())
    assert findings == [] and blind is None
    assert target['node']['id'] == 7 and target['service']['host'] == TARGET


def test_a_target_without_service_is_refused_for_good_naming_the_cell_that_has_it():
    target, findings, _blind = check(facts(services=[], elsewhere=[service(TARGET, up=True, cell='nova:cell2')]))
    assert target is None
    assert guards(findings) == [('target_in_other_cell', True)]
    assert 'is in cell nova:cell2, instance(s) a in nova:cell1' in findings[0]['message']
    target, findings, _blind = check(facts(services=[], deleted=[dict(id=4, host=TARGET, deleted=4)]))
    assert guards(findings) == [('target_service_missing', True)] and findings[0]['evidence'][0]['id'] == 4
    _target, findings, _blind = check(facts(services=[]))
    assert findings[0]['evidence'] == [dict(host=TARGET, binary='nova-compute', cell='nova:cell1', live_service_rows=0)]


def test_the_host_mapping_decides_the_cell_and_without_nova_api_nothing_shows_it():
    other = [dict(id=1, host=TARGET, cell_id=2, cell_uuid='uuid-2', cell_name='cell2')]
    target, findings, _blind = check(facts(mapping=other))
    assert target is None and guards(findings) == [('target_in_other_cell', True)]
    target, findings, _blind = check(facts(mapping=[]))
    assert target is not None and guards(findings) == [('target_not_mapped', False)]
    target, findings, blind = check(facts(mapping=None))
    assert target is not None and findings == [] and 'host_mappings' in blind


def test_compute_nodes_missing_or_ambiguous_are_refused_for_good():
    target, findings, _blind = check(facts(nodes=[], others=[node(3, TARGET, deleted=3)]), node_name='other')
    assert target is None and guards(findings) == [('target_compute_node_missing', True)]
    assert 'no live compute node named other' in findings[0]['message'] and findings[0]['evidence'][0]['id'] == 3
    target, findings, _blind = check(facts(nodes=[node(7, TARGET), node(8, TARGET, hypervisor_hostname='n2')]))
    assert target is None and guards(findings) == [('target_node_ambiguous', True)]


def test_a_disabled_or_down_target_is_an_ordinary_guard():
    down = service(TARGET, up=False, disabled=1)
    down['disabled_reason'] = 'maintenance'
    target, findings, _blind = check(facts(services=[down]))
    assert target is not None
    assert guards(findings) == [('target_service_disabled', False), ('target_service_down', False)]
    assert '(maintenance)' in findings[0]['message'] and 'last report 3600 s ago' in findings[1]['message']
    _target, findings, _blind = check(facts(services=[service(TARGET, forced_down=1)]))
    assert findings[0]['message'].endswith('is forced down')


# -------------------------------------------------------------------- sources


def test_sources_up_are_refused_and_sources_without_service_noted():
    services = [service('compute07', up=True, service_id=1), service('compute08', service_id=2)]
    findings, notes = evacuation.check_sources(services, ['compute07', 'compute08', 'compute09', 'compute07'],
                                               'nova:cell1', 60)
    assert guards(findings) == [('source_service_up', False)]
    assert findings[0]['evidence'] == [services[0]] and 'service_down_time 60' in findings[0]['message']
    assert notes == ['source host compute09 has no live nova-compute service in nova:cell1']


def test_pci_devices_and_numa_topology_bind_an_instance_to_its_host():
    devices = [dict(id=1, compute_node_id=3, address='0000:81:00.1', dev_type='type-VF', status='allocated',
                    instance_uuid='b')]
    extras = [dict(id=10, instance_uuid='a', numa_topology='{}', migration_context=None),
              dict(id=11, instance_uuid='c', numa_topology=None, migration_context=None)]
    findings = evacuation.host_bound_findings('nova:cell1', devices, extras)
    assert guards(findings) == [('host_bound_resources', False)] * 2
    assert [found['evidence'][0]['kind'] for found in findings] == ['numa_topology', 'pci_device']
    assert findings[1]['evidence'][0]['address'] == '0000:81:00.1'


# ------------------------------------------------------------------ cell rows


def target_of(row, node_id=7):
    row['target'] = dict(service=service(TARGET, up=True), node=node(node_id, TARGET))
    return row


def test_cell_changes_move_the_instance_clear_its_context_and_end_its_migrations():
    rows = [target_of(instance('a', 1, task_state='rebuilding')), target_of(instance('b', 2))]
    extras = [dict(id=10, instance_uuid='a', migration_context='{"m": 1}', numa_topology=None, updated_at=EARLIER),
              dict(id=11, instance_uuid='b', migration_context=None, numa_topology=None, updated_at=EARLIER)]
    migrations = [dict(id=5, uuid='m5', instance_uuid='a', status='accepted', updated_at=EARLIER)]
    changes, warnings = evacuation.cell_changes(rows, extras, migrations, TARGET, True, STAMP)
    assert [(item['database'], item['table'], item['key']) for item in changes] == [
        ('nova:cell1', 'instances', {'id': 1}), ('nova:cell1', 'instances', {'id': 2}),
        ('nova:cell1', 'instance_extra', {'id': 10}), ('nova:cell1', 'migrations', {'id': 5})]
    assert changes[0]['after'] == dict(host=TARGET, node=TARGET, task_state=None, updated_at=STAMP, compute_id=7)
    assert changes[0]['before']['compute_id'] == 3 and changes[0]['expect']['vm_state'] == 'active'
    assert changes[2]['after'] == dict(migration_context=None, updated_at=STAMP)
    assert changes[3]['after']['status'] == 'error'
    assert warnings == ['instance a was in task_state rebuilding, now cleared']
    without, _warnings = evacuation.cell_changes(rows[:1], [], [], TARGET, False, STAMP)
    assert 'compute_id' not in without[0]['after'] and 'compute_id' not in without[0]['before']


def test_nodes_of_the_source_and_of_abandoned_migrations_prefer_the_live_row():
    rows = [instance('a', 1), instance('b', 2, host='compute08')]
    migrations = [dict(id=5, uuid='m5', instance_uuid='a', source_compute='compute07', source_node='compute07',
                       dest_compute='compute09', dest_node='compute09')]
    assert evacuation.node_hosts(rows, migrations) == {'compute07', 'compute08', 'compute09'}
    nodes = [node(1, 'compute07', uuid='old', deleted=1), node(9, 'compute09'), node(2, 'compute07', uuid='live')]
    evacuation.attach_nodes(rows, migrations, nodes)
    assert rows[0]['source_node']['uuid'] == 'live'
    assert [found['id'] for found in rows[0]['abandoned_nodes']] == [2, 9]
    assert rows[1]['source_node'] is None and rows[1]['abandoned'] == [] and rows[1]['abandoned_nodes'] == []
    for row in rows:
        target_of(row)
    assert evacuation.provider_uuids(rows) == {'cn-compute12', 'live', 'cn-compute09'}
    assert evacuation.migration_consumers(rows) == {'a': {'m5'}, 'b': set()}


# ------------------------------------------------------------------ placement


def provider(provider_id, uuid):
    return dict(id=provider_id, uuid=uuid, name=uuid, generation=4, root_provider_id=provider_id,
                parent_provider_id=None, updated_at=EARLIER)


def allocation(allocation_id, consumer, provider_id, class_id=0, root=None, used=2):
    return dict(id=allocation_id, resource_provider_id=provider_id, consumer_id=consumer, resource_class_id=class_id,
                used=used, updated_at=EARLIER, provider_uuid='p%d' % provider_id,
                root_provider_id=root or provider_id, resource_class='VCPU')


def placement_rows():
    row = target_of(instance('a', 1))
    row['source_node'] = node(3, 'compute07', uuid='src')
    row['abandoned'], row['abandoned_nodes'] = [], []
    return [row]


def test_allocations_move_from_the_source_provider_to_the_target():
    providers = {'src': provider(1, 'src'), 'cn-compute12': provider(2, 'cn-compute12')}
    mover = AllocationMove('placement_db', None, STAMP)
    findings, warnings = evacuation.plan_allocation_moves(
        placement_rows(), providers, [allocation(20, 'a', 1), allocation(21, 'a', 1, class_id=1)],
        {'a': dict(id=1, uuid='a')}, mover)
    assert findings == [] and warnings == []
    assert [(item['key'], item['after']['resource_provider_id']) for item in mover.changes] == [
        ({'id': 20}, 2), ({'id': 21}, 2)]


def test_a_target_without_provider_is_refused_for_good_and_nested_allocations_are_guarded():
    mover = AllocationMove('placement_db', None, STAMP)
    findings, _warnings = evacuation.plan_allocation_moves(placement_rows(), {'src': provider(1, 'src')}, [], {}, mover)
    assert guards(findings) == [('target_provider_missing', True)] and mover.changes == []
    providers = {'src': provider(1, 'src'), 'cn-compute12': provider(2, 'cn-compute12')}
    findings, _warnings = evacuation.plan_allocation_moves(
        placement_rows(), providers, [allocation(20, 'a', 1), allocation(22, 'a', 5, root=1, class_id=9)],
        {'a': dict(id=1, uuid='a')}, mover)
    assert guards(findings) == [('host_bound_resources', False)]
    assert findings[0]['evidence'] == [dict(id=22, consumer_id='a', resource_provider='p5', resource_class='VCPU',
                                            used=2)]


def test_a_source_without_provider_or_allocations_tells_to_heal():
    providers = {'cn-compute12': provider(2, 'cn-compute12')}
    findings, warnings = evacuation.plan_allocation_moves(placement_rows(), providers, [], {},
                                                          AllocationMove('placement_db', None, STAMP))
    assert findings == []
    assert 'has no resource provider' in warnings[0] and 'holds no allocation' in warnings[1]
    assert all('heal_allocations --force --instance a' in warning for warning in warnings)


# --------------------------------------------------------------------- cinder


def test_attachments_naming_the_source_follow_the_instance_and_others_are_left():
    attachments = [dict(id=1, volume_id='v1', instance_uuid='a', attached_host='compute07', updated_at=EARLIER),
                   dict(id=2, volume_id='v2', instance_uuid='a', attached_host='elsewhere', updated_at=EARLIER),
                   dict(id=3, volume_id='v3', instance_uuid='a', attached_host=TARGET, updated_at=EARLIER)]
    changes, notes = evacuation.attachment_changes(attachments, {'a': 'compute07'}, TARGET, STAMP)
    assert [(item['database'], item['key'], item['after']['attached_host']) for item in changes] == [
        ('cinder_db', {'id': 1}, TARGET)]
    assert changes[0]['expect'] == dict(instance_uuid='a', volume_id='v1', deleted=0)
    assert notes == ['attachment 2 of instance a names host elsewhere, not the source; left alone']


def test_followups_name_every_moved_instance_and_the_volumes_to_refresh():
    rows = [target_of(instance('a', 1)), target_of(instance('b', 2, host='compute08'))]
    warnings = evacuation.followup_warnings(rows, TARGET, [], True)
    assert len(warnings) == 3 and 'a, b' in warnings[0] and 'compute07, compute08' in warnings[2]
    warnings = evacuation.followup_warnings(rows, TARGET, [dict(instance_uuid='a', volume_id='v1')], False)
    assert 'volume_attachment refresh for a v1' in warnings[3] and "attached_host still names" in warnings[4]
    assert evacuation.moved_instances(rows[:1], TARGET) == [dict(
        instance='a', cell='nova:cell1', from_host='compute07', from_node='compute07', to_host=TARGET, to_node=TARGET,
        compute_id=7)]


# ------------------------------------------------------------------- API path


def api_service(host, state='down', status='enabled', forced_down=False):
    return dict(id=4, host=host, binary='nova-compute', status=status, state=state, forced_down=forced_down,
                disabled_reason=None, updated_at=None)


def server(uuid, host='compute07', vm_state='active', task_state=None, status='ACTIVE', **extra):
    row = dict(id=uuid, status=status, vm_state=vm_state, task_state=task_state, power_state=1, host=host, node=host)
    row.update(extra)
    return row


def test_api_target_guards():
    assert guards(evacuation.target_service_findings(None, TARGET)) == [('target_service_missing', True)]
    assert guards(evacuation.target_service_findings(api_service(TARGET, state='up'), TARGET)) == []
    found = evacuation.target_service_findings(api_service(TARGET, state='up', status='disabled', forced_down=True), TARGET)
    assert guards(found) == [('target_service_disabled', False), ('target_service_down', False)]
    assert found[1]['message'].endswith('forced down')


def test_servers_are_sorted_by_source_and_what_nova_does_not_evacuate_falls_back():
    servers = [server('a'), server('b', host=TARGET), server('c', host=None, fault=None), server('d', host='compute08')]
    by_source, findings, notes = evacuation.sort_servers(servers, TARGET)
    assert {host: [item['id'] for item in rows] for host, rows in by_source.items()} == {
        'compute07': ['a'], 'compute08': ['d']}
    assert guards(findings) == [('instance_without_host', True)] and 'fault' not in findings[0]['evidence'][0]
    assert notes == ['instance b is already on host compute12']
    with pytest.raises(ApiUnsuitable, match='task_state rebuilding'):
        evacuation.sort_servers([server('a', task_state='rebuilding')], TARGET)
    with pytest.raises(ApiUnsuitable, match='is shelved_offloaded'):
        evacuation.sort_servers([server('a', vm_state='shelved_offloaded')], TARGET)


def test_sources_in_another_cell_than_the_target_are_refused_for_good():
    mappings = {TARGET: dict(host=TARGET, cell_id=1, cell_name='cell1'),
                'compute07': dict(host='compute07', cell_id=2, cell_name='cell2'),
                'compute08': dict(host='compute08', cell_id=1, cell_name='cell1')}
    findings = evacuation.cell_findings(['compute08', 'compute07', 'compute09'], TARGET, mappings)
    assert guards(findings) == [('target_in_other_cell', True)] and 'source host compute07 is in cell cell2' in \
        findings[0]['message']


def test_source_guard_and_fencing():
    assert guards(evacuation.source_service_findings(api_service('compute07', state='up'), 'compute07')) == [
        ('source_service_up', False)]
    assert evacuation.source_service_findings(api_service('compute07', state='up', forced_down=True), 'compute07') == []
    assert evacuation.needs_fencing(api_service('compute07', forced_down=True))
    assert not evacuation.needs_fencing(api_service('compute07', forced_down=True, status='disabled'))


def test_the_microversion_decides_the_state_an_evacuated_instance_ends_in():
    assert evacuation.expected_end(server('a'), evacuation.MICROVERSION_KEEP) == ('ACTIVE', 1)
    assert evacuation.expected_end(server('a', vm_state='error'), evacuation.MICROVERSION_KEEP) == ('ACTIVE', 1)
    assert evacuation.expected_end(server('a', vm_state='stopped'), evacuation.MICROVERSION_KEEP) == ('SHUTOFF', 4)
    assert evacuation.expected_end(server('a'), evacuation.MICROVERSION_STOPPED) == ('SHUTOFF', 4)
    assert evacuation.evacuation_entry(server('a'), 'compute07', TARGET, '2.68') == dict(
        instance='a', from_host='compute07', to_host=TARGET, microversion='2.68', expected_status='ACTIVE',
        expected_power_state=1)


def test_pending_evacuations_until_each_instance_is_on_the_target_with_no_task():
    entries = [evacuation.evacuation_entry(server(uuid), 'compute07', TARGET, '2.68') for uuid in ('a', 'b')]
    states = {'a': server('a', host=TARGET), 'b': server('b', status='REBUILD', task_state='rebuild_spawning')}
    reads = []

    def read(uuid):
        reads.append(uuid)
        return states[uuid]

    pending, warnings = evacuation.pending_evacuations(entries, read, TARGET)
    assert pending == {'b': 'status REBUILD, task_state rebuild_spawning, host compute07'} and warnings == []
    assert (entries[0]['status'], entries[0]['power_state_name'], entries[0]['host']) == ('ACTIVE', 'running', TARGET)
    states['b'] = server('b', host=TARGET, status='SHUTOFF', power_state=4)
    states['b']['power_state'] = 4
    pending, warnings = evacuation.pending_evacuations(entries, read, TARGET)
    assert pending == {} and reads == ['a', 'b', 'b'], 'a finished entry is not read again'
    assert warnings == ['instance b ended SHUTOFF on compute12, not ACTIVE as microversion 2.68 implies']
    assert entries[1]['power_state_name'] == 'shutdown'


def test_an_evacuation_that_ends_in_error_fails_at_once():
    entries = [evacuation.evacuation_entry(server('a'), 'compute07', TARGET, '2.68')]
    failed = server('a', status='ERROR', vm_state='error', fault='No valid host was found')
    with pytest.raises(ApiError, match=r'instance a to compute12 failed: the instance is in ERROR \(No valid host'):
        evacuation.pending_evacuations(entries, lambda uuid: failed, TARGET)
