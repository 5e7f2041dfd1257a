"""The redaction rule (module_utils/engine/redaction.py) and the private journal directory, on plain data."""

import json
import os

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import Journal
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import RowChange, describe_changes, DELETE
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import StatementGroup

CHAP = json.dumps({'driver_volume_type': 'iscsi', 'data': {'target_iqn': 'iqn.2010-10.org.openstack:volume-1',
                                                           'auth_method': 'CHAP', 'auth_username': 'u',
                                                           'auth_password': 'S3cr3tCHAP'}})


def test_a_stand_in_gives_length_and_hash_and_compares():
    first = redaction.stand_in(CHAP)
    assert first.startswith('<secret: %d chars, sha256 ' % len(CHAP)) and 'S3cr3t' not in first
    assert redaction.stand_in(CHAP) == first
    assert redaction.stand_in(CHAP + ' ') != first
    assert redaction.stand_in(None) is None
    assert redaction.stand_in(first) == first, 'redacting twice changes nothing'


@pytest.mark.parametrize('table, row, secret_columns', [
    ('volume_attachment', {'id': 'a', 'connection_info': CHAP, 'connector': '{"initiator": "iqn"}',
                           'attach_status': 'attached'}, ('connection_info', 'connector')),
    ('volumes', {'id': 'v', 'provider_auth': 'CHAP u S3cr3t', 'provider_location': '10.0.0.1:3260,1 iqn 0'},
     ('provider_auth',)),
    ('snapshots', {'id': 's', 'provider_auth': 'CHAP u S3cr3t'}, ('provider_auth',)),
    ('transfers', {'id': 't', 'salt': 'abc', 'crypt_hash': 'def'}, ('salt', 'crypt_hash')),
    ('block_device_mapping', {'id': 1, 'connection_info': CHAP}, ('connection_info',)),
    ('instances', {'uuid': 'i', 'user_data': 'I2Nsb3VkLWNvbmZpZw=='}, ('user_data',)),
    ('instance_system_metadata', {'id': 1, 'key': 'password_0', 'value': 'S3cr3t'}, ('value',)),
    ('build_requests', {'id': 1, 'instance': '{"user_data": "x"}', 'block_device_mappings': '[]'},
     ('instance', 'block_device_mappings')),
    ('cell_mappings', {'uuid': 'c', 'name': 'cell1', 'database_connection': 'mysql+pymysql://n:S3cr3t@h/nova',
                       'transport_url': 'rabbit://n:S3cr3t@h:5672/'}, ('database_connection', 'transport_url')),
    ('console_auth_tokens', {'id': 1, 'token_hash': 'abc'}, ('token_hash',)),
])
def test_every_secret_column_is_redacted_and_nothing_else(table, row, secret_columns):
    redacted = redaction.redact_row(row, table)
    for column, value in row.items():
        if column in secret_columns:
            assert redacted[column] == redaction.stand_in(value), column
        else:
            assert redacted[column] == value, column


def test_metadata_that_is_not_a_password_stays_visible():
    row = {'id': 2, 'key': 'image_base_image_ref', 'value': 'cirros'}
    assert redaction.redact_row(row, 'instance_system_metadata') == row


def test_nested_structures_are_redacted_by_their_keys():
    snapshot = {'relations': [{'volume_id': 'v', 'connection_info': json.loads(CHAP),
                               'data': {'auth_password': 'S3cr3t', 'discovery_auth_password': 'D1sc',
                                        'encryption_secret_uuid': 'u-1', 'volume_id': 'v'}}]}
    text = json.dumps(redaction.redact(snapshot))
    assert 'S3cr3t' not in text and 'D1sc' not in text and 'S3cr3tCHAP' not in text
    assert '"encryption_secret_uuid": "u-1"' in text and '"volume_id": "v"' in text


def test_before_after_and_plan_parameters_show_stand_ins():
    change = RowChange('cinder_db', 'volume_attachment', {'id': 'a'}, before={'connection_info': CHAP},
                       after={'connection_info': None})
    deleted = RowChange('nova_db', 'instance_system_metadata', {'id': 7}, action=DELETE,
                        before={'id': 7, 'key': 'password_1', 'value': 'S3cr3t', 'deleted': 0})
    before, after, _hidden = describe_changes([change, deleted])
    text = json.dumps([before, after, StatementGroup([change]).describe()])
    assert 'S3cr3t' not in text
    assert before['cinder_db']['volume_attachment/a']['connection_info'] == redaction.stand_in(CHAP)
    assert before['nova_db']['instance_system_metadata/7']['key'] == 'password_1'
    restore = RowChange('cinder_db', 'volume_attachment', {'id': 'a'}, before={'connection_info': None},
                        after={'connection_info': CHAP})
    assert 'S3cr3t' not in json.dumps(StatementGroup([restore]).describe())
    # What the executor sends to the server is the value itself.
    assert StatementGroup([restore]).set_params([restore]) == [CHAP]


@pytest.mark.parametrize('url, password', [
    ('mysql+pymysql://nova:S3cr%40t@db/nova', 'S3cr@t'),
    ('mysql+pymysql://nova:S3cr/t@db/nova', 'S3cr/t'),          # unquoted /: urlsplit would cut it
    ('mysql+pymysql://nova:S3cr@t@db/nova', 'S3cr@t'),          # unquoted @
    ('mysql+pymysql://nova:S3cret@[::1/nova', 'S3cret'),        # unclosed bracket: urlsplit raises
    ('mysql+pymysql://nova:S3cret@db:port/nova', 'S3cret'),     # bad port
    ('nova:S3cret@db/nova', 'S3cret'),                          # no scheme
])
def test_url_passwords_are_found_without_parsing(url, password):
    forms = redaction.database_option_secrets(url)
    assert password in forms
    assert redaction.database_option_secrets({'url': url}) == forms


def test_only_credentials_of_the_connection_options_stay_masked():
    class Module(object):
        params = dict(cinder_db={'config_file': '/etc/cinder/cinder.conf', 'section': 'database'},
                      nova_api_db='mysql+pymysql://nova:Pw%2F1@db/nova_api', nova_db=None, placement_db=None,
                      cloud={'auth': {'username': 'admin', 'password': 'CloudPw', 'project_name': 'admin',
                                      'auth_url': 'http://keystone:5000/v3'}, 'region_name': 'RegionOne',
                             'api_timeout': 30})
        # As Ansible registers a no_log option: every leaf.
        no_log_values = {'/etc/cinder/cinder.conf', 'database', 'mysql+pymysql://nova:Pw%2F1@db/nova_api', 'admin',
                         'CloudPw', 'http://keystone:5000/v3', 'RegionOne', '30', 'unrelated-secret'}

    module = Module()
    redaction.register_option_secrets(module, ('cinder_db', 'nova_db', 'nova_api_db', 'placement_db'))
    assert {'CloudPw', 'Pw/1', 'Pw%2F1', 'unrelated-secret'} <= module.no_log_values
    assert not {'admin', 'database', 'RegionOne', '30', '/etc/cinder/cinder.conf'} & module.no_log_values


def test_a_url_that_fails_to_parse_is_not_echoed():
    from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
    with pytest.raises(InputError) as raised:
        db.parse_database_option('cinder_db', 'mysql+pymysql://cinder:Pa/ssWORD@db/cinder')
    assert 'ssWORD' not in raised.value.msg


def _journal(directory):
    return Journal(str(directory), 'stackmender.openstack.cinder_volume_state', {}, {})


def test_journal_directory_is_created_private_and_the_file_is_0600(tmp_path):
    old = os.umask(0o022)
    try:
        journal = _journal(tmp_path / 'new' / 'journal')
        journal.prepare_directory()
        journal.write('committed')
    finally:
        os.umask(old)
    assert os.stat(journal.directory).st_mode & 0o777 == 0o700
    assert os.stat(journal.path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize('mode', [0o770, 0o757, 0o1777])
def test_a_journal_dir_others_can_write_is_refused_before_writing(tmp_path, mode):
    directory = tmp_path / 'shared'
    directory.mkdir()
    os.chmod(str(directory), mode)
    journal = _journal(directory)
    with pytest.raises(InputError) as raised:
        journal.prepare_directory()
    assert 'can be written by its group or by others' in raised.value.msg and 'Nothing was written' in raised.value.msg
    assert os.listdir(str(directory)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give a directory to another user')
def test_a_journal_dir_of_another_user_is_refused(tmp_path):
    directory = tmp_path / 'theirs'
    directory.mkdir()
    os.chmod(str(directory), 0o700)
    os.chown(str(directory), 65534, 65534)
    with pytest.raises(InputError) as raised:
        _journal(directory).prepare_directory()
    assert 'belongs to uid 65534' in raised.value.msg
    assert os.listdir(str(directory)) == []
