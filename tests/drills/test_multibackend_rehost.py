"""The multi-backend incident on the drill lab, repaired by cinder_service_rehost.

A cinder-volume is re-registered under a new host@backend name, as enabling
multi-backend does: its volumes keep naming the old host, so a delete
waits forever for a service that no longer exists. The module moves them
in the lab's real Cinder database; the real API then deletes and detaches
them through the new service.
"""

import time

import pytest

from tests.drills.conftest import WAIT, attach, new_server, wait_status
from tests.drills.multibackend import (LAB_SERVICE_DOWN_TIME, backend_volume_type, create_volumes,
                                       multibackend_name, rename_volume_service, wait_old_service_down)
from tests.drills import multibackend
from tests.integration.helpers import assert_clean_failure

# The fixture lives with the breaking steps; named here so that pytest finds it.
lab_layout_restored = multibackend.lab_layout_restored

MODULE = 'cinder_service_rehost'
STUCK_FOR = 15

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def test_volumes_of_a_renamed_cinder_volume_are_rehosted_and_deleted(
        ansible, lab, lab_client, lab_layout_restored, admin, member, lab_db, sql, journal_dir, cleanup):
    old_service = lab['layout']['volume_hosts'][0]
    backend = old_service.split('@')[1]
    new_service, to_host = multibackend_name(old_service)

    # Two volumes on that backend: one to delete, one attached to a server.
    volume_type = backend_volume_type(admin, backend, prefix='rehost')
    doomed, attached = create_volumes(member, admin, volume_type, ('rehost-delete', 'rehost-attached'), cleanup)
    server = new_server(member, 'rehost', cleanup)
    attach(member, admin, server, attached)
    old_host = admin.block_storage.get_volume(doomed.id).host
    assert old_host.startswith(old_service + '#')
    compute_host = sql('SELECT attached_host FROM cinder.volume_attachment WHERE volume_id = %s AND deleted = 0',
                       attached.id)[0]['attached_host']

    # The incident: the service comes back under its multi-backend name; the volumes do not follow.
    stopped_at = rename_volume_service(lab_client, admin, old_service, new_service)
    assert admin.block_storage.get_volume(doomed.id).host == old_host

    # A delete is accepted, sent to the old service's queue, and never finishes.
    member.block_storage.delete_volume(doomed)
    time.sleep(STUCK_FOR)
    assert admin.block_storage.get_volume(doomed.id).status == 'deleting'
    wait_old_service_down(admin, old_service, stopped_at)
    assert admin.block_storage.get_volume(doomed.id).status == 'deleting'

    args = dict(from_host=old_service, to_host=to_host, cinder_db=lab_db['cinder'],
                service_down_time=LAB_SERVICE_DOWN_TIME, journal_dir=journal_dir)
    # The stuck delete is the transitional state the module refuses to move blindly.
    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'transitional state (deleting)')
    assert [row['id'] for row in refused['guards'][0]['evidence']] == [doomed.id]

    # That delete is lost with the old queue: put the volume back at rest, then rehost.
    admin.block_storage.reset_volume_status(doomed, status='error')
    checked = ansible(MODULE, args, check=True, diff=True)
    assert not checked.failed and checked.changed, checked['msg']
    assert checked['method'] == 'db' and 'no API' in checked['method_reason']
    assert admin.block_storage.get_volume(doomed.id).host == old_host, 'check mode wrote something'
    applied = ansible(MODULE, args)
    assert not applied.failed and applied.changed, applied['msg']
    new_uuid = sql('SELECT uuid FROM cinder.services WHERE host = %s AND deleted = 0', new_service)[0]['uuid']
    rows = sql('SELECT id, host, service_uuid FROM cinder.volumes WHERE id IN (%s, %s)', doomed.id, attached.id)
    assert [(row['host'], row['service_uuid']) for row in rows] == [(to_host, new_uuid)] * 2
    old_row = sql('SELECT disabled, disabled_reason FROM cinder.services WHERE host = %s AND deleted = 0',
                  old_service)[0]
    assert old_row['disabled'] == 1 and to_host in old_row['disabled_reason']
    # Nova's attachment names the compute host, not the Cinder host: left alone.
    assert sql('SELECT attached_host FROM cinder.volume_attachment WHERE volume_id = %s AND deleted = 0',
               attached.id)[0]['attached_host'] == compute_host
    assert admin.block_storage.get_volume(doomed.id).host == to_host

    # Through the real API: the delete now completes, and so do detach and delete of the attached one.
    member.block_storage.delete_volume(doomed)
    member.block_storage.wait_for_delete(doomed, interval=1, wait=WAIT)
    member.compute.delete_volume_attachment(server, attached.id)
    wait_status(admin, attached.id, 'available')
    member.block_storage.delete_volume(attached)
    member.block_storage.wait_for_delete(attached, interval=1, wait=WAIT)
    assert sql('SELECT count(*) AS n FROM cinder.volumes WHERE id IN (%s, %s) AND deleted = 0',
               doomed.id, attached.id)[0]['n'] == 0

    again = ansible(MODULE, args)
    assert not again.failed and not again.changed, again
    assert again['msg'].startswith('nothing to do')
