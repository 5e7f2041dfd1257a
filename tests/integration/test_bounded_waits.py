"""Bounded waits: a server that accepts and never answers fails the module cleanly, naming it.

The hung server is a loopback TCP listener that accepts every connection and never sends a
byte: a MariaDB whose greeting never comes, or an API endpoint that never answers. The
module must fail within its timeout (not hang), say which server did not answer, and never
show the password. lock_timeout must be a positive number.
"""

import socket
import threading
import time
import uuid

import pytest

from tests.integration.helpers import CINDER_TABLES, assert_clean_failure, db_args, snapshot

PASSWORD = 'Hung-Canary-7f3a'
# The module's own wait (connect_timeout 10 s, or api_timeout) plus Ansible's start-up, generously.
DEADLINE = 45


@pytest.fixture
def hung_server():
    """(host, port) of a listener that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    accepted = []
    stopping = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                connection, _address = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            accepted.append(connection)  # held open, never written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()
    stopping.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_a_hung_database_fails_within_the_timeout_naming_the_server(ansible, hung_server, journal_dir):
    host, port = hung_server
    url = 'mysql+pymysql://cinder:%s@%s:%d/cinder' % (PASSWORD, host, port)
    result, elapsed = timed(lambda: ansible('cinder_volume_state', dict(
        volume=str(uuid.uuid4()), status='available', method='db', cinder_db=url, journal_dir=journal_dir)))
    assert_clean_failure(result, '%s:%d' % (host, port))
    assert 'did not answer in time' in result['msg'] or 'timed out' in result['msg'], result['msg']
    assert elapsed < DEADLINE, elapsed
    assert PASSWORD not in result.stdout + result.stderr


def test_a_hung_api_fails_within_api_timeout_naming_the_endpoint(ansible, hung_server, journal_dir):
    pytest.importorskip('openstack')
    host, port = hung_server
    cloud = dict(auth_type='password', auth=dict(
        auth_url='http://%s:%d/identity/v3' % (host, port), username='admin', password=PASSWORD,
        project_name='admin', user_domain_name='Default', project_domain_name='Default'))
    result, elapsed = timed(lambda: ansible('cinder_volume_state', dict(
        volume=str(uuid.uuid4()), status='available', method='api', cloud=cloud, api_timeout=3,
        journal_dir=journal_dir)))
    assert_clean_failure(result, 'cannot connect to the cloud')
    assert '%s:%d' % (host, port) in result['msg'], result['msg']
    assert 'timed out' in result['msg'], result['msg']
    assert elapsed < DEADLINE, elapsed
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.newest_release
@pytest.mark.parametrize('lock_timeout', [0, -1])
def test_a_lock_timeout_that_is_not_positive_is_refused_and_nothing_changes(
        ansible, dbs, cloud, journal_dir, lock_timeout):
    volume = cloud.volume(status='detaching')
    before = snapshot(dbs, CINDER_TABLES)
    result = ansible('cinder_volume_state', db_args(dbs, 'cinder', volume=volume, status='error',
                                                    lock_timeout=lock_timeout, journal_dir=journal_dir))
    assert_clean_failure(result, 'lock_timeout must be a positive number of seconds, got %d' % lock_timeout)
    assert snapshot(dbs, CINDER_TABLES) == before
