"""TLS to the databases (ssl_mode), against a real MariaDB that speaks TLS and one that does not.

A private mariadbd is started with a server certificate signed by a CA made here (its name is
db.test, not the address the tests connect to); the sessions are PyMySQL's, as in every module.
"""

import os
import subprocess

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import DatabaseError, InputError
from tests.harness import mariadb
from tests.integration.helpers import db_args

pytestmark = pytest.mark.newest_release


def _openssl(*args, cwd):
    subprocess.run(['openssl', *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _authority(directory, name):
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', '%s.key' % name, '-out', '%s.pem' % name,
             '-days', '2', '-subj', '/CN=%s' % name, cwd=directory)
    return os.path.join(directory, '%s.pem' % name)


@pytest.fixture(scope='module')
def tls_server(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('tls'))
    ca = _authority(directory, 'stackmender-test-ca')
    other_ca = _authority(directory, 'another-ca')
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr',
             '-subj', '/CN=db.test', cwd=directory)
    with open(os.path.join(directory, 'san.ext'), 'w') as handle:
        handle.write('subjectAltName=DNS:db.test\n')
    _openssl('x509', '-req', '-in', 'server.csr', '-CA', 'stackmender-test-ca.pem', '-CAkey', 'stackmender-test-ca.key',
             '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext', cwd=directory)
    server = mariadb.start_private_server(extra_args=(
        '--ssl-cert=%s' % os.path.join(directory, 'server.pem'), '--ssl-key=%s' % os.path.join(directory, 'server.key'),
        '--ssl-ca=%s' % ca), scratch=True)
    try:
        yield server, ca, other_ca
    finally:
        server.stop()


def _session(server, **tls):
    value = dict(url='mysql+pymysql://root@127.0.0.1:%d/mysql' % server.port, **tls)
    return db.Session(db.parse_database_option('cinder_db', value)).connect()


def _cipher(session):
    return session.query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0]['Value']


def test_verify_ca_connects_over_tls_to_a_server_its_ca_signed(tls_server):
    server, ca, _other = tls_server
    session = _session(server, ssl_mode='verify-ca', ca_cert=ca)
    try:
        assert _cipher(session)
    finally:
        session.close()


def test_require_uses_tls_without_checking_the_certificate(tls_server):
    server, _ca, _other = tls_server
    session = _session(server, ssl_mode='require')
    try:
        assert _cipher(session)
    finally:
        session.close()


def test_verify_ca_refuses_a_certificate_another_ca_signed(tls_server):
    server, _ca, other = tls_server
    with pytest.raises(DatabaseError) as refused:
        _session(server, ssl_mode='verify-ca', ca_cert=other)
    assert "TLS: the server's certificate is not trusted" in refused.value.msg


def test_verify_full_refuses_a_certificate_for_another_host_name(tls_server):
    server, ca, _other = tls_server
    with pytest.raises(DatabaseError) as refused:
        _session(server, ssl_mode='verify-full', ca_cert=ca)
    assert 'cannot connect to the database server of mysql://root@127.0.0.1' in refused.value.msg
    assert 'TLS' in refused.value.msg


def test_prefer_takes_the_tls_a_server_offers_and_disable_never_uses_it(tls_server):
    server, _ca, _other = tls_server
    for mode, tls in (('prefer', True), ('disable', False)):
        session = _session(server, ssl_mode=mode)
        try:
            assert bool(_cipher(session)) is tls, mode
        finally:
            session.close()


@pytest.mark.parametrize('value, words', [
    (dict(ssl_mode='verify-ca'), 'ssl_mode=verify-ca verifies the server against a CA: give ca_cert'),
    (dict(ssl_mode='strict'), 'ssl_mode must be one of disable, prefer, require, verify-ca, verify-full'),
])
def test_ssl_mode_input_errors_name_the_problem(value, words):
    with pytest.raises(InputError) as refused:
        db.parse_database_option('cinder_db', dict(url='mysql+pymysql://cinder:pw@db.example.org/cinder', **value))
    assert words in refused.value.msg


def test_a_module_that_requires_tls_refuses_a_server_without_it(dbs, ansible, journal_dir):
    # The test databases' server speaks no TLS: PyMySQL would go on in plain text; the module refuses.
    settings = dict(url=db_args(dbs, 'cinder')['cinder_db'], ssl_mode='require')
    result = ansible('cinder_volume_state', dict(cinder_db=settings, volume=['00000000-0000-0000-0000-000000000001'],
                                                 status='available', method='db', journal_dir=journal_dir))
    assert result.failed and 'ssl_mode=require, but the server of mysql://' in result['msg'], dict(result)
    assert 'did not start TLS' in result['msg']
