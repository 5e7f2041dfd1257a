"""The runbooks' reports for people (module_utils/audit/runbook_report.py and its filter), on plain data."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import runbook_report as reports
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

HOSTILE = '<script>alert(1)</script> | pipe'

POWER_LOSS = dict(
    incident='2026-12-07-rack4', snapshot='/var/lib/stackmender/power-loss/snapshot.json',
    snapshot_taken_at='2026-12-07T02:00:00Z', relations=3, broken_before=[{'volume_id': 'v1'}, {'volume_id': 'v2'}],
    iscsi='login', iscsi_targets=2, reset_in_use=['v1'], reset_available=['v2'], rebooted=['s1'],
    block_device_mappings_removed=[{'volume': 'v2', 'instance': 's2'}], reattached=[{'volume_id': 'v2', 'server_id': 's2', 'device': '/dev/vdb'}],
    journals='/var/lib/stackmender/power-loss/journal', restored=False,
    still_broken=[{'volume_id': 'v9', 'server_id': 's9', 'problems': ['not attached', HOSTILE]}])
EVACUATION = dict(
    failed_host='compute07', target_host='compute12', check_mode=False, fencing='confirmed by the operator',
    failed_service={'state': 'down', 'status': 'disabled', 'forced_down': True},
    instances=[{'id': 'i1', 'name': 'web-1', 'path': 'evacuation', 'status': 'ACTIVE', 'host': 'compute12', 'ok': True},
               {'id': 'i2', 'name': HOSTILE, 'path': 'none', 'status': 'ERROR', 'host': 'compute07', 'ok': False}],
    not_moved=['i2'], not_as_expected=['i2'], database_warnings=[], journal=None)
MULTIBACKEND = dict(
    check_mode=True, moves=[{'from_host': 'controller1', 'to_host': 'controller1@lvm#lvm', 'volumes': 12, 'rows': 30}],
    reset_transitional=['v3'], reset_orphaned=[], journals=['/j/1.json', '/j/2.json'],
    volumes_per_host_before={'controller1': 12}, unavailable=[], orphaned=['volume v8 is in-use for a deleted server'],
    warnings=[])


@pytest.mark.parametrize('runbook, report, moved, left', [
    ('power_loss_recovery', POWER_LOSS, 'v2 to s2', 'v9 on s9'),
    ('compute_node_evacuation', EVACUATION, 'web-1', 'i2: not in the expected state'),
    ('cinder_multibackend_migration', MULTIBACKEND, 'controller1@lvm#lvm', 'volume v8 is in-use for a deleted server'),
])
def test_each_runbook_reports_what_moved_what_was_refused_and_what_is_left(runbook, report, moved, left):
    markdown = reports.render(report, runbook, 'markdown')
    for heading in (reports.DONE, reports.REFUSED, reports.LEFT, 'Journals'):
        assert '## %s' % heading in markdown
    done = markdown.split('## %s' % reports.DONE)[1].split('## %s' % reports.REFUSED)[0]
    assert moved in done
    assert left in markdown.split('## %s' % reports.LEFT)[1]
    page = reports.render(report, runbook, 'html')
    assert page.startswith('<!DOCTYPE html>') and '<script' not in page and 'http' not in page
    if HOSTILE in repr(report):
        assert '&lt;script&gt;alert(1)&lt;/script&gt;' in page
        assert '<script>' not in markdown and '\\|' in markdown


def test_check_mode_says_nothing_was_changed():
    assert 'Check mode: this is the plan; nothing was changed.' in reports.render(MULTIBACKEND, 'cinder_multibackend_migration')
    assert 'Check mode' not in reports.render(EVACUATION, 'compute_node_evacuation')


def test_a_secret_in_a_report_is_shown_by_its_stand_in():
    report = dict(POWER_LOSS, still_broken=[{'volume_id': 'v9', 'server_id': 's9', 'problems': [],
                                             'connection_info': {'auth_password': 'chap-Secret-77'}}])
    assert 'chap-Secret-77' not in reports.render(report, 'power_loss_recovery', 'html')


@pytest.mark.parametrize('args, words', [
    ((POWER_LOSS, 'no_such_runbook'), "unknown runbook 'no_such_runbook'"),
    (([], 'power_loss_recovery'), 'the report must be a dict'),
    ((POWER_LOSS, 'power_loss_recovery', 'pdf'), "format must be markdown or html, got 'pdf'"),
])
def test_bad_input_names_the_problem(args, words):
    with pytest.raises(InputError) as refused:
        reports.render(*args)
    assert words in refused.value.msg
