"""nova_bdm_purge on the drill lab's real Nova and Cinder.

While Cinder still holds the attachment, the module detaches through Nova's
API. When Cinder has let the volume go and Nova kept its BDM (the incident),
Nova's API cannot help, ``method: auto`` falls back to the database, and the
volume can be attached again afterwards.
"""

import pytest

from tests.drills.conftest import assert_call_journal, attach, new_server, new_volume, wait_status
from tests.integration.helpers import assert_clean_failure

MODULE = 'nova_bdm_purge'

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def live_bdms(sql, server_id, volume_id):
    return sql('SELECT id FROM nova.block_device_mapping WHERE instance_uuid = %s AND volume_id = %s AND deleted = 0',
               server_id, volume_id)


def test_detach_through_nova_while_cinder_holds_the_attachment(
        ansible, admin, member, api_args, lab_env, sql, cleanup):
    server = new_server(member, 'bdm-api', cleanup)
    volume = new_volume(member, admin, 'bdm-api', cleanup)
    attach(member, admin, server, volume)
    args = api_args(instance=server.id, volume=volume.id)

    checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
    assert not checked.failed, checked['msg']
    assert checked.changed and checked['method'] == 'api'
    step, = checked['plan']
    assert step['call'] == 'DELETE /servers/%s/os-volume_attachments/%s' % (server.id, volume.id)
    assert step['microversion'] == '2.89'
    label = 'servers/%s/volumes/%s' % (server.id, volume.id)
    assert checked['diff']['before']['compute'][label]['attached'] is True
    assert checked['diff']['after']['compute'][label]['attached'] is False
    assert admin.block_storage.get_volume(volume.id).status == 'in-use', 'check mode detached the volume'
    assert live_bdms(sql, server.id, volume.id)

    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied.get('msg')
    assert_call_journal(applied)
    assert admin.block_storage.get_volume(volume.id).status == 'available'
    assert not [a for a in admin.compute.volume_attachments(server.id) if a.volume_id == volume.id]
    assert not live_bdms(sql, server.id, volume.id)
    assert not sql('SELECT id FROM cinder.volume_attachment WHERE volume_id = %s AND deleted = 0', volume.id)

    again = ansible(MODULE, args, env=lab_env)
    assert not again.failed and not again.changed, again
    assert 'Nova lists no attachment' in again['msg']


def test_bdm_nova_kept_after_cinder_let_go_is_purged_and_the_volume_attaches_again(
        ansible, admin, member, api_args, lab_env, lab_db, sql, cleanup):
    server = new_server(member, 'bdm-stale', cleanup)
    volume = new_volume(member, admin, 'bdm-stale', cleanup)
    attach(member, admin, server, volume)
    # The incident: the blog-post fix resets the volume in Cinder; Nova is never told and keeps the BDM.
    # (Cinder refuses to delete an attachment Nova uses, so the reset is how Cinder lets go.)
    admin.block_storage.reset_volume_status(volume, status='available', attach_status='detached')
    wait_status(admin, volume.id, 'available')
    assert not sql('SELECT id FROM cinder.volume_attachment WHERE volume_id = %s AND deleted = 0', volume.id)
    assert live_bdms(sql, server.id, volume.id)
    with pytest.raises(Exception) as refused:
        member.compute.create_volume_attachment(server, volume_id=volume.id)
    assert getattr(refused.value, 'status_code', None) in (400, 409), refused.value

    only_api = ansible(MODULE, api_args(instance=server.id, volume=volume.id, method='api'), env=lab_env)
    assert_clean_failure(only_api, 'Cinder holds no attachment of volume %s' % volume.id)
    assert live_bdms(sql, server.id, volume.id)

    args = api_args(instance=server.id, volume=volume.id, nova_api_db=lab_db['nova_api'], cinder_db=lab_db['cinder'])
    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied.get('msg')
    assert applied['method'] == 'db' and 'fell back to the database' in applied['method_reason']
    assert 'Cinder holds no attachment' in applied['method_reason']
    assert applied['journal']
    assert any('hard reboot instance %s' % server.id in warning for warning in applied['warnings'])
    assert not live_bdms(sql, server.id, volume.id)

    again = ansible(MODULE, args, env=lab_env)
    assert not again.failed and not again.changed, again

    # The repair is proven by the API: the volume attaches to the same server again.
    attach(member, admin, server, volume)
    assert [a.volume_id for a in admin.compute.volume_attachments(server.id)] == [volume.id]
