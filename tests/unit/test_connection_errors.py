"""Connection errors an operator can act on: why a database is unreachable, which cloud to name, which library is missing."""

import os

import pymysql
import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

TARGET = db.parse_url('cinder_db', 'mysql+pymysql://cinder:s3cret@db.example.org:3306/cinder')


@pytest.mark.parametrize('socket_error, reason', [
    ('[Errno 111] Connection refused', 'the connection was refused: nothing listens on that host and port'),
    ('[Errno -2] Name or service not known', 'the host name does not resolve (DNS)'),
    ('[Errno -3] Temporary failure in name resolution', 'the host name does not resolve (DNS)'),
    ('timed out', 'it did not answer in time (timed out)'),
    ('[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)',
     "TLS: the server's certificate is not trusted"),
    ('[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)', 'the TLS handshake failed'),
    ('[Errno 101] Network is unreachable', 'no route to the server'),
])
def test_an_unreachable_database_says_why(socket_error, reason):
    error = pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db.example.org' (%s)" % socket_error)
    message = db.describe_error(TARGET, error)
    assert message.startswith('cannot connect to the database server of mysql://cinder@db.example.org:3306/cinder: ')
    assert reason in message and 's3cret' not in message


def _clouds_yaml(tmp_path, *names):
    path = tmp_path / 'clouds.yaml'
    path.write_text('clouds:\n' + ''.join(
        '  %s:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n      username: admin\n      password: pw-%s\n'
        '      project_name: admin\n' % (name, name) for name in names))
    return str(path)


@pytest.fixture
def no_os_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith('OS_'):
            monkeypatch.delenv(name)
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'config'))
    monkeypatch.chdir(tmp_path)


def test_several_clouds_and_none_named_asks_to_name_one(no_os_environment, monkeypatch, tmp_path):
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', _clouds_yaml(tmp_path, 'prod', 'staging'))
    with pytest.raises(InputError) as refused:
        api.connect(None)
    assert 'has several clouds and none is named: name one of: prod, staging' in refused.value.msg
    assert 'pw-prod' not in refused.value.msg


def test_a_wrong_cloud_name_lists_the_clouds_that_exist(no_os_environment, monkeypatch, tmp_path):
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', _clouds_yaml(tmp_path, 'prod', 'staging'))
    with pytest.raises(InputError) as refused:
        api.connect('prdo')
    assert "cloud 'prdo' is not in clouds.yaml" in refused.value.msg
    assert 'the clouds there are prod, staging' in refused.value.msg


def test_a_clouds_yaml_configures_a_cloud_and_its_absence_does_not(no_os_environment, monkeypatch, tmp_path):
    assert not api.cloud_configured(None)
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', _clouds_yaml(tmp_path, 'only'))
    assert api.cloud_configured(None)
    monkeypatch.delenv('OS_CLIENT_CONFIG_FILE')
    os.makedirs(str(tmp_path / 'config' / 'openstack'))
    os.rename(_clouds_yaml(tmp_path, 'only'), str(tmp_path / 'config' / 'openstack' / 'clouds.yaml'))
    assert api.cloud_configured(None)


def test_a_missing_or_old_openstacksdk_is_named_as_the_library(monkeypatch):
    monkeypatch.setattr(api, 'HAS_OPENSTACKSDK', False)
    assert api.openstacksdk_problem() == 'openstacksdk'
    monkeypatch.setattr(api, 'HAS_OPENSTACKSDK', True)
    monkeypatch.setattr(api, 'openstacksdk_version', lambda: (0, 61, 0))
    assert api.openstacksdk_problem() == 'openstacksdk >= 1.0.0 (found 0.61.0)'
    with pytest.raises(InputError) as refused:
        api.connect('any')
    assert 'needs openstacksdk >= 1.0.0 (found 0.61.0)' in refused.value.msg
    monkeypatch.setattr(api, 'openstacksdk_version', lambda: (4, 22, 0))
    assert api.openstacksdk_problem() is None


def test_the_installed_openstacksdk_version_is_read_without_importing_it():
    version = api.openstacksdk_version()
    assert version is not None and version >= api.MINIMUM_OPENSTACKSDK
