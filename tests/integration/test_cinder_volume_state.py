"""cinder_volume_state against the real Cinder/Nova schemas of every release.

Every case: check mode (nothing written, plan and diff returned), apply (rows
verified with independent SQL), re-run (changed: false), undo from the
journal (rows equal the originals).
"""

import os
import uuid

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

MODULE = 'cinder_volume_state'


def test_stuck_detaching_volume_with_orphaned_attachment(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='detaching', attach_status='attached')
    attachment = cloud.attachment(volume, instance_uuid='2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e',
                                  attached_host='compute1', attach_status='detaching')
    cloud.admin_metadata(volume, 'attached_mode', 'rw')
    cloud.admin_metadata(volume, 'readonly', 'False')
    cloud.worker('VOLUME', volume, 'detaching')
    other = cloud.volume(status='in-use', attach_status='attached')
    other_attachment = cloud.attachment(other, instance_uuid='3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e',
                                        attached_host='compute1')
    args = db_args(dbs, 'cinder', 'nova_api', volume=volume, status='available', journal_dir=journal_dir)

    def verify():
        row = dbs.query('cinder', 'SELECT status, attach_status FROM volumes WHERE id = %s', (volume,))[0]
        assert (row['status'], row['attach_status']) == ('available', 'detached')
        att = dbs.query('cinder', 'SELECT deleted, attach_status, detach_time, deleted_at FROM volume_attachment '
                        'WHERE id = %s', (attachment,))[0]
        assert att['deleted'] == 1 and att['attach_status'] == 'detached' and att['detach_time'] and att['deleted_at']
        meta = dbs.query('cinder', 'SELECT `key`, deleted FROM volume_admin_metadata WHERE volume_id = %s', (volume,))
        assert {row['key']: row['deleted'] for row in meta} == {'attached_mode': 1, 'readonly': 0}
        assert not dbs.query('cinder', "SELECT id FROM workers WHERE resource_id = %s", (volume,))
        assert dbs.query('cinder', "SELECT count(*) AS n FROM workers WHERE resource_type = 'SENTINEL'")[0]['n'] == 1
        # The other volume is untouched.
        untouched = dbs.query('cinder', 'SELECT v.status, a.deleted FROM volumes v JOIN volume_attachment a '
                              'ON a.volume_id = v.id WHERE v.id = %s', (other,))[0]
        assert (untouched['status'], untouched['deleted']) == ('in-use', 0)
        assert other_attachment

    applied = run_full_cycle(ansible, dbs, MODULE, args, CINDER_TABLES, verify)
    assert applied['method'] == 'db' and applied['method_reason']
    assert applied['before']['cinder_db']['volumes/%s' % volume]['status'] == 'detaching'
    assert applied['after']['cinder_db']['volumes/%s' % volume]['status'] == 'available'
    journal = load_journal(applied['journal'])
    assert journal['status'] == 'committed' and len(journal['entries']) == 4
    # Whole rows are journaled only for deletes (the workers row): never the attachment's connection_info.
    assert [entry['table'] for entry in journal['entries'] if 'row' in entry] == ['workers']
    assert 'connection_info' not in open(applied['journal']).read()
    assert journal['databases']['cinder_db']['database'] == dbs.name('cinder')


def test_error_deleting_leftover_is_retired_with_quota_given_back(ansible, dbs, cloud, journal_dir):
    project = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'
    leftover = cloud.volume(status='error_deleting', size=20, project_id=project)
    cloud.volume_metadata(leftover, 'purpose', 'db')
    cloud.admin_metadata(leftover, 'readonly', 'False')
    cloud.worker('VOLUME', leftover, 'deleting')
    keeper = cloud.volume(status='available', size=5, project_id=project)
    cloud.quota_usage(project, 'volumes', 2)
    cloud.quota_usage(project, 'gigabytes', 25)
    cloud.quota_usage(project, 'volumes___DEFAULT__', 2)
    cloud.quota_usage(project, 'gigabytes___DEFAULT__', 25)
    args = db_args(dbs, 'cinder', 'nova_api', volume=[leftover], status='deleted', from_status=['error_deleting'],
                   journal_dir=journal_dir)

    def verify():
        row = dbs.query('cinder', 'SELECT status, deleted, deleted_at FROM volumes WHERE id = %s', (leftover,))[0]
        assert (row['status'], row['deleted']) == ('deleted', 1) and row['deleted_at']
        assert dbs.query('cinder', 'SELECT deleted FROM volume_metadata WHERE volume_id = %s', (leftover,))[0]['deleted'] == 1
        assert dbs.query('cinder', 'SELECT deleted FROM volume_admin_metadata WHERE volume_id = %s', (leftover,))[0]['deleted'] == 1
        usage = {row['resource']: row['in_use'] for row in
                 dbs.query('cinder', 'SELECT resource, in_use FROM quota_usages WHERE project_id = %s', (project,))}
        assert usage == {'volumes': 1, 'gigabytes': 5, 'volumes___DEFAULT__': 1, 'gigabytes___DEFAULT__': 5}
        assert dbs.query('cinder', 'SELECT deleted FROM volumes WHERE id = %s', (keeper,))[0]['deleted'] == 0

    applied = run_full_cycle(ansible, dbs, MODULE, args, CINDER_TABLES, verify)
    assert any('backend objects' in warning for warning in applied.get('warnings', []))


def test_batch_of_volumes_in_one_transaction(ansible, dbs, cloud, journal_dir):
    stuck = [cloud.volume(status='attaching', attach_status='detached') for _number in range(5)]
    done = cloud.volume(status='error', attach_status='detached')
    args = db_args(dbs, 'cinder', volume=stuck + [done], status='error', journal_dir=journal_dir)

    def verify():
        rows = dbs.query('cinder', 'SELECT status FROM volumes WHERE id IN (%s)' % ', '.join(['%s'] * 6), stuck + [done])
        assert [row['status'] for row in rows] == ['error'] * 6

    applied = run_full_cycle(ansible, dbs, MODULE, args, CINDER_TABLES, verify)
    assert len(applied['plan']) == 1 and applied['plan'][0]['rows'] == 5
    assert len(applied['before']['cinder_db']) == 5
    assert any(done in note for note in applied['notes'])


def test_migration_status_is_cleared_with_the_status(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='maintenance', migration_status='migrating')
    refused = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, status='available', journal_dir=journal_dir))
    assert_clean_failure(refused, 'mid-migration')
    args = db_args(dbs, 'cinder', volume=volume, status='available', migration_status='none', journal_dir=journal_dir)

    def verify():
        row = dbs.query('cinder', 'SELECT status, migration_status FROM volumes WHERE id = %s', (volume,))[0]
        assert (row['status'], row['migration_status']) == ('available', None)

    run_full_cycle(ansible, dbs, MODULE, args, CINDER_TABLES, verify)


@pytest.mark.newest_release
def test_live_nova_bdm_refuses_with_evidence_then_force_applies(ansible, dbs, cloud, journal_dir):
    host = 'compute1'
    cloud.nova_service(host)
    instance = cloud.instance(host=host)
    volume = cloud.volume(status='detaching', attach_status='attached')
    attachment = cloud.attachment(volume, instance_uuid=instance, attached_host=host)
    bdm = cloud.bdm(instance, volume, attachment_id=attachment)
    args = db_args(dbs, 'cinder', 'nova_api', volume=volume, status='available', journal_dir=journal_dir)
    before = snapshot(dbs, CINDER_TABLES + NOVA_TABLES)

    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'Nova still has a live block device mapping')
    guard = refused['guards'][0]
    assert guard['guard'] == 'nova_bdm_live'
    assert guard['evidence'][0]['instance_uuid'] == instance and guard['evidence'][0]['bdm_id'] == bdm
    assert guard['evidence'][0]['cell'] == 'nova:cell1'
    assert snapshot(dbs, CINDER_TABLES + NOVA_TABLES) == before

    # Same refusal through nova_db (a single cell given directly).
    through_cell = db_args(dbs, 'cinder', 'nova', volume=volume, status='available', journal_dir=journal_dir)
    assert_clean_failure(ansible(MODULE, through_cell), 'live block device mapping')

    forced = ansible(MODULE, dict(args, force=True, force_reason='INC-4711: guest powered off, BDM purged next'))
    assert not forced.failed and forced.changed
    assert forced['forced_guards'][0]['guard'] == 'nova_bdm_live'
    journal = load_journal(forced['journal'])
    assert journal['force'] is True and journal['force_reason'].startswith('INC-4711')
    assert journal['forced_guards'][0]['evidence'][0]['bdm_id'] == bdm
    assert dbs.query('cinder', 'SELECT status FROM volumes WHERE id = %s', (volume,))[0]['status'] == 'available'
    # Nova's rows are never written by this module.
    assert snapshot(dbs, NOVA_TABLES) == dict((key, rows) for key, rows in before.items() if key in NOVA_TABLES)


@pytest.mark.newest_release
def test_without_nova_detaching_an_attached_volume_refuses_unless_accepted(ansible, dbs, cloud, journal_dir):
    """Nova cannot be consulted: marking an attached volume available is refused, naming the option; accepted
    with a reason it is done and recorded. A reset that detaches nothing needs no Nova."""
    volume = cloud.volume(status='in-use', attach_status='attached')
    attachment = cloud.attachment(volume, instance_uuid='2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e',
                                  attached_host='compute1')
    leftover = cloud.volume(status='error_deleting')
    before = snapshot(dbs, CINDER_TABLES)
    for extra in (dict(volume=volume, status='available'), dict(volume=leftover, status='deleted')):
        refused = ansible(MODULE, db_args(dbs, 'cinder', journal_dir=journal_dir, **extra))
        assert_clean_failure(refused, 'give nova_api_db (or nova_db) so the guard can look')
        assert [(guard['guard'], guard['missing_option']) for guard in refused['unverified_guards']] == [
            ('nova_bdm_live', 'nova_api_db (or nova_db)')]
        assert extra['volume'] in refused['msg']
        checked = ansible(MODULE, db_args(dbs, 'cinder', journal_dir=journal_dir, **extra), check=True)
        assert_clean_failure(checked, 'accept_unverified')
    assert snapshot(dbs, CINDER_TABLES) == before, 'a refused run wrote something'
    assert not os.path.isdir(journal_dir) or not os.listdir(journal_dir)

    reason = 'CHG-7: server 2f9e0c55 was deleted, checked in Horizon'
    applied = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, status='available', accept_unverified=True,
                                      unverified_reason=reason, journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied['msg']
    assert applied['unverified_guards'][0]['guard'] == 'nova_bdm_live'
    assert any('accept_unverified (%s)' % reason in warning for warning in applied['warnings'])
    journal = load_journal(applied['journal'])
    assert journal['unverified_reason'] == reason and journal['unverified_guards'] == applied['unverified_guards']
    row = dbs.query('cinder', 'SELECT status, attach_status FROM volumes WHERE id = %s', (volume,))[0]
    assert (row['status'], row['attach_status']) == ('available', 'detached')
    assert dbs.query('cinder', 'SELECT deleted FROM volume_attachment WHERE id = %s', (attachment,))[0]['deleted'] == 1

    # Nothing attached: the guard has nothing to protect, so no Nova is needed.
    stuck = cloud.volume(status='attaching', attach_status='detached')
    plain = ansible(MODULE, db_args(dbs, 'cinder', volume=stuck, status='error', journal_dir=journal_dir))
    assert not plain.failed and plain.changed and 'unverified_guards' not in plain, plain['msg']


@pytest.mark.newest_release
def test_force_needs_a_reason(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='detaching')
    result = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, status='available', force=True,
                                     journal_dir=journal_dir))
    assert_clean_failure(result, 'force_reason')


@pytest.mark.newest_release
def test_guards_of_retiring_a_volume(ansible, dbs, cloud, journal_dir):
    attached = cloud.volume(status='in-use', attach_status='attached')
    cloud.attachment(attached, instance_uuid='2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e', attached_host='compute1')
    with_snapshot = cloud.volume(status='error_deleting')
    cloud.snapshot(with_snapshot)
    before = snapshot(dbs, CINDER_TABLES)
    result = ansible(MODULE, db_args(dbs, 'cinder', volume=[attached, with_snapshot], status='deleted',
                                     journal_dir=journal_dir))
    assert_clean_failure(result, 'refused')
    names = sorted(guard['guard'] for guard in result['guards'])
    assert names == ['status_not_deletable', 'volume_attached', 'volume_has_snapshots']
    assert snapshot(dbs, CINDER_TABLES) == before


@pytest.mark.newest_release
def test_from_status_precondition(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='in-use', attach_status='attached')
    cloud.attachment(volume, instance_uuid='2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e', attached_host='compute1')
    before = snapshot(dbs, CINDER_TABLES)
    result = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, status='available', from_status=['detaching'],
                                     journal_dir=journal_dir))
    assert_clean_failure(result, "is 'in-use', not one of from_status detaching")
    assert snapshot(dbs, CINDER_TABLES) == before


@pytest.mark.newest_release
def test_in_use_needs_a_live_attachment(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='error', attach_status='detached')
    result = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, status='in-use', journal_dir=journal_dir))
    assert_clean_failure(result, 'has no live attachment')


@pytest.mark.newest_release
def test_bad_input_fails_clearly_and_writes_nothing(ansible, dbs, cloud, journal_dir, mariadb_server):
    volume = cloud.volume(status='detaching')
    before = snapshot(dbs, CINDER_TABLES)
    cases = [
        (dict(volume='not-a-uuid', status='available'), "volume: 'not-a-uuid' is not a UUID"),
        (dict(volume='6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11', status='available'), 'not found in the cinder database'),
        (dict(volume=volume, status='bogus'), 'value of status must be one of'),
        (dict(volume=volume, status='detaching'), "status 'detaching' is transitional"),
        (dict(volume=volume, status='available', attach_status='attached'), 'contradicts'),
        (dict(volume=volume), 'one of the following is required'),
        (dict(volume=volume, status='available', from_status=['nonsense']), 'not a Cinder volume status'),
    ]
    for extra, fragment in cases:
        assert_clean_failure(ansible(MODULE, db_args(dbs, 'cinder', journal_dir=journal_dir, **extra)), fragment)
    unreachable = ansible(MODULE, dict(volume=volume, status='available', journal_dir=journal_dir,
                                       cinder_db='mysql+pymysql://root@127.0.0.1:1/cinder'))
    assert_clean_failure(unreachable, 'cannot connect to the database server')
    assert snapshot(dbs, CINDER_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)


@pytest.mark.newest_release
def test_wrong_password_and_secrets_never_shown(ansible, dbs, cloud, journal_dir, mariadb_server):
    password = 'Sm-S3cret-pw-77'
    user = 'sm_%s' % uuid.uuid4().hex[:12]  # unique: runs may share the server
    admin = mariadb_server.admin_connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute('GRANT ALL ON `%s`.* TO %%s@%%s' % dbs.name('cinder'), (user, '%'))
        volume = cloud.volume(status='detaching')
        base = dbs.url('cinder').split('://', 1)[1].split('@', 1)[1]
        wrong = ansible(MODULE, dict(volume=volume, status='available', journal_dir=journal_dir,
                                     cinder_db='mysql+pymysql://%s:wrong-pw@%s' % (user, base)))
        assert_clean_failure(wrong, 'access denied')
        assert 'wrong-pw' not in wrong.stdout
        url = 'mysql+pymysql://%s:%s@%s' % (user, password, base)
        for check in (True, False):
            result = ansible(MODULE, dict(volume=volume, status='available', journal_dir=journal_dir, cinder_db=url),
                             check=check, diff=True, verbosity=3)
            assert not result.failed, result['msg']
            assert password not in result.stdout and password not in result.stderr
        for name in os.listdir(journal_dir):
            assert password not in open(os.path.join(journal_dir, name)).read()
    finally:
        with admin.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        admin.close()


@pytest.mark.newest_release
def test_schema_is_probed_before_planning(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='detaching')
    wrong_database = ansible(MODULE, dict(volume=volume, status='available', journal_dir=journal_dir,
                                          cinder_db=dbs.url('placement')))
    assert_clean_failure(wrong_database, 'has no table volumes')
    dbs.execute('cinder', 'ALTER TABLE volumes DROP COLUMN migration_status')
    missing_column = ansible(MODULE, db_args(dbs, 'cinder', volume=volume, status='available', journal_dir=journal_dir))
    assert_clean_failure(missing_column, 'lacks column volumes.migration_status')
    assert missing_column['missing'] == ['volumes.migration_status']
