"""nova_bdm_purge against the real Nova/Cinder schemas of every release.

Every case: check mode (nothing written, plan and diff returned), apply (rows
verified with independent SQL), re-run (changed: false), undo from the
journal (rows equal the originals).
"""

import os

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import (
    CINDER_TABLES,
    NOVA_TABLES,
    assert_clean_failure,
    db_args,
    run_full_cycle,
    snapshot,
)

MODULE = 'nova_bdm_purge'
CELL0_TABLES = [('nova_cell0', 'block_device_mapping'), ('nova_cell0', 'instances')]
ALL_TABLES = NOVA_TABLES + CELL0_TABLES + CINDER_TABLES


def bdm_row(dbs, bdm_id, logical='nova'):
    rows = dbs.query(logical, 'SELECT * FROM block_device_mapping WHERE id = %s', (bdm_id,))
    return rows[0] if rows else None


def stale_bdm(cloud, host='compute1'):
    """The incident: Cinder let the volume go, Nova still has its BDM."""
    cloud.nova_service(host)
    instance = cloud.instance(host=host)
    volume = cloud.volume(status='available', attach_status='detached')
    attachment = cloud.attachment(volume, instance_uuid=instance, attached_host=host, deleted=True,
                                  attach_status='detached')
    bdm = cloud.bdm(instance, volume, attachment_id=attachment)
    return instance, volume, bdm


def test_soft_delete_of_a_stale_bdm_through_the_cells(ansible, dbs, cloud, journal_dir):
    instance, volume, bdm = stale_bdm(cloud)
    # Another volume on the same instance, and the same volume's BDM elsewhere, stay.
    other_volume = cloud.volume(status='in-use', attach_status='attached')
    kept_on_instance = cloud.bdm(instance, other_volume, device_name='/dev/vdc')
    other_instance = cloud.instance(host='compute1')
    kept_elsewhere = cloud.bdm(other_instance, volume)
    root = dbs.query('nova', 'SELECT id FROM block_device_mapping WHERE instance_uuid = %s AND boot_index = 0',
                     (instance,))[0]['id']
    dbs.execute('nova', "UPDATE block_device_mapping SET updated_at = '2026-01-02 03:04:05' WHERE id = %s", (bdm,))
    original = bdm_row(dbs, bdm)
    args = db_args(dbs, 'nova_api', 'cinder', instance=instance, volume=volume, journal_dir=journal_dir)

    def verify():
        row = bdm_row(dbs, bdm)
        assert row['deleted'] == bdm and row['deleted_at'] is not None
        assert row['updated_at'] == original['updated_at']
        assert dict(row, deleted=0, deleted_at=None) == original
        for kept in (kept_on_instance, kept_elsewhere, root):
            assert bdm_row(dbs, kept)['deleted'] == 0

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert applied['method'] == 'db' and applied['method_reason']
    label = 'block_device_mapping/%s' % bdm
    assert applied['before']['nova:cell1'][label] == {'deleted': 0, 'deleted_at': None}
    assert applied['after']['nova:cell1'][label]['deleted'] == bdm
    assert applied['plan'][0]['database'] == 'nova:cell1' and applied['plan'][0]['table'] == 'block_device_mapping'
    assert any('hard reboot instance %s' % instance in warning for warning in applied['warnings'])
    journal = load_journal(applied['journal'])
    assert journal['status'] == 'committed' and len(journal['entries']) == 1
    assert journal['entries'][0]['database'] == 'nova:cell1'


def test_without_cinder_the_guard_refuses_naming_cinder_db_unless_accepted(ansible, dbs, cloud, journal_dir):
    """Cinder cannot be consulted: refuse, naming cinder_db; accept_unverified with a reason goes ahead, recorded."""
    instance, volume, bdm = stale_bdm(cloud)
    second = cloud.instance(host='compute1')
    second_bdm = cloud.bdm(second, volume)
    original = snapshot(dbs, ALL_TABLES)
    refused = ansible(MODULE, db_args(dbs, 'nova', volume=volume, journal_dir=journal_dir))
    assert_clean_failure(refused, 'give cinder_db so the guard can look')
    assert [(guard['guard'], guard['missing_option']) for guard in refused['guards']] == [
        ('cinder_attachment_live', 'cinder_db')]
    assert refused['unverified_guards'] == refused['guards']
    assert snapshot(dbs, ALL_TABLES) == original, 'a refused run wrote something'
    assert not os.path.isdir(journal_dir) or not os.listdir(journal_dir)
    # force lifts guards that looked; it does not stand in for one that could not.
    forced = ansible(MODULE, db_args(dbs, 'nova', volume=volume, force=True, force_reason='ticket 1',
                                     journal_dir=journal_dir))
    assert_clean_failure(forced, 'cinder_db')
    assert snapshot(dbs, ALL_TABLES) == original
    missing_reason = ansible(MODULE, db_args(dbs, 'nova', volume=volume, accept_unverified=True,
                                             journal_dir=journal_dir))
    assert_clean_failure(missing_reason, 'unverified_reason')

    reason = 'ticket 42: cinder attachment list checked by hand'
    args = db_args(dbs, 'nova', volume=volume, accept_unverified=True, unverified_reason=reason,
                   journal_dir=journal_dir)

    def verify():
        for bdm_id in (bdm, second_bdm):
            row = bdm_row(dbs, bdm_id)
            assert row['deleted'] == bdm_id and row['deleted_at'] is not None and row['updated_at'] is None

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert set(applied['before']['nova_db']) == {'block_device_mapping/%s' % bdm, 'block_device_mapping/%s' % second_bdm}
    warnings = ' '.join(applied['warnings'])
    assert instance in warnings and second in warnings
    assert 'accept_unverified (%s)' % reason in warnings and 'Cinder was not consulted' in warnings
    assert [(guard['guard'], guard['missing_option']) for guard in applied['unverified_guards']] == [
        ('cinder_attachment_live', 'cinder_db')]
    journal = load_journal(applied['journal'])
    assert journal['unverified_reason'] == reason
    assert journal['unverified_guards'] == applied['unverified_guards']


def test_purge_deletes_the_rows_and_undo_reinserts_them(ansible, dbs, cloud, journal_dir):
    instance, volume, bdm = stale_bdm(cloud)
    second_volume = cloud.volume(status='available')
    second_bdm = cloud.bdm(instance, second_volume, device_name='/dev/vdc')
    args = db_args(dbs, 'nova_api', 'cinder', instance=[instance], purge=True, journal_dir=journal_dir)

    def verify():
        assert bdm_row(dbs, bdm) is None and bdm_row(dbs, second_bdm) is None
        # The image root disk of the instance is not a volume BDM and stays.
        assert dbs.query('nova', 'SELECT count(*) AS n FROM block_device_mapping WHERE instance_uuid = %s',
                         (instance,))[0]['n'] == 1

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert len(applied['plan']) == 1 and applied['plan'][0]['action'] == 'delete' and applied['plan'][0]['rows'] == 2
    assert applied['after']['nova:cell1']['block_device_mapping/%s' % bdm] is None
    assert 'connection_info' not in applied['before']['nova:cell1']['block_device_mapping/%s' % bdm]
    assert 'purge' in applied['msg']


@pytest.mark.newest_release
def test_nothing_matches_is_not_a_change(ansible, dbs, cloud, journal_dir):
    instance, volume, bdm = stale_bdm(cloud)
    unrelated = cloud.volume()
    result = ansible(MODULE, db_args(dbs, 'nova_api', instance=instance, volume=unrelated, journal_dir=journal_dir))
    assert not result.failed and not result.changed, result
    assert 'no live volume block device mapping matches' in result['notes'][0]
    assert bdm_row(dbs, bdm)['deleted'] == 0 and volume


@pytest.mark.newest_release
def test_live_cinder_attachment_refuses_with_evidence_then_force_applies(ansible, dbs, cloud, journal_dir):
    host = 'compute1'
    cloud.nova_service(host)
    instance = cloud.instance(host=host)
    attached = cloud.attach_volume(instance)
    args = db_args(dbs, 'nova_api', 'cinder', instance=instance, volume=attached['volume_id'],
                   journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)

    for check in (True, False):
        refused = ansible(MODULE, args, check=check)
        assert_clean_failure(refused, 'Cinder still has a live attachment of volume %s' % attached['volume_id'])
        guard = refused['guards'][0]
        assert guard['guard'] == 'cinder_attachment_live'
        assert guard['evidence'][0]['id'] == attached['attachment_id']
        assert guard['evidence'][0]['instance_uuid'] == instance
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)

    reason = 'INC-4711: guest powered off, backend export removed by hand'
    forced = ansible(MODULE, dict(args, force=True, force_reason=reason))
    assert not forced.failed and forced.changed
    assert forced['force'] is True and forced['forced_guards'][0]['guard'] == 'cinder_attachment_live'
    journal = load_journal(forced['journal'])
    assert journal['force'] is True and journal['force_reason'] == reason
    assert journal['forced_guards'][0]['evidence'][0]['id'] == attached['attachment_id']
    assert bdm_row(dbs, attached['bdm_id'])['deleted'] == attached['bdm_id']
    # Cinder's rows are never written by this module.
    assert snapshot(dbs, CINDER_TABLES) == dict((key, rows) for key, rows in before.items() if key in CINDER_TABLES)


@pytest.mark.newest_release
def test_root_bdm_refuses_then_force_applies(ansible, dbs, cloud, journal_dir):
    cloud.nova_service('compute1')
    instance = cloud.instance(host='compute1', root_bdm=False)
    volume = cloud.volume(status='available', bootable=True)
    root = cloud.bdm(instance, volume, boot_index=0, device_name='/dev/vda')
    args = db_args(dbs, 'nova', 'cinder', volume=volume, journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)

    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'is the root disk (boot_index 0) of instance %s' % instance)
    guard = refused['guards'][0]
    assert guard['guard'] == 'root_bdm' and guard['evidence'][0]['id'] == root
    assert 'connection_info' not in guard['evidence'][0]
    assert snapshot(dbs, ALL_TABLES) == before

    forced = ansible(MODULE, dict(args, force=True, force_reason='INC-4712: instance is being rebuilt'))
    assert not forced.failed and forced.changed and forced['forced_guards'][0]['guard'] == 'root_bdm'
    assert load_journal(forced['journal'])['force_reason'] == 'INC-4712: instance is being rebuilt'
    assert bdm_row(dbs, root)['deleted'] == root


@pytest.mark.newest_release
def test_cell0_is_never_written_even_with_force(ansible, dbs, cloud, journal_dir):
    instance = cloud.instance(host=None, vm_state='error', power_state=0, cell='cell0')
    volume = cloud.volume(status='available')
    bdm = cloud.bdm(instance, volume, cell='cell0')
    args = db_args(dbs, 'nova_api', 'cinder', volume=volume, journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)
    for extra in ({}, dict(force=True, force_reason='trying anyway')):
        refused = ansible(MODULE, dict(args, **extra))
        assert_clean_failure(refused, 'cell0')
        assert 'never written, even with force' in refused['msg']
        assert refused['guards'][0]['guard'] == 'cell0'
        assert refused['guards'][0]['evidence'][0]['id'] == bdm
        assert refused['guards'][0]['evidence'][0]['instance_uuid'] == instance
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)


@pytest.mark.newest_release
def test_bad_input_fails_clearly_and_writes_nothing(ansible, dbs, cloud, journal_dir):
    instance, volume, bdm = stale_bdm(cloud)
    before = snapshot(dbs, ALL_TABLES)
    cases = [
        (dict(instance='not-a-uuid'), "instance: 'not-a-uuid' is not a UUID"),
        (dict(volume=[volume, 'zz']), "volume: 'zz' is not a UUID"),
        (dict(), 'one of the following is required: instance, volume'),
        (dict(instance=[]), 'instance: the list is empty'),
        (dict(volume=volume, method='api', purge=True), 'method=api cannot express this change'),
        (dict(volume=volume, timeout=0), 'timeout must be a positive number of seconds, got 0'),
        (dict(volume=volume, force=True), 'force_reason'),
        (dict(volume=volume, purge='maybe'), 'purge'),
    ]
    for extra, fragment in cases:
        assert_clean_failure(ansible(MODULE, db_args(dbs, 'nova', journal_dir=journal_dir, **extra)), fragment)
    no_nova = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, journal_dir=journal_dir))
    assert_clean_failure(no_nova, 'or give nova_db (a single cell database) or nova_api_db')
    no_nova = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, journal_dir=journal_dir, method='db'))
    assert_clean_failure(no_nova, 'method=db needs nova_db (a single cell database) or nova_api_db')
    wrong_database = ansible(MODULE, dict(volume=volume, journal_dir=journal_dir, nova_db=dbs.url('cinder')))
    assert_clean_failure(wrong_database, 'has no table block_device_mapping')
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)
    assert instance and bdm
