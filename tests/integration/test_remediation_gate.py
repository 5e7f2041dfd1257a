"""remediation_gate through real Ansible, fed by a real consistency_info run.

The first case audits real schemas (every release) with consistency_info and
hands its registered result to the gate: check mode writes nothing, the first
real run counts a sighting and holds, the second approves exactly the audit's
repair, which the named module then carries out. The other cases need no
database: the gate reads only its input and its state file.
"""

import json
import os

from tests.integration.helpers import assert_clean_failure, db_args

MODULE = 'remediation_gate'
CVS = 'stackmender.openstack.cinder_volume_state'


def synthetic(at, volumes=50, findings=None):
    """A consistency_info-shaped result (what the gate reads of it)."""
    return {'audited_at': at, 'classes_run': ['volume_stuck'], 'inventory': {'instances': 40, 'volumes': volumes},
            'findings': findings if findings is not None else [{
                'class': 'volume_stuck', 'severity': 'warning', 'key': 'volume_stuck:volume/v1', 'message': 'stuck',
                'age': 7200, 'since': '2026-11-22 01:00:00',
                'repair': {'module': CVS, 'args': {'volume': ['v1'], 'status': 'deleted',
                                                   'from_status': ['error_deleting']}}}]}


def read_state(path):
    with open(path) as handle:
        return json.load(handle)


def test_a_real_audit_is_held_once_then_approved_and_the_repair_runs(ansible, dbs, cloud, tmp_path, journal_dir):
    cloud.cinder_service('cinder@lvm')
    healthy = cloud.volume()
    stuck = cloud.volume(status='error_deleting')
    state_file = str(tmp_path / 'gate' / 'state.json')
    audit_args = db_args(dbs, 'cinder', classes=['volume_stuck'], stuck_after=0)
    gate_args = dict(state_file=state_file, counts={'volumes': 2}, authorities=['volumes'])

    first_audit = ansible('consistency_info', audit_args)
    assert not first_audit.failed, first_audit['msg']
    assert [f['key'] for f in first_audit['findings']] == ['volume_stuck:volume/%s' % stuck]

    checked = ansible(MODULE, dict(gate_args, audit=dict(first_audit), min_sightings=1), check=True)
    assert not checked.failed and not checked.changed, checked
    assert checked['approved_keys'] == ['volume_stuck:volume/%s' % stuck] and not checked['state_written']
    assert not os.path.exists(os.path.dirname(state_file)), 'check mode wrote something'

    first = ansible(MODULE, dict(gate_args, audit=dict(first_audit)))
    assert not first.failed and not first.changed, first
    assert first['approved'] == [] and [h['code'] for h in first['held']] == ['sightings']
    state = read_state(state_file)
    assert state['sightings']['volume_stuck:volume/%s' % stuck]['count'] == 1
    assert state['authority']['volumes']['count'] == 2
    assert oct(os.stat(state_file).st_mode & 0o777) == '0o600'

    second_audit = ansible('consistency_info', audit_args)
    second = ansible(MODULE, dict(gate_args, audit=dict(second_audit)))
    assert not second.failed, second['msg']
    assert second['approved'] == [{'module': CVS, 'classes': ['volume_stuck'],
                                   'finding_keys': ['volume_stuck:volume/%s' % stuck],
                                   'args': {'volume': [stuck], 'status': 'deleted', 'from_status': ['error_deleting']}}]
    assert read_state(state_file)['sightings']['volume_stuck:volume/%s' % stuck]['count'] == 2

    # The approved call, as a playbook passes it on: the gate's args plus the connections.
    args, = second['approved_by_module'][CVS]
    repaired = ansible('cinder_volume_state', dict(args, journal_dir=journal_dir, **db_args(dbs, 'cinder', 'nova_api')))
    assert not repaired.failed and repaired.changed, repaired.get('msg')
    rows = dbs.query('cinder', 'SELECT id, deleted FROM volumes ORDER BY id')
    assert dict((row['id'], row['deleted']) for row in rows) == {healthy: 0, stuck: 1}

    # The finding is gone: its sighting entry goes too, nothing is approved.
    third = ansible(MODULE, dict(gate_args, audit=dict(ansible('consistency_info', audit_args)), counts={'volumes': 1}))
    assert not third.failed and third['approved'] == [] and third['held'] == []
    assert read_state(state_file)['sightings'] == {}


def test_a_shrunken_authority_aborts_records_the_abort_and_can_be_accepted(ansible, tmp_path):
    state_file = str(tmp_path / 'state.json')
    base = dict(state_file=state_file, min_sightings=1, min_drop=1)
    assert not ansible(MODULE, dict(base, audit=synthetic('2026-11-22 03:00:00', volumes=50))).failed

    shrunk = dict(base, audit=synthetic('2026-11-22 03:10:00', volumes=10))
    checked = ansible(MODULE, shrunk, check=True)
    assert_clean_failure(checked, 'volumes: 10, down from 50 at 2026-11-22 03:00:00 (-80.0%')
    assert checked['approved'] == [] and checked['state_written'] is False
    assert read_state(state_file)['last_abort'] is None, 'check mode wrote the abort'

    aborted = ansible(MODULE, shrunk)
    assert_clean_failure(aborted, 'aborted, nothing approved')
    assert aborted['authority']['volumes']['verdict'] == 'shrunk' and aborted['approved'] == []
    state = read_state(state_file)
    assert state['last_abort']['reasons'] == aborted['problems']
    assert state['authority']['volumes']['count'] == 50 and state['audited_at'] == '2026-11-22 03:00:00'

    accepted = ansible(MODULE, dict(shrunk, accept_counts=True))
    assert not accepted.failed and accepted['accepted_counts'] and accepted['approved_keys'] == ['volume_stuck:volume/v1']
    assert read_state(state_file)['authority']['volumes']['count'] == 10


def test_bad_input_fails_cleanly_and_writes_nothing(ansible, tmp_path):
    state_file = tmp_path / 'state.json'
    failed_audit = ansible(MODULE, dict(state_file=str(state_file), audit={'failed': True, 'msg': 'access denied'}))
    assert_clean_failure(failed_audit, 'failed consistency_info run: access denied')
    assert not state_file.exists()
    state_file.write_text('not json')
    corrupt = ansible(MODULE, dict(state_file=str(state_file), audit=synthetic('2026-11-22 03:00:00')))
    assert_clean_failure(corrupt, 'is not valid JSON')
    assert state_file.read_text() == 'not json'
    bad_option = ansible(MODULE, dict(state_file=str(tmp_path / 'other.json'), audit=synthetic('2026-11-22 03:00:00'),
                                      min_sightings=0))
    assert_clean_failure(bad_option, 'min_sightings must be 1 or more')
    assert not (tmp_path / 'other.json').exists()
