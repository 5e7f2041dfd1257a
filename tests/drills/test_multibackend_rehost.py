"""The multi-backend incident on the drill lab, repaired by cinder_service_rehost.

A cinder-volume is re-registered under a new host@backend name, as enabling
multi-backend does: its volumes keep naming the old host, so a delete
waits forever for a service that no longer exists. The module moves them
in the lab's real Cinder database; the real API then deletes and detaches
them through the new service.
"""

import time
import uuid

import pytest

from tests.drills.conftest import WAIT, attach, new_server, wait_status
from tests.integration.helpers import assert_clean_failure

MODULE = 'cinder_service_rehost'
# The lab counts a service as down 30 s after its last report (Cinder's default is 60 s).
LAB_SERVICE_DOWN_TIME = 30
STUCK_FOR = 15

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


@pytest.fixture
def lab_layout_restored(lab_client):
    """The drill renames a cinder-volume of the lab; `lab reset` puts the initial layout back."""
    yield
    lab_client.run('reset')


def service_state(admin, host):
    states = [service.state for service in admin.block_storage.services(binary='cinder-volume', host=host)
              if service.host == host]
    return states[0] if states else None


def wait_until(what, predicate, wait=WAIT, interval=1):
    deadline = time.time() + wait
    while not predicate():
        assert time.time() < deadline, 'timed out waiting for %s' % what
        time.sleep(interval)


def test_volumes_of_a_renamed_cinder_volume_are_rehosted_and_deleted(
        ansible, lab, lab_client, lab_layout_restored, admin, member, lab_db, sql, journal_dir, cleanup):
    old_service = lab['layout']['volume_hosts'][0]
    host, backend = old_service.split('@')
    new_service = '%s@multi%s' % (host, uuid.uuid4().hex[:4])
    to_host = '%s#%s' % (new_service, new_service.split('@')[1])

    # Two volumes on that backend: one to delete, one attached to a server.
    volume_type = admin.block_storage.create_type(name='rehost-%s' % uuid.uuid4().hex[:6],
                                                  extra_specs={'volume_backend_name': backend})
    volumes = []
    for name in ('rehost-delete', 'rehost-attached'):
        volume = member.block_storage.create_volume(name=name, size=1, volume_type=volume_type.name)
        cleanup['volumes'].append(volume.id)
        volumes.append(wait_status(admin, volume.id, 'available'))
    doomed, attached = volumes
    server = new_server(member, 'rehost', cleanup)
    attach(member, admin, server, attached)
    old_host = admin.block_storage.get_volume(doomed.id).host
    assert old_host.startswith(old_service + '#')
    compute_host = sql('SELECT attached_host FROM cinder.volume_attachment WHERE volume_id = %s AND deleted = 0',
                       attached.id)[0]['attached_host']

    # The incident: the service comes back under its multi-backend name; the volumes do not follow.
    lab_client.run('rehost-volume-service', old_service, new_service)
    stopped_at = time.time()
    assert service_state(admin, new_service) == 'up'
    assert admin.block_storage.get_volume(doomed.id).host == old_host

    # A delete is accepted, sent to the old service's queue, and never finishes.
    member.block_storage.delete_volume(doomed)
    time.sleep(STUCK_FOR)
    assert admin.block_storage.get_volume(doomed.id).status == 'deleting'
    wait_until('the old service to be reported down', lambda: service_state(admin, old_service) == 'down',
               wait=max(5, LAB_SERVICE_DOWN_TIME + 30 - (time.time() - stopped_at)))
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
