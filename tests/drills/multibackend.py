"""The multi-backend incident on the drill lab, shared by its drills and the demo.

A cinder-volume that served one backend is re-registered under a new
``host@backend`` name, as enabling multi-backend (``enabled_backends``)
or renaming the backend section does. Its volumes keep naming the old
host, so every operation on them waits for a service that no longer runs.
"""

import time
import uuid

import pytest

from tests.drills.conftest import WAIT, wait_status

# The lab counts a service as down 30 s after its last report (Cinder's default is 60 s).
LAB_SERVICE_DOWN_TIME = 30


@pytest.fixture
def lab_layout_restored(lab_client):
    """The drill renames a cinder-volume of the lab; `lab reset` puts the initial layout back."""
    yield
    # The next drills need the initial layout: a reset that fails once (a service that lost a
    # start-up race on a loaded machine) is tried again before the failure is reported.
    if lab_client.run('reset', check=False).returncode != 0:
        lab_client.run('reset')


def service_state(admin, host):
    """up, down, or None when Cinder lists no cinder-volume of that exact host."""
    states = [service.state for service in admin.block_storage.services(binary='cinder-volume', host=host)
              if service.host == host]
    return states[0] if states else None


def wait_until(what, predicate, wait=WAIT, interval=1):
    deadline = time.time() + wait
    while not predicate():
        assert time.time() < deadline, 'timed out waiting for %s' % what
        time.sleep(interval)


def multibackend_name(old_service):
    """A new host@backend for the old service's machine, and its host@backend#pool (the lab's pool is the backend)."""
    host = old_service.split('@')[0]
    new_service = '%s@multi%s' % (host, uuid.uuid4().hex[:4])
    return new_service, '%s#%s' % (new_service, new_service.split('@')[1])


def backend_volume_type(admin, backend, prefix='multibackend'):
    """A volume type that puts its volumes on one backend of the lab."""
    return admin.block_storage.create_type(name='%s-%s' % (prefix, uuid.uuid4().hex[:6]),
                                           extra_specs={'volume_backend_name': backend})


def create_volumes(member, admin, volume_type, names, cleanup):
    """Volumes of that type, created together and waited for together."""
    created = []
    for name in names:
        volume = member.block_storage.create_volume(name='%s-%s' % (name, uuid.uuid4().hex[:4]), size=1,
                                                    volume_type=volume_type.name)
        cleanup['volumes'].append(volume.id)
        created.append(volume)
    return [wait_status(admin, volume.id, 'available') for volume in created]


def rename_volume_service(lab_client, admin, old_service, new_service):
    """The incident: the service comes back under its multi-backend name; the volumes do not follow.

    Returns the time the old service stopped reporting.
    """
    lab_client.run('rehost-volume-service', old_service, new_service)
    stopped_at = time.time()
    assert service_state(admin, new_service) == 'up'
    return stopped_at


def wait_old_service_down(admin, old_service, stopped_at):
    """Until Cinder's API reports the old service down (service_down_time after its last report)."""
    wait_until('the old service to be reported down', lambda: service_state(admin, old_service) == 'down',
               wait=max(5, LAB_SERVICE_DOWN_TIME + 30 - (time.time() - stopped_at)))
