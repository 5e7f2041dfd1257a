"""Fixtures every drill on the lab shares: API connections, SQL, module arguments, clean-up.

Drills carry ``pytestmark = [pytest.mark.lab, pytest.mark.xdist_group('lab')]``
so that one pytest-xdist worker owns the session's lab.
"""

import time
import uuid

import pytest

from tests.conftest import import_lab_client

WAIT = 120
FLAVOR = 'lab.tiny'
IMAGE = 'lab-image'


@pytest.fixture(scope='module')
def lab_client():
    return import_lab_client()


@pytest.fixture(scope='module')
def admin(lab, lab_client):
    return lab_client.connect_cloud(lab, 'lab-admin')


@pytest.fixture(scope='module')
def member(lab, lab_client):
    return lab_client.connect_cloud(lab, 'lab-member')


@pytest.fixture
def sql(lab, lab_client):
    """Run one statement against the lab's MariaDB; rows as dicts."""
    connection = lab_client.connect_database(lab)

    def query(statement, *parameters):
        with connection.cursor() as cursor:
            cursor.execute(statement, parameters)
            if cursor.description is None:
                return cursor.rowcount
            columns = [column[0] for column in cursor.description]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]
    yield query
    connection.close()


@pytest.fixture
def api_args(lab, journal_dir):
    """Module arguments for the lab's admin cloud (AWX-style: a clouds.yaml file)."""
    def make(cloud='lab-admin', **extra):
        args = dict(cloud=cloud, journal_dir=journal_dir)
        args.update(extra)
        return args
    return make


@pytest.fixture
def lab_env(lab):
    return {'OS_CLIENT_CONFIG_FILE': lab['clouds_yaml']}


@pytest.fixture
def lab_db(lab):
    """The lab's database URLs by logical name (cinder, nova, nova_api, placement, ...)."""
    return lab['database']['urls']


def compute_service(admin, host):
    """The nova-compute service of ``host`` through the Compute API (the filter is a prefix match)."""
    return [service for service in admin.compute.services(binary='nova-compute', host=host) if service.host == host][0]


def wait_for(what, condition, wait=WAIT):
    deadline = time.time() + wait
    while not condition():
        assert time.time() < deadline, '%s: not within %s s' % (what, wait)
        time.sleep(1)


@pytest.fixture
def compute1_restored(admin, lab_client):
    """After a drill that kills compute1: it runs again, its evacuation records are completed, and its
    service is up, enabled and not forced down, so later drills find the lab as before."""
    yield
    lab_client.run('start', 'nova-compute.compute1')
    service = compute_service(admin, 'compute1')
    if service.is_forced_down or service.status == 'disabled':
        # Nova lifts forced_down only once the restarted compute has destroyed the evacuated guests
        # and marked their evacuations completed.
        wait_for('compute1 cleans up its evacuated guests', lambda: not [
            migration for migration in admin.compute.migrations(source_compute='compute1', migration_type='evacuation')
            if migration.status in ('accepted', 'pre-migrating', 'done')])
        response = admin.compute.put('/os-services/%s' % service.id, microversion='2.53',
                                     json={'forced_down': False, 'status': 'enabled'})
        assert response.status_code == 200, response.text
    wait_for('compute1 reports up', lambda: compute_service(admin, 'compute1').state == 'up')
    service = compute_service(admin, 'compute1')
    assert (service.status, service.is_forced_down) == ('enabled', False)


@pytest.fixture
def cleanup(admin):
    """Servers and volumes a test made, removed afterwards so the lab's quotas never fill up."""
    made = {'servers': [], 'volumes': []}
    yield made
    for server_id in made['servers']:
        server = admin.compute.find_server(server_id, ignore_missing=True, all_projects=True)
        if server is not None:
            admin.compute.delete_server(server)
            admin.compute.wait_for_delete(server, wait=WAIT)
    for volume_id in made['volumes']:
        volume = admin.block_storage.find_volume(volume_id, ignore_missing=True, all_projects=True)
        if volume is not None:
            admin.block_storage.reset_volume_status(volume, status='available', attach_status='detached')
            admin.block_storage.delete_volume(volume, force=True, ignore_missing=True)


def wait_status(admin, volume_id, status, wait=WAIT):
    deadline = time.time() + wait
    while True:
        volume = admin.block_storage.get_volume(volume_id)
        if volume.status == status:
            return volume
        if time.time() > deadline:
            raise AssertionError('volume %s stayed %s, expected %s' % (volume_id, volume.status, status))
        time.sleep(0.5)


def new_volume(member, admin, name, cleanup):
    volume = member.block_storage.create_volume(name='%s-%s' % (name, uuid.uuid4().hex[:6]), size=1)
    cleanup['volumes'].append(volume.id)
    return wait_status(admin, volume.id, 'available')


def new_server(member, name, cleanup, **extra):
    """An ACTIVE server of the lab's tiny flavor and image, with no network."""
    image = member.image.find_image(IMAGE, ignore_missing=False)
    server = member.compute.create_server(name='%s-%s' % (name, uuid.uuid4().hex[:6]), flavor_id=FLAVOR,
                                          image_id=image.id, networks='none', **extra)
    cleanup['servers'].append(server.id)
    return member.compute.wait_for_server(server, status='ACTIVE', failures=['ERROR'], interval=0.5, wait=WAIT)


def attach(member, admin, server, volume):
    """Attach through Nova and wait until Cinder says in-use."""
    member.compute.create_volume_attachment(server, volume_id=volume.id)
    return wait_status(admin, volume.id, 'in-use')


def assert_call_journal(result):
    """An applied API run's journal: its calls, every one done, as the result says; no rows to undo."""
    from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal
    assert result['journal'], result
    document = load_journal(result['journal'])
    assert document['method'] == 'api' and document['status'] == 'committed' and document['entries'] == []
    assert [call['outcome'] for call in document['calls']] == ['done'] * len(result['plan'])
    assert [call['call'] for call in document['calls']] == [call['call'] for call in result['calls']]
    return document
