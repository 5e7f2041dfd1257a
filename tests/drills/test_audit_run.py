"""The audit_run playbook on the drill lab's real Nova and Cinder, remediation on.

Each drill breaks the lab with its real services, runs playbooks/audit_run.yml
(consistency_info -> remediation_gate -> the approved repairs -> a second
audit), proves the repair through the real APIs, and runs again to show that
nothing changes any more. The authority counts come from the real APIs
(audit_run_count_through_api).
"""

import os

import pytest

from tests.ansible_run import run_playbook
from tests.collection_path import REPO_ROOT
from tests.drills.conftest import attach, new_server, new_volume, wait_status

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'audit_run.yml')
CVS = 'stackmender.openstack.cinder_volume_state'
BDM = 'stackmender.openstack.nova_bdm_purge'

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def extra_vars(lab_db, state_dir, classes, sightings):
    return dict(audit_run_cloud='lab-admin', audit_run_cinder_db=lab_db['cinder'],
                audit_run_nova_api_db=lab_db['nova_api'], audit_run_state_dir=state_dir,
                audit_run_classes=classes, audit_run_stuck_after=0, audit_run_remediate=True,
                audit_run_min_sightings=sightings, audit_run_count_through_api=True)


def gate_of(run):
    result, = run.tasks('Decide which repairs may run')
    return result


def live_bdms(sql, server_id, volume_id):
    return sql('SELECT id FROM nova.block_device_mapping WHERE instance_uuid = %s AND volume_id = %s AND deleted = 0',
               server_id, volume_id)


def refused_status(call):
    with pytest.raises(Exception) as refused:
        call()
    return getattr(refused.value, 'status_code', None)


def test_stuck_detaching_and_error_deleting_volumes_are_repaired_after_two_sightings(
        collections_path, admin, member, sql, lab_env, lab_db, cleanup, tmp_path):
    server = new_server(member, 'audit-detaching', cleanup)
    detaching = new_volume(member, admin, 'audit-detaching', cleanup)
    attach(member, admin, server, detaching)
    deleting = new_volume(member, admin, 'audit-deleting', cleanup)
    # The incident, through Cinder's own API: a detach that never finished, a delete that failed on the backend.
    admin.block_storage.reset_volume_status(detaching, status='detaching')
    admin.block_storage.reset_volume_status(deleting, status='error_deleting')
    assert refused_status(lambda: member.compute.delete_volume_attachment(server, detaching.id)) in (400, 409)
    assert refused_status(lambda: member.block_storage.delete_volume(deleting.id)) in (400, 409)
    keys = sorted('volume_stuck:volume/%s' % volume.id for volume in (detaching, deleting))
    state_dir = str(tmp_path / 'state')
    variables = extra_vars(lab_db, state_dir, ['volume_stuck'], sightings=2)

    first = run_playbook(collections_path, PLAYBOOK, variables, env=lab_env)
    assert first.returncode == 0, first.stdout[-6000:]
    decision = gate_of(first)
    assert decision['approved'] == [] and sorted(h['key'] for h in decision['held']) == keys
    assert set(h['code'] for h in decision['held']) == {'sightings'}
    assert decision['authority']['volumes']['verdict'] == 'ok' and decision['authority']['volumes']['count'] >= 2
    assert not first.tasks('Set the volume states the gate approved')
    assert admin.block_storage.get_volume(detaching.id).status == 'detaching'
    assert os.path.isfile(os.path.join(state_dir, 'reports', 'audit.html'))

    second = run_playbook(collections_path, PLAYBOOK, variables, env=lab_env)
    assert second.returncode == 0, second.stdout[-8000:]
    decision = gate_of(second)
    assert sorted(decision['approved_keys']) == keys
    assert sorted((call['args']['status'], call['args']['volume'][0]) for call in decision['approved']) == sorted(
        [('in-use', detaching.id), ('deleted', deleting.id)])
    calls = second.tasks('Set the volume states the gate approved')[0]['results']
    assert all(call['changed'] and call['method'] == 'api' for call in calls), calls
    assert second.tasks('Audit again, with the same scope')[0]['findings'] == []

    # Proven through the APIs: the stuck delete completed, and Nova can detach the other volume now.
    assert sql('SELECT deleted FROM cinder.volumes WHERE id = %s', deleting.id)[0]['deleted'] == 1
    assert admin.block_storage.find_volume(deleting.id, ignore_missing=True, all_projects=True) is None
    assert admin.block_storage.get_volume(detaching.id).status == 'in-use'
    member.compute.delete_volume_attachment(server, detaching.id)
    wait_status(admin, detaching.id, 'available')
    assert not live_bdms(sql, server.id, detaching.id)

    again = run_playbook(collections_path, PLAYBOOK, variables, env=lab_env)
    assert again.returncode == 0, again.stdout[-6000:]
    assert again.changed == [] and gate_of(again)['approved'] == []


def test_bdm_nova_kept_after_cinder_let_go_is_removed_and_the_volume_attaches_again(
        collections_path, admin, member, sql, lab_env, lab_db, cleanup, tmp_path):
    server = new_server(member, 'audit-bdm', cleanup)
    volume = new_volume(member, admin, 'audit-bdm', cleanup)
    attach(member, admin, server, volume)
    # The incident: Cinder is told the volume is free (the blog-post reset); Nova keeps its mapping.
    admin.block_storage.reset_volume_status(volume, status='available', attach_status='detached')
    wait_status(admin, volume.id, 'available')
    assert live_bdms(sql, server.id, volume.id)
    assert refused_status(lambda: member.compute.create_volume_attachment(server, volume_id=volume.id)) in (400, 409)
    state_dir = str(tmp_path / 'state')
    variables = extra_vars(lab_db, state_dir, ['bdm_without_attachment'], sightings=1)

    # Check mode: the whole decision and the repair's plan, nothing written anywhere.
    checked = run_playbook(collections_path, PLAYBOOK, variables, check=True, diff=True, env=lab_env)
    assert checked.returncode == 0, checked.stdout[-6000:]
    assert gate_of(checked)['approved'] == [{'module': BDM, 'classes': ['bdm_without_attachment'],
                                             'finding_keys': gate_of(checked)['approved_keys'],
                                             'args': {'instance': [server.id], 'volume': [volume.id]}}]
    planned, = checked.tasks('Remove the block device mappings the gate approved')[0]['results']
    assert planned['changed'] and planned['method'] == 'db' and planned['journal'] is None
    assert not os.path.exists(state_dir), 'check mode wrote the state directory'
    assert live_bdms(sql, server.id, volume.id)

    applied = run_playbook(collections_path, PLAYBOOK, variables, env=lab_env)
    assert applied.returncode == 0, applied.stdout[-8000:]
    removed, = applied.tasks('Remove the block device mappings the gate approved')[0]['results']
    assert removed['changed'] and removed['method'] == 'db' and os.path.isfile(removed['journal'])
    assert 'fell back to the database' in removed['method_reason']
    assert not live_bdms(sql, server.id, volume.id)
    assert applied.tasks('Audit again, with the same scope')[0]['findings'] == []

    # Proven through the API: the volume attaches to the same server again.
    attach(member, admin, server, volume)
    assert [a.volume_id for a in admin.compute.volume_attachments(server.id)] == [volume.id]

    again = run_playbook(collections_path, PLAYBOOK, variables, env=lab_env)
    assert again.returncode == 0, again.stdout[-6000:]
    assert again.changed == [] and gate_of(again)['approved'] == [] and gate_of(again)['held'] == []
