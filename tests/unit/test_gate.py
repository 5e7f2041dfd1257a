"""The remediation gate's decisions on plain data: sightings, caps, the authority check, the state file."""

import json
import os
import stat

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import gate
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

CVS = 'stackmender.openstack.cinder_volume_state'
BDM = 'stackmender.openstack.nova_bdm_purge'


def stuck(volume, status='detaching', to='in-use', since='2026-11-22 01:00:00', age=7200):
    return {'class': 'volume_stuck', 'severity': 'warning', 'key': 'volume_stuck:volume/%s' % volume,
            'message': 'volume %s is %s' % (volume, status), 'age': age, 'since': since,
            'repair': {'module': CVS, 'args': {'volume': [volume], 'status': to, 'from_status': [status]}}}


def bdm(instance, volume, bdm_id=1):
    return {'class': 'bdm_without_attachment', 'severity': 'error', 'key': 'bdm_without_attachment:nova/bdm/%d' % bdm_id,
            'message': 'stale', 'age': 300, 'since': '2026-11-22 02:00:00',
            'repair': {'module': BDM, 'args': {'instance': [instance], 'volume': [volume]}}}


def manual(key='x'):
    return {'class': 'deleted_without_deleted_at', 'severity': 'info', 'key': 'deleted_without_deleted_at:%s' % key,
            'message': 'rows', 'age': None, 'since': None, 'repair': None, 'hint': 'set deleted_at'}


def audit(findings, at='2026-11-22 03:00:00', classes_run=None, instances=100, volumes=200):
    result = {'findings': findings, 'audited_at': at,
              'classes_run': classes_run if classes_run is not None else
              ['volume_stuck', 'bdm_without_attachment', 'deleted_without_deleted_at']}
    if instances is not None or volumes is not None:
        result['inventory'] = dict((name, value) for name, value in (('instances', instances), ('volumes', volumes))
                                   if value is not None)
    return result


def runs(audits, **options):
    """Feed audits in order through the gate, carrying the state; returns every decision."""
    state, decisions = gate.empty_state(), []
    for each in audits:
        decision, state = gate.decide(each, state, gate.GateOptions(**options), now='2026-11-22 04:00:00')
        decisions.append(decision)
    return decisions, state


def held_codes(decision):
    return dict((entry['key'], entry['code']) for entry in decision['held'])


def test_first_sight_is_held_and_the_second_consecutive_one_is_approved():
    finding = stuck('v1')
    (first, second), state = runs([audit([finding]), audit([finding], at='2026-11-22 03:10:00')])
    assert first['approved'] == [] and held_codes(first) == {finding['key']: 'sightings'}
    assert 'seen in 1 consecutive audit(s), 2 needed' in first['held'][0]['reason']
    assert second['approved'] == [{'module': CVS, 'classes': ['volume_stuck'], 'finding_keys': [finding['key']],
                                   'args': {'volume': ['v1'], 'status': 'in-use', 'from_status': ['detaching']}}]
    assert second['approved_by_module'] == {CVS: [second['approved'][0]['args']]}
    assert state['sightings'][finding['key']]['count'] == 2
    assert state['sightings'][finding['key']]['first_seen'] == '2026-11-22 03:00:00'


def test_a_finding_missing_from_one_audit_starts_over():
    finding = stuck('v1')
    decisions, state = runs([audit([finding]), audit([], at='2026-11-22 03:10:00'),
                             audit([finding], at='2026-11-22 03:20:00')])
    assert finding['key'] not in [key for d in decisions for key in d['approved_keys']]
    assert state['sightings'][finding['key']]['count'] == 1


def test_a_changed_repair_or_since_starts_over():
    first = stuck('v1', status='detaching', to='in-use')
    changed = stuck('v1', status='error_deleting', to='deleted')
    later = stuck('v1', since='2026-11-22 02:30:00')
    (_a, b), _state = runs([audit([first]), audit([changed], at='2026-11-22 03:10:00')])
    assert held_codes(b) == {changed['key']: 'sightings'}
    (_a, c), _state = runs([audit([first]), audit([later], at='2026-11-22 03:10:00')])
    assert held_codes(c) == {later['key']: 'sightings'}


def test_classes_the_audit_did_not_run_keep_their_count():
    finding = bdm('i1', 'v1')
    decisions, state = runs([audit([finding]),
                             audit([], at='2026-11-22 03:10:00', classes_run=['volume_stuck']),
                             audit([finding], at='2026-11-22 03:20:00')])
    assert state['sightings'][finding['key']]['count'] == 2
    assert decisions[2]['approved_keys'] == [finding['key']]


def test_a_class_over_its_cap_gets_nothing_and_others_still_run():
    volumes = [stuck('v%d' % index) for index in range(4)]
    other = bdm('i1', 'v9')
    decision = runs([audit(volumes + [other])], min_sightings=1, class_limits={'volume_stuck': 3})[0][0]
    assert sorted(set(held_codes(decision).values())) == ['class_cap']
    assert set(held_codes(decision)) == set(f['key'] for f in volumes)
    assert 'has 4 repairable finding(s), more than its cap of 3' in decision['held'][0]['reason']
    assert decision['approved_keys'] == [other['key']]
    assert decision['classes']['volume_stuck'] == {'findings': 4, 'limit': 3, 'approved': 0, 'over_limit': True}


def test_findings_still_waiting_count_against_the_cap():
    volumes = [stuck('v%d' % index) for index in range(3)]
    (_first, second), _state = runs([audit(volumes[:1]), audit(volumes, at='2026-11-22 03:10:00')], max_per_class=2)
    assert set(held_codes(second).values()) == {'class_cap'} and not second['approved']


def test_cap_zero_never_repairs_and_run_cap_holds_everything():
    decision = runs([audit([stuck('v1')])], min_sightings=1, max_per_class=0)[0][0]
    assert held_codes(decision) == {'volume_stuck:volume/v1': 'class_cap'}
    decision = runs([audit([stuck('v1'), bdm('i1', 'v2')])], min_sightings=1, max_total=1)[0][0]
    assert set(held_codes(decision).values()) == {'run_cap'} and decision['approved'] == []


def test_identical_calls_merge_into_one_call_per_argument_set():
    findings = [stuck('v2'), stuck('v1'), stuck('v3', status='error_deleting', to='deleted'), bdm('i1', 'v7', 1),
                bdm('i2', 'v8', 2)]
    decision = runs([audit(findings)], min_sightings=1)[0][0]
    calls = [(call['module'], call['args']) for call in decision['approved']]
    assert calls == [
        (CVS, {'volume': ['v1', 'v2'], 'status': 'in-use', 'from_status': ['detaching']}),
        (CVS, {'volume': ['v3'], 'status': 'deleted', 'from_status': ['error_deleting']}),
        (BDM, {'instance': ['i1'], 'volume': ['v7']}),
        (BDM, {'instance': ['i2'], 'volume': ['v8']}),
    ]
    assert decision['approved'][0]['finding_keys'] == ['volume_stuck:volume/v2', 'volume_stuck:volume/v1']
    unmerged = runs([audit(findings)], min_sightings=1, merge=False)[0][0]
    assert len(unmerged['approved']) == 5


def test_filters_unsafe_arguments_and_manual_findings_are_held_with_their_reason():
    forced = stuck('v5')
    forced['repair']['args']['force'] = True
    decision = runs([audit([stuck('v1'), bdm('i1', 'v2'), forced, manual()])], min_sightings=1,
                    classes=['volume_stuck'], modules=[CVS])[0][0]
    codes = held_codes(decision)
    assert codes == {'bdm_without_attachment:nova/bdm/1': 'class_disabled', forced['key']: 'unsafe_arguments',
                     'deleted_without_deleted_at:x': 'no_repair'}
    assert decision['approved_keys'] == ['volume_stuck:volume/v1']
    assert 'set deleted_at' in [e for e in decision['held'] if e['code'] == 'no_repair'][0]['reason']
    only_bdm = runs([audit([stuck('v1'), bdm('i1', 'v2')])], min_sightings=1, modules=[BDM])[0][0]
    assert held_codes(only_bdm) == {'volume_stuck:volume/v1': 'module_unsupported'}


def test_min_age_holds_young_and_unknown_ages():
    young, unknown = stuck('v1', age=30), stuck('v2', age=None)
    decision = runs([audit([young, unknown, stuck('v3', age=600)])], min_sightings=1, min_age=60)[0][0]
    assert held_codes(decision) == {young['key']: 'too_young', unknown['key']: 'too_young'}
    assert decision['approved_keys'] == ['volume_stuck:volume/v3']


def test_an_empty_authoritative_count_aborts_and_records_the_abort_only():
    state = gate.empty_state()
    with pytest.raises(gate.GateAbort) as aborted:
        gate.decide(audit([stuck('v1')], volumes=0), state, gate.GateOptions(min_sightings=1))
    assert 'volumes: the audit counted none' in aborted.value.msg
    assert aborted.value.details['approved'] == [] and aborted.value.details['authority']['volumes']['verdict'] == 'empty'
    recorded = aborted.value.details['state']
    assert recorded['sightings'] == {} and recorded['authority'] == {} and recorded['last_abort']['reasons']
    decision, _state = gate.decide(audit([stuck('v1')], volumes=0), state,
                                   gate.GateOptions(min_sightings=1, allow_empty=['volumes']))
    assert decision['approved_keys'] == ['volume_stuck:volume/v1']


def test_a_sharp_shrink_aborts_until_accepted():
    finding = stuck('v1')
    _decisions, state = runs([audit([finding], instances=100)], min_sightings=1)
    assert state['authority']['instances'] == {'count': 100, 'recorded_at': '2026-11-22 03:00:00'}
    shrunk = audit([finding], at='2026-11-22 03:10:00', instances=40)
    with pytest.raises(gate.GateAbort) as aborted:
        gate.decide(shrunk, state, gate.GateOptions(min_sightings=1))
    assert 'instances: 40, down from 100 at 2026-11-22 03:00:00 (-60.0%, more than max_drop_percent 50%)' \
        in aborted.value.msg
    assert aborted.value.details['state']['authority']['instances']['count'] == 100, 'the baseline moved on abort'
    decision, accepted = gate.decide(shrunk, state, gate.GateOptions(min_sightings=1, accept_counts=True))
    assert decision['accepted_counts'] and decision['approved_keys'] == [finding['key']]
    assert accepted['authority']['instances']['count'] == 40


def test_small_or_moderate_drops_pass():
    _d, state = runs([audit([], instances=12, volumes=200)])
    fine = audit([], at='2026-11-22 03:10:00', instances=3, volumes=150)  # 9 rows < min_drop; 25 % < 50 %
    decision, _state = gate.decide(fine, state, gate.GateOptions())
    assert decision['authority']['instances']['verdict'] == 'ok'
    assert decision['authority']['volumes']['drop_percent'] == 25.0


def test_given_counts_are_compared_with_the_inventory_and_missing_counts_are_required():
    # The databases count no volume while the caller counts 5: the smaller count is judged, so the run aborts.
    with pytest.raises(gate.GateAbort) as aborted:
        gate.decide(audit([], volumes=0), gate.empty_state(), gate.GateOptions(counts={'volumes': 5}))
    assert 'volumes: the audit counted none' in aborted.value.msg
    # Far apart: one of the two sources is wrong, whichever it is.
    for given in (300, 3000):
        with pytest.raises(gate.GateAbort) as aborted:
            gate.decide(audit([], instances=500, volumes=1000), gate.empty_state(),
                        gate.GateOptions(counts={'volumes': given}))
        assert 'volumes: the audit counted 1000 in the databases but counts gives %d' % given in aborted.value.msg
        assert aborted.value.details['authority']['volumes']['verdict'] == 'disagree'
    # Close: churn between the two reads. Both are shown, the smaller is the count judged and recorded.
    decision, state = gate.decide(audit([], instances=500, volumes=1000), gate.empty_state(),
                                  gate.GateOptions(counts={'volumes': 995}))
    entry = decision['authority']['volumes']
    assert (entry['verdict'], entry['count'], entry['database_count'], entry['given_count']) == ('ok', 995, 1000, 995)
    assert state['authority']['volumes']['count'] == 995
    bare = audit([], instances=None, volumes=None)
    with pytest.raises(gate.GateAbort) as aborted:
        gate.decide(bare, gate.empty_state(), gate.GateOptions())
    assert 'no authoritative count (instances, volumes)' in aborted.value.msg
    decision, _state = gate.decide(bare, gate.empty_state(), gate.GateOptions(require_counts=False))
    assert decision['authority']['instances']['verdict'] == 'unknown'


def test_the_same_audit_is_not_counted_twice():
    _d, state = runs([audit([stuck('v1')])])
    with pytest.raises(InputError) as refused:
        gate.decide(audit([stuck('v1')]), state, gate.GateOptions())
    assert 'not newer than the last one the gate counted' in refused.value.msg


def test_an_audit_without_clock_uses_the_controllers():
    empty = audit([], at=None)
    decision, state = gate.decide(empty, gate.empty_state(), gate.GateOptions(), now='2026-11-22 05:00:00')
    assert decision['approved'] == [] and state['audited_at'] == '2026-11-22 05:00:00'
    assert state['authority']['volumes'] == {'count': 200, 'recorded_at': '2026-11-22 05:00:00'}


@pytest.mark.parametrize('bad, fragment', [
    ('text', 'must be the registered result of consistency_info'),
    ({'failed': True, 'msg': 'cannot connect'}, 'failed consistency_info run: cannot connect'),
    ({'skipped': True}, 'skipped consistency_info task'),
    ({'classes_run': [], 'audited_at': 'x'}, 'no findings list'),
    ({'findings': [{'class': 'a'}], 'classes_run': [], 'audited_at': 'x'}, 'findings[0] has no class and key'),
    ({'findings': [dict(stuck('v1'), repair={'module': CVS})], 'classes_run': [], 'audited_at': 'x'},
     'has a repair without module and args'),
    ({'findings': [], 'audited_at': 'x'}, 'no classes_run list'),
    ({'findings': [], 'classes_run': []}, 'no audited_at'),
])
def test_bad_audits_are_refused_by_name(bad, fragment):
    with pytest.raises(InputError) as refused:
        gate.decide(bad, gate.empty_state(), gate.GateOptions())
    assert fragment in refused.value.msg


@pytest.mark.parametrize('options, fragment', [
    ({'min_sightings': 0}, 'min_sightings must be 1 or more'),
    ({'max_per_class': -1}, 'max_per_class must be 0 or more'),
    ({'class_limits': {'volume_stuck': 'many'}}, 'class_limits: volume_stuck must be a whole number'),
    ({'max_drop_percent': 150}, 'max_drop_percent must be between 0 and 100'),
    ({'counts': {'volumes': 2.5}}, 'counts: volumes must be a whole number'),
    ({'min_age': True}, 'min_age must be a whole number'),
])
def test_bad_options_are_refused_by_name(options, fragment):
    with pytest.raises(InputError) as refused:
        gate.GateOptions(**options)
    assert fragment in refused.value.msg


def test_state_file_round_trip_is_atomic_and_private(tmp_path):
    path = str(tmp_path / 'sub' / 'state.json')
    assert gate.load_state(path) == gate.empty_state()
    _d, state = runs([audit([stuck('v1')])])
    gate.save_state(path, state)
    assert gate.load_state(path) == state
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(os.path.dirname(path)) == ['state.json'], 'a temporary file was left behind'


def test_broken_state_files_are_refused(tmp_path):
    path = tmp_path / 'state.json'
    path.write_text('{"version": 1, "sightings": ')
    with pytest.raises(InputError) as refused:
        gate.load_state(str(path))
    assert 'is not valid JSON' in refused.value.msg and 'move it aside' in refused.value.msg
    path.write_text(json.dumps({'version': 7}))
    with pytest.raises(InputError) as refused:
        gate.load_state(str(path))
    assert 'not a remediation_gate state file of version 1' in refused.value.msg


def test_the_lock_refuses_a_second_holder(tmp_path):
    path = str(tmp_path / 'state.json')
    with gate.state_lock(path):
        with pytest.raises(InputError) as refused:
            with gate.state_lock(path):
                pass
    assert 'locked by another run' in refused.value.msg
    with gate.state_lock(path):
        pass


def rehost(volume):
    return {'class': 'volume_service_unavailable', 'severity': 'critical', 'key': 'volume_service_unavailable:volume/%s'
            % volume, 'message': 'volume %s is on a missing service' % volume, 'age': 7200,
            'since': '2026-11-22 01:00:00',
            'repair': {'module': 'stackmender.openstack.cinder_service_rehost',
                       'args': {'from_host': 'ctl1', 'to_host': 'ctl1@lvm#lvm', 'volumes': [volume]}}}


def test_the_class_cap_bounds_the_volumes_a_rehost_moves():
    """Each finding names its volume, so the approved call moves exactly the volumes counted against the cap."""
    findings = [rehost('v%d' % number) for number in range(3)]
    decisions, _state = runs([audit(findings), audit(findings, at='2026-11-22 03:10:00')],
                             class_limits={'volume_service_unavailable': 2})
    assert decisions[-1]['approved'] == []
    assert set(held_codes(decisions[-1]).values()) == {'class_cap'}
    decisions, _state = runs([audit(findings), audit(findings, at='2026-11-22 03:10:00')],
                             class_limits={'volume_service_unavailable': 3})
    (call,) = decisions[-1]['approved']
    assert call['args'] == {'from_host': 'ctl1', 'to_host': 'ctl1@lvm#lvm', 'volumes': ['v0', 'v1', 'v2']}
