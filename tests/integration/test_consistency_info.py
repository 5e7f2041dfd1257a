"""consistency_info against the real Nova/Cinder/Placement schemas of every release.

One cloud holds every class of inconsistency, next to healthy look-alikes
that must not be reported: the prefix trap (controller1 / controller10), a
consistent in-use volume, a legacy BDM without attachment id, properly
soft-deleted rows, fresh transitional states, cell0 instances, nested and
sharing resource providers. The tests assert the exact findings per class,
the filters, the repair arguments, the reports, and that a finding's repair
fed straight into the named module makes the finding go away.
"""

import json
import os
import uuid

import pytest

from tests.harness.builder import new_uuid
from tests.integration.helpers import assert_clean_failure, db_args, snapshot

MODULE = 'consistency_info'
STUCK = 7200  # seconds the stuck rows have not changed; the default threshold is 3600
ALL_DATABASES = ('cinder', 'nova_api', 'placement')
WATCHED_TABLES = [('cinder', 'volumes'), ('cinder', 'volume_attachment'), ('cinder', 'services'),
                  ('nova', 'instances'), ('nova', 'block_device_mapping'), ('nova', 'instance_info_caches'),
                  ('nova', 'migrations'), ('nova_api', 'instance_mappings'), ('placement', 'allocations')]


class Ids(dict):
    __getattr__ = dict.__getitem__


def age(dbs, logical, table, column, key, seconds=STUCK):
    dbs.execute(logical, 'UPDATE `%s` SET updated_at = UTC_TIMESTAMP() - INTERVAL %%s SECOND WHERE `%s` = %%s'
                % (table, column), (seconds, key))


def build_cloud(cloud, dbs):
    """Every class of inconsistency, once or more, and the healthy rows around them."""
    ids = Ids()

    def instance(host, **columns):
        columns.setdefault('network_info', cloud.network_info())
        return cloud.instance(host=host, **columns)

    # --- Nova hosts: two healthy ones whose names are prefixes of each other, a dead one,
    # a fenced one, and one with a compute node but no service at all.
    ids.c1 = cloud.compute_host('controller1')
    ids.c10 = cloud.compute_host('controller10')
    cloud.compute_host('compute-dead', up=False)
    cloud.compute_host('compute-fenced', forced_down=True)
    cloud.compute_node('compute-gone', service_id=None)

    # --- Cinder services: the multi-backend rename left 'controller1' volumes behind.
    cloud.cinder_service('cinder@lvm')
    cloud.cinder_service('controller1@lvm')
    cloud.cinder_service('controller10@lvm')
    cloud.cinder_service('controller1', deleted=True)  # the legacy row, properly soft-deleted
    cloud.cinder_service('storage-down@ceph', up=False)
    cloud.cinder_service('storage-off@nfs', disabled=True, disabled_reason='maintenance')

    # Healthy: a consistently attached volume, with allocations on its own compute node.
    ids.i_ok = instance('controller1')
    ids.ok = cloud.attach_volume(ids.i_ok)
    cloud.instance_allocations(ids.i_ok, ids.c1['rp_uuid'])
    # Healthy: a legacy attachment (BDM without attachment_id) with a live Cinder attachment.
    ids.i_legacy = instance('controller10')
    ids.v_legacy_ok = cloud.volume(status='in-use', attach_status='attached')
    cloud.attachment(ids.v_legacy_ok, ids.i_legacy, 'controller10')
    cloud.bdm(ids.i_legacy, ids.v_legacy_ok, attachment_id=None)

    # volume_attached_without_bdm: in-use, attachment to a live instance, no BDM.
    ids.i_nobdm = instance('controller1')
    ids.v_nobdm = cloud.volume(status='in-use', attach_status='attached')
    ids.a_nobdm = cloud.attachment(ids.v_nobdm, ids.i_nobdm, 'controller1')
    # ... and in-use for an instance Nova deleted (its BDM went with it): also attachment_of_deleted_instance.
    ids.i_deleted = instance('controller1')
    ids.v_delinst = cloud.volume(status='in-use', attach_status='attached')
    ids.a_delinst = cloud.attachment(ids.v_delinst, ids.i_deleted, 'controller1')
    cloud.bdm(ids.i_deleted, ids.v_delinst, attachment_id=ids.a_delinst)
    cloud.destroy_instance(ids.i_deleted)

    # attachment_of_deleted_instance only: a reserved attachment of a deleted instance, and one of an
    # instance no cell and no mapping knows (reported only when every cell is read).
    ids.i_del2 = instance('controller10')
    cloud.destroy_instance(ids.i_del2)
    ids.v_reserved = cloud.volume(status='available')
    ids.a_reserved = cloud.attachment(ids.v_reserved, ids.i_del2, None, attach_status='reserved',
                                      connector=None, connection_info=None)
    ids.v_ghost = cloud.volume(status='available')
    ids.i_ghost = new_uuid()
    ids.a_ghost = cloud.attachment(ids.v_ghost, ids.i_ghost, None, attach_status='reserved', connector=None,
                                   connection_info=None)

    # bdm_without_attachment: Cinder let the volume go (attachment soft-deleted), Nova kept the BDM.
    ids.i_stale = instance('controller1')
    ids.v_stale = cloud.volume(status='available')
    ids.a_stale = cloud.attachment(ids.v_stale, ids.i_stale, 'controller1', deleted=True, attach_status='detached')
    ids.b_stale = cloud.bdm(ids.i_stale, ids.v_stale, attachment_id=ids.a_stale)
    # ... a BDM of a volume Cinder never had, and one of a volume Cinder deleted.
    ids.i_stale2 = instance('controller10')
    ids.v_missing = new_uuid()
    ids.b_missing = cloud.bdm(ids.i_stale2, ids.v_missing, attachment_id=new_uuid(), device_name='/dev/vdb')
    ids.v_gone = cloud.volume(status='available')
    cloud.destroy_volume(ids.v_gone)
    ids.b_gone = cloud.bdm(ids.i_stale2, ids.v_gone, attachment_id=None, device_name='/dev/vdc')

    # volume_stuck: attaching with Nova and Cinder agreeing (back to in-use), detaching without a BDM
    # (to available), creating, error_deleting, mid-migration; a fresh detaching volume is not stuck.
    ids.i_att = instance('controller10')
    ids.v_attaching = cloud.volume(status='attaching', attach_status='attached')
    ids.a_attaching = cloud.attachment(ids.v_attaching, ids.i_att, 'controller10')
    cloud.bdm(ids.i_att, ids.v_attaching, attachment_id=ids.a_attaching)
    ids.v_detaching = cloud.volume(status='detaching', attach_status='attached')
    ids.a_detaching = cloud.attachment(ids.v_detaching, ids.i_nobdm, 'controller1', attach_status='detaching',
                                       mountpoint='/dev/vdc')
    ids.v_creating = cloud.volume(status='creating', host=None)
    ids.v_errdel = cloud.volume(status='error_deleting')
    ids.v_migrating = cloud.volume(status='available', migration_status='migrating')
    for volume in (ids.v_attaching, ids.v_detaching, ids.v_creating, ids.v_errdel, ids.v_migrating):
        age(dbs, 'cinder', 'volumes', 'id', volume)
    ids.v_detaching_fresh = cloud.volume(status='detaching', attach_status='attached')
    cloud.attachment(ids.v_detaching_fresh, ids.i_ok, 'controller1', attach_status='detaching', mountpoint='/dev/vdd')
    cloud.bdm(ids.i_ok, ids.v_detaching_fresh, device_name='/dev/vdd')

    # snapshot_stuck, next to a fresh creating snapshot and an old available one.
    ids.v_snapped = cloud.volume(status='available')
    ids.s_creating = cloud.snapshot(ids.v_snapped, status='creating')
    age(dbs, 'cinder', 'snapshots', 'id', ids.s_creating)
    cloud.snapshot(ids.v_snapped, status='creating')
    ids.s_ok = cloud.snapshot(ids.v_snapped, status='available')
    age(dbs, 'cinder', 'snapshots', 'id', ids.s_ok)

    # attachment_of_deleted_volume: the volume was deleted, one attachment row stayed live.
    ids.v_attdel = cloud.volume(status='in-use', attach_status='attached')
    ids.a_attdel = cloud.attachment(ids.v_attdel, ids.i_ok, 'controller1', mountpoint='/dev/vde')
    cloud.destroy_volume(ids.v_attdel)
    dbs.execute('cinder', "UPDATE volume_attachment SET deleted = 0, deleted_at = NULL, attach_status = 'attached', "
                          "detach_time = NULL WHERE id = %s", (ids.a_attdel,))

    # volume_service_unavailable: legacy host (no live service), a down and a disabled service;
    # volumes on controller1@lvm and controller10@lvm are fine, a deleted legacy volume is ignored.
    ids.v_legacy = cloud.volume(host='controller1#DEFAULT')
    ids.v_new = cloud.volume(host='controller1@lvm#lvm')
    ids.v_10 = cloud.volume(host='controller10@lvm#lvm')
    cloud.destroy_volume(cloud.volume(host='controller1#DEFAULT'))
    ids.v_down = cloud.volume(host='storage-down@ceph#ceph')
    ids.v_off = cloud.volume(host='storage-off@nfs#nfs')

    # instance_on_unavailable_host: down, forced down, no service; a deleted instance on the dead host is ignored.
    ids.i_dead = instance('compute-dead')
    ids.i_fenced = instance('compute-fenced')
    ids.i_gone = instance('compute-gone')
    cloud.destroy_instance(instance('compute-dead'))

    # instance_task_stuck, and a task that just started.
    ids.i_task = instance('controller10', task_state='rebooting')
    age(dbs, 'nova', 'instances', 'uuid', ids.i_task)
    instance('controller10', task_state='rebooting')
    # Its allocations are on the wrong node, but a task is in flight: not reported.
    cloud.instance_allocations(ids.i_task, ids.c1['rp_uuid'])

    # migration_unfinished: a live migration running for hours (its port profile says migrating_to,
    # rightly, and its allocations are on the destination, rightly), and a resize waiting for confirmation.
    ids.i_mig = instance('controller1', network_info=cloud.network_info(profile={'migrating_to': 'controller10'}))
    ids.m_live = cloud.migration(ids.i_mig, 'controller1', 'controller10', status='running')
    age(dbs, 'nova', 'migrations', 'id', ids.m_live)
    cloud.instance_allocations(ids.i_mig, ids.c10['rp_uuid'])
    ids.i_resize = instance('controller10')
    ids.m_resize = cloud.migration(ids.i_resize, 'controller10', 'controller10', status='finished',
                                   migration_type='resize')
    age(dbs, 'nova', 'migrations', 'id', ids.m_resize)
    cloud.migration(ids.i_ok, 'controller10', 'controller1', status='completed')
    ids.m_fresh = cloud.migration(ids.i_legacy, 'controller1', 'controller10', status='running')

    # Info caches: a failed binding, a leftover migrating_to, NULL, [], none at all; a cache whose text
    # mentions binding_failed without a VIF of that type, and a building instance without ports.
    ids.i_bf = instance('controller1', network_info=cloud.network_info(vif_type='binding_failed'),
                        project_id='0badc0de0badc0de0badc0de0badc0de')
    ids.i_mt = instance('controller10', network_info=cloud.network_info(profile={'migrating_to': 'controller1'}))
    # A VIF without a network (what makes the Compute API answer 500), beside a VIF whose network is there.
    ids.i_nonet = instance('controller1', network_info=cloud.network_info(network=None))
    instance('controller10', network_info=cloud.network_info(details={'note': 'was binding_failed once'}))
    ids.i_null = instance('controller1', network_info=None)
    ids.i_emptylist = instance('controller1', network_info='[]')
    ids.i_nocache = instance('controller1')
    dbs.execute('nova', 'DELETE FROM instance_info_caches WHERE instance_uuid = %s', (ids.i_nocache,))
    instance('controller1', network_info='[]', vm_state='building', power_state=0)

    # instance_node_unknown: a node that is not a compute node, and a compute_id of another node.
    ids.i_node = instance('controller1', node='controller1.example.org')
    ids.i_cid = instance('controller10', compute_id=ids.c1['compute_node_id'])

    # instance_mapping_missing: none, NULL cell, the wrong cell.
    ids.i_unmapped = instance('controller1')
    dbs.execute('nova_api', 'DELETE FROM instance_mappings WHERE instance_uuid = %s', (ids.i_unmapped,))
    ids.i_nullmap = instance('controller1')
    dbs.execute('nova_api', 'UPDATE instance_mappings SET cell_id = NULL WHERE instance_uuid = %s', (ids.i_nullmap,))
    ids.i_wrongcell = instance('controller1')
    dbs.execute('nova_api', 'UPDATE instance_mappings SET cell_id = %s WHERE instance_uuid = %s',
                (cloud.cell_id('cell0'), ids.i_wrongcell))

    # Cell0: a never-scheduled instance with a BDM of an available volume and no ports: all normal there.
    ids.i_cell0 = cloud.instance(host=None, vm_state='error', power_state=0, cell='cell0')
    ids.v_cell0 = cloud.volume(status='available')
    cloud.bdm(ids.i_cell0, ids.v_cell0, cell='cell0')

    # live_child_of_deleted_parent and deleted_without_deleted_at, beside properly deleted rows.
    ids.i_child = instance('controller1')
    cloud.destroy_instance(ids.i_child)
    ids.meta_child = cloud.insert('nova', 'instance_metadata', {
        'created_at': None, 'updated_at': None, 'deleted_at': None, 'deleted': 0, 'key': 'role', 'value': 'db',
        'instance_uuid': ids.i_child})
    ids.v_child = cloud.volume()
    cloud.destroy_volume(ids.v_child)
    ids.vmeta_child = cloud.volume_metadata(ids.v_child, 'role', 'db')
    ids.i_noda = instance('controller10')
    cloud.destroy_instance(ids.i_noda)
    dbs.execute('nova', 'UPDATE instances SET deleted_at = NULL WHERE uuid = %s', (ids.i_noda,))
    ids.v_noda = cloud.volume()
    cloud.destroy_volume(ids.v_noda)
    dbs.execute('cinder', 'UPDATE volumes SET deleted_at = NULL WHERE id = %s', (ids.v_noda,))

    # Placement: wrong provider; beside a nested provider of the right node and a sharing provider.
    ids.i_wrong_alloc = instance('controller1')
    cloud.instance_allocations(ids.i_wrong_alloc, ids.c10['rp_uuid'])
    ids.i_nested = instance('controller10')
    cloud.instance_allocations(ids.i_nested, ids.c10['rp_uuid'])
    gpu = cloud.resource_provider(name='controller10_pci_0000_3b_00_0', parent=ids.c10['rp_uuid'])
    cloud.inventory(gpu, 'VGPU', 4)
    cloud.allocation(ids.i_nested, gpu, 'VGPU', 1)
    shared = cloud.resource_provider(name='shared-disk')
    cloud.inventory(shared, 'DISK_GB', 1000)
    cloud.provider_trait(shared, 'MISC_SHARES_VIA_AGGREGATE')
    ids.i_shared = instance('controller1')
    cloud.allocation(ids.i_shared, ids.c1['rp_uuid'], 'VCPU', 1)
    cloud.allocation(ids.i_shared, shared, 'DISK_GB', 1)
    return ids


def expected_keys(ids, cell='nova:cell1', every_cell=True):
    """{class: set of finding keys} the cloud above must produce, no more and no less."""
    def instance_key(uuid):
        return '%s/instance/%s' % (cell, uuid)
    expected = {
        'volume_attached_without_bdm': {'volume/' + ids.v_nobdm, 'volume/' + ids.v_delinst},
        'bdm_without_attachment': {'%s/bdm/%s' % (cell, ids.b_stale), '%s/bdm/%s' % (cell, ids.b_missing),
                                   '%s/bdm/%s' % (cell, ids.b_gone)},
        'volume_stuck': set('volume/' + volume for volume in (ids.v_attaching, ids.v_detaching, ids.v_creating,
                                                              ids.v_errdel, ids.v_migrating)),
        'snapshot_stuck': {'snapshot/' + ids.s_creating},
        'attachment_of_deleted_volume': {'attachment/' + ids.a_attdel},
        'attachment_of_deleted_instance': set('attachment/' + attachment for attachment in (
            [ids.a_delinst, ids.a_reserved] + ([ids.a_ghost] if every_cell else []))),
        'volume_service_unavailable': set('volume/' + volume for volume in (ids.v_legacy, ids.v_down, ids.v_off)),
        'instance_on_unavailable_host': set(map(instance_key, (ids.i_dead, ids.i_fenced, ids.i_gone))),
        'instance_task_stuck': {instance_key(ids.i_task)},
        'migration_unfinished': {'%s/migration/%s' % (cell, ids.m_live), '%s/migration/%s' % (cell, ids.m_resize)},
        'info_cache_binding_failed': {instance_key(ids.i_bf)},
        'info_cache_migrating_to': {instance_key(ids.i_mt)},
        'info_cache_vif_without_network': {instance_key(ids.i_nonet)},
        'info_cache_empty': set(map(instance_key, (ids.i_null, ids.i_emptylist, ids.i_nocache))),
        'instance_node_unknown': set(map(instance_key, (ids.i_node, ids.i_cid))),
        'instance_mapping_missing': set(map(instance_key, (ids.i_unmapped, ids.i_nullmap, ids.i_wrongcell))),
        'live_child_of_deleted_parent': {'%s/instance/%s/instance_metadata' % (cell, ids.i_child),
                                         'cinder_db/volume/%s/volume_metadata' % ids.v_child},
        'deleted_without_deleted_at': {'%s/instances' % cell, 'cinder_db/volumes'},
        'allocation_wrong_provider': {instance_key(ids.i_wrong_alloc)},
    }
    return dict((name, set('%s:%s' % (name, key) for key in keys)) for name, keys in expected.items())


def found_keys(result):
    found = {}
    for finding in result['findings']:
        found.setdefault(finding['class'], set()).add(finding['key'])
    return found


def by_key(result):
    return dict((finding['key'], finding) for finding in result['findings'])


def audit(ansible, dbs, *logicals, check=False, **extra):
    # Services built up report "now" and those built down an hour ago: a 30 min service_down_time keeps
    # each on its side however slowly a loaded machine gets from building the cloud to auditing it.
    extra.setdefault('service_down_time', 1800)
    result = ansible(MODULE, db_args(dbs, *(logicals or ALL_DATABASES), **extra), check=check)
    assert not result.failed, result.get('msg')
    assert result.changed is False
    return result


def test_every_class_is_found_exactly_and_nothing_else(ansible, dbs, cloud):
    ids = build_cloud(cloud, dbs)
    before = snapshot(dbs, WATCHED_TABLES)
    result = audit(ansible, dbs)
    expected = expected_keys(ids)
    found = found_keys(result)
    for name in expected:
        assert found.get(name, set()) == expected[name], name
    assert set(found) == set(expected)
    assert result['skipped_classes'] == []
    assert result['counts'] == dict((name, len(keys)) for name, keys in expected.items())
    assert [cell['name'] for cell in result['cells']] == ['nova:cell0', 'nova:cell1', 'nova:cell2']
    assert result['cells_complete'] is True
    assert snapshot(dbs, WATCHED_TABLES) == before, 'the audit wrote something'
    findings = by_key(result)

    # Repairs that can be fed to the modules as they are.
    def finding(name, key):
        return findings['%s:%s' % (name, key)]
    assert finding('volume_attached_without_bdm', 'volume/' + ids.v_nobdm)['repair'] == {
        'module': 'stackmender.openstack.cinder_volume_state',
        'args': {'volume': [ids.v_nobdm], 'status': 'available', 'attach_status': 'detached', 'from_status': ['in-use']}}
    deleted = finding('volume_attached_without_bdm', 'volume/' + ids.v_delinst)
    assert 'are deleted' in deleted['message'] and deleted['resources']['instances'] == [ids.i_deleted]
    stale = finding('bdm_without_attachment', 'nova:cell1/bdm/%s' % ids.b_stale)
    assert stale['repair'] == {'module': 'stackmender.openstack.nova_bdm_purge',
                               'args': {'instance': [ids.i_stale], 'volume': [ids.v_stale]}}
    assert stale['resources']['reason'] == 'attachment_deleted' and stale['host'] == 'controller1'
    assert finding('bdm_without_attachment', 'nova:cell1/bdm/%s' % ids.b_missing)['resources']['reason'] == 'volume_missing'
    assert finding('bdm_without_attachment', 'nova:cell1/bdm/%s' % ids.b_gone)['resources']['reason'] == 'volume_deleted'
    stuck = dict((volume, finding('volume_stuck', 'volume/' + volume)['repair']['args']) for volume in (
        ids.v_attaching, ids.v_detaching, ids.v_creating, ids.v_errdel, ids.v_migrating))
    assert stuck == {
        ids.v_attaching: {'volume': [ids.v_attaching], 'status': 'in-use', 'attach_status': 'attached',
                          'from_status': ['attaching']},
        ids.v_detaching: {'volume': [ids.v_detaching], 'status': 'available', 'attach_status': 'detached',
                          'from_status': ['detaching']},
        ids.v_creating: {'volume': [ids.v_creating], 'status': 'error', 'from_status': ['creating']},
        ids.v_errdel: {'volume': [ids.v_errdel], 'status': 'deleted', 'from_status': ['error_deleting']},
        ids.v_migrating: {'volume': [ids.v_migrating], 'migration_status': 'error'},
    }
    assert finding('volume_stuck', 'volume/' + ids.v_detaching)['age'] >= STUCK
    assert finding('snapshot_stuck', 'snapshot/' + ids.s_creating)['repair'] is None
    assert finding('attachment_of_deleted_instance', 'attachment/' + ids.a_delinst)['repair']['args'] == {
        'volume': [ids.v_delinst], 'status': 'available', 'attach_status': 'detached', 'from_status': ['in-use']}
    assert finding('attachment_of_deleted_instance', 'attachment/' + ids.a_reserved)['repair']['args'] == {
        'volume': [ids.v_reserved], 'status': 'available', 'attach_status': 'detached', 'from_status': ['available']}
    assert finding('attachment_of_deleted_instance', 'attachment/' + ids.a_ghost)['resources']['instance_state'] == 'missing'

    legacy = finding('volume_service_unavailable', 'volume/' + ids.v_legacy)
    assert legacy['severity'] == 'critical' and legacy['host'] == 'controller1'
    assert legacy['repair'] == {'module': 'stackmender.openstack.cinder_service_rehost',
                                'args': {'from_host': 'controller1', 'to_host': 'controller1@lvm#lvm',
                                         'volumes': [ids.v_legacy]}}
    down = finding('volume_service_unavailable', 'volume/' + ids.v_down)
    assert down['severity'] == 'error' and down['repair'] is None and 'start it' in down['hint']
    assert down['age'] >= 3000  # counted from the service's last heartbeat, an hour ago
    off = finding('volume_service_unavailable', 'volume/' + ids.v_off)
    assert off['severity'] == 'warning' and 'maintenance' in off['hint']

    severities = dict((uuid, finding('instance_on_unavailable_host', 'nova:cell1/instance/' + uuid)['severity'])
                      for uuid in (ids.i_dead, ids.i_fenced, ids.i_gone))
    assert severities == {ids.i_dead: 'error', ids.i_fenced: 'error', ids.i_gone: 'critical'}
    assert finding('instance_on_unavailable_host', 'nova:cell1/instance/' + ids.i_fenced)['resources'][
        'service_state'] == 'forced_down'
    assert finding('migration_unfinished', 'nova:cell1/migration/%s' % ids.m_resize)['severity'] == 'info'
    assert finding('migration_unfinished', 'nova:cell1/migration/%s' % ids.m_resize)['repair'] is None
    live = finding('migration_unfinished', 'nova:cell1/migration/%s' % ids.m_live)['repair']
    assert live['module'] == 'stackmender.openstack.nova_task_state' and live['args']['action'] == 'abort'
    assert live['args']['instance'] == [ids.i_mig] and len(live['args']['migration']) == 1
    assert finding('instance_task_stuck', 'nova:cell1/instance/' + ids.i_task)['repair'] == {
        'module': 'stackmender.openstack.nova_task_state', 'args': {'instance': [ids.i_task]}}
    for name, instance_uuid in (('info_cache_binding_failed', ids.i_bf), ('info_cache_migrating_to', ids.i_mt)):
        assert finding(name, 'nova:cell1/instance/' + instance_uuid)['repair'] == {
            'module': 'stackmender.openstack.nova_network_info_cache', 'args': {'instance': [instance_uuid]}}
    bare = finding('info_cache_vif_without_network', 'nova:cell1/instance/' + ids.i_nonet)
    assert bare['severity'] == 'critical' and 'answers 500' in bare['message']
    assert bare['repair'] == {'module': 'stackmender.openstack.nova_network_info_cache',
                              'args': {'instance': [ids.i_nonet], 'binding_from': 'neutron'}}
    caches = dict((uuid, finding('info_cache_empty', 'nova:cell1/instance/' + uuid)) for uuid in (
        ids.i_null, ids.i_emptylist, ids.i_nocache))
    assert [(caches[uuid]['resources']['cache'], caches[uuid]['severity']) for uuid in (
        ids.i_null, ids.i_emptylist, ids.i_nocache)] == [('null', 'warning'), ('empty_list', 'info'),
                                                         ('missing', 'warning')]
    node = finding('instance_node_unknown', 'nova:cell1/instance/' + ids.i_node)
    assert node['resources']['reason'] == 'node_unknown' and node['repair'] is None
    assert 'host=controller1 node=controller1,' in node['hint']
    assert finding('instance_node_unknown', 'nova:cell1/instance/' + ids.i_cid)['resources'][
        'reason'] == 'compute_id_mismatch'
    reasons = dict((uuid, finding('instance_mapping_missing', 'nova:cell1/instance/' + uuid)['resources']['reason'])
                   for uuid in (ids.i_unmapped, ids.i_nullmap, ids.i_wrongcell))
    assert reasons == {ids.i_unmapped: 'missing', ids.i_nullmap: 'cell_null', ids.i_wrongcell: 'wrong_cell'}
    child = finding('live_child_of_deleted_parent', 'nova:cell1/instance/%s/instance_metadata' % ids.i_child)
    assert child['resources']['rows'] == [ids.meta_child] and child['resources']['count'] == 1
    without = finding('deleted_without_deleted_at', 'cinder_db/volumes')
    assert without['resources']['rows'] == [ids.v_noda] and without['project'] is None
    wrong = finding('allocation_wrong_provider', 'nova:cell1/instance/' + ids.i_wrong_alloc)
    assert wrong['resources']['providers'] == [ids.c10['rp_uuid']]
    assert wrong['resources']['expected_provider'] == ids.c1['rp_uuid']

    # Every finding is complete; the evidence never carries secrets.
    for item in result['findings']:
        assert set(item) == {'class', 'severity', 'key', 'message', 'resources', 'project', 'host', 'age', 'since',
                             'evidence', 'repair', 'hint'}
        assert item['severity'] in ('critical', 'error', 'warning', 'info')
        assert item['repair'] is not None or item['hint']
    text = json.dumps(result)
    for secret in ('not-a-secret', 'connection_info', 'connector', 'iqn.2004-10', '10.0.0.5', 'database_connection',
                   'rabbit://'):
        assert secret not in text, secret
    summary = result['summary']
    assert summary['controller1']['classes']['volume_service_unavailable'] == 1  # the legacy cinder host
    assert 'volume_service_unavailable' not in summary['controller10']['classes']
    assert summary['storage-off@nfs'] == {'total': 1, 'classes': {'volume_service_unavailable': 1}}
    assert summary['compute-gone'] == {'total': 1, 'classes': {'instance_on_unavailable_host': 1}}
    assert summary['(no host)']['classes']['deleted_without_deleted_at'] == 2
    assert sum(entry['total'] for entry in result['summary'].values()) == len(result['findings'])
    assert result['severity_counts']['critical'] == 3  # the VIF without network is the third


def test_one_cell_through_nova_db_and_what_is_skipped(ansible, dbs, cloud):
    ids = build_cloud(cloud, dbs)
    result = audit(ansible, dbs, 'cinder', 'nova')
    expected = expected_keys(ids, cell='nova_db', every_cell=False)
    del expected['instance_mapping_missing'], expected['allocation_wrong_provider']
    found = found_keys(result)
    for name in expected:
        assert found.get(name, set()) == expected[name], name
    assert set(found) == set(expected)
    assert result['skipped_classes'] == [
        {'class': 'instance_mapping_missing', 'reason': 'needs nova_api_db'},
        {'class': 'allocation_wrong_provider', 'reason': 'needs placement_db'}]
    assert result['cells'] == [{'name': 'nova_db', 'uuid': None, 'cell0': False}]

    assert result['cells_complete'] is False
    # nova_db plus nova_api_db: every cell is read, nova_db is recognised as cell1, the mappings are checked.
    both = audit(ansible, dbs, 'cinder', 'nova', 'nova_api', classes=['instance_mapping_missing'])
    assert found_keys(both) == {'instance_mapping_missing': set(
        'instance_mapping_missing:nova:cell1/instance/%s' % uuid for uuid in (ids.i_unmapped, ids.i_nullmap,
                                                                              ids.i_wrongcell))}
    assert both['cells_complete'] is True and len(both['cells']) == 3

    cinder_only = audit(ansible, dbs, 'cinder')
    assert [entry['class'] for entry in cinder_only['skipped_classes']] == [
        'volume_attached_without_bdm', 'bdm_without_attachment', 'attachment_of_deleted_instance',
        'instance_on_unavailable_host', 'instance_task_stuck', 'migration_unfinished', 'info_cache_binding_failed',
        'info_cache_vif_without_network', 'info_cache_migrating_to', 'info_cache_empty', 'instance_node_unknown', 'instance_mapping_missing',
        'allocation_wrong_provider']
    assert cinder_only['skipped_classes'][0]['reason'] == 'needs nova_db or nova_api_db'
    stuck = by_key(cinder_only)['volume_stuck:volume/' + ids.v_detaching]
    assert stuck['repair'] is None and 'give nova_db or nova_api_db' in stuck['hint']
    assert found_keys(cinder_only)['live_child_of_deleted_parent'] == {
        'live_child_of_deleted_parent:cinder_db/volume/%s/volume_metadata' % ids.v_child}
    assert any('Nova not read' in note for note in cinder_only['notes'])


@pytest.mark.newest_release
def test_filters_thresholds_and_the_prefix_trap(ansible, dbs, cloud):
    ids = build_cloud(cloud, dbs)
    expected = expected_keys(ids)

    chosen = audit(ansible, dbs, classes=['volume_stuck', 'info_cache_empty'])
    assert found_keys(chosen) == dict((name, expected[name]) for name in ('volume_stuck', 'info_cache_empty'))
    assert set(chosen['counts']) == {'volume_stuck', 'info_cache_empty'}

    # 'controller1' is the host, the legacy cinder-volume host and the machine of controller1@lvm,
    # never controller10.
    on_host = audit(ansible, dbs, hosts=['controller1'])
    hosts = set(finding['host'] for finding in on_host['findings'])
    assert hosts == {'controller1'}
    assert 'volume_service_unavailable:volume/' + ids.v_legacy in by_key(on_host)
    assert 'info_cache_migrating_to:nova:cell1/instance/' + ids.i_mt not in by_key(on_host)
    on_backend = audit(ansible, dbs, hosts=['storage-off@nfs'])
    assert list(by_key(on_backend)) == ['volume_service_unavailable:volume/' + ids.v_off]
    assert audit(ansible, dbs, hosts=['controller']).get('findings') == []

    project = audit(ansible, dbs, projects=['0badc0de0badc0de0badc0de0badc0de'])
    assert list(by_key(project)) == ['info_cache_binding_failed:nova:cell1/instance/' + ids.i_bf]

    old = audit(ansible, dbs, min_age=STUCK - 600)
    kept = set(by_key(old))
    assert expected['volume_stuck'] <= kept and expected['migration_unfinished'] <= kept
    assert not expected['info_cache_binding_failed'] & kept  # just created
    assert not [finding for finding in old['findings'] if finding['age'] is not None and finding['age'] < STUCK - 600]

    patient = audit(ansible, dbs, stuck_after={'default': 3 * 3600, 'migration_unfinished': 600},
                    classes=['volume_stuck', 'snapshot_stuck', 'instance_task_stuck', 'migration_unfinished'])
    assert patient['counts'] == {'volume_stuck': 0, 'snapshot_stuck': 0, 'instance_task_stuck': 0,
                                 'migration_unfinished': 2}
    assert patient['thresholds']['stuck_after'] == {'volume_stuck': 10800, 'snapshot_stuck': 10800,
                                                    'instance_task_stuck': 10800, 'migration_unfinished': 600}
    eager = audit(ansible, dbs, stuck_after=0, classes=['volume_stuck', 'migration_unfinished'])
    assert 'volume_stuck:volume/' + ids.v_detaching_fresh in by_key(eager)
    assert 'migration_unfinished:nova:cell1/migration/%s' % ids.m_fresh in by_key(eager)


@pytest.mark.newest_release
def test_reports_are_written_except_in_check_mode(ansible, dbs, cloud, tmp_path):
    ids = build_cloud(cloud, dbs)
    markdown_path, html_path = str(tmp_path / 'audit.md'), str(tmp_path / 'audit.html')
    args = dict(report_markdown=markdown_path, report_html=html_path, return_markdown=True)

    checked = audit(ansible, dbs, check=True, **args)
    assert not os.path.exists(markdown_path) and not os.path.exists(html_path)
    assert checked['reports'] == {'markdown': markdown_path, 'html': html_path, 'written': False}
    assert 'check mode: the report files were not written' in checked['notes']
    assert checked['markdown'].startswith('# OpenStack consistency report')

    written = audit(ansible, dbs, **args)
    assert written['reports']['written'] is True
    markdown = open(markdown_path).read()
    assert markdown == written['markdown']
    assert '## volume_service_unavailable (3)' in markdown and ids.v_legacy in markdown
    assert ('stackmender.openstack.cinder_service_rehost from_host="controller1" to_host="controller1@lvm#lvm" '
            'volumes=' in markdown)
    page = open(html_path).read()
    assert page.startswith('<!DOCTYPE html>') and page.count('<table>') == 2 + len(written['counts'])  # per class and per host, then one per class
    assert '<script' not in page and 'http' not in page
    assert ids.i_bf in page and 'controller10' in page
    for secret in ('not-a-secret', 'iqn.2004-10'):
        assert secret not in markdown and secret not in page

    quiet = audit(ansible, dbs, classes=['volume_stuck'])
    assert 'markdown' not in quiet and quiet['reports'] == {'markdown': None, 'html': None, 'written': False}


# The databases each repair module is given, as the operator's playbook would.
REPAIR_DATABASES = {
    'cinder_volume_state': ('cinder', 'nova_api'),
    'nova_bdm_purge': ('cinder', 'nova_api'),
    'cinder_service_rehost': ('cinder',),
    'nova_task_state': ('nova_api', 'placement'),
    'nova_network_info_cache': ('nova_api',),
}


def beat_live_services(dbs):
    """Fresh heartbeats for the services the cloud built up, as running services write them: a long
    test outlives the first one, and a stale heartbeat would turn into findings of its own."""
    live = ('controller1', 'controller10')
    dbs.execute('nova', "UPDATE services SET last_seen_up = UTC_TIMESTAMP(), updated_at = UTC_TIMESTAMP() "
                        "WHERE host IN (%s, %s) AND deleted = 0", live)
    dbs.execute('cinder', "UPDATE services SET updated_at = UTC_TIMESTAMP() WHERE deleted = 0 AND host IN "
                          "('cinder@lvm', 'controller1@lvm', 'controller10@lvm', 'storage-off@nfs')")


def test_every_suggested_repair_run_as_given_clears_its_finding(ansible, dbs, cloud, journal_dir):
    """Every finding's repair, run once as given (findings proposing the same call share one run),
    makes its finding go on the next audit; what the repairs uncover is exactly what is expected.

    As an operator would: the database-path cache repairs get the binding the operator confirmed
    (vif_type, binding_host); the live migration, whose hosts are both up here, is refused until the
    operator confirms the hypervisors stopped and forces. The one repair that needs Neutron (a VIF
    without a network, which only Neutron can rebuild) is proven on the lab (tests/drills/test_binding_failed.py).
    """
    ids = build_cloud(cloud, dbs)
    cell = 'nova:cell1'
    confirmed = {ids.i_bf: dict(vif_type='ovs', binding_host='controller1'),
                 ids.i_mt: dict(vif_type='ovs', binding_host='controller10')}
    beat_live_services(dbs)
    first = by_key(audit(ansible, dbs))
    calls = {}
    for key, finding in sorted(first.items()):
        if finding['repair']:
            calls.setdefault(json.dumps(finding['repair'], sort_keys=True), []).append(key)
    from_neutron = [keys for text, keys in calls.items() if json.loads(text)['args'].get('binding_from') == 'neutron']
    assert from_neutron == [['info_cache_vif_without_network:%s/instance/%s' % (cell, ids.i_nonet)]], from_neutron
    modules_run = set()
    fed = set()
    for text, keys in sorted(calls.items()):
        fix = json.loads(text)
        if fix['args'].get('binding_from') == 'neutron':
            continue
        module = fix['module'].split('.')[-1]
        args = dict(fix['args'], journal_dir=journal_dir)
        for logical in REPAIR_DATABASES[module]:
            args['%s_db' % logical] = dbs.url(logical)
        if module == 'nova_network_info_cache':
            args.update(confirmed[fix['args']['instance'][0]])
        beat_live_services(dbs)
        applied = ansible(module, args)
        if keys == ['migration_unfinished:%s/migration/%s' % (cell, ids.m_live)]:
            assert applied.failed and [guard['guard'] for guard in applied['guards']] == ['migration_host_up'], applied
            applied = ansible(module, dict(args, force=True, force_reason='INC-7: both libvirtds show no job'))
        assert not applied.failed, (keys, applied['msg'])
        # An attachment row of a deleted instance is a change even when the volume is already available.
        assert applied.changed, keys
        modules_run.add(module)
        fed.update(keys)
    assert modules_run == set(REPAIR_DATABASES)
    assert len(fed) >= 17, sorted(fed)

    beat_live_services(dbs)
    second = set(by_key(audit(ansible, dbs)))
    assert not second & fed, sorted(second & fed)
    # What the repairs uncover: the instance whose task was reset is judged again, and its allocations
    # are on another node than its host; the aborted live migration leaves its instance's port profile
    # pointing at the destination, which Neutron (and then nova_network_info_cache) must clean.
    uncovered = {'allocation_wrong_provider:%s/instance/%s' % (cell, ids.i_task),
                 'info_cache_migrating_to:%s/instance/%s' % (cell, ids.i_mig)}
    assert second - set(first) == uncovered, sorted(second - set(first))
    assert second - uncovered == set(first) - fed
    # Spot checks through SQL, not through the audit.
    assert dbs.query('cinder', 'SELECT status, attach_status FROM volumes WHERE id = %s', (ids.v_detaching,)) == [
        {'status': 'available', 'attach_status': 'detached'}]
    assert dbs.query('nova', 'SELECT deleted FROM block_device_mapping WHERE id = %s', (ids.b_stale,)) == [
        {'deleted': ids.b_stale}]
    assert dbs.query('nova', 'SELECT task_state FROM instances WHERE uuid = %s', (ids.i_task,)) == [
        {'task_state': None}]
    assert dbs.query('nova', 'SELECT status FROM migrations WHERE id = %s', (ids.m_live,)) == [{'status': 'cancelled'}]
    assert dbs.query('cinder', 'SELECT host FROM volumes WHERE id = %s', (ids.v_legacy,)) == [
        {'host': 'controller1@lvm#lvm'}]
    cache = json.loads(dbs.query('nova', 'SELECT network_info FROM instance_info_caches WHERE instance_uuid = %s',
                                 (ids.i_bf,))[0]['network_info'])
    assert [vif['type'] for vif in cache] == ['ovs']


def test_a_migration_in_flight_is_what_the_cinder_modules_call_one(ansible, dbs, cloud, journal_dir):
    """migration_status deleting and target:<uuid> are migrations in flight for the Cinder modules
    (cinder.is_migrating): cinder_volume_state refuses to reset such a volume and leave the migration,
    and the audit reports it as a stuck migration whose repair ends it. A finished migration is neither."""
    cloud.cinder_service('cinder@lvm')
    in_flight = {}
    for migration_status in ('deleting', 'target:' + new_uuid(), 'migrating'):
        volume = cloud.volume(status='available', migration_status=migration_status)
        age(dbs, 'cinder', 'volumes', 'id', volume)
        in_flight[volume] = migration_status
    done = cloud.volume(status='available', migration_status='success')
    age(dbs, 'cinder', 'volumes', 'id', done)
    findings = by_key(audit(ansible, dbs, 'cinder', classes=['volume_stuck']))
    assert set(findings) == set('volume_stuck:volume/' + volume for volume in in_flight)

    for volume, migration_status in sorted(in_flight.items()):
        found = findings['volume_stuck:volume/' + volume]
        assert found['resources']['migration_status'] == migration_status
        assert 'migration_status ' + migration_status in found['message']
        assert found['repair'] == {'module': 'stackmender.openstack.cinder_volume_state',
                                   'args': {'volume': [volume], 'migration_status': 'error'}}
        refused = ansible('cinder_volume_state', db_args(dbs, 'cinder', 'nova_api', volume=[volume], status='error',
                                                         journal_dir=journal_dir), check=True)
        assert refused.failed and [guard['guard'] for guard in refused['guards']] == ['volume_migrating'], volume
        applied = ansible('cinder_volume_state', db_args(dbs, 'cinder', 'nova_api', journal_dir=journal_dir,
                                                         **found['repair']['args']))
        assert not applied.failed and applied.changed, applied.get('msg')
    finished = ansible('cinder_volume_state', db_args(dbs, 'cinder', 'nova_api', volume=[done], status='error',
                                                      journal_dir=journal_dir), check=True)
    assert not finished.failed and finished.changed, finished.get('msg')
    assert audit(ansible, dbs, 'cinder', classes=['volume_stuck'])['findings'] == []


@pytest.mark.newest_release
def test_live_children_are_those_the_destroys_soft_delete(ansible, dbs, cloud):
    """live_child_of_deleted_parent reads the child tables the delete modules follow (instance_records,
    cinder): the EC2 id mapping of an instance, keyed by uuid, is one of them; a live attachment of a
    deleted volume is left to attachment_of_deleted_volume."""
    cloud.compute_host('controller1')
    cloud.cinder_service('cinder@lvm')
    instance = cloud.instance(host='controller1', network_info=cloud.network_info())
    cloud.destroy_instance(instance)
    dbs.execute('nova', 'UPDATE instance_id_mappings SET deleted = 0, deleted_at = NULL WHERE uuid = %s', (instance,))
    volume = cloud.volume(status='in-use', attach_status='attached')
    attachment = cloud.attachment(volume, instance, 'controller1')
    cloud.destroy_volume(volume)
    for table in ('volume_attachment', 'volume_admin_metadata'):
        dbs.execute('cinder', 'UPDATE `%s` SET deleted = 0, deleted_at = NULL WHERE volume_id = %%s' % table, (volume,))
    result = audit(ansible, dbs, 'cinder', 'nova_api',
                   classes=['live_child_of_deleted_parent', 'attachment_of_deleted_volume'])
    assert found_keys(result) == {
        'live_child_of_deleted_parent': {
            'live_child_of_deleted_parent:nova:cell1/instance/%s/instance_id_mappings' % instance,
            'live_child_of_deleted_parent:cinder_db/volume/%s/volume_admin_metadata' % volume},
        'attachment_of_deleted_volume': {'attachment_of_deleted_volume:attachment/' + attachment}}


def test_the_cache_classes_agree_with_nova_network_info_cache(ansible, dbs, cloud, journal_dir):
    """The audit reports a cached VIF exactly when nova_network_info_cache finds it defective (both read
    network_info.vif_defects): a failed binding, an unbound port, a network that is null, empty or missing
    from the second VIF of a cache; not a healthy cache, nor one that only mentions the words."""
    from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import info_caches

    cloud.compute_host('controller1')
    first, second = json.loads(cloud.network_info())[0], json.loads(cloud.network_info())[0]
    del second['network']
    caches = Ids(bf=cloud.network_info(vif_type='binding_failed'), unbound=cloud.network_info(vif_type='unbound'),
                 null=cloud.network_info(network=None), empty=cloud.network_info(network={}),
                 missing=json.dumps([first, second]), words=cloud.network_info(details={'note': 'unbound once'}),
                 healthy=cloud.network_info())
    ids = Ids((name, cloud.instance(host='controller1', network_info=text)) for name, text in caches.items())
    result = audit(ansible, dbs, 'nova_api', classes=['info_cache_binding_failed', 'info_cache_vif_without_network'])
    reported = {}
    for found in result['findings']:
        reported.setdefault(found['resources']['instance'], {})[found['class']] = found['resources']['ports']
    assert dict((name, set(reported.get(uuid, ()))) for name, uuid in ids.items()) == dict(
        bf={'info_cache_binding_failed'}, unbound={'info_cache_binding_failed'},
        null={'info_cache_vif_without_network'}, empty={'info_cache_vif_without_network'},
        missing={'info_cache_vif_without_network'}, words=set(), healthy=set())
    assert reported[ids.missing]['info_cache_vif_without_network'] == [second['id']]

    for name, instance in ids.items():
        checked = ansible('nova_network_info_cache', db_args(dbs, 'nova_api', instance=[instance], vif_type='ovs',
                                                             binding_host='controller1', journal_dir=journal_dir),
                          check=True)
        repaired = {}
        if checked.failed:
            # Only Neutron can rebuild a VIF's network: the database path refuses it, naming the port.
            assert set(guard['guard'] for guard in checked['guards']) == {'network_needs_neutron'}, name
            repaired['info_cache_vif_without_network'] = [guard['evidence'][0]['port'] for guard in checked['guards']]
        else:
            for entry in checked['caches']:
                for vif in entry['vifs']:
                    for defect in vif['defects']:
                        repaired.setdefault(info_caches.DEFECT_CLASSES[defect], []).append(vif['port'])
        assert reported.get(instance, {}) == repaired, name


@pytest.mark.newest_release
def test_bad_input_fails_clearly(ansible, dbs, cloud):
    cloud.volume()
    cases = [
        (dict(method='api'), 'method=api is not available'),
        (dict(classes=['volume_stuck', 'nonsense']), 'value of classes must be one or more of'),
        (dict(stuck_after='soon'), 'stuck_after must be a number of seconds or a dict'),
        (dict(stuck_after={'volume_stuck': -1}), 'stuck_after: volume_stuck must be 0 or more seconds'),
        (dict(stuck_after={'info_cache_empty': 10}), "stuck_after: 'info_cache_empty' is not a class with a threshold"),
        (dict(min_age=-5), 'min_age must be 0 or more seconds'),
        (dict(service_down_time=0), 'service_down_time must be a positive number'),
        (dict(report_html='/nonexistent-dir/x.html'), 'report_html: directory /nonexistent-dir does not exist'),
    ]
    for extra, fragment in cases:
        assert_clean_failure(ansible(MODULE, db_args(dbs, 'cinder', **extra)), fragment)
    assert_clean_failure(ansible(MODULE, {'min_age': 0}), 'give at least one of cinder_db, nova_db, nova_api_db and placement_db')
    # A database of the wrong service: its classes are skipped with the reason, the others run.
    wrong = audit(ansible, dbs, 'cinder', nova_db=dbs.url('placement'))
    reasons = dict((entry['class'], entry['reason']) for entry in wrong['skipped_classes'])
    assert 'has no table instances' in reasons['instance_task_stuck']
    assert 'volume_stuck' in wrong['counts']
    # Its inventory is left out with the reason, not counted as zero (which would trip the gate).
    assert 'instances' not in wrong['inventory'] and wrong['inventory']['volumes'] >= 1
    assert any(note.startswith('inventory: instances not counted') for note in wrong['notes']), wrong['notes']


@pytest.mark.newest_release
def test_select_only_user_and_no_secret_in_output(ansible, dbs, cloud, mariadb_server, tmp_path):
    """A user with SELECT only is enough (nothing is written), and its password is never shown."""
    ids = build_cloud(cloud, dbs)
    password = 'Ci-S3cret-pw-91'
    user = 'ci_%s' % uuid.uuid4().hex[:12]  # unique: runs may share the server
    admin = mariadb_server.admin_connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute('GRANT SELECT ON `%s`.* TO %%s@%%s' % dbs.name('cinder'), (user, '%'))
        base = dbs.url('cinder').split('://', 1)[1].split('@', 1)[1]
        report_path = str(tmp_path / 'audit.md')
        result = ansible(MODULE, dict(cinder_db='mysql+pymysql://%s:%s@%s' % (user, password, base),
                                      report_markdown=report_path, return_markdown=True), verbosity=3)
        assert not result.failed, result['msg']
        assert 'volume_stuck:volume/' + ids.v_detaching in by_key(result)
        assert result['databases']['cinder_db'].startswith('mysql://%s@' % user)
        assert password not in result.stdout and password not in result.stderr
        assert password not in open(report_path).read()
    finally:
        with admin.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        admin.close()


@pytest.mark.newest_release
def test_packed_key_sets_fall_back_to_rows_when_a_bucket_is_cut(dbs, cloud, monkeypatch):
    """Key sets travel as GROUP_CONCAT strings; a truncated one is detected and read as plain rows."""
    from ansible_collections.stackmender.openstack.plugins.module_utils.audit import engine as auditing
    from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db

    build_cloud(cloud, dbs)
    targets = dict((option, db.parse_url(option, dbs.url(logical))) for logical, option in (
        ('cinder', 'cinder_db'), ('nova_api', 'nova_api_db'), ('placement', 'placement_db')))

    def run():
        audit = auditing.Audit(targets, auditing.AuditOptions())
        try:
            result = audit.run()
            return audit, result
        finally:
            audit.close()

    packed_audit, packed = run()
    calls = []
    original = auditing.Audit._unpacked

    def spy(self, *args):
        calls.append(args[1])
        return original(self, *args)

    monkeypatch.setattr(auditing, 'GROUP_CONCAT_MAX_LEN', 64)
    monkeypatch.setattr(auditing.Audit, '_unpacked', spy)
    _cut_audit, cut = run()
    assert calls, 'no bucket was cut: the fallback was not exercised'
    assert set(by_key(cut)) == set(by_key(packed)) and len(packed['findings']) > 30
    assert cut['counts'] == packed['counts']
    assert packed_audit.sessions == {}
