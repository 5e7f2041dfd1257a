"""The plan of cinder_service_rehost (module_utils/services/rehost.py) on plain data, without a database."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.services import rehost

STAMP = '2026-12-07 10:00:00'
MOVE = rehost.Move('controller1', 'controller1@lvm#lvm')
NEW_SERVICE = dict(id=2, uuid='u-new', host='controller1@lvm', cluster_name=None)


def volume(volume_id, host='controller1', status='available', migration_status=None, service_uuid=None,
           cluster_name=None, deleted=0):
    return dict(id=volume_id, host=host, status=status, attach_status='detached', migration_status=migration_status,
                deleted=deleted, updated_at='2026-01-01 00:00:00', service_uuid=service_uuid, cluster_name=cluster_name)


def test_a_move_knows_its_services_and_what_it_matches():
    assert (MOVE.old_service_host, MOVE.new_service_host, MOVE.to_pool, MOVE.fill_pool) == (
        'controller1', 'controller1@lvm', 'lvm', False)
    assert MOVE.matches('controller1') and MOVE.matches('controller1#DEFAULT')
    assert not MOVE.matches('controller10') and not MOVE.matches('Controller1') and not MOVE.matches('controller1@lvm')
    assert MOVE.shaped('controller1#DEFAULT') == 'controller1@lvm#lvm' and MOVE.shaped('controller1') == 'controller1@lvm'
    fill = rehost.Move('controller1@lvm', 'controller1@lvm#lvm')
    assert fill.fill_pool and fill.matches('controller1@lvm') and not fill.matches('controller1@lvm#other')
    with pytest.raises(InputError, match='must be host@backend#pool'):
        rehost.Move('controller1', 'controller1@lvm')


def test_listed_volumes_are_sorted_into_moving_already_there_and_elsewhere():
    rows = [volume('a'), volume('b', host='controller1@lvm#lvm'), volume('c', host='other'), volume('d', deleted=1)]
    moving, already, elsewhere = rehost.sort_listed(MOVE, rows)
    assert [row['id'] for row in moving] == ['a'] and [row['id'] for row in already] == ['b']
    assert [(row['id'], row['problem']) for row in elsewhere] == [
        ('c', 'neither under from_host nor at to_host'), ('d', 'deleted')]


def test_volumes_that_change_the_same_columns_are_one_update():
    volumes = [volume('a'), volume('b', host='controller1#DEFAULT'), volume('c', service_uuid='u-new'),
               volume('d', host='controller1@lvm', service_uuid='u-new', cluster_name='old#x')]
    updates = rehost.volume_updates(MOVE, volumes, NEW_SERVICE, STAMP)
    shapes = [(sorted(after), [key for key, _before, _expect in rows]) for after, rows in updates]
    assert shapes == [
        (['host', 'service_uuid', 'updated_at'], ['a', 'b']),
        (['host', 'updated_at'], ['c']),
        (['cluster_name', 'host', 'updated_at'], ['d'])]
    after, rows = updates[0]
    assert after == dict(host='controller1@lvm#lvm', service_uuid='u-new', updated_at=STAMP)
    key, before, expect = rows[0]
    assert before == dict(host='controller1', service_uuid=None, updated_at='2026-01-01 00:00:00')
    assert expect == dict(deleted=0, status='available', migration_status=None)
    assert updates[2][0]['cluster_name'] is None


def test_a_clustered_new_service_gives_its_cluster_with_the_pool():
    clustered = dict(NEW_SERVICE, cluster_name='cluster1@lvm')
    assert rehost.cluster_value(MOVE, clustered) == 'cluster1@lvm#lvm'
    (after, rows), = rehost.volume_updates(MOVE, [volume('a')], clustered, STAMP)
    assert after['cluster_name'] == 'cluster1@lvm#lvm' and rows[0][0] == 'a'
    # A release without these columns writes only the host.
    (after, _rows), = rehost.volume_updates(MOVE, [volume('a')], clustered, STAMP, has_service_uuid=False,
                                            has_cluster_name=False)
    assert sorted(after) == ['host', 'updated_at']


def test_attachments_keep_their_shape_and_those_already_right_are_left_alone():
    rows = [dict(id=1, volume_id='a', attached_host='controller1', updated_at=None),
            dict(id=2, volume_id='a', attached_host='controller1#DEFAULT', updated_at=None),
            dict(id=3, volume_id='a', attached_host='controller1@lvm', updated_at=None)]
    changes = rehost.attachment_changes(MOVE, rows, STAMP)
    assert [(key, after['attached_host']) for key, _before, after, _expect in changes] == [
        (1, 'controller1@lvm'), (2, 'controller1@lvm#lvm')]
    assert changes[0][3] == dict(deleted=0, volume_id='a') and changes[0][1]['attached_host'] == 'controller1'


def test_owned_rows_move_host_and_cluster_and_keep_soft_delete_expectations():
    rows = [dict(id='g1', host='controller1#DEFAULT', cluster_name='old', deleted=0, updated_at='t0'),
            dict(id='g2', host='controller1@lvm#lvm', cluster_name=None, deleted=0, updated_at='t0'),
            dict(id=7, host='controller1')]
    changes = rehost.owned_changes(MOVE, rows, NEW_SERVICE, STAMP)
    assert changes == [
        ('g1', dict(host='controller1#DEFAULT', cluster_name='old', updated_at='t0'),
         dict(host='controller1@lvm#lvm', cluster_name=None, updated_at=STAMP), {'deleted': 0}),
        (7, dict(host='controller1'), dict(host='controller1@lvm'), {})]


def test_old_services_are_disabled_and_removed_as_asked():
    services = [dict(id=1, disabled=0, disabled_reason=None, modified_at=None, deleted=0, deleted_at=None),
                dict(id=2, disabled=1, disabled_reason='by hand', modified_at=None, deleted=0, deleted_at=None)]
    changes = rehost.service_changes(MOVE, services, True, False, STAMP)
    assert [(row['id'], after) for row, _before, after in changes] == [
        (1, dict(disabled=1, disabled_reason='stackmender: rehosted to controller1@lvm#lvm', modified_at=STAMP))]
    assert changes[0][1] == dict(disabled=0, disabled_reason=None, modified_at=None)
    removed = rehost.service_changes(MOVE, services, True, True, STAMP, has_modified_at=False)
    assert [sorted(after) for _row, _before, after in removed] == [
        ['deleted', 'deleted_at', 'disabled', 'disabled_reason'], ['deleted', 'deleted_at']]
    assert rehost.service_changes(MOVE, services, False, False, STAMP) == []
    long_move = rehost.Move('h', 'h@' + 'b' * 249 + '#p')
    assert len(rehost.service_changes(long_move, services[:1], True, False, STAMP)[0][2]['disabled_reason']) == 255


def test_groups_the_list_would_split_are_named_and_groups_it_does_not_touch_stay():
    rows = [dict(id='g1', host='controller1'), dict(id='g2', host='controller1'), dict(id='g3', host='controller1')]
    members = {'g1': [dict(id='a', host='controller1'), dict(id='b', host='controller1')],
               'g2': [dict(id='a2', host='controller1'), dict(id='x', host='elsewhere')],
               'g3': [dict(id='c', host='controller1')]}
    selected, splits = rehost.split_groups(MOVE, rows, members, {'a', 'a2'})
    assert [row['id'] for row in selected] == ['g1', 'g2']
    assert [(split['row']['id'], [v['id'] for v in split['inside']], [v['id'] for v in split['left']])
            for split in splits] == [('g1', ['a'], ['b'])]


def test_the_new_service_must_exist_once():
    assert rehost.new_service_problem([NEW_SERVICE], [NEW_SERVICE], 'cinder-volume', 'controller1@lvm') is None
    message, evidence = rehost.new_service_problem([], [dict(id=9)], 'cinder-volume', 'controller1@lvm')
    assert message.startswith('no live cinder-volume service controller1@lvm exists') and evidence == [dict(id=9)]
    message, evidence = rehost.new_service_problem([NEW_SERVICE, NEW_SERVICE], [], 'cinder-volume', 'controller1@lvm')
    assert message.startswith('2 live cinder-volume service rows claim controller1@lvm') and len(evidence) == 2


def test_busy_volumes_are_those_whose_operation_went_to_the_old_service():
    volumes = [volume('a', status='creating'), volume('b', migration_status='migrating'),
               volume('c', status='awaiting-transfer'), volume('d'), volume('e', migration_status='target:x')]
    busy = rehost.busy_volumes(volumes)
    assert [row['id'] for row in busy] == ['a', 'b', 'e']
    assert rehost.busy_states(busy) == ['creating', 'migration migrating', 'migration target:x']
