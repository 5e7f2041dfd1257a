"""Power-loss drill: the power_loss_recovery playbook on the lab's real Nova and Cinder.

Two servers with four volumes. A routine baseline is taken first. Then the
power fails: every nova-compute and cinder-volume is killed, and the
attachments are left the way a power loss in the middle of operations
leaves them (one volume detaching, one attaching, one whose Cinder
attachment is gone while Nova keeps the block device mapping, one intact).
Power comes back (the services start; the fake hypervisor has lost its
guests, as a real one does). The playbook's check mode shows the plan and
writes nothing; the run restores every attachment at its device, reboots
each server once, and a re-run changes nothing.

The iSCSI step cannot log in on this machine: its kernel has no iSCSI
transport (see docs/runbooks/power-loss-recovery.md). The drill sets
power_loss_recovery_iscsi=skip, and checks that the run says so. A second
test probes a real user-space iSCSI target (Debian's tgt) on 127.0.0.1 and
checks that login mode stops before any change on this kernel.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.ansible_run import run_playbook
from tests.collection_path import REPO_ROOT
from tests.drills.conftest import attach, new_server, new_volume

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'power_loss_recovery.yml')
POWERED = ('compute1', 'compute2', 'volume1@backend1', 'volume2@backend2')

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def relations(admin, server_ids):
    """(server, volume) -> device, as Nova's API lists them."""
    found = {}
    for server_id in server_ids:
        for attachment in admin.compute.volume_attachments(server_id):
            found[(server_id, attachment.volume_id)] = attachment.device
    return found


def live_attachments(sql, volume_id):
    return sql('SELECT id, instance_uuid, attach_status FROM cinder.volume_attachment '
               'WHERE volume_id = %s AND deleted = 0', volume_id)


def live_bdms(sql, server_id, volume_id):
    return sql('SELECT id, device_name FROM nova.block_device_mapping WHERE instance_uuid = %s AND volume_id = %s '
               'AND deleted = 0', server_id, volume_id)


def hard_reboots(admin, server_id):
    return [action for action in admin.compute.server_actions(server_id) if action.action == 'reboot']


@pytest.fixture
def powered_back(lab_client):
    """Whatever a test killed is started again, even when it fails."""
    yield
    lab_client.run('start', *POWERED, check=False)


def test_power_loss_recovery_restores_every_attachment_once(
        collections_path, lab_client, admin, member, sql, lab_env, lab_db, cleanup, tmp_path, powered_back):
    servers = [new_server(member, 'power-loss-a', cleanup), new_server(member, 'power-loss-b', cleanup)]
    volumes = [new_volume(member, admin, 'power-loss-%d' % index, cleanup) for index in range(4)]
    for server, pair in zip(servers, (volumes[:2], volumes[2:])):
        for volume in pair:
            attach(member, admin, server, volume)
    server_ids = [server.id for server in servers]
    intact, detaching, attaching, cinder_forgot = (volume.id for volume in volumes)
    recorded = relations(admin, server_ids)
    assert len(recorded) == 4
    intact_attachment = live_attachments(sql, intact)[0]['id']
    state_dir = str(tmp_path / 'state')
    common = dict(power_loss_recovery_cloud='lab-admin', power_loss_recovery_servers=server_ids,
                  power_loss_recovery_state_dir=state_dir)

    # Routine, before any incident: the baseline snapshot, and nothing else.
    baseline = run_playbook(collections_path, PLAYBOOK, dict(common, power_loss_recovery_snapshot_only=True),
                            env=lab_env)
    assert baseline.returncode == 0, baseline.stdout[-4000:]
    with open(os.path.join(state_dir, 'baseline.json')) as handle:
        saved = json.load(handle)
    assert dict(((r['server_id'], r['volume_id']), r['device']) for r in saved['relations']) == recorded
    assert not baseline.tasks('Compare the cloud'), 'snapshot_only ran beyond step 1'
    assert oct(os.stat(os.path.join(state_dir, 'baseline.json')).st_mode & 0o777) == '0o600'

    # The power fails in the middle of operations.
    lab_client.run('kill', *POWERED)
    sql("UPDATE cinder.volumes SET status = 'detaching' WHERE id = %s", detaching)
    sql("UPDATE cinder.volumes SET status = 'attaching', attach_status = 'attaching' WHERE id = %s", attaching)
    sql("UPDATE cinder.volume_attachment SET attach_status = 'attaching' WHERE volume_id = %s AND deleted = 0",
        attaching)
    sql("UPDATE cinder.volume_attachment SET deleted = 1, deleted_at = NOW(), attach_status = 'detached' "
        "WHERE volume_id = %s AND deleted = 0", cinder_forgot)
    lab_client.run('start', *POWERED)
    broken = dict((volume_id, admin.block_storage.get_volume(volume_id).status)
                  for volume_id in (intact, detaching, attaching, cinder_forgot))
    assert broken == {intact: 'in-use', detaching: 'detaching', attaching: 'attaching', cinder_forgot: 'in-use'}
    assert live_bdms(sql, servers[1].id, cinder_forgot) and not live_attachments(sql, cinder_forgot)

    incident = dict(common, power_loss_recovery_incident='drill', power_loss_recovery_iscsi='skip',
                    power_loss_recovery_cinder_db=lab_db['cinder'], power_loss_recovery_nova_api_db=lab_db['nova_api'])

    # Check mode: the whole plan, nothing written (not even the state files), nothing changed in the cloud.
    checked = run_playbook(collections_path, PLAYBOOK, incident, check=True, diff=True, env=lab_env)
    assert checked.returncode == 0, checked.stdout[-6000:]
    plan = checked.tasks('Compare the cloud with the snapshot')[0]['comparison']
    assert sorted(entry['volume_id'] for entry in plan['broken']) == sorted([detaching, attaching, cinder_forgot])
    assert sorted(plan['repair']['reset_in_use']) == sorted([detaching, attaching])
    assert sorted((p['instance'], p['volume']) for p in plan['repair']['purge_bdms']) == sorted(
        [(servers[0].id, detaching), (servers[1].id, attaching), (servers[1].id, cinder_forgot)])
    assert sorted((r['server_id'], r['volume_id'], r['device']) for r in plan['repair']['reattach']) == sorted(
        (s, v, d) for (s, v), d in recorded.items() if v != intact)
    reset_plan = checked.tasks('Reset volumes stuck attaching or detaching')[0]
    assert reset_plan['changed'] and [step['call'] for step in reset_plan['plan']] == ['os-reset_status'] * 2
    purges = checked.tasks('Remove the block device mappings')[0]['results']
    assert sorted(purge['method'] for purge in purges) == ['api', 'api', 'db']
    assert 'fell back to the database' in [p for p in purges if p['method'] == 'db'][0]['method_reason']
    assert len(checked.tasks('Hard reboot server')) == 2 and all(r['changed'] for r in checked.tasks('Hard reboot server'))
    assert all(r.get('skipped') for r in checked.tasks('Attach each volume again'))
    assert any('Step 2 skipped (power_loss_recovery_iscsi=skip)' in r.get('msg', '')
               for r in checked.tasks('Say plainly that the iSCSI step is skipped'))
    assert not os.path.exists(os.path.join(state_dir, 'drill')), 'check mode wrote the state directory'
    assert {v: admin.block_storage.get_volume(v).status for v in broken} == broken
    assert live_bdms(sql, servers[1].id, cinder_forgot)
    assert all(not hard_reboots(admin, server_id) for server_id in server_ids)

    # The repair.
    applied = run_playbook(collections_path, PLAYBOOK, incident, env=lab_env)
    assert applied.returncode == 0, applied.stdout[-8000:]
    assert not applied.failed
    assert relations(admin, server_ids) == recorded, 'not every volume is back at its device'
    for (server_id, volume_id), device in recorded.items():
        assert admin.block_storage.get_volume(volume_id).status == 'in-use'
        attachments = live_attachments(sql, volume_id)
        assert [(a['instance_uuid'], a['attach_status']) for a in attachments] == [(server_id, 'attached')]
        assert [row['device_name'] for row in live_bdms(sql, server_id, volume_id)] == [device]
    assert live_attachments(sql, intact)[0]['id'] == intact_attachment, 'the intact volume was detached'
    for server_id in server_ids:
        assert len(hard_reboots(admin, server_id)) == 1
        assert admin.compute.get_server(server_id).status == 'ACTIVE'
    with open(os.path.join(state_dir, 'drill', 'state.json')) as handle:
        assert sorted(json.load(handle)['rebooted']) == sorted(server_ids)
    with open(os.path.join(state_dir, 'drill', 'report.json')) as handle:
        report = json.load(handle)
    assert report['restored'] is True and report['iscsi_targets'] == 'not checked'
    assert len(report['broken_before']) == 3
    assert os.listdir(os.path.join(state_dir, 'drill', 'journal')), 'the database fallback left no journal'

    # A re-run of the same incident: nothing to do, no second reboot.
    again = run_playbook(collections_path, PLAYBOOK, incident, env=lab_env)
    assert again.returncode == 0, again.stdout[-4000:]
    assert again.changed == []
    assert any('not rebooted again' in r.get('msg', '') for r in again.tasks('Say which servers an earlier run'))
    for server_id in server_ids:
        assert len(hard_reboots(admin, server_id)) == 1


# ---------------------------------------------------------------- iSCSI probe

IQN = 'iqn.2026-11.org.stackmender.drill:power-loss'


@pytest.fixture
def tgtd(tmp_path):
    """A real user-space iSCSI target (Debian's tgt) on 127.0.0.1 with one LUN; killed afterwards."""
    if not shutil.which('tgtd'):
        subprocess.run(['bash', '-c', 'source tools/lib.sh && ensure_debs tgt'], cwd=REPO_ROOT, check=True)
    port = 3260 + 1 + os.getpid() % 500
    backing = tmp_path / 'lun.img'
    with open(backing, 'wb') as handle:
        handle.truncate(8 * 1024 * 1024)
    # Its own control port (socket), so it never meets another tgtd on the machine.
    control = str(port)
    process = subprocess.Popen(['tgtd', '-f', '-C', control, '--iscsi', 'portal=127.0.0.1:%d' % port],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        admin_command = ['tgtadm', '-C', control, '--lld', 'iscsi']
        env = dict(os.environ)
        deadline = time.time() + 20
        while subprocess.run(admin_command + ['--op', 'show', '--mode', 'target'], env=env,
                             capture_output=True, check=False).returncode != 0:
            assert time.time() < deadline, 'tgtd did not start'
            time.sleep(0.2)
        for arguments in (['--op', 'new', '--mode', 'target', '--tid', '1', '-T', IQN],
                          ['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '-b', str(backing)],
                          ['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']):
            subprocess.run(admin_command + arguments, env=env, check=True, capture_output=True)
        yield port
    finally:
        # tgtd ignores SIGTERM while it has targets: SIGKILL the process this fixture started.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_iscsi_step_probes_a_real_target_and_login_stops_early_on_this_kernel(
        collections_path, admin, member, sql, lab_env, cleanup, tmp_path, tgtd):
    server = new_server(member, 'power-loss-iscsi', cleanup)
    volume = new_volume(member, admin, 'power-loss-iscsi', cleanup)
    attach(member, admin, server, volume)
    # The lab's fake backend exports nothing; give the attachment the connection_info an iSCSI
    # backend records, naming the real target, so the runbook reads it back through Cinder's API.
    connection_info = {'driver_volume_type': 'iscsi', 'data': {
        'target_portal': '127.0.0.1:%d' % tgtd, 'target_iqn': IQN, 'target_lun': 1, 'access_mode': 'rw',
        'auth_method': 'CHAP', 'auth_username': 'drill-user', 'auth_password': 'drill-chap-secret'}}
    sql("UPDATE cinder.volume_attachment SET connection_info = %s WHERE volume_id = %s AND deleted = 0",
        json.dumps(connection_info), volume.id)
    compute_host = admin.compute.get_server(server.id).compute_host
    args = dict(power_loss_recovery_cloud='lab-admin', power_loss_recovery_servers=[server.id],
                power_loss_recovery_state_dir=str(tmp_path / 'state'), power_loss_recovery_incident='iscsi',
                power_loss_recovery_iscsi_hosts={compute_host: 'localhost'})

    probed = run_playbook(collections_path, PLAYBOOK, dict(args, power_loss_recovery_iscsi='probe'), check=True,
                          env=lab_env)
    assert probed.returncode == 0, probed.stdout[-4000:]
    probe, = probed.tasks('Probe each portal on TCP')[0]['results']
    assert not probe.get('failed') and probe['port'] == tgtd
    assert 'every portal answers from its compute host: 127.0.0.1' in probed.tasks('when a portal does not answer')[0]['msg']
    assert 'drill-chap-secret' not in probed.stdout + probed.stderr

    login = run_playbook(collections_path, PLAYBOOK, dict(args, power_loss_recovery_iscsi='login'), env=lab_env)
    assert login.returncode != 0
    failure = login.tasks('Fail early, before any change, on hosts whose kernel has no iSCSI transport')[0]
    assert failure['failed'] and 'localhost: the kernel has no iSCSI TCP transport' in failure['msg']
    assert not login.tasks('Reset volumes stuck') and not login.tasks('Hard reboot server')
    assert 'drill-chap-secret' not in login.stdout + login.stderr
    assert not hard_reboots(admin, server.id)
