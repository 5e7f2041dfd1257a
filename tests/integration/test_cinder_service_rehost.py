"""cinder_service_rehost against the real Cinder schemas of every release.

The incident: multi-backend was enabled on a legacy cinder-volume host, the
service came back as controller1@lvm and every volume (and its groups,
image cache entries and some attachments) still names controller1. Each case
is checked with independent SQL; the full cases go through check mode,
apply, re-run (changed: false) and undo from the journal.
"""

import json
import os
import time
import uuid

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import assert_clean_failure, db_args, run_full_cycle, snapshot, table_rows

MODULE = 'cinder_service_rehost'
OLD, NEW = 'controller1', 'controller1@lvm#lvm'
TABLES = [('cinder', table) for table in ('services', 'volumes', 'volume_attachment', 'groups', 'consistencygroups',
                                          'image_volume_cache_entries')]


def row(dbs, table, key):
    rows = dbs.query('cinder', 'SELECT * FROM `%s` WHERE id = %%s' % table, (key,))
    return rows[0] if rows else None


def beat(dbs, service_id):
    """A fresh heartbeat, as a running service writes every few seconds (long tests outlive the first one)."""
    dbs.execute('cinder', 'UPDATE services SET updated_at = UTC_TIMESTAMP() WHERE id = %s', (service_id,))


def service_uuid(dbs, service_id):
    return row(dbs, 'services', service_id)['uuid']


def incident(cloud, old=OLD, new_service='controller1@lvm', old_up=False, new_up=True, new_cluster=None):
    """The state the multi-backend switch left: the legacy host's rows, and a new service that owns nothing."""
    ids = dict(old_service=cloud.cinder_service(old, up=old_up),
               new_service=cloud.cinder_service(new_service, up=new_up, cluster_name=new_cluster),
               scheduler=cloud.cinder_service(old, binary='cinder-scheduler'))
    ids['group'] = cloud.group(host=old + '#DEFAULT')
    ids['cg'] = cloud.consistencygroup(host=old + '#DEFAULT')
    ids['plain'] = cloud.volume(host=old, group_id=ids['group'])
    ids['pooled'] = cloud.volume(host=old + '#DEFAULT', status='error_deleting', consistencygroup_id=ids['cg'])
    ids['attached'] = cloud.volume(host=old + '#DEFAULT', status='in-use', attach_status='attached')
    # Attached through Nova: attached_host is the compute host and stays.
    ids['nova_attachment'] = cloud.attachment(ids['attached'], str(uuid.uuid4()), 'compute1')
    # The incident's release recorded the Cinder host in attached_host.
    ids['host_attachment'] = cloud.attachment(ids['attached'], str(uuid.uuid4()), old, connector=None)
    ids['old_attachment'] = cloud.attachment(ids['attached'], str(uuid.uuid4()), old, deleted=True,
                                             attach_status='detached')
    ids['cache'] = cloud.image_cache_entry(old + '#DEFAULT', str(uuid.uuid4()), ids['plain'])
    ids['deleted_volume'] = cloud.volume(host=old + '#DEFAULT', status='deleted', deleted=True)
    return ids


def test_full_cycle_moves_everything_the_old_host_owns(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    new_uuid = service_uuid(dbs, ids['new_service'])
    old_service = row(dbs, 'services', ids['old_service'])
    untouched = {key: row(dbs, 'volumes' if key == 'deleted_volume' else 'services', ids[key])
                 for key in ('deleted_volume', 'scheduler', 'new_service')}
    nova_attachment = row(dbs, 'volume_attachment', ids['nova_attachment'])
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir)

    def verify():
        for key in ('plain', 'pooled', 'attached'):
            volume = row(dbs, 'volumes', ids[key])
            assert (volume['host'], volume['service_uuid'], volume['cluster_name']) == (NEW, new_uuid, None)
        assert row(dbs, 'volume_attachment', ids['host_attachment'])['attached_host'] == 'controller1@lvm'
        assert row(dbs, 'volume_attachment', ids['nova_attachment']) == nova_attachment
        assert row(dbs, 'volume_attachment', ids['old_attachment'])['attached_host'] == OLD
        for table, key in (('groups', 'group'), ('consistencygroups', 'cg'), ('image_volume_cache_entries', 'cache')):
            assert row(dbs, table, ids[key])['host'] == NEW
        service = row(dbs, 'services', ids['old_service'])
        assert service['disabled'] == 1 and service['deleted'] == 0
        assert 'stackmender' in service['disabled_reason'] and NEW in service['disabled_reason']
        assert service['updated_at'] == old_service['updated_at'] and service['modified_at'] is not None
        for key, before in untouched.items():
            assert row(dbs, 'volumes' if key == 'deleted_volume' else 'services', ids[key]) == before

    applied = run_full_cycle(ansible, dbs, MODULE, args, TABLES, verify)
    assert applied['method'] == 'db' and 'no API' in applied['method_reason']
    statements = [(step['table'], step['rows']) for step in applied['plan']]
    assert ('volumes', 3) in statements and len([s for s in statements if s[0] == 'volumes']) == 1
    assert ('volume_attachment', 1) in statements and ('services', 1) in statements
    assert applied['before']['cinder_db']['volumes/%s' % ids['plain']]['host'] == OLD
    assert applied['after']['cinder_db']['volumes/%s' % ids['plain']]['service_uuid'] == new_uuid
    assert applied['msg'].startswith('3 volume(s) from controller1 to controller1@lvm#lvm')
    assert any('volume_attachment refresh' in warning for warning in applied['warnings'])
    journal = load_journal(applied['journal'])
    assert journal['status'] == 'committed'
    assert set(entry['table'] for entry in journal['entries']) == {
        'volumes', 'volume_attachment', 'groups', 'consistencygroups', 'image_volume_cache_entries', 'services'}
    assert 'cinder_db' not in journal['arguments'] and 'password' not in json.dumps(journal).lower()


def test_remove_old_soft_deletes_the_old_service_row(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    before = row(dbs, 'services', ids['old_service'])
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, remove_old=True, journal_dir=journal_dir)

    def verify():
        service = row(dbs, 'services', ids['old_service'])
        assert service['deleted'] == 1 and service['deleted_at'] is not None and service['disabled'] == 1
        assert service['updated_at'] == before['updated_at'] and service['host'] == OLD
        # The scheduler of the same host is another binary and stays.
        assert row(dbs, 'services', ids['scheduler'])['deleted'] == 0

    applied = run_full_cycle(ansible, dbs, MODULE, args, TABLES, verify)
    after = applied['after']['cinder_db']['services/%s' % ids['old_service']]
    assert after['deleted'] == 1 and after['disabled'] == 1


@pytest.mark.newest_release
def test_disable_old_false_leaves_the_service_rows_alone(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    services = table_rows(dbs, 'cinder', 'services')
    applied = ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, disable_old=False,
                                      journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied
    assert 'services' not in [step['table'] for step in applied['plan']]
    assert table_rows(dbs, 'cinder', 'services') == services
    assert row(dbs, 'volumes', ids['plain'])['host'] == NEW
    # An old service already disabled by the operator keeps its reason.
    dbs.execute('cinder', "UPDATE services SET disabled = 1, disabled_reason = 'ops: gone' WHERE id = %s",
                (ids['old_service'],))
    rerun = ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir))
    assert not rerun.failed and not rerun.changed, rerun
    assert any('already disabled' in note for note in rerun['notes'])
    assert row(dbs, 'services', ids['old_service'])['disabled_reason'] == 'ops: gone'


@pytest.mark.newest_release
def test_matching_is_exact_never_a_prefix_case_or_wildcard(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    decoys = {}
    for host in ('controller10', 'controller10#DEFAULT', 'Controller1', 'CONTROLLER1#DEFAULT', 'controller1@lvm#lvm',
                 'controller1@lvm2#DEFAULT', 'controller1_#DEFAULT', 'xcontroller1'):
        decoys[host] = cloud.volume(host=host, service_uuid=None)
    decoy_group = cloud.group(host='controller10#DEFAULT')
    decoy_cache = cloud.image_cache_entry('Controller1#DEFAULT', str(uuid.uuid4()), decoys['Controller1'])
    decoy_attachment = cloud.attachment(decoys['controller10'], str(uuid.uuid4()), 'controller10')
    cloud.cinder_service('controller10', up=False)

    # Selectors that only a LIKE or a case-insensitive compare would widen: nothing matches them.
    for selector in ('controller_', 'controlle%', 'controller%', '%', 'CONTROLLER10', 'controller', 'ontroller1'):
        before = snapshot(dbs, TABLES)
        result = ansible(MODULE, db_args(dbs, 'cinder', from_host=selector, to_host=NEW, journal_dir=journal_dir))
        assert not result.failed and not result.changed, (selector, result)
        assert 'nothing under %s to move' % selector in result['notes'][-1]
        assert snapshot(dbs, TABLES) == before

    beat(dbs, ids['new_service'])
    before = snapshot(dbs, TABLES)
    applied = ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied
    moved = set(key.split('/', 1)[1] for key in applied['after']['cinder_db'] if key.startswith('volumes/'))
    assert moved == {ids['plain'], ids['pooled'], ids['attached']}
    for host, volume_id in decoys.items():
        assert row(dbs, 'volumes', volume_id)['host'] == host
    assert row(dbs, 'groups', decoy_group)['host'] == 'controller10#DEFAULT'
    assert row(dbs, 'image_volume_cache_entries', decoy_cache)['host'] == 'Controller1#DEFAULT'
    assert row(dbs, 'volume_attachment', decoy_attachment)['attached_host'] == 'controller10'
    changed_services = [r for r in table_rows(dbs, 'cinder', 'services')
                        if r not in before[('cinder', 'services')]]
    assert [r['id'] for r in changed_services] == [ids['old_service']]

    # '_' is a plain character: this selector names exactly one decoy.
    beat(dbs, ids['new_service'])
    underscore = ansible(MODULE, db_args(dbs, 'cinder', from_host='controller1_', to_host=NEW, journal_dir=journal_dir))
    assert not underscore.failed and underscore.changed, underscore
    assert [key for key in underscore['after']['cinder_db'] if key.startswith('volumes/')] == [
        'volumes/%s' % decoys['controller1_#DEFAULT']]


@pytest.mark.newest_release
def test_backend_selectors_do_not_match_longer_backends(ansible, dbs, cloud, journal_dir):
    cloud.cinder_service('host1@backend1', up=False)
    cloud.cinder_service('host1@backend10', up=True)
    cloud.cinder_service('host1@multi', up=True)
    mine = [cloud.volume(host='host1@backend1#backend1'), cloud.volume(host='host1@backend1')]
    others = {cloud.volume(host='host1@backend10#backend10'): 'host1@backend10#backend10',
              cloud.volume(host='host1@Backend1#backend1'): 'host1@Backend1#backend1',
              cloud.volume(host='host1@backend1x#p'): 'host1@backend1x#p'}
    args = db_args(dbs, 'cinder', from_host='host1@backend1', to_host='host1@multi#backend1', journal_dir=journal_dir)
    applied = ansible(MODULE, args)
    assert not applied.failed and applied.changed, applied
    for volume_id in mine:
        assert row(dbs, 'volumes', volume_id)['host'] == 'host1@multi#backend1'
    for volume_id, host in others.items():
        assert row(dbs, 'volumes', volume_id)['host'] == host
    assert not ansible(MODULE, args).changed


@pytest.mark.newest_release
def test_pool_selector_moves_one_pool_and_remove_old_refuses_orphans(ansible, dbs, cloud, journal_dir):
    old_service = cloud.cinder_service('node1@old', up=False)
    new_service = cloud.cinder_service('node1@new', up=True)
    pool_a = [cloud.volume(host='node1@old#a'), cloud.volume(host='node1@old#a')]
    pool_b = cloud.volume(host='node1@old#b')
    pool_ab = cloud.volume(host='node1@old#ab')
    args = db_args(dbs, 'cinder', from_host='node1@old#a', to_host='node1@new#a', remove_old=True,
                   journal_dir=journal_dir)
    before = snapshot(dbs, TABLES)
    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'remove_old: 2 live volume(s) not moved by this run still belong to the old '
                                  'service node1@old')
    guard = refused['guards'][0]
    assert guard['guard'] == 'old_service_still_owns'
    assert sorted(r['id'] for r in guard['evidence']) == sorted([pool_b, pool_ab])
    assert snapshot(dbs, TABLES) == before

    applied = ansible(MODULE, dict(args, remove_old=False))
    assert not applied.failed and applied.changed, applied
    for volume_id in pool_a:
        volume = row(dbs, 'volumes', volume_id)
        assert volume['host'] == 'node1@new#a' and volume['service_uuid'] == service_uuid(dbs, new_service)
    assert row(dbs, 'volumes', pool_b)['host'] == 'node1@old#b'
    assert row(dbs, 'volumes', pool_ab)['host'] == 'node1@old#ab'
    assert row(dbs, 'services', old_service)['disabled'] == 1

    # The backend selector takes every remaining pool, and then the old row can go.
    rest = ansible(MODULE, db_args(dbs, 'cinder', from_host='node1@old', to_host='node1@new#a', remove_old=True,
                                   journal_dir=journal_dir))
    assert not rest.failed and rest.changed, rest
    assert row(dbs, 'volumes', pool_b)['host'] == 'node1@new#a'
    assert row(dbs, 'services', old_service)['deleted'] == 1


@pytest.mark.newest_release
def test_volume_subset_moves_only_the_listed_volumes(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    extra = cloud.volume(host=OLD + '#DEFAULT', group_id=ids['group'])
    extra_cache = cloud.image_cache_entry(OLD + '#DEFAULT', str(uuid.uuid4()), ids['attached'])
    before = snapshot(dbs, TABLES)

    # The group holds 'plain' and 'extra': moving only one of them would split it.
    split = ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, volumes=[ids['plain'], ids['attached']],
                                    journal_dir=journal_dir))
    assert_clean_failure(split, 'groups %s would be split' % ids['group'])
    assert split['guards'][0]['guard'] == 'group_split'
    assert split['guards'][0]['evidence'][1]['id'] == extra
    assert snapshot(dbs, TABLES) == before

    listed = [ids['attached'], ids['pooled'].upper()]
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, volumes=listed, journal_dir=journal_dir)

    def verify():
        for key in ('attached', 'pooled'):
            assert row(dbs, 'volumes', ids[key])['host'] == NEW
        assert row(dbs, 'volume_attachment', ids['host_attachment'])['attached_host'] == 'controller1@lvm'
        assert row(dbs, 'image_volume_cache_entries', extra_cache)['host'] == NEW
        assert row(dbs, 'consistencygroups', ids['cg'])['host'] == NEW
        # Not listed: stays, and so do its group and cache entry.
        assert row(dbs, 'volumes', ids['plain'])['host'] == OLD
        assert row(dbs, 'volumes', extra)['host'] == OLD + '#DEFAULT'
        assert row(dbs, 'groups', ids['group'])['host'] == OLD + '#DEFAULT'
        assert row(dbs, 'image_volume_cache_entries', ids['cache'])['host'] == OLD + '#DEFAULT'

    applied = run_full_cycle(ansible, dbs, MODULE, args, TABLES, verify)
    assert applied['msg'].startswith('2 volume(s)')

    # A listed volume under another host is never moved, even with force.
    other = cloud.volume(host='elsewhere@lvm#lvm')
    for extra_args in ({}, dict(force=True, force_reason='test')):
        wrong = ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, volumes=[ids['plain'], other],
                                        journal_dir=journal_dir, **extra_args))
        assert_clean_failure(wrong, 'under another host than controller1')
        assert wrong['guards'][0]['evidence'][0]['id'] == other
    missing = str(uuid.uuid4())
    assert_clean_failure(ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, volumes=[missing])),
                         'volume(s) not found in the cinder database')


def test_clustered_deployment_gets_the_new_cluster(ansible, dbs, cloud, journal_dir):
    old_service = cloud.cinder_service('node1@rbd', up=False, cluster_name='old-cluster@rbd')
    cloud.cinder_service('node2@ceph', up=True, cluster_name='ceph-cluster@ceph')
    volumes = [cloud.volume(host='node1@rbd#rbd', cluster_name='old-cluster@rbd#rbd') for number in range(2)]
    group = cloud.group(host='node1@rbd#rbd', cluster_name='old-cluster@rbd#rbd')
    cache = cloud.image_cache_entry('node1@rbd#rbd', str(uuid.uuid4()), volumes[0], cluster_name='old-cluster@rbd#rbd')
    args = db_args(dbs, 'cinder', from_host='node1@rbd', to_host='node2@ceph#volumes', journal_dir=journal_dir)

    def verify():
        for volume_id in volumes:
            volume = row(dbs, 'volumes', volume_id)
            assert (volume['host'], volume['cluster_name']) == ('node2@ceph#volumes', 'ceph-cluster@ceph#volumes')
        for table, key in (('groups', group), ('image_volume_cache_entries', cache)):
            assert row(dbs, table, key)['cluster_name'] == 'ceph-cluster@ceph#volumes'
        assert row(dbs, 'services', old_service)['cluster_name'] == 'old-cluster@rbd'

    applied = run_full_cycle(ansible, dbs, MODULE, args, TABLES, verify)
    assert applied['after']['cinder_db']['volumes/%s' % volumes[0]]['cluster_name'] == 'ceph-cluster@ceph#volumes'


@pytest.mark.newest_release
def test_cluster_name_is_cleared_when_the_new_service_is_not_clustered(ansible, dbs, cloud, journal_dir):
    cloud.cinder_service('node1@rbd', up=False, cluster_name='old-cluster@rbd')
    cloud.cinder_service('node2@ceph', up=True)
    volume = cloud.volume(host='node1@rbd#rbd', cluster_name='old-cluster@rbd#rbd')
    applied = ansible(MODULE, db_args(dbs, 'cinder', from_host='node1@rbd', to_host='node2@ceph#volumes',
                                      journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied
    assert row(dbs, 'volumes', volume)['cluster_name'] is None


@pytest.mark.newest_release
def test_old_service_up_refuses_with_evidence_then_force_applies(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud, old_up=True)
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir)
    before = snapshot(dbs, TABLES)
    for check in (True, False):
        refused = ansible(MODULE, args, check=check)
        assert_clean_failure(refused, 'the old cinder-volume service controller1 is up')
        guard = refused['guards'][0]
        assert guard['guard'] == 'old_service_up'
        assert guard['evidence'][0]['id'] == ids['old_service'] and guard['evidence'][0]['heartbeat_age'] <= 60
    assert snapshot(dbs, TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)

    # With Cinder's setting of the deployment, the same heartbeat is old enough.
    dbs.execute('cinder', 'UPDATE services SET updated_at = UTC_TIMESTAMP() - INTERVAL 40 SECOND WHERE id = %s',
                (ids['old_service'],))
    beat(dbs, ids['new_service'])
    assert ansible(MODULE, args, check=True).failed
    assert not ansible(MODULE, dict(args, service_down_time=30), check=True).failed

    reason = 'INC-5150: controller1 cinder-volume is masked in systemd'
    # Fresh heartbeats again: under load the runs above can outlast the 60 s window.
    beat(dbs, ids['old_service'])
    beat(dbs, ids['new_service'])
    forced = ansible(MODULE, dict(args, force=True, force_reason=reason))
    assert not forced.failed and forced.changed, forced
    assert forced['forced_guards'][0]['guard'] == 'old_service_up'
    journal = load_journal(forced['journal'])
    assert journal['force_reason'] == reason and journal['forced_guards'][0]['evidence'][0]['id'] == ids['old_service']
    assert row(dbs, 'volumes', ids['plain'])['host'] == NEW


@pytest.mark.newest_release
def test_new_service_down_refuses_with_evidence_then_force_applies(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud, new_up=False)
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir)
    before = snapshot(dbs, TABLES)
    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'the new cinder-volume service controller1@lvm is down')
    guard = refused['guards'][0]
    assert guard['guard'] == 'new_service_down' and guard['evidence'][0]['id'] == ids['new_service']
    assert guard['evidence'][0]['heartbeat_age'] >= 3600
    assert snapshot(dbs, TABLES) == before
    forced = ansible(MODULE, dict(args, force=True, force_reason='INC-5151: starting it right after'))
    assert not forced.failed and forced.changed and forced['forced_guards'][0]['guard'] == 'new_service_down'


@pytest.mark.newest_release
def test_transitional_volumes_refuse_with_evidence_then_force_applies(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    deleting = cloud.volume(host=OLD + '#DEFAULT', status='deleting')
    migrating = cloud.volume(host=OLD, migration_status='migrating')
    transfer = cloud.volume(host=OLD, status='awaiting-transfer')
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir)
    before = snapshot(dbs, TABLES)
    refused = ansible(MODULE, args)
    assert_clean_failure(refused, '2 volume(s) under controller1 are in a transitional state (deleting, migration '
                                  'migrating)')
    guard = refused['guards'][0]
    assert guard['guard'] == 'volume_transitional'
    assert sorted(r['id'] for r in guard['evidence']) == sorted([deleting, migrating])
    assert snapshot(dbs, TABLES) == before
    forced = ansible(MODULE, dict(args, force=True, force_reason='INC-5152: the delete never reached a backend'))
    assert not forced.failed and forced.changed
    for volume_id in (deleting, migrating, transfer, ids['plain']):
        assert row(dbs, 'volumes', volume_id)['host'] == NEW


@pytest.mark.newest_release
def test_missing_new_service_is_never_overridden(ansible, dbs, cloud, journal_dir):
    incident(cloud)
    before = snapshot(dbs, TABLES)
    for extra in ({}, dict(force=True, force_reason='trying anyway')):
        refused = ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host='controller1@lmv#lvm',
                                          journal_dir=journal_dir, **extra))
        assert_clean_failure(refused, 'no live cinder-volume service controller1@lmv exists')
        assert 'never overridden' in refused['msg']
        guard = refused['guards'][0]
        assert guard['guard'] == 'new_service_missing'
        # The evidence lists the services that do exist, so the typo shows.
        assert 'controller1@lvm' in [r['host'] for r in guard['evidence']]
    assert snapshot(dbs, TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)


@pytest.mark.newest_release
def test_missing_old_service_row_is_fine(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    dbs.execute('cinder', 'UPDATE services SET deleted = 1, deleted_at = UTC_TIMESTAMP() WHERE id = %s',
                (ids['old_service'],))
    applied = ansible(MODULE, db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, remove_old=True,
                                      journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied
    assert 'services' not in [step['table'] for step in applied['plan']]
    assert row(dbs, 'volumes', ids['plain'])['host'] == NEW


@pytest.mark.newest_release
def test_api_method_explains_why_and_bad_input_fails_clearly(ansible, dbs, cloud, journal_dir):
    incident(cloud)
    before = snapshot(dbs, TABLES)
    base = dict(from_host=OLD, to_host=NEW)
    checked = ansible(MODULE, db_args(dbs, 'cinder', method='db', **base), check=True)
    assert not checked.failed and checked['method_reason'] == 'requested'
    cases = [
        (dict(base, method='api'), 'Cinder has no API that changes the host of a volume without moving its data'),
        (dict(base, to_host='controller1@lvm'), 'must be host@backend#pool'),
        (dict(base, to_host='controller2#lvm'), 'must be host@backend#pool'),
        (dict(base, from_host='controller1@lvm#other'), 'are pools of the same service controller1@lvm'),
        (dict(base, from_host='controller1 '), 'contains whitespace'),
        (dict(base, from_host='a@b@c'), 'is not host, host@backend or host@backend#pool'),
        (dict(base, from_host='a#p@b'), 'has the pool (#) before the backend (@)'),
        (dict(base, from_host='a@'), 'has an empty host, backend or pool part'),
        (dict(base, volumes=[]), 'volumes: the list is empty'),
        (dict(base, volumes=['nope']), "volumes: 'nope' is not a UUID"),
        (dict(base, service_down_time=0), 'service_down_time must be a positive'),
        (dict(base, force=True), 'force_reason'),
        (dict(from_host=OLD), 'missing required arguments: to_host'),
    ]
    for extra, fragment in cases:
        assert_clean_failure(ansible(MODULE, db_args(dbs, 'cinder', journal_dir=journal_dir, **extra)), fragment)
    assert_clean_failure(ansible(MODULE, dict(base, journal_dir=journal_dir)), 'give cinder_db')
    assert_clean_failure(ansible(MODULE, dict(base, journal_dir=journal_dir, cinder_db=dbs.url('nova'))),
                         'has no table volumes')
    assert snapshot(dbs, TABLES) == before


def test_releases_without_service_uuid_or_cluster_name(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    # As a schema from before these columns existed: nothing must name them.
    foreign_key = dbs.scalar('cinder', "SELECT CONSTRAINT_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE "
                                       "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'volumes' AND "
                                       "COLUMN_NAME = 'service_uuid' AND REFERENCED_TABLE_NAME IS NOT NULL")
    dbs.execute('cinder', 'ALTER TABLE volumes DROP FOREIGN KEY `%s`' % foreign_key)
    dbs.execute('cinder', 'ALTER TABLE volumes DROP INDEX volumes_service_uuid_idx, DROP COLUMN service_uuid, '
                          'DROP COLUMN cluster_name')
    for table in ('groups', 'consistencygroups', 'image_volume_cache_entries'):
        dbs.execute('cinder', 'ALTER TABLE `%s` DROP COLUMN cluster_name' % table)
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir)

    def verify():
        assert row(dbs, 'volumes', ids['plain'])['host'] == NEW
        assert row(dbs, 'groups', ids['group'])['host'] == NEW

    applied = run_full_cycle(ansible, dbs, MODULE, args, TABLES, verify)
    assert any('no volumes.service_uuid' in note for note in applied['notes'])
    volume_step = [step for step in applied['plan'] if step['table'] == 'volumes'][0]
    assert 'service_uuid' not in volume_step['statement'] and 'cluster_name' not in volume_step['statement']


@pytest.mark.newest_release
def test_ten_thousand_volumes_are_a_handful_of_statements(ansible, dbs, cloud, journal_dir):
    ids = incident(cloud)
    old_uuid = service_uuid(dbs, ids['old_service'])
    count = 10000
    dbs.execute('cinder', "INSERT INTO volumes (created_at, updated_at, deleted, id, user_id, project_id, host, size, "
                          "availability_zone, status, attach_status, display_name, volume_type_id, service_uuid) "
                          "SELECT UTC_TIMESTAMP(), UTC_TIMESTAMP(), 0, UUID(), 'u', 'p', "
                          "IF(MOD(seq, 2), 'controller1#DEFAULT', 'controller1'), 1, 'nova', 'available', 'detached', "
                          "CONCAT('bulk-', seq), %s, %s FROM seq_1_to_" + str(count),
                (cloud.default_volume_type_id, old_uuid))
    args = db_args(dbs, 'cinder', from_host=OLD, to_host=NEW, journal_dir=journal_dir)
    started = time.monotonic()
    checked = ansible(MODULE, args, check=True)
    planned_in = time.monotonic() - started
    assert not checked.failed and checked.changed
    volume_steps = [step for step in checked['plan'] if step['table'] == 'volumes']
    assert len(volume_steps) == 1 and volume_steps[0]['rows'] == count + 3
    assert volume_steps[0]['keys_not_shown'] == count + 3 - 50
    assert len(checked['plan']) <= 6
    beat(dbs, ids['new_service'])
    applied = ansible(MODULE, args)
    assert not applied.failed and applied.changed, applied['msg']
    assert dbs.scalar('cinder', 'SELECT count(*) FROM volumes WHERE host = %s AND deleted = 0', (NEW,)) == count + 3
    assert dbs.scalar('cinder', "SELECT count(*) FROM volumes WHERE deleted = 0 AND "
                                "(host LIKE 'controller1#%' OR host = 'controller1')") == 0
    assert len(load_journal(applied['journal'])['entries']) >= count + 3
    rerun = ansible(MODULE, args)
    assert not rerun.failed and not rerun.changed
    print('planned %d volumes in %.1f s (check mode through ansible)' % (count + 3, planned_in))
