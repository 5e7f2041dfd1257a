"""nova_instance_host (database path) against the real Nova/Placement/Cinder schemas of every release.

The incident: compute1 died with instances on it; they move to compute2.
Every full case runs check mode, apply (verified with independent SQL),
a re-run (changed: false) and the undo from the journal.
"""

import datetime
import json
import os

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import (
    allocations,
    assert_clean_failure,
    db_args,
    generation,
    one,
    run_full_cycle,
    snapshot,
)

MODULE = 'nova_instance_host'

# A service built "up" reports once, when the test builds it; on a loaded
# machine a test can outlast Nova's 60 s. These runs use a window longer than
# any test and shorter than the hour-old reports of services built down; the
# tests of the rule itself pass service_down_time explicitly.
SLOW_TEST_DOWN_TIME = 1800


@pytest.fixture
def ansible(ansible):
    def call(module, args, **kwargs):
        if module == MODULE and 'service_down_time' not in args:
            args = dict(args, service_down_time=SLOW_TEST_DOWN_TIME)
        return ansible(module, args, **kwargs)
    return call


NOVA_TABLES = [('nova', table) for table in ('instances', 'instance_extra', 'migrations', 'services', 'compute_nodes')]
CELL0_TABLES = [('nova_cell0', 'instances')]
PLACEMENT_TABLES = [('placement', table) for table in ('allocations', 'consumers', 'resource_providers')]
CINDER_TABLES = [('cinder', 'volume_attachment')]
ALL_TABLES = NOVA_TABLES + CELL0_TABLES + PLACEMENT_TABLES + CINDER_TABLES
MIGRATION_CONTEXT = json.dumps({'nova_object.name': 'MigrationContext', 'nova_object.namespace': 'nova',
                                'nova_object.version': '1.2', 'nova_object.data': {'migration_id': 1}})


def instance_row(dbs, uuid, logical='nova'):
    return one(dbs, logical, 'SELECT * FROM instances WHERE uuid = %s', uuid)


def dead_host(cloud, dbs, source='compute1', target='compute2'):
    """compute1 is dead (its last report an hour old), compute2 is up; returns their ids."""
    return cloud.compute_host(source, up=False), cloud.compute_host(target)


def stranded(cloud, hosts, **columns):
    """An instance on the dead compute1 with its allocations there."""
    instance = cloud.instance(host='compute1', **columns)
    cloud.instance_allocations(instance, hosts[0]['rp_uuid'])
    return instance


def test_full_cycle_moves_the_instance_with_placement_attachments_and_migrations(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    cloud.compute_host('compute3')
    instance = stranded(cloud, hosts, task_state='rebuilding')
    dbs.execute('nova', 'UPDATE instance_extra SET migration_context = %s WHERE instance_uuid = %s',
                (MIGRATION_CONTEXT, instance))
    unfinished = cloud.migration(instance, 'compute1', 'compute3', status='accepted', migration_type='evacuation')
    finished = cloud.migration(instance, 'compute3', 'compute1', status='completed', migration_type='migration')
    attached = cloud.attach_volume(instance)
    elsewhere = cloud.attachment(cloud.volume(status='in-use', attach_status='attached'), instance,
                                 attached_host='compute9', attached_mode=None)
    bystander = stranded(cloud, hosts)
    consumer_generation = generation(dbs, 'consumers', instance)
    provider_generations = [generation(dbs, 'resource_providers', hosts[index]['rp_uuid']) for index in (0, 1)]
    args = db_args(dbs, 'nova_api', 'placement', 'cinder', instance=instance, host='compute2', method='db',
                   journal_dir=journal_dir)

    def verify():
        row = instance_row(dbs, instance)
        assert (row['host'], row['node'], row['task_state']) == ('compute2', 'compute2', None)
        if cloud.has_column('nova', 'instances', 'compute_id'):
            assert row['compute_id'] == hosts[1]['compute_node_id']
        assert one(dbs, 'nova', 'SELECT migration_context FROM instance_extra WHERE instance_uuid = %s',
                   instance)['migration_context'] is None
        statuses = dict((row['id'], row['status']) for row in dbs.query('nova', 'SELECT id, status FROM migrations'))
        assert statuses == {unfinished: 'error', finished: 'completed'}
        flavor = (('VCPU', 1), ('MEMORY_MB', 512), ('DISK_GB', 1))
        expected = dict(((hosts[1]['rp_uuid'], name), used) for name, used in flavor)
        assert allocations(dbs, instance) == expected
        assert generation(dbs, 'consumers', instance) == consumer_generation + 1
        assert [generation(dbs, 'resource_providers', hosts[index]['rp_uuid']) for index in (0, 1)] == \
            [value + 1 for value in provider_generations]
        assert one(dbs, 'cinder', 'SELECT attached_host FROM volume_attachment WHERE id = %s',
                   attached['attachment_id'])['attached_host'] == 'compute2'
        assert one(dbs, 'cinder', 'SELECT attached_host FROM volume_attachment WHERE id = %s',
                   elsewhere)['attached_host'] == 'compute9'
        assert instance_row(dbs, bystander)['host'] == 'compute1'
        assert set(allocations(dbs, bystander)) == set((hosts[0]['rp_uuid'], name)
                                                       for name in ('VCPU', 'MEMORY_MB', 'DISK_GB'))

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert applied['method'] == 'db' and applied['method_reason'] == 'requested'
    assert applied['instances'] == [dict(instance=instance, cell='nova:cell1', from_host='compute1',
                                         from_node='compute1', to_host='compute2', to_node='compute2',
                                         compute_id=hosts[1]['compute_node_id'])]
    label = 'instances/%s' % instance_row(dbs, instance)['id']
    assert applied['before']['nova:cell1'][label]['task_state'] == 'rebuilding'
    assert applied['after']['nova:cell1'][label]['host'] == 'compute2'
    tables = [(step['database'], step['table'], step['action']) for step in applied['plan']]
    assert tables[:3] == [('nova:cell1', 'instances', 'update'), ('nova:cell1', 'instance_extra', 'update'),
                          ('nova:cell1', 'migrations', 'update')]
    # The three allocations move in one statement.
    moves = [step for step in applied['plan'] if step['table'] == 'allocations']
    assert len(moves) == 1 and moves[0]['rows'] == 3
    assert tables[-1] == ('cinder_db', 'volume_attachment', 'update')
    warnings = ' '.join(applied['warnings'])
    assert 'task_state rebuilding' in warnings and 'hard reboot' in warnings and 'binding:host_id' in warnings
    assert 'volume_attachment refresh' in warnings and attached['volume_id'] in warnings
    journal = load_journal(applied['journal'])
    assert journal['status'] == 'committed'
    assert set(journal['commits']) == {'nova:cell1', 'placement_db', 'cinder_db'}
    assert 'connection_info' not in open(applied['journal']).read()


def test_from_host_moves_every_live_instance_with_set_based_statements(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    moved = [stranded(cloud, hosts) for _index in range(4)]
    deleted = cloud.instance(host='compute1', vm_state='deleted', deleted=True)
    cloud.compute_host('compute3')
    elsewhere = cloud.instance(host='compute3')
    args = db_args(dbs, 'nova_api', 'placement', from_host='compute1', host='compute2', journal_dir=journal_dir)

    def verify():
        for instance in moved:
            assert instance_row(dbs, instance)['host'] == 'compute2'
            assert set(provider for provider, _name in allocations(dbs, instance)) == {hosts[1]['rp_uuid']}
        assert instance_row(dbs, deleted)['host'] == 'compute1'
        assert instance_row(dbs, elsewhere)['host'] == 'compute3'
        again = ansible(MODULE, args, check=True)
        assert not again.changed and again['notes'][0] == 'no live instance on host compute1'

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert applied['method'] == 'db' and 'no cloud is configured' in applied['method_reason']
    assert sorted(entry['instance'] for entry in applied['instances']) == sorted(moved)
    instances_step = [step for step in applied['plan'] if step['table'] == 'instances']
    assert len(instances_step) == 1 and instances_step[0]['rows'] == 4
    allocation_steps = [step for step in applied['plan'] if step['table'] == 'allocations']
    assert len(allocation_steps) == 1 and allocation_steps[0]['rows'] == 12
    # Each consumer and both providers go up by one; equal generations share a statement.
    consumer_rows = sum(step['rows'] for step in applied['plan'] if step['table'] == 'consumers')
    provider_rows = sum(step['rows'] for step in applied['plan'] if step['table'] == 'resource_providers')
    assert (consumer_rows, provider_rows) == (4, 2)
    assert len([step for step in applied['plan'] if step['table'] == 'consumers']) == 1


def test_abandoned_live_migration_hands_its_hold_to_the_instance(ansible, dbs, cloud, journal_dir):
    """compute1 died mid live-migration to compute3: the migration holds compute1, the instance compute3."""
    hosts = dead_host(cloud, dbs)
    third = cloud.compute_host('compute3')
    instance = cloud.instance(host='compute1', task_state='migrating')
    migration = cloud.migration(instance, 'compute1', 'compute3', status='running')
    migration_uuid = one(dbs, 'nova', 'SELECT uuid FROM migrations WHERE id = %s', migration)['uuid']
    cloud.consumer(migration_uuid, consumer_type='MIGRATION')
    for name, used in (('VCPU', 1), ('MEMORY_MB', 512), ('DISK_GB', 1)):
        cloud.allocation(migration_uuid, hosts[0]['rp_uuid'], name, used)
    cloud.instance_allocations(instance, third['rp_uuid'])
    args = db_args(dbs, 'nova_api', 'placement', instance=instance, host='compute2', journal_dir=journal_dir)

    def verify():
        assert one(dbs, 'nova', 'SELECT status FROM migrations WHERE id = %s', migration)['status'] == 'error'
        assert allocations(dbs, instance) == {(hosts[1]['rp_uuid'], 'VCPU'): 1, (hosts[1]['rp_uuid'], 'MEMORY_MB'): 512,
                                              (hosts[1]['rp_uuid'], 'DISK_GB'): 1}
        assert allocations(dbs, migration_uuid) == {}
        assert not dbs.query('placement', 'SELECT id FROM consumers WHERE uuid = %s', (migration_uuid,))

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    deletes = [step for step in applied['plan'] if step['action'] == 'delete']
    assert [(step['table'], step['rows']) for step in deletes] == [('allocations', 3), ('consumers', 1)]
    journal = load_journal(applied['journal'])
    # Whole rows only where undo re-inserts them.
    assert sorted(set(entry['table'] for entry in journal['entries'] if 'row' in entry)) == ['allocations', 'consumers']


def test_instances_of_two_cells_through_nova_api_db(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    cloud.add_cell('cell2')
    cell2_hosts = (cloud.compute_host('compute5', cell='cell2', up=False), cloud.compute_host('compute6', cell='cell2'))
    in_cell1 = stranded(cloud, hosts)
    in_cell2 = cloud.instance(host='compute5', cell='cell2')
    cloud.instance_allocations(in_cell2, cell2_hosts[0]['rp_uuid'], cell='cell2')
    tables = ALL_TABLES + [('nova_cell2', 'instances'), ('nova_cell2', 'migrations')]

    # One instance per cell, each to a host of its own cell: the cell2 database is written.
    args = db_args(dbs, 'nova_api', 'placement', from_host='compute5', host='compute6', journal_dir=journal_dir)

    def verify():
        assert instance_row(dbs, in_cell2, 'nova_cell2')['host'] == 'compute6'
        assert instance_row(dbs, in_cell1)['host'] == 'compute1'

    applied = run_full_cycle(ansible, dbs, MODULE, args, tables, verify)
    assert applied['instances'][0]['cell'] == 'nova:cell2'
    assert applied['plan'][0]['database'] == 'nova:cell2'

    # Both instances to compute2 (cell1): the cell2 one cannot go there, so nothing is written.
    before = snapshot(dbs, tables)
    args = db_args(dbs, 'nova_api', 'placement', instance=[in_cell1, in_cell2], host='compute2', journal_dir=journal_dir)
    for extra in ({}, dict(force=True, force_reason='trying anyway')):
        refused = ansible(MODULE, dict(args, **extra))
        assert_clean_failure(refused, 'target host compute2 is in cell nova:cell1')
        assert 'never overridden, even with force' in refused['msg']
        guard = refused['guards'][0]
        assert guard['guard'] == 'target_in_other_cell'
        assert guard['evidence'][0]['host'] == 'compute2' and guard['evidence'][0]['cell'] == 'nova:cell1'
        assert guard['evidence'][-1]['uuid'] == in_cell2 and guard['evidence'][-1]['cell'] == 'nova:cell2'
    assert snapshot(dbs, tables) == before


@pytest.mark.newest_release
def test_cell0_instance_is_never_written_even_with_force(ansible, dbs, cloud, journal_dir):
    dead_host(cloud, dbs)
    instance = cloud.instance(host=None, vm_state='error', power_state=0, cell='cell0')
    args = db_args(dbs, 'nova_api', instance=instance, host='compute2', journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)
    for extra in ({}, dict(force=True, force_reason='trying anyway')):
        refused = ansible(MODULE, dict(args, **extra))
        assert_clean_failure(refused, 'is in cell0')
        assert refused['guards'][0]['guard'] == 'cell0'
        assert refused['guards'][0]['evidence'][0]['uuid'] == instance
        assert refused['guards'][0]['evidence'][0]['cell'] == 'nova:cell0'
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)


@pytest.mark.newest_release
def test_deleted_instance_is_refused_with_its_row(ansible, dbs, cloud, journal_dir):
    dead_host(cloud, dbs)
    instance = cloud.instance(host='compute1', vm_state='deleted', deleted=True)
    before = snapshot(dbs, ALL_TABLES)
    refused = ansible(MODULE, db_args(dbs, 'nova_api', instance=instance, host='compute2', journal_dir=journal_dir,
                                      force=True, force_reason='not overridable'))
    assert_clean_failure(refused, 'instance %s is deleted' % instance)
    guard = refused['guards'][0]
    assert guard['guard'] == 'instance_deleted'
    assert guard['evidence'][0]['uuid'] == instance and guard['evidence'][0]['deleted'] == guard['evidence'][0]['id']
    assert snapshot(dbs, ALL_TABLES) == before


@pytest.mark.newest_release
def test_source_service_up_refuses_with_evidence_then_force_applies(ansible, dbs, cloud, journal_dir):
    source = cloud.compute_host('compute1')
    cloud.compute_host('compute2')
    instance = cloud.instance(host='compute1')
    cloud.instance_allocations(instance, source['rp_uuid'])
    args = db_args(dbs, 'nova_api', 'placement', instance=instance, host='compute2', journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)
    for check in (True, False):
        refused = ansible(MODULE, args, check=check)
        assert_clean_failure(refused, 'the nova-compute service of source host compute1 is up')
        guard = refused['guards'][0]
        assert guard['guard'] == 'source_service_up'
        evidence = guard['evidence'][0]
        assert (evidence['host'], evidence['binary'], evidence['up']) == ('compute1', 'nova-compute', True)
        assert evidence['service_down_time'] == SLOW_TEST_DOWN_TIME
        assert evidence['seconds_since_report'] < SLOW_TEST_DOWN_TIME
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)

    reason = 'INC-5001: compute1 powered off through its BMC'
    forced = ansible(MODULE, dict(args, force=True, force_reason=reason))
    assert not forced.failed and forced.changed, forced['msg']
    assert forced['forced_guards'][0]['guard'] == 'source_service_up'
    journal = load_journal(forced['journal'])
    assert journal['force_reason'] == reason and journal['forced_guards'][0]['evidence'][0]['host'] == 'compute1'
    assert instance_row(dbs, instance)['host'] == 'compute2'


@pytest.mark.newest_release
def test_down_follows_novas_rule_forced_down_or_report_older_than_service_down_time(ansible, dbs, cloud, journal_dir):
    reported = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0) - \
        datetime.timedelta(seconds=90)
    cloud.compute_host('compute1', last_seen_up=reported, updated_at=reported)
    cloud.compute_host('compute2')
    cloud.compute_host('compute3', forced_down=True)
    quiet = cloud.instance(host='compute1')
    fenced = cloud.instance(host='compute3')
    args = db_args(dbs, 'nova_api', host='compute2', journal_dir=journal_dir)

    # 90 s since the last report: down with Nova's default of 60 s, up with 600 s.
    refused = ansible(MODULE, dict(args, instance=quiet, service_down_time=600), check=True)
    assert_clean_failure(refused, 'source host compute1 is up')
    assert refused['guards'][0]['evidence'][0]['service_down_time'] == 600
    accepted = ansible(MODULE, dict(args, instance=quiet, service_down_time=60), check=True)
    assert not accepted.failed and accepted.changed, accepted['msg']

    # Forced down counts as down whatever its last report.
    accepted = ansible(MODULE, dict(args, instance=fenced), check=True)
    assert not accepted.failed and accepted.changed, accepted['msg']


@pytest.mark.newest_release
@pytest.mark.parametrize('case', ['disabled', 'down', 'forced_down'])
def test_target_service_disabled_or_down_refuses_with_evidence(ansible, dbs, cloud, journal_dir, case):
    hosts = (cloud.compute_host('compute1', up=False),
             cloud.compute_host('compute2', up=case != 'down', disabled=case == 'disabled',
                                disabled_reason='maintenance' if case == 'disabled' else None,
                                forced_down=case == 'forced_down'))
    instance = stranded(cloud, hosts)
    args = db_args(dbs, 'nova_api', 'placement', instance=instance, host='compute2', journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)
    refused = ansible(MODULE, args)
    expected = {'disabled': ('target_service_disabled', 'is disabled (maintenance)'),
                'down': ('target_service_down', 'is down (last report'),
                'forced_down': ('target_service_down', 'is forced down')}[case]
    assert_clean_failure(refused, 'target host compute2 %s' % expected[1])
    guard = refused['guards'][0]
    assert guard['guard'] == expected[0]
    assert guard['evidence'][0]['host'] == 'compute2' and guard['evidence'][0]['id'] == hosts[1]['service_id']
    assert snapshot(dbs, ALL_TABLES) == before
    forced = ansible(MODULE, dict(args, force=True, force_reason='INC-5002: compute2 is coming back'))
    assert not forced.failed and forced['forced_guards'][0]['guard'] == expected[0]


@pytest.mark.newest_release
def test_target_that_cannot_take_the_instance_is_refused_even_with_force(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    instance = stranded(cloud, hosts)
    cloud.nova_service('compute4')  # a service without a compute node
    cloud.compute_host('compute7')
    cloud.compute_node('compute7', hypervisor_hostname='compute7-b')
    before = snapshot(dbs, ALL_TABLES)
    cases = [
        (dict(host='compute9'), 'target_service_missing', 'no live nova-compute service for target host compute9',
         lambda evidence: evidence['live_service_rows'] == 0 and evidence['host'] == 'compute9'),
        (dict(host='compute4'), 'target_compute_node_missing', 'target host compute4 has no live compute node',
         lambda evidence: evidence['host'] == 'compute4' and evidence['binary'] == 'nova-compute'),
        (dict(host='compute2', node='compute2-x'), 'target_compute_node_missing', 'no live compute node named compute2-x',
         lambda evidence: evidence['hypervisor_hostname'] == 'compute2'),
        (dict(host='compute7'), 'target_node_ambiguous', 'target host compute7 has 2 compute nodes; give node',
         lambda evidence: evidence['host'] == 'compute7'),
    ]
    for extra, guard_name, fragment, check_evidence in cases:
        args = db_args(dbs, 'nova_api', 'placement', instance=instance, journal_dir=journal_dir,
                       force=True, force_reason='not overridable', **extra)
        refused = ansible(MODULE, args)
        assert_clean_failure(refused, fragment)
        assert refused['guards'][0]['guard'] == guard_name
        assert check_evidence(refused['guards'][0]['evidence'][0]), refused['guards'][0]
    # With node given, a host of several nodes is fine.
    chosen = ansible(MODULE, db_args(dbs, 'nova_api', instance=instance, host='compute7', node='compute7-b',
                                     journal_dir=journal_dir), check=True)
    assert not chosen.failed, chosen['msg']
    assert chosen['instances'][0]['to_node'] == 'compute7-b'
    assert snapshot(dbs, ALL_TABLES) == before


@pytest.mark.newest_release
def test_target_without_resource_provider_is_refused(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    instance = stranded(cloud, hosts)
    cloud.nova_service('compute8')
    node = cloud.compute_node('compute8')
    refused = ansible(MODULE, db_args(dbs, 'nova_api', 'placement', instance=instance, host='compute8',
                                      journal_dir=journal_dir))
    assert_clean_failure(refused, 'has no resource provider in placement')
    assert refused['guards'][0]['guard'] == 'target_provider_missing'
    assert refused['guards'][0]['evidence'][0]['id'] == node
    assert instance_row(dbs, instance)['host'] == 'compute1'


@pytest.mark.newest_release
def test_target_without_host_mapping_is_a_guard(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    instance = stranded(cloud, hosts)
    dbs.execute('nova_api', "DELETE FROM host_mappings WHERE host = 'compute2'")
    args = db_args(dbs, 'nova_api', instance=instance, host='compute2', journal_dir=journal_dir)
    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'target host compute2 has no host_mappings row')
    assert refused['guards'][0]['guard'] == 'target_not_mapped'
    assert refused['guards'][0]['evidence'][0]['host'] == 'compute2'
    assert instance_row(dbs, instance)['host'] == 'compute1'


@pytest.mark.newest_release
def test_host_bound_resources_refuse_with_evidence(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    with_pci = stranded(cloud, hosts)
    device = cloud.insert('nova', 'pci_devices', {
        'created_at': datetime.datetime(2026, 1, 1), 'deleted': 0, 'compute_node_id': hosts[0]['compute_node_id'],
        'address': '0000:81:00.1', 'vendor_id': '15b3', 'product_id': '1018', 'dev_type': 'type-VF',
        'dev_id': 'pci_0000_81_00_1', 'label': 'label_15b3_1018', 'status': 'allocated', 'instance_uuid': with_pci})
    with_vgpu = stranded(cloud, hosts)
    child = cloud.resource_provider(name='compute1_pci_0000_84_00_0', parent=hosts[0]['rp_uuid'])
    cloud.inventory(child, 'VGPU', 4)
    nested = cloud.allocation(with_vgpu, child, 'VGPU', 1)
    before = snapshot(dbs, ALL_TABLES)
    args = db_args(dbs, 'nova_api', 'placement', instance=[with_pci, with_vgpu], host='compute2', journal_dir=journal_dir)
    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'uses resources bound to its source host')
    guards = dict((guard['message'].split()[1], guard) for guard in refused['guards'])
    assert set(guards) == {with_pci, with_vgpu}
    assert guards[with_pci]['evidence'][0]['id'] == device and guards[with_pci]['evidence'][0]['kind'] == 'pci_device'
    assert guards[with_vgpu]['evidence'][0] == dict(id=nested, consumer_id=with_vgpu, resource_provider=child,
                                                    resource_class='VGPU', used=1)
    assert snapshot(dbs, ALL_TABLES) == before


@pytest.mark.newest_release
def test_instance_already_on_the_target_is_not_a_change(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    instance = cloud.instance(host='compute2')
    cloud.instance_allocations(instance, hosts[1]['rp_uuid'])
    result = ansible(MODULE, db_args(dbs, 'nova_api', 'placement', instance=instance, host='compute2',
                                     journal_dir=journal_dir))
    assert not result.failed and not result.changed, result
    assert result['notes'][0] == 'instance %s is already on host compute2 (node compute2)' % instance
    assert result['instances'] == []


@pytest.mark.newest_release
def test_without_placement_and_cinder_the_result_says_what_is_left(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    instance = stranded(cloud, hosts)
    cloud.attach_volume(instance)
    applied = ansible(MODULE, db_args(dbs, 'nova_api', instance=instance, host='compute2', journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied['msg']
    warnings = ' '.join(applied['warnings'])
    assert 'heal_allocations --force --instance UUID' in warnings and instance in warnings
    assert "attached_host still names compute1" in warnings
    assert set(provider for provider, _name in allocations(dbs, instance)) == {hosts[0]['rp_uuid']}


@pytest.mark.newest_release
def test_bad_input_fails_clearly_and_writes_nothing(ansible, dbs, cloud, journal_dir):
    hosts = dead_host(cloud, dbs)
    instance = stranded(cloud, hosts)
    before = snapshot(dbs, ALL_TABLES)
    cases = [
        (dict(instance='not-a-uuid', host='compute2'), "instance: 'not-a-uuid' is not a UUID"),
        (dict(host='compute2'), 'one of the following is required: instance, from_host'),
        (dict(instance=instance, from_host='compute1', host='compute2'), 'mutually exclusive'),
        (dict(instance=instance), 'missing required arguments: host'),
        (dict(from_host='compute1', host='compute1'), 'the target must be another host'),
        (dict(instance=instance, host='  '), 'host: give the name of the target compute host'),
        (dict(instance=instance, host='compute2', service_down_time=0), 'service_down_time must be a positive'),
        (dict(instance='0b7f7a2c-1111-4d5e-9f00-000000000001', host='compute2'), 'not found in any cell'),
        (dict(instance=instance, host='compute2', force=True), 'force_reason'),
    ]
    for extra, fragment in cases:
        assert_clean_failure(ansible(MODULE, db_args(dbs, 'nova_api', journal_dir=journal_dir, **extra)), fragment)
    no_nova = ansible(MODULE, db_args(dbs, 'placement', instance=instance, host='compute2', method='db',
                                      journal_dir=journal_dir))
    assert_clean_failure(no_nova, 'method=db needs nova_db (a single cell database) or nova_api_db')
    nothing = ansible(MODULE, db_args(dbs, 'placement', instance=instance, host='compute2', journal_dir=journal_dir))
    assert_clean_failure(nothing, 'nothing to work with')
    wrong_database = ansible(MODULE, dict(instance=instance, host='compute2', journal_dir=journal_dir,
                                          nova_db=dbs.url('cinder')))
    assert_clean_failure(wrong_database, 'has no table instances')
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)


@pytest.mark.newest_release
def test_without_nova_api_the_host_mapping_guard_cannot_look_and_refuses_unless_accepted(ansible, dbs, cloud,
                                                                                         journal_dir):
    """nova_db alone cannot show the target's host_mappings row: refused, naming nova_api_db, until accepted."""
    dead_host(cloud, dbs)
    instance = cloud.instance(host='compute1')
    args = db_args(dbs, 'nova', instance=instance, host='compute2', journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)
    blind = ansible(MODULE, args)
    assert_clean_failure(blind, 'give nova_api_db so the guard can look')
    assert [spot['guard'] for spot in blind['unverified_guards']] == ['target_not_mapped']
    assert snapshot(dbs, ALL_TABLES) == before
    reason = 'INC-5002: compute2 was mapped by discover_hosts at 03:10'
    accepted = ansible(MODULE, dict(args, accept_unverified=True, unverified_reason=reason))
    assert not accepted.failed and accepted.changed, accepted['msg']
    assert accepted['unverified_guards'][0]['guard'] == 'target_not_mapped'
    assert load_journal(accepted['journal'])['unverified_reason'] == reason
    assert instance_row(dbs, instance)['host'] == 'compute2'
