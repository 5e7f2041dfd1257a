"""The multi-backend incident on the drill lab, repaired by the cinder_multibackend_migration playbook.

Three volumes live on one backend of the lab, a single-backend cinder-volume
host in the incident's terms: one attached to a server that will be
deleted, one attached to a server that stays, one to delete. The
cinder-volume is then re-registered under a new host@backend name, as
enabling multi-backend does, and the volumes stay with the old name.

Before the runbook, through the real APIs: the server delete hangs while
Nova retries the detach against a service that no longer exists, and
when Nova gives up the server is gone but its volume stays in-use and
cannot be deleted; the volume delete stays `deleting`. The playbook's check
mode shows the whole plan and writes nothing; the run resets the stuck
delete, rehosts, detaches the orphaned volume through the new service, and
audits. After it a server delete completes, every volume can be deleted, and
a re-run changes nothing.
"""

import json
import os
import time

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.ansible_run import run_playbook
from tests.collection_path import REPO_ROOT
from tests.drills.conftest import WAIT, attach, new_server, wait_status
from tests.drills.multibackend import (LAB_SERVICE_DOWN_TIME, backend_volume_type, create_volumes,
                                       multibackend_name, rename_volume_service, wait_old_service_down,
                                       wait_until)
from tests.drills import multibackend

# The fixture lives with the breaking steps; named here so that pytest finds it.
lab_layout_restored = multibackend.lab_layout_restored

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'cinder_multibackend_migration.yml')
# Long enough to show a delete that should take a second is hanging; Nova retries for about 50 s.
HANG_PROBE = 12

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def volume_hosts(sql, volume_ids):
    rows = sql('SELECT id, host FROM cinder.volumes WHERE id IN (%s)' % ', '.join(['%s'] * len(volume_ids)),
               *volume_ids)
    return dict((row['id'], row['host']) for row in rows)


def service_row(sql, host):
    return sql('SELECT disabled, disabled_reason, deleted FROM cinder.services WHERE host = %s '
               'AND `binary` = %s ORDER BY deleted', host, 'cinder-volume')[0]


def server_gone(admin, server_id):
    return admin.compute.find_server(server_id, ignore_missing=True, all_projects=True) is None


def test_runbook_repairs_the_multibackend_rename(
        collections_path, lab, lab_client, cleanup, lab_layout_restored, admin, member, sql, lab_db, lab_env,
        tmp_path):
    old_service = lab['layout']['volume_hosts'][0]
    new_service, to_host = multibackend_name(old_service)
    volume_type = backend_volume_type(admin, old_service.split('@')[1], prefix='runbook')
    orphaned, attached, doomed = create_volumes(
        member, admin, volume_type, ('runbook-orphaned', 'runbook-attached', 'runbook-doomed'), cleanup)
    volume_ids = [orphaned.id, attached.id, doomed.id]
    deleted_server, kept_server = new_server(member, 'runbook-a', cleanup), new_server(member, 'runbook-b', cleanup)
    attach(member, admin, deleted_server, orphaned)
    attach(member, admin, kept_server, attached)
    old_hosts = volume_hosts(sql, volume_ids)
    assert all(host.startswith(old_service + '#') for host in old_hosts.values()), old_hosts

    # The incident.
    stopped_at = rename_volume_service(lab_client, admin, old_service, new_service)

    # Before the runbook: the server delete hangs. Nova asks Cinder to delete the attachment, cinder-api
    # calls the old host's queue and times out, Nova retries; the server stays, deleting.
    member.compute.delete_server(deleted_server)
    delete_sent = time.time()
    member.block_storage.delete_volume(doomed)
    time.sleep(HANG_PROBE)
    hanging = admin.compute.get_server(deleted_server.id)
    assert hanging.task_state == 'deleting', (hanging.status, hanging.task_state)
    assert admin.block_storage.get_volume(orphaned.id).status == 'in-use'
    # When Nova gives up, the server is gone but the detach failed: its volume stays in-use for a server
    # that no longer exists and cannot be deleted; the volume delete never left the old queue.
    wait_until('Nova to give up the detach', lambda: server_gone(admin, deleted_server.id), wait=WAIT)
    assert time.time() - delete_sent > 2 * HANG_PROBE, 'the delete did not hang'
    assert admin.block_storage.get_volume(orphaned.id).status == 'in-use'
    assert sql('SELECT count(*) AS n FROM cinder.volume_attachment WHERE volume_id = %s AND deleted = 0',
               orphaned.id)[0]['n'] == 1
    with pytest.raises(Exception) as refused:
        member.block_storage.delete_volume(orphaned)
    assert getattr(refused.value, 'status_code', None) == 400, refused.value
    assert admin.block_storage.get_volume(doomed.id).status == 'deleting'
    wait_old_service_down(admin, old_service, stopped_at)

    state_dir = str(tmp_path / 'state')
    extra = dict(cinder_multibackend_migration_hosts={old_service: to_host},
                 cinder_multibackend_migration_cloud='lab-admin',
                 cinder_multibackend_migration_cinder_db=lab_db['cinder'],
                 cinder_multibackend_migration_nova_api_db=lab_db['nova_api'],
                 cinder_multibackend_migration_service_down_time=LAB_SERVICE_DOWN_TIME,
                 cinder_multibackend_migration_state_dir=state_dir)

    # Check mode: the whole plan, and nothing written anywhere.
    checked = run_playbook(collections_path, PLAYBOOK, extra, check=True, diff=True, env=lab_env)
    assert checked.returncode == 0, checked.stdout[-6000:]
    resets = checked.tasks('Reset the volumes that wait for the old service')[0]['results']
    assert [(r['item']['status'], r['item']['volumes']) for r in resets] == [('error', [doomed.id])]
    assert resets[0]['changed'] and [step['call'] for step in resets[0]['plan']] == ['os-reset_status']
    rehost, = checked.tasks('Disable the old services and rehost')[0]['results']
    assert rehost['changed'] and rehost['forced_guards'][0]['guard'] == 'volume_transitional'
    planned = dict((step['table'], step['rows']) for step in rehost['plan'] if step['action'] == 'update')
    assert planned['volumes'] == 3 and planned['services'] == 1, rehost['plan']
    assert sorted(key.split('/')[1] for key in rehost['after']['cinder_db'] if key.startswith('volumes/')) == \
        sorted(volume_ids)
    detach = checked.tasks('Detach the volumes left in-use')[0]
    # Before the move its owner is down, so the plan is a reset; the run decides again after the move.
    assert detach['changed'] and [step['call'] for step in detach['plan']] == ['os-reset_status']
    assert list(detach['after']['block-storage']) == ['volumes/%s' % orphaned.id]
    assert 'would do' in ' '.join(checked.tasks('Report what moved')[0]['msg'])
    assert volume_hosts(sql, volume_ids) == old_hosts, 'check mode moved volumes'
    assert service_row(sql, old_service)['disabled'] == 0, 'check mode disabled the old service'
    assert admin.block_storage.get_volume(doomed.id).status == 'deleting'
    assert admin.block_storage.get_volume(orphaned.id).status == 'in-use'
    assert not os.path.exists(state_dir), 'check mode wrote the state directory'

    # The run.
    applied = run_playbook(collections_path, PLAYBOOK, extra, env=lab_env)
    assert applied.returncode == 0, applied.stdout[-8000:]
    assert set(volume_hosts(sql, volume_ids).values()) == {to_host}
    old_row = service_row(sql, old_service)
    assert old_row['disabled'] == 1 and to_host in old_row['disabled_reason'] and old_row['deleted'] == 0
    assert admin.block_storage.get_volume(doomed.id).status == 'error'
    orphan_now = wait_status(admin, orphaned.id, 'available')
    assert not orphan_now.attachments
    assert admin.block_storage.get_volume(attached.id).status == 'in-use'
    detached, = applied.tasks('Detach the volumes left in-use')
    assert detached['method'] == 'api' and detached['plan'][0]['call'].startswith('DELETE /attachments/')
    reports = os.listdir(state_dir)
    report_files = [name for name in reports if name.startswith('report-')]
    assert len(report_files) == 1 and 'journal' in reports
    with open(os.path.join(state_dir, report_files[0])) as handle:
        report = json.load(handle)
    assert sorted(report['moves'][0]['volumes']) == sorted(volume_ids)
    assert report['reset_orphaned'] == [orphaned.id] and report['unavailable'] == []
    assert [entry['id'] for entry in report['reset_transitional']] == [doomed.id]
    # The rehost went through the database: the one journal of rows. The resets went through Cinder's
    # API: their journals list the calls, every one done.
    documents = dict((path, load_journal(path)) for path in report['journals'])
    rows = [path for path, document in documents.items() if document.get('method') != 'api']
    assert rows == [report['moves'][0]['journal']]
    calls = [document for document in documents.values() if document.get('method') == 'api']
    assert calls and all(call['outcome'] == 'done' for document in calls for call in document['calls'])
    assert 'consistency_info finds no volume' in applied.tasks('Fail unless no volume is left')[0]['msg']

    # After: a server delete completes, and every volume can be deleted, through the new service.
    member.compute.delete_server(kept_server)
    member.compute.wait_for_delete(kept_server, interval=1, wait=WAIT)
    wait_status(admin, attached.id, 'available')
    for volume in (orphaned, attached, doomed):
        member.block_storage.delete_volume(volume)
    for volume in (orphaned, attached, doomed):
        member.block_storage.wait_for_delete(volume, interval=1, wait=WAIT)

    again = run_playbook(collections_path, PLAYBOOK, extra, env=lab_env)
    assert again.returncode == 0, again.stdout[-4000:]
    assert again.changed == [], again.changed
    assert len(os.listdir(state_dir)) == len(reports), 'a run that changed nothing wrote a report'
