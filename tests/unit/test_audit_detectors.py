"""The audit's detector logic on plain data: what each class decides once its rows are read."""

import datetime
import os

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import engine as auditing
from ansible_collections.stackmender.openstack.plugins.module_utils.audit import registry
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import attachments
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import common
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import info_caches
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import nova_instances
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import services
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import soft_delete
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import volumes
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder

MODULES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           'plugins', 'modules')
CELL1 = nova_cells.Cell('nova:cell1', uuid='11111111-1111-1111-1111-111111111111', mapping_id=2)
CELL0 = nova_cells.Cell('nova:cell0', uuid=nova_cells.CELL0_UUID, mapping_id=1)


def spec(name):
    return registry.BY_NAME[name]


def repair_of(fix):
    return (fix['module'].rsplit('.', 1)[-1], fix['args']) if fix else None


# ---------------------------------------------------------------- registry


def test_the_registry_lists_each_class_once_with_its_family_and_real_repairs():
    assert len(set(registry.CLASS_NAMES)) == len(registry.CLASSES) == 19
    families = set(entry.family for entry in registry.CLASSES)
    assert families == {'attachments', 'volumes', 'services', 'nova_instances', 'info_caches', 'soft_delete',
                        'placement'}
    for entry in registry.CLASSES:
        assert entry.function.__name__ == entry.name
        for module in entry.repairs:
            assert os.path.isfile(os.path.join(MODULES_DIR, module + '.py')), (entry.name, module)
    assert spec('volume_stuck').repairs == ('cinder_volume_state',)
    assert spec('allocation_wrong_provider').repairs == ()
    assert set(registry.THRESHOLDED) == {'volume_stuck', 'snapshot_stuck', 'instance_task_stuck', 'migration_unfinished'}
    # The engine's names are the registry's.
    assert auditing.CLASS_NAMES == registry.CLASS_NAMES and auditing.CLASS_TITLES == registry.CLASS_TITLES


def test_a_class_can_only_propose_a_repair_it_declares():
    fix = spec('bdm_without_attachment').repair('nova_bdm_purge', instance=['i1'], volume=['v1'])
    assert fix == {'module': 'stackmender.openstack.nova_bdm_purge', 'args': {'instance': ['i1'], 'volume': ['v1']}}
    with pytest.raises(ValueError, match='does not declare cinder_volume_state'):
        spec('bdm_without_attachment').repair('cinder_volume_state', volume=['v1'])
    with pytest.raises(ValueError, match='none'):
        spec('snapshot_stuck').repair('cinder_volume_state', volume=['v1'])


# ---------------------------------------------------------------- common and the engine's filters


def test_host_names_are_matched_exactly_by_their_parts():
    assert common.owner('ctl1@lvm#pool') == 'ctl1@lvm' and common.owner(None) is None and common.owner('') is None
    assert common.host_keys('ctl1@lvm#pool') == {'ctl1@lvm#pool', 'ctl1@lvm', 'ctl1'}
    assert common.host_keys('compute1') == {'compute1'} and common.host_keys(None) == set()


def test_findings_are_kept_by_project_host_part_and_age():
    now = datetime.datetime(2026, 1, 1, 12, 0, 0)
    audit = auditing.Audit({}, auditing.AuditOptions(hosts=['ctl1'], projects=['p1'], min_age=60))
    found = audit.finding(spec('volume_stuck'), 'msg', {}, project='p1', host='ctl1@lvm',
                          since=now - datetime.timedelta(seconds=90), now=now, key='volume/v1')
    assert found['key'] == 'volume_stuck:volume/v1' and found['age'] == 90 and found['severity'] == 'warning'
    assert audit.keep(found)
    assert not audit.keep(dict(found, host='ctl10@lvm'))
    assert not audit.keep(dict(found, project='p2'))
    assert not audit.keep(dict(found, age=30))


def test_thresholds_per_class_and_their_validation():
    options = auditing.AuditOptions(stuck_after={'default': 100, 'volume_stuck': 5})
    assert options.stuck_after == {'volume_stuck': 5, 'snapshot_stuck': 100, 'instance_task_stuck': 100,
                                   'migration_unfinished': 100}
    with pytest.raises(InputError, match='not a class with a threshold'):
        auditing.AuditOptions(stuck_after={'info_cache_empty': 1})
    with pytest.raises(InputError, match='not a class of this audit'):
        auditing.AuditOptions(classes=['volume_stuck', 'nonsense'])


def test_a_class_runs_only_with_its_databases():
    audit = auditing.Audit({'cinder_db': None}, auditing.AuditOptions())
    assert audit.unmet(spec('volume_stuck')) is None
    assert audit.unmet(spec('bdm_without_attachment')) == 'needs nova_db or nova_api_db'
    assert audit.unmet(spec('allocation_wrong_provider')) == 'needs nova_db or nova_api_db and placement_db'
    assert audit.unmet(spec('live_child_of_deleted_parent')) is None
    assert auditing.Audit({'placement_db': None}, auditing.AuditOptions()).unmet(
        spec('deleted_without_deleted_at')) == 'needs cinder_db, nova_db or nova_api_db'


# ---------------------------------------------------------------- attachments


def test_unmapped_volumes_leave_out_mapped_transitional_and_migration_targets():
    inuse = {'v-mapped': ('in-use', 'attached', None), 'v-orphan': ('in-use', 'attached', None),
             'v-detaching': ('detaching', 'attached', None), 'v-target': ('in-use', 'attached', 'target:v-src'),
             'v-migrating': ('in-use', 'attached', 'migrating')}
    assert sorted(attachments.unmapped_candidates(inuse, {'v-mapped'})) == ['v-migrating', 'v-orphan']


def test_why_nova_does_not_map_an_attached_volume():
    rows = [dict(instance_uuid='i1'), dict(instance_uuid='i2')]
    deleted = {'i1': dict(uuid='i1', deleted=5), 'i2': dict(uuid='i2', deleted=6)}
    assert attachments.unmapped_reason(rows, deleted) == 'its instance(s) i1, i2 are deleted'
    assert attachments.unmapped_reason(rows, {}) == 'Nova has no instance i1, i2'
    assert attachments.unmapped_reason(rows, {'i1': dict(uuid='i1', deleted=0)}) == \
        'Nova has no live block device mapping for it'
    assert attachments.unmapped_reason([], {}) == 'Nova has no live block device mapping for it'


def test_what_is_wrong_with_a_bdm():
    inuse = {'v-ok': ('in-use', 'attached', None)}
    live = {'a-ok': ('v-ok', 'i1', 'attached'), 'a-det': ('v-ok', 'i1', 'detached')}
    pairs = {('v-ok', 'i1')}

    def defect(volume_id, attachment_id, volume=None, instance='i1', live_pairs=None):
        return attachments.bdm_defect((CELL1, instance, volume_id, attachment_id), inuse, volume, live,
                                      pairs if live_pairs is None else live_pairs)

    assert defect('v-gone', None) == 'volume_missing'
    assert defect('v-del', None, volume=dict(deleted=1)) == 'volume_deleted'
    assert defect('v-ok', 'a-ok') is None
    assert defect('v-ok', 'a-missing') == 'attachment_gone'
    assert defect('v-ok', 'a-det') == 'attachment_detached'
    assert defect('v-ok', None) is None  # a legacy BDM Cinder pairs with the instance
    assert defect('v-ok', None, live_pairs=set()) == 'no_attachment'
    assert defect('v-avail', None, volume=dict(deleted=0), live_pairs=set()) == 'no_attachment'


def test_a_bdm_is_purged_unless_cinder_still_pairs_it_or_it_is_the_root_disk():
    entry = spec('bdm_without_attachment')
    fix, hint = attachments.bdm_repair(entry, dict(boot_index=1), 'i1', 'v1', set())
    assert repair_of(fix) == ('nova_bdm_purge', {'instance': ['i1'], 'volume': ['v1']}) and 'hard reboot' in hint
    fix, hint = attachments.bdm_repair(entry, dict(boot_index=0), 'i1', 'v1', set())
    assert fix is None and 'root disk' in hint
    fix, hint = attachments.bdm_repair(entry, dict(boot_index=1), 'i1', 'v1', {('v1', 'i1')})
    assert fix is None and 'volume_attachment refresh' in hint


def test_attachments_of_deleted_or_gone_instances():
    gone, mapped = nova_cells.Absence('i-gone', 'gone'), nova_cells.Absence('i-mapped', 'mapped')
    candidates = [('a1', 'v1', 'i-deleted'), ('a2', 'v2', 'i-gone'), ('a3', 'v3', 'i-mapped'), ('a4', 'v4', 'i-live')]
    instances = {'i-deleted': dict(deleted=9), 'i-live': dict(deleted=0)}
    assert attachments.orphaned_attachments(candidates, instances, {'i-gone': gone, 'i-mapped': mapped}) == [
        ('a1', 'deleted'), ('a2', 'missing')]


# ---------------------------------------------------------------- volumes


def test_stuck_statuses_are_cinders_operations_in_flight():
    assert set(common.STUCK_STATUSES) - {'error_deleting', 'migrating'} <= set(cinder.TRANSITIONAL_STATUSES)


def volume(status, migration_status=None):
    return dict(id='v1', status=status, migration_status=migration_status)


ATTACHED = [dict(attach_status='attached', instance_uuid='i1')]
BDM = [dict(instance_uuid='i1')]


@pytest.mark.parametrize('row, cinder_rows, nova_rows, repair, hint', [
    (volume('available', 'migrating'), [], [], ('cinder_volume_state', {'volume': ['v1'], 'migration_status': 'error'}),
     'ends the migration'),
    (volume('in-use', 'target:v0'), [], [], ('cinder_volume_state', {'volume': ['v1'], 'migration_status': 'error'}),
     'ends the migration'),
    (volume('creating'), [], None, ('cinder_volume_state', {'volume': ['v1'], 'status': 'error', 'from_status': ['creating']}),
     None),
    (volume('deleting'), [], [], ('cinder_volume_state', {'volume': ['v1'], 'status': 'deleted', 'from_status': ['deleting']}),
     'force-deletes'),
    (volume('error_deleting'), [], BDM, None, 'detach it from instance(s) i1 first'),
    (volume('detaching'), ATTACHED, None, None, 'give nova_db or nova_api_db'),
    (volume('detaching'), ATTACHED, [], ('cinder_volume_state', {'volume': ['v1'], 'status': 'available',
                                                                 'attach_status': 'detached', 'from_status': ['detaching']}),
     None),
    (volume('attaching'), ATTACHED, BDM, ('cinder_volume_state', {'volume': ['v1'], 'status': 'in-use',
                                                                  'attach_status': 'attached', 'from_status': ['attaching']}),
     'back to in-use'),
    (volume('attaching'), [], BDM, None, 'no completed attachment'),
], ids=['migrating', 'migration_target', 'creating', 'deleting', 'deleting_mapped', 'no_nova', 'unmapped', 'mapped',
        'mapped_unattached'])
def test_what_a_stuck_volume_is_reset_to(row, cinder_rows, nova_rows, repair, hint):
    _what, fix, advice = volumes.stuck_volume_action(spec('volume_stuck'), row, cinder_rows, nova_rows)
    assert repair_of(fix) == repair
    if hint is None:
        assert advice is None
    else:
        assert hint in advice


# ---------------------------------------------------------------- services


def service(host, up=True, disabled=False, cluster=None, forced_down=False):
    return dict(host=host, up=up, disabled=disabled, cluster_name=cluster, forced_down=forced_down)


def test_the_state_of_a_hosts_services():
    assert services.cinder_service_state([]) == 'missing'
    assert services.cinder_service_state([service('h@b', up=False)]) == 'down'
    assert services.cinder_service_state([service('h@b', disabled=True)]) == 'disabled'
    assert services.cinder_service_state([service('h@b', up=False), service('h@b')]) is None
    assert services.compute_service_state([]) == 'missing'
    assert services.compute_service_state([service('c1', up=False)]) == 'down'
    assert services.compute_service_state([service('c1', up=False, forced_down=True)]) == 'forced_down'
    assert services.compute_service_state([service('c1', disabled=True)]) is None  # disabled still runs its instances


def test_volume_hosts_without_a_serving_service_and_the_pools_in_use():
    known = {'ctl1@lvm': [service('ctl1@lvm')], 'ctl1@old': [service('ctl1@old', up=False)],
             'ctl2@ceph': [service('ctl2@ceph', up=False, cluster='c1')], 'ctl3@ceph': [service('ctl3@ceph', cluster='c1')]}
    groups = [('ctl1@lvm#p1', None), ('ctl1@old#p1', None), ('ctl1@gone#p2', None), ('ctl2@ceph#rbd', 'c1'),
              ('ctl10@lvm', None)]
    bad, pools = services.unavailable_volume_hosts(groups, known, services.clusters_up(known))
    assert dict((host, entry[:2]) for host, entry in bad.items()) == {
        'ctl1@old#p1': ('down', 'ctl1@old'), 'ctl1@gone#p2': ('missing', 'ctl1@gone'), 'ctl10@lvm': ('missing', 'ctl10@lvm')}
    assert pools == {'ctl1@lvm': {'p1'}, 'ctl1@old': {'p1'}, 'ctl1@gone': {'p2'}, 'ctl2@ceph': {'rbd'}}


def test_a_missing_service_is_rehosted_only_to_the_one_live_service_of_its_machine():
    entry = spec('volume_service_unavailable')
    known = {'ctl1@lvm': [service('ctl1@lvm')], 'ctl10@lvm': [service('ctl10@lvm')]}
    fix, hint = services.missing_service_advice(entry, dict(id='v1'), 'ctl1', known, {'ctl1@lvm': {'p1'}})
    assert repair_of(fix) == ('cinder_service_rehost', {'from_host': 'ctl1', 'to_host': 'ctl1@lvm#p1', 'volumes': ['v1']})
    fix, hint = services.missing_service_advice(entry, dict(id='v1'), 'ctl1', known, {'ctl1@lvm': {'p1', 'p2'}})
    assert fix is None and 'ctl1@lvm#<pool>' in hint and 'p1, p2' in hint
    two = dict(known, **{'ctl1@ceph': [service('ctl1@ceph')]})
    fix, hint = services.missing_service_advice(entry, dict(id='v1'), 'ctl1@old', two, {'ctl1@lvm': {'p1'}})
    assert fix is None and 'candidates on ctl1: ctl1@ceph, ctl1@lvm' in hint
    assert services.rehost_candidates('ctl9@x', known, {}) == ([], [])


# ---------------------------------------------------------------- nova instances


def test_a_stuck_task_is_aborted_when_migrating_else_reset():
    entry = spec('instance_task_stuck')
    fix, _hint = nova_instances.task_repair(entry, dict(uuid='i1', task_state='migrating'))
    assert repair_of(fix) == ('nova_task_state', {'instance': ['i1'], 'action': 'abort'})
    fix, _hint = nova_instances.task_repair(entry, dict(uuid='i1', task_state='rebooting'))
    assert repair_of(fix) == ('nova_task_state', {'instance': ['i1']})


def migration(**fields):
    row = dict(id=7, uuid='m-7', instance_uuid='i1', status='running', migration_type='live-migration',
               instance_deleted=0)
    row.update(fields)
    return row


def test_what_ends_an_unfinished_migration():
    entry = spec('migration_unfinished')
    fix, _hint, waiting = nova_instances.migration_action(entry, migration())
    assert repair_of(fix) == ('nova_task_state', {'instance': ['i1'], 'migration': ['m-7'], 'action': 'abort'})
    assert not waiting
    fix, _hint, _waiting = nova_instances.migration_action(entry, migration(migration_type='resize', status='migrating',
                                                                            uuid=None))
    assert repair_of(fix) == ('nova_task_state', {'migration': [7]})
    fix, hint, waiting = nova_instances.migration_action(entry, migration(migration_type='resize', status='finished'))
    assert fix is None and waiting and 'confirm or revert' in hint
    for deleted in (None, 12):
        fix, hint, _waiting = nova_instances.migration_action(entry, migration(instance_deleted=deleted))
        assert fix is None and 'leftover' in hint


def test_instances_on_an_unknown_node_or_a_wrong_compute_id():
    nodes = {('c1', 'c1.example'): dict(id=3, uuid='n3', hypervisor_hostname='c1.example')}
    groups = [('c1', 'c1.example', 3, 10), ('c1', 'c1.example', 4, 1), ('c1', 'C1.example', None, 1),
              ('c1', 'c1.example', None, 2), ('c2', 'c2', None, 1)]
    assert nova_instances.node_defects(groups, nodes, True) == {
        ('c1', 'c1.example', 4): 'compute_id_mismatch', ('c1', 'C1.example', None): 'node_unknown',
        ('c2', 'c2', None): 'node_unknown'}
    assert nova_instances.node_defects(groups, nodes, False) == {
        ('c1', 'C1.example', None): 'node_unknown', ('c2', 'c2', None): 'node_unknown'}
    hint = nova_instances.node_hint('node_unknown', dict(uuid='i1', host='c1'), list(nodes.values()))
    assert 'nova_instance_host instance=i1 host=c1 node=c1.example' in hint
    assert nova_instances.node_hint('node_unknown', dict(uuid='i1', host='c2'), []) == \
        'host c2 has 0 live compute node(s): find the node the instance runs on'


def test_instance_mappings_missing_null_or_of_another_cell():
    live = {'i-ok': (CELL1,), 'i-none': (CELL1,), 'i-null': (CELL1,), 'i-wrong': (CELL1,), 'i-0': (CELL0,)}
    mappings = {'i-ok': 2, 'i-null': None, 'i-wrong': 5, 'i-0': 1}
    assert [(uuid, cell.option, reason) for uuid, cell, reason in nova_instances.mapping_defects(live, mappings)] == [
        ('i-none', 'nova:cell1', 'missing'), ('i-null', 'nova:cell1', 'cell_null'), ('i-wrong', 'nova:cell1', 'wrong_cell')]
    single = nova_cells.Cell('nova_db')  # a partial view: the cell's mapping id is unknown
    assert nova_instances.mapping_defects({'i1': (single,)}, {'i1': 5}) == []


# ---------------------------------------------------------------- placement


def test_allocations_outside_the_compute_node_tree():
    providers = {1: ('n1', 'c1', 1), 2: ('n1-child', 'c1 vgpu', 1), 3: ('n2', 'c2', 3), 4: ('shared', 'nfs', 4)}
    by_uuid = dict((entry[0], key) for key, entry in providers.items())
    nodes = {('c1', 'c1'): dict(uuid='n1')}

    def wrong(instance, ids, migrating=False):
        return placement.wrong_providers(instance, ids, providers, by_uuid, {4}, nodes, migrating)

    assert wrong((CELL1, 'c1', 'c1', None), {1, 2, 4}) == []
    assert wrong((CELL1, 'c1', 'c1', None), {1, 3}) == [3]
    assert wrong((CELL1, None, None, None), {1}) == [1]  # no host: any allocation but a sharing one is wrong
    assert wrong((CELL1, 'c1', 'c1', 'resize_migrating'), {3}) is None
    assert wrong((CELL1, 'c1', 'c1', None), {3}, migrating=True) is None
    assert wrong((CELL1, 'c9', 'c9', None), {3}) is None  # unknown node: instance_node_unknown's
    assert wrong((CELL0, None, None, None), {1}) is None


# ---------------------------------------------------------------- info caches and soft deletes


@pytest.mark.parametrize('row, expected', [
    (dict(vm_state='active', id=None, network_info=None), ('missing', 'warning')),
    (dict(vm_state='active', id=1, network_info=None), ('null', 'warning')),
    (dict(vm_state='active', id=1, network_info='  '), ('empty', 'warning')),
    (dict(vm_state='active', id=1, network_info=' [] '), ('empty_list', 'info')),
    (dict(vm_state='active', id=1, network_info='[{"id": "p1"}]'), None),
    (dict(vm_state='building', id=None, network_info=None), None),
])
def test_missing_and_empty_caches(row, expected):
    assert info_caches.cache_emptiness(row) == expected


def test_live_children_are_grouped_by_parent_and_table():
    groups = soft_delete.group_children({}, 'nova:cell1', 'instance', [
        ('instance_extra', 4, 'i1', 'then', 'p1', 'c1'), ('instance_extra', 5, 'i1', 'then', 'p1', 'c1'),
        ('block_device_mapping', 9, 'i1', 'then', 'p1', 'c1'), ('instance_extra', 6, 'i2', 'later', 'p2', None)])
    assert groups == {('nova:cell1', 'instance', 'i1', 'instance_extra'): ['then', 'p1', 'c1', [4, 5]],
                      ('nova:cell1', 'instance', 'i1', 'block_device_mapping'): ['then', 'p1', 'c1', [9]],
                      ('nova:cell1', 'instance', 'i2', 'instance_extra'): ['later', 'p2', None, [6]]}
    assert ('volume_attachment', 'volume_id') not in soft_delete.CINDER_VOLUME_CHILD_TABLES
    assert ('snapshots', 'volume_id') in soft_delete.CINDER_VOLUME_CHILD_TABLES
