"""cinder_volume_state through the real Cinder and Nova APIs of the drill lab.

Each case breaks a volume with the lab's real services, runs the module
through Ansible (check mode first), and proves the result through the API
and the lab's databases.
"""

import json
import time
import uuid

import pytest

from tests.drills.conftest import assert_call_journal, new_volume, wait_status
from tests.integration.helpers import assert_clean_failure

MODULE = 'cinder_volume_state'

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def test_reset_is_one_call_carrying_both_statuses(ansible, admin, member, api_args, lab_env, sql, cleanup):
    volume = new_volume(member, admin, 'api-reset', cleanup)
    admin.block_storage.reset_volume_status(volume, status='error', attach_status='detached')
    args = api_args(volume=volume.id, status='available')

    checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
    assert not checked.failed, checked['msg']
    assert checked.changed and checked['method'] == 'api'
    assert [step['call'] for step in checked['plan']] == ['os-reset_status']
    assert checked['plan'][0]['arguments'] == {'status': 'available', 'attach_status': 'detached'}
    assert admin.block_storage.get_volume(volume.id).status == 'error', 'check mode changed the volume'

    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed
    assert_call_journal(applied)
    assert admin.block_storage.get_volume(volume.id).status == 'available'
    row = sql('SELECT status, attach_status FROM cinder.volumes WHERE id = %s', volume.id)[0]
    assert (row['status'], row['attach_status']) == ('available', 'detached')
    assert not ansible(MODULE, args, env=lab_env).changed


def test_stale_attachment_is_deleted_cleanly_while_its_cinder_volume_is_up(
        ansible, admin, member, api_args, lab_env, sql, cleanup):
    volume = new_volume(member, admin, 'api-stale', cleanup)
    stranger = str(uuid.uuid4())
    attachment = admin.block_storage.create_attachment(volume, instance=stranger)
    wait_status(admin, volume.id, 'reserved')
    args = api_args(volume=volume.id, status='available')

    checked = ansible(MODULE, args, check=True, env=lab_env)
    assert [step['call'] for step in checked['plan']] == ['DELETE /attachments/%s' % attachment.id]
    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied.get('msg')
    assert admin.block_storage.get_volume(volume.id).status == 'available'
    assert sql('SELECT deleted FROM cinder.volume_attachment WHERE id = %s', attachment.id)[0]['deleted'] == 1
    assert not ansible(MODULE, args, env=lab_env).changed


def test_error_deleting_volume_is_force_deleted(ansible, admin, member, api_args, lab_env, sql, cleanup):
    volume = new_volume(member, admin, 'api-delete', cleanup)
    admin.block_storage.reset_volume_status(volume, status='error_deleting')
    args = api_args(volume=volume.id, status='deleted', from_status=['error_deleting'])
    checked = ansible(MODULE, args, check=True, env=lab_env)
    assert checked['plan'][0]['call'] == 'DELETE /volumes/%s?force=true' % volume.id
    assert checked['plan'][0]['microversion'] == '3.23'
    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied.get('msg')
    row = sql('SELECT status, deleted FROM cinder.volumes WHERE id = %s', volume.id)[0]
    assert (row['status'], row['deleted']) == ('deleted', 1)
    again = ansible(MODULE, api_args(volume=volume.id, status='deleted'), env=lab_env)
    assert again.failed and 'not found through the Cinder API' in again['msg']


def test_member_user_gets_the_policy_error_with_the_response_body(ansible, admin, member, api_args, lab_env, cleanup):
    volume = new_volume(member, admin, 'api-policy', cleanup)
    admin.block_storage.reset_volume_status(volume, status='error')
    result = ansible(MODULE, api_args(cloud='lab-member', volume=volume.id, status='available'), env=lab_env)
    assert_clean_failure(result, '403')
    assert 'admin role' in result['msg']
    assert result['response_body']
    assert admin.block_storage.get_volume(volume.id).status == 'error'


def test_auto_falls_back_to_the_database_when_the_owning_service_is_down(
        ansible, lab, lab_client, admin, member, api_args, lab_env, sql, cleanup):
    volume = new_volume(member, admin, 'api-fallback', cleanup)
    admin.block_storage.reset_volume_status(volume, status='error_deleting')
    host = admin.block_storage.get_volume(volume.id).host.split('#')[0]
    service = 'cinder-volume.%s' % host
    lab_client.run('stop', service)
    try:
        deadline = time.time() + 120
        while any(svc.state == 'up' for svc in admin.block_storage.services(binary='cinder-volume', host=host)):
            assert time.time() < deadline, 'cinder-volume never reported down'
            time.sleep(2)
        only_api = ansible(MODULE, api_args(volume=volume.id, status='deleted', method='api'), env=lab_env)
        assert_clean_failure(only_api, 'is not up')
        # Nova's database too: deleting a volume is refused unless the guard can see no instance uses it.
        auto = ansible(MODULE, api_args(volume=volume.id, status='deleted', cinder_db=lab['database']['urls']['cinder'],
                                        nova_api_db=lab['database']['urls']['nova_api']),
                       env=lab_env)
        assert not auto.failed, auto['msg']
        assert auto['method'] == 'db' and 'fell back to the database' in auto['method_reason']
        assert sql('SELECT deleted FROM cinder.volumes WHERE id = %s', volume.id)[0]['deleted'] == 1
    finally:
        lab_client.run('start', service)


def test_cinder_volume_killed_mid_detach_is_repaired(ansible, lab_client, admin, api_args, lab_env, sql, cleanup):
    broken = json.loads(lab_client.run('break-detach').stdout)
    volume_id, server_id = broken['volume_id'], broken['server_id']
    cleanup['servers'].append(server_id)
    cleanup['volumes'].append(volume_id)
    assert admin.block_storage.get_volume(volume_id).status == 'detaching'

    # Resetting to available would strand Nova's live BDM: refused, with Nova's own evidence.
    refused = ansible(MODULE, api_args(volume=volume_id, status='available'), env=lab_env)
    assert_clean_failure(refused, 'Nova still has a live block device mapping')
    assert refused['guards'][0]['evidence'][0]['instance_uuid'] == server_id
    assert admin.block_storage.get_volume(volume_id).status == 'detaching'

    # The repair: back to in-use, so Nova can retry the detach it gave up on.
    args = api_args(volume=volume_id, status='in-use', from_status=['detaching'])
    checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
    assert checked['plan'][0]['arguments'] == {'status': 'in-use', 'attach_status': 'attached'}
    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied.get('msg')
    assert admin.block_storage.get_volume(volume_id).status == 'in-use'
    assert not ansible(MODULE, args, env=lab_env).changed

    admin.compute.delete_volume_attachment(server_id, volume_id)
    wait_status(admin, volume_id, 'available')
    assert not sql('SELECT id FROM cinder.volume_attachment WHERE volume_id = %s AND deleted = 0', volume_id)
    assert not sql('SELECT id FROM nova.block_device_mapping WHERE volume_id = %s AND deleted = 0', volume_id)
