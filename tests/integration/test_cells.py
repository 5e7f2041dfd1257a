"""Every module on a cloud of two cells (cell1 and cell2, beside cell0): the harness default.

An instance of cell2 is never treated as missing because the run read cell1
only; ``nova_db`` given with ``nova_api_db`` must be one of its cells; cells
are told apart by uuid, never by name. Each case fails on a model that reads
only the ``nova_db`` cell, or keys cells by name.
"""

import datetime
import json

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import assert_clean_failure, db_args, one, run_full_cycle, snapshot

CELL_TABLES = ('instances', 'instance_extra', 'instance_info_caches', 'block_device_mapping', 'migrations')
NOVA_TABLES = [(logical, table) for logical in ('nova', 'nova_cell2') for table in CELL_TABLES]
API_TABLES = [('nova_api', table) for table in ('instance_mappings', 'request_specs', 'instance_group_member')]
PLACEMENT_TABLES = [('placement', table) for table in ('allocations', 'consumers')]
CINDER_TABLES = [('cinder', table) for table in ('volumes', 'volume_attachment', 'volume_admin_metadata')]
ALL_TABLES = NOVA_TABLES + API_TABLES + PLACEMENT_TABLES + CINDER_TABLES


def running_in_cell2(cloud, host='compute5', up=True):
    """A healthy instance of cell2 on ``host``, with its allocations and an attached volume."""
    node = cloud.compute_host(host, cell='cell2', up=up)
    instance = cloud.instance(host=host, cell='cell2')
    cloud.instance_allocations(instance, node['rp_uuid'], cell='cell2')
    attached = cloud.attach_volume(instance, cell='cell2')
    return instance, attached


def test_the_default_cloud_has_two_cells_beside_cell0(dbs):
    rows = dbs.query('nova_api', 'SELECT uuid, name, database_connection FROM cell_mappings')
    cells = dict((row['name'], row) for row in rows)
    assert sorted(cells) == ['cell0', 'cell1', 'cell2']
    assert cells['cell2']['database_connection'] == dbs.url('nova_cell2')
    assert len(dbs.query('nova_cell2', 'SHOW TABLES')) == len(dbs.query('nova', 'SHOW TABLES'))


@pytest.mark.newest_release
def test_purge_never_touches_an_instance_of_a_cell_it_did_not_read(ansible, dbs, cloud, journal_dir):
    """The incident the cell model prevents: a purge by uuid of a running instance of another cell."""
    instance, attached = running_in_cell2(cloud)
    before = snapshot(dbs, ALL_TABLES)
    # nova_db alone reads cell1: the uuid is in no cell read, so nothing of it may be called purgeable.
    refused = ansible('nova_instance_delete', db_args(dbs, 'nova', 'placement', 'cinder', instance=[instance],
                                                      purge=True, journal_dir=journal_dir))
    assert_clean_failure(refused, 'is not in the cell of nova_db')
    assert refused['guards'][0]['guard'] == 'instance_not_in_cells_read'
    assert 'never overridden' in refused['msg']
    # nova_db with nova_api_db reads every cell: the instance is found in cell2, and its compute is up.
    refused = ansible('nova_instance_delete', db_args(dbs, 'nova', 'nova_api', 'placement', 'cinder',
                                                      instance=[instance], purge=True, journal_dir=journal_dir))
    assert refused.failed and refused['guards'][0]['guard'] == 'compute_service_up', refused
    assert refused['guards'][0]['evidence'][0]['cell'] == 'nova:cell2'
    assert snapshot(dbs, ALL_TABLES) == before
    assert one(dbs, 'cinder', 'SELECT attach_status FROM volume_attachment WHERE id = %s',
               attached['attachment_id'])['attach_status'] == 'attached'


@pytest.mark.newest_release
def test_purge_of_an_unknown_uuid_needs_nova_api_to_show_no_trace(ansible, dbs, cloud, journal_dir):
    instance, _attached = running_in_cell2(cloud)
    # The instance row is gone from cell2 but nova_api still maps it there: it is not "gone".
    for table in ('block_device_mapping', 'instance_extra', 'instance_info_caches', 'instance_id_mappings'):
        column = 'uuid' if table == 'instance_id_mappings' else 'instance_uuid'
        dbs.execute('nova_cell2', 'DELETE FROM `%s` WHERE `%s` = %%s' % (table, column), (instance,))
    dbs.execute('nova_cell2', 'DELETE FROM instances WHERE uuid = %s', (instance,))
    before = snapshot(dbs, ALL_TABLES)
    refused = ansible('nova_instance_delete', db_args(dbs, 'nova_api', 'placement', 'cinder', instance=[instance],
                                                      purge=True, journal_dir=journal_dir))
    assert_clean_failure(refused, 'nova_api maps it to cell cell2')
    guard = refused['guards'][0]
    assert guard['guard'] == 'instance_not_in_cells_read'
    assert guard['evidence'][0]['instance_uuid'] == instance and guard['evidence'][0]['cell_name'] == 'cell2'
    assert snapshot(dbs, ALL_TABLES) == before
    # Once nova_api has no trace of it either, the purge removes what is left of it everywhere.
    dbs.execute('nova_api', 'DELETE FROM instance_mappings WHERE instance_uuid = %s', (instance,))
    purged = ansible('nova_instance_delete', db_args(dbs, 'nova_api', 'placement', 'cinder', instance=[instance],
                                                     purge=True, journal_dir=journal_dir))
    assert not purged.failed and purged.changed, purged
    assert not dbs.query('placement', 'SELECT id FROM allocations WHERE consumer_id = %s', (instance,))
    assert not dbs.query('nova_api', 'SELECT id FROM request_specs WHERE instance_uuid = %s', (instance,))


@pytest.mark.newest_release
def test_nova_db_must_be_one_of_the_cells_of_nova_api_db(ansible, dbs, cloud, journal_dir):
    running_in_cell2(cloud)
    stray = dbs.url('nova').replace('/%s?' % dbs.name('nova'), '/%s?' % dbs.name('placement'))
    before = snapshot(dbs, ALL_TABLES)
    for module, extra in (('nova_bdm_purge', dict(instance=['0b7f7a2c-1111-4d5e-9f00-000000000001'])),
                          ('consistency_info', {})):
        if module != 'consistency_info':
            extra['journal_dir'] = journal_dir
        result = ansible(module, dict(db_args(dbs, 'nova_api'), nova_db=stray, **extra))
        assert_clean_failure(result, 'nova_db (mysql://')
        assert 'is none of the cells that nova_api_db lists' in result['msg']
        assert 'nova:cell2 at mysql://' in result['msg'] and dbs.name('placement') in result['msg']
    assert snapshot(dbs, ALL_TABLES) == before


@pytest.mark.newest_release
def test_cells_of_one_name_are_told_apart_by_uuid(ansible, dbs, cloud, journal_dir):
    """Two cells named cell1: each keeps its own session, and a repair in either lands in its own database."""
    built = []
    for logical, cell in (('nova', 'cell1'), ('nova_cell2', 'cell2')):
        cloud.compute_host('compute-%s' % cell, cell=cell)
        instance = cloud.instance(host='compute-%s' % cell, cell=cell)
        volume = cloud.volume(status='available', attach_status='detached')
        built.append((logical, instance, volume, cloud.bdm(instance, volume, cell=cell)))
    dbs.execute('nova_api', "UPDATE cell_mappings SET name = 'cell1' WHERE name = 'cell2'")
    cell_uuids = dict((row['database_connection'], row['uuid']) for row in dbs.query(
        'nova_api', "SELECT uuid, database_connection FROM cell_mappings WHERE name = 'cell1'"))
    results = {}
    for logical, instance, volume, bdm in built:
        applied = ansible('nova_bdm_purge', db_args(dbs, 'nova_api', 'cinder', instance=[instance], volume=[volume],
                                                    journal_dir=journal_dir))
        assert not applied.failed and applied.changed, applied
        option = 'nova:%s' % cell_uuids[dbs.url(logical)]
        assert applied['plan'][0]['database'] == option
        assert sorted(applied['nova_cells']['read']) == sorted(['nova:cell0'] + ['nova:%s' % uuid
                                                                                 for uuid in cell_uuids.values()])
        assert one(dbs, logical, 'SELECT deleted FROM block_device_mapping WHERE id = %s', bdm)['deleted'] == bdm
        results[logical] = applied
    undone = ansible('journal_undo', db_args(dbs, 'nova_api', journal=results['nova_cell2']['journal']))
    assert not undone.failed and undone.changed, undone


@pytest.mark.newest_release
def test_cinder_volume_state_sees_the_bdm_of_another_cell(ansible, dbs, cloud, journal_dir):
    instance, attached = running_in_cell2(cloud)
    volume = attached['volume_id']
    before = snapshot(dbs, ALL_TABLES)
    args = dict(volume=[volume], status='available', attach_status='detached', method='db', journal_dir=journal_dir)
    # Every cell read (nova_db is cell1, nova_api_db brings cell2): the live BDM of cell2 refuses.
    refused = ansible('cinder_volume_state', db_args(dbs, 'cinder', 'nova', 'nova_api', **args))
    assert refused.failed, refused
    guard = dict((guard['guard'], guard) for guard in refused['guards'])['nova_bdm_live']
    assert guard['evidence'][0]['cell'] == 'nova:cell2' and guard['evidence'][0]['instance_uuid'] == instance
    # cell1 alone: the instance is in no cell read, so its BDM may be live elsewhere.
    refused = ansible('cinder_volume_state', db_args(dbs, 'cinder', 'nova', **args))
    assert_clean_failure(refused, 'is not in the cell of nova_db')
    assert [guard['guard'] for guard in refused['guards']] == ['instance_not_in_cells_read']
    assert 'connection_info' not in json.dumps(refused['guards'])
    assert snapshot(dbs, ALL_TABLES) == before


def test_full_cycles_in_the_second_cell(ansible, dbs, cloud, journal_dir):
    """The repairs of the Nova modules land in cell2's database, and undo there, on every release."""
    cloud.compute_host('compute5', cell='cell2', up=False)
    cloud.compute_host('compute6', cell='cell2')
    stale_instance = cloud.instance(host='compute5', cell='cell2')
    volume = cloud.volume(status='available', attach_status='detached')
    stale_bdm = cloud.bdm(stale_instance, volume, cell='cell2')
    an_hour_ago = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0) - \
        datetime.timedelta(hours=1)
    stuck = cloud.instance(host='compute5', cell='cell2', task_state='rebooting', updated_at=an_hour_ago)
    doomed = cloud.instance(host='compute5', cell='cell2', vm_state='error')

    def bdm_gone():
        assert one(dbs, 'nova_cell2', 'SELECT deleted FROM block_device_mapping WHERE id = %s',
                   stale_bdm)['deleted'] == stale_bdm

    applied = run_full_cycle(ansible, dbs, 'nova_bdm_purge', db_args(
        dbs, 'nova_api', 'cinder', instance=[stale_instance], volume=[volume], journal_dir=journal_dir),
        ALL_TABLES, bdm_gone)
    assert applied['plan'][0]['database'] == 'nova:cell2'
    assert applied['nova_cells'] == dict(complete=True, read=['nova:cell0', 'nova:cell1', 'nova:cell2'])

    def task_cleared():
        assert one(dbs, 'nova_cell2', 'SELECT task_state FROM instances WHERE uuid = %s', stuck)['task_state'] is None

    applied = run_full_cycle(ansible, dbs, 'nova_task_state', db_args(
        dbs, 'nova_api', instance=[stuck], method='db', journal_dir=journal_dir), ALL_TABLES, task_cleared)
    assert set(load_journal(applied['journal'])['commits']) == {'nova:cell2'}

    def deleted():
        row = one(dbs, 'nova_cell2', 'SELECT deleted, vm_state FROM instances WHERE uuid = %s', doomed)
        assert row['deleted'] and row['vm_state'] == 'deleted'

    applied = run_full_cycle(ansible, dbs, 'nova_instance_delete', db_args(
        dbs, 'nova_api', instance=[doomed], method='db', journal_dir=journal_dir), ALL_TABLES, deleted)
    assert applied['instances'][0]['cell'] == 'nova:cell2'


@pytest.mark.newest_release
def test_partial_view_is_said_in_the_result(ansible, dbs, cloud, journal_dir):
    cloud.compute_host('compute1')
    instance = cloud.instance(host='compute1')
    volume = cloud.volume(status='available', attach_status='detached')
    cloud.bdm(instance, volume)
    checked = ansible('nova_bdm_purge', db_args(dbs, 'nova', 'cinder', instance=[instance], volume=[volume],
                                                journal_dir=journal_dir), check=True)
    assert not checked.failed and checked.changed, checked
    assert checked['nova_cells'] == dict(complete=False, read=['nova_db'])
    assert any('only the cell of nova_db was read' in note for note in checked['notes'])


def test_audit_of_a_two_cell_cloud_reports_nothing_for_live_instances(ansible, dbs, cloud):
    cloud.compute_host('compute1')
    in_cell1 = cloud.instance(host='compute1')
    cloud.attach_volume(in_cell1)
    in_cell2, attached = running_in_cell2(cloud)
    classes = ['volume_attached_without_bdm', 'bdm_without_attachment', 'attachment_of_deleted_instance',
               'instance_mapping_missing']
    for databases in (('nova_api', 'cinder', 'placement'), ('nova', 'nova_api', 'cinder', 'placement')):
        audit = ansible('consistency_info', db_args(dbs, *databases, classes=classes))
        assert not audit.failed, audit
        assert audit['findings'] == [], audit['findings']
        assert audit['cells_complete'] is True
        assert [cell['name'] for cell in audit['cells']] == ['nova:cell0', 'nova:cell1', 'nova:cell2']
    # cell1 alone: cell2's volume is not called orphaned, and the audit says what it could not judge.
    audit = ansible('consistency_info', db_args(dbs, 'nova', 'cinder', classes=classes[:3]))
    assert not audit.failed, audit
    assert audit['findings'] == [], audit['findings']
    assert audit['cells_complete'] is False
    assert any('only the cell of nova_db was read' in note for note in audit['notes'])
    assert any('were not judged' in note and in_cell2 in note for note in audit['notes'])
    assert attached['volume_id']


@pytest.mark.newest_release
def test_network_info_cache_repair_lands_in_the_second_cell(ansible, dbs, cloud, journal_dir):
    """A binding_failed cache of a cell2 instance is rebuilt in cell2's database; cell1's twin is untouched."""
    from tests.integration.test_nova_network_info_cache import OVS_DETAILS, failed_migration_cache
    cloud.compute_host('compute5', cell='cell2')
    broken = cloud.instance(host='compute5', cell='cell2', vm_state='error', network_info=failed_migration_cache())
    # The same broken cache in cell1: never touched by a repair of cell2's instance.
    cloud.compute_host('compute1')
    other = cloud.instance(host='compute1', vm_state='error', network_info=failed_migration_cache())
    untouched = one(dbs, 'nova', 'SELECT network_info FROM instance_info_caches WHERE instance_uuid = %s', other)

    def rebuilt():
        row = one(dbs, 'nova_cell2', 'SELECT network_info FROM instance_info_caches WHERE instance_uuid = %s', broken)
        vifs = json.loads(row['network_info'])
        assert [vif['type'] for vif in vifs] == ['ovs'] and vifs[0]['details'] == OVS_DETAILS
        assert one(dbs, 'nova', 'SELECT network_info FROM instance_info_caches WHERE instance_uuid = %s',
                   other) == untouched

    tables = [(logical, table) for logical in ('nova', 'nova_cell2') for table in ('instances', 'instance_info_caches')]
    applied = run_full_cycle(ansible, dbs, 'nova_network_info_cache', db_args(
        dbs, 'nova_api', instance=[broken], vif_type='ovs', binding_host='compute5', vif_details=OVS_DETAILS,
        journal_dir=journal_dir), tables, rebuilt)
    assert applied['plan'][0]['database'] == 'nova:cell2'
    assert set(load_journal(applied['journal'])['commits']) == {'nova:cell2'}
    assert (applied['method'], applied['binding_from']) == ('db', 'options')
