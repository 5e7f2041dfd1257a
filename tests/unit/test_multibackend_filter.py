"""The plan of the cinder_multibackend_migration role (module_utils/services/multibackend.py and its filters) on plain data."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.stackmender.openstack.plugins.filter.multibackend import FilterModule
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services import multibackend

FILTERS = FilterModule().filters()


def api_volume(volume_id, host, status='available', migration_status=None, servers=()):
    """A volume as openstack.cloud.volume_info returns it (the fields the role reads)."""
    return dict(id=volume_id, name=None, host=host, status=status, migration_status=migration_status,
                attachments=[dict(server_id=server) for server in servers], size=1)


def api_service(host, state='up', status='enabled'):
    return dict(host=host, binary='cinder-volume', state=state, status=status, zone='nova',
                updated_at='2026-12-07T10:00:00.000000', disabled_reason=None)


def test_moves_and_their_checks_are_the_module_rules():
    moves = FILTERS['multibackend_moves']({' controller1 ': 'controller1@lvm#lvm', 'rbd:volumes@ceph': 'rbd@ceph#p'})
    assert moves[0] == dict(from_host='controller1', to_host='controller1@lvm#lvm', old_service='controller1',
                            new_service='controller1@lvm')
    assert moves[1]['old_service'] == 'rbd:volumes@ceph' and moves[1]['new_service'] == 'rbd@ceph'
    assert FILTERS['multibackend_invalid_moves'](moves) == []
    bad = FILTERS['multibackend_invalid_moves'](multibackend.moves({
        'a': 'a@lvm',                   # no pool
        'b#p@x': 'b@lvm#lvm',           # pool before backend
        'c@lvm#one': 'c@lvm#two',       # two pools of one service
        'd d': 'd@lvm#lvm',             # whitespace
        'e@lvm': 'e@lvm#lvm',           # fills the pool of its own service: valid
        'a@lvm': 'f@lvm#lvm',           # the new service of the first move
    }))
    assert len(bad) == 5
    assert bad[0].startswith("a -> a@lvm: to_host: 'a@lvm' must be host@backend#pool")
    assert 'pool (#) before the backend' in bad[1] and 'pools of the same service' in bad[2]
    assert 'whitespace' in bad[3]
    assert bad[4] == 'a@lvm -> f@lvm#lvm: the old service a@lvm is the new service of another move'


def inventory():
    volumes = FILTERS['multibackend_volumes']([
        api_volume('v3', 'controller1#lvm', status='deleting'),
        api_volume('v1', 'controller1', status='in-use', servers=['s1']),
        api_volume('v2', 'controller10'),                                 # another host: never matched
        api_volume('v4', 'controller1@lvm', status='attaching', servers=['s2']),   # another service
        api_volume('v5', 'controller1', status='available', migration_status='target:abc'),
        api_volume('v6', 'controller1#lvm', status='extending'),
        api_volume('v7', 'controller1', status='awaiting-transfer'),     # waits for a person, not a service
        api_volume('v8', None, status='error'),
    ])
    services = FILTERS['multibackend_services']([api_service('controller1@lvm'),
                                                 api_service('controller1', state='down', status='disabled')])
    moves = FILTERS['multibackend_match'](multibackend.moves({'controller1': 'controller1@lvm#lvm'}), volumes,
                                          services)
    return volumes, services, moves


def test_volumes_and_services_are_kept_sorted_with_the_service_of_each_volume():
    volumes, services, _moves = inventory()
    assert [volume['id'] for volume in volumes] == ['v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8']
    assert volumes[2] == dict(id='v3', name='', host='controller1#lvm', service='controller1', status='deleting',
                              migration_status='', servers=[])
    assert volumes[0]['servers'] == ['s1'] and volumes[7]['host'] == '' and volumes[7]['service'] == ''
    assert [service['host'] for service in services] == ['controller1', 'controller1@lvm']
    assert set(services[0]) == set(['host', 'state', 'status', 'updated_at', 'disabled_reason'])


def test_the_volumes_of_a_move_are_the_old_host_and_its_pools_exactly():
    _volumes, services, moves = inventory()
    assert moves[0]['volumes'] == ['v1', 'v3', 'v5', 'v6', 'v7']
    assert moves[0]['old_services'] == [services[0]] and moves[0]['new_services'] == [services[1]]
    # On one service, only its pool-less rows move (cinder-manage volume update_host leaves them so).
    volumes = multibackend.volume_rows([api_volume('p1', 'c@lvm'), api_volume('p2', 'c@lvm#lvm'),
                                        api_volume('p3', 'c@lvm#other')])
    fill, = multibackend.match_moves(multibackend.moves({'c@lvm': 'c@lvm#lvm'}), volumes, services)
    assert fill['volumes'] == ['p1'] and fill['old_services'] == []
    # A pool given: that pool only.
    pool, = multibackend.match_moves(multibackend.moves({'c@lvm#other': 'd@lvm#lvm'}), volumes, services)
    assert pool['volumes'] == ['p3']


def test_the_resets_are_the_statuses_the_rehost_refuses():
    volumes, _services, moves = inventory()
    resets = FILTERS['multibackend_resets'](volumes, moves)
    assert resets == [
        dict(id='v3', from_status='deleting', status='error', migration_status='', servers=[]),
        dict(id='v5', from_status='available', status='available', migration_status='error', servers=[]),
        dict(id='v6', from_status='extending', status='error_extending', migration_status='', servers=[]),
    ]
    # v4 (attaching) is on another service: not moved, not reset. An attached volume rests in-use.
    assert cinder.lost_operation_reset('attaching', None, True) == ('in-use', '')
    assert cinder.lost_operation_reset('detaching', 'migrating', False) == ('available', 'error')
    assert cinder.lost_operation_reset('awaiting-transfer', '', False) is None
    assert cinder.lost_operation_reset('in-use', 'success', True) is None
    # One source: every status the module refuses gets a reset, and only those.
    for status in cinder.VOLUME_STATUSES:
        assert (cinder.lost_operation_reset(status, '', False) is not None) == (
            status in cinder.REHOST_BLOCKING_STATUSES)


def test_reset_groups_are_one_call_per_target_state():
    resets = [dict(id='a', from_status='deleting', status='error', migration_status='', servers=[]),
              dict(id='b', from_status='attaching', status='available', migration_status='', servers=[]),
              dict(id='c', from_status='creating', status='error', migration_status='', servers=[]),
              dict(id='d', from_status='error', status='error', migration_status='error', servers=[])]
    assert FILTERS['multibackend_reset_groups'](resets) == [
        dict(status='available', migration_status='', volumes=['b'], from_status=['attaching']),
        dict(status='error', migration_status='', volumes=['a', 'c'], from_status=['creating', 'deleting']),
        dict(status='error', migration_status='error', volumes=['d'], from_status=['error']),
    ]
    assert FILTERS['multibackend_reset_groups']([]) == []


def gate_result(from_host, *guards, **extra):
    result = dict(item=dict(from_host=from_host, to_host='x@y#z'), failed=True, msg='refused: ...')
    if guards:
        result['guards'] = [dict(guard=name, message='whatever the words', evidence=evidence)
                            for name, evidence in guards]
    result.update(extra)
    return result


def test_waiting_hosts_by_guard_name_and_evidence():
    resets = [dict(id='v3'), dict(id='v6')]
    results = [
        dict(item=dict(from_host='planned'), changed=True, plan=[], guards=[]),
        gate_result('waits', ('volume_transitional', [dict(id='v3'), dict(id='v6')])),
        gate_result('other-volume', ('volume_transitional', [dict(id='v3'), dict(id='v9')])),
        gate_result('also-down', ('volume_transitional', [dict(id='v3')]), ('new_service_down', [dict(id=7)])),
        gate_result('input-error'),
        gate_result('no-evidence-id', ('volume_transitional', ['v3'])),
    ]
    assert FILTERS['multibackend_waiting'](results, resets) == ['waits']
    assert FILTERS['multibackend_waiting'](results, []) == []


def test_refused_are_the_refusals_no_step_fixes():
    results = [
        dict(item=dict(from_host='planned'), changed=True, plan=[], guards=[]),
        gate_result('waits', ('volume_transitional', [dict(id='v3')])),
        gate_result('down', ('new_service_down', [dict(id=7)]), msg='refused: new service down'),
    ]
    assert FILTERS['multibackend_refused'](results, ['waits']) == ['down: refused: new service down']
    assert FILTERS['multibackend_refused'](results, []) == ['waits: refused: ...', 'down: refused: new service down']
    assert FILTERS['multibackend_refused']([results[0]], []) == []


def test_the_preflight_refuses_a_new_service_not_up_once_and_an_old_one_up():
    _volumes, _services, moves = inventory()
    # controller1@lvm is up once, controller1 is down: nothing to refuse.
    assert FILTERS['multibackend_new_not_up'](moves) == [] and FILTERS['multibackend_old_up'](moves) == []
    services = multibackend.service_rows([api_service('a'), api_service('a@lvm', state='down'), api_service('b'),
                                          api_service('b@lvm'), api_service('b@lvm')])
    planned = multibackend.moves({'a': 'a@lvm#lvm', 'b': 'b@lvm#lvm', 'c': 'c@lvm#lvm', 'd@lvm': 'd@lvm#lvm'})
    matched = multibackend.match_moves(planned, [], services)
    assert FILTERS['multibackend_new_not_up'](matched) == [
        'a@lvm is down', 'b@lvm is up/up', 'c@lvm is missing', 'd@lvm is missing']
    # A move that stays on one service (d@lvm) has no old service rows; c has none listed.
    assert FILTERS['multibackend_old_up'](matched) == ['a', 'b']


def finding(volume, host, cls='volume_attached_without_bdm', from_status=('in-use',), repair=True):
    return {'class': cls, 'host': host, 'message': 'volume %s is in-use for a deleted server' % volume,
            'resources': dict(volume=volume),
            'repair': dict(module='stackmender.openstack.cinder_volume_state',
                           args=dict(volume=[volume], from_status=list(from_status))) if repair else None}


def test_orphans_are_the_findings_on_the_services_of_the_moves_exactly():
    moves = multibackend.moves({'controller1': 'controller1@lvm#lvm'})
    findings = [finding('o1', 'controller1'), finding('o2', 'controller1@lvm', from_status=['in-use', 'attaching']),
                finding('x1', 'controller1@other'),                 # the audit's hosts option matched it: not ours
                finding('x2', 'controller10'),
                finding('x3', 'controller1', cls='volume_stuck'),
                finding('x4', 'controller1', repair=False)]
    assert FILTERS['multibackend_orphans'](findings, moves, True) == dict(
        volumes=['o1', 'o2'], from_status=['in-use', 'attaching'],
        reasons=['volume o1 is in-use for a deleted server', 'volume o2 is in-use for a deleted server'])
    kept = FILTERS['multibackend_orphans'](findings, moves, False)
    assert kept['volumes'] == [] and len(kept['reasons']) == 2
    assert FILTERS['multibackend_orphans']([], moves, True) == dict(volumes=[], from_status=[], reasons=[])


def test_plan_lines_and_transitional():
    resets = [dict(id='v3', from_status='deleting', status='error'),
              dict(id='v5', from_status='extending', status='error_extending')]
    gate = [dict(item=dict(from_host='controller1', to_host='controller1@lvm#lvm'), msg='refused: transitional')]
    moves = [dict(old_services=[dict(host='controller1', state='down')])]
    assert FILTERS['multibackend_transitional'](resets) == ['v3 deleting', 'v5 extending']
    assert FILTERS['multibackend_plan_lines'](resets, gate, ['controller1'], moves, True, ['volume o1 ...']) == [
        'step 1, reset: v3 deleting -> error, v5 extending -> error_extending',
        'step 2, rehost: controller1 | controller1@lvm#lvm | refused: transitional',
        'step 2 waits for step 1 on: controller1 (their plan follows in step 2, with the guard volume_transitional '
        'overridden in check mode only)',
        'step 2, old services: disable and soft-delete controller1',
        'step 3, detach (in-use for deleted servers): volume o1 ...']
    lines = FILTERS['multibackend_plan_lines']([], [], [], [dict(old_services=[])], False, [])
    assert lines[0] == 'step 1, reset: nothing' and lines[2].startswith('step 2 waits for step 1 on: none')
    assert lines[3] == 'step 2, old services: disable none' and lines[4].endswith(': nothing')


def test_moved_and_report_lines():
    item = dict(from_host='controller1', to_host='controller1@lvm#lvm', volumes=['v1'],
                old_services=[dict(host='controller1', state='down')])
    results = [dict(item=item, changed=True, msg='1 volume(s) from controller1', journal='/j/1.json',
                    plan=[dict(table='volumes', rows=1), dict(table='services', rows=1), dict(table='volumes', rows=2),
                          dict(table='volume_attachment')])]
    moved = FILTERS['multibackend_moved'](results)
    assert moved == [dict(from_host='controller1', to_host='controller1@lvm#lvm', changed=True,
                          msg='1 volume(s) from controller1', volumes=['v1'],
                          rows_per_table=dict(volumes=3, services=1, volume_attachment=0),
                          old_services=['controller1'], journal='/j/1.json')]
    report = dict(moves=moved, reset_transitional=[dict(id='v3', from_status='deleting', status='error')],
                  reset_orphaned=[], unavailable=['x'], journals=['/j/1.json'], warnings=['hard reboot s1'])
    lines = FILTERS['multibackend_report_lines'](report, True, None)
    assert lines == ['check mode: nothing was changed; this is what the run would do',
                     'controller1 -> controller1@lvm#lvm: 1 volume(s) from controller1',
                     'reset before the move: v3 deleting error',
                     'detached after the move (in-use for a deleted server): none',
                     'volumes of these hosts on a missing or down service now: 1',
                     'journals: /j/1.json', 'report: not written', 'hard reboot s1']
    assert FILTERS['multibackend_report_lines'](report, False, '/r.json')[3:6] == [
        'volumes of these hosts on a missing or down service after the run: 1', 'journals: /j/1.json',
        'report: /r.json']


def test_inventory_lines():
    volumes, services, moves = inventory()
    assert FILTERS['multibackend_inventory'](services, volumes, moves) == [
        'cinder-volume services (host: state, status, volumes):',
        '  controller1: down, disabled, 5 volume(s)',
        '  controller1@lvm: up, enabled, 1 volume(s)',
        '  (no host): NO SERVICE ROW, 1 volume(s)',
        '  controller10: NO SERVICE ROW, 1 volume(s)',
        'move controller1 -> controller1@lvm#lvm: 5 volume(s)']


def test_bad_input_is_a_filter_error_naming_the_filter():
    with pytest.raises(AnsibleFilterError, match='multibackend_volumes'):
        FILTERS['multibackend_volumes']([dict(name='no id')])
