"""Parsing of the *_db options: URLs and service config files."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.errors import InputError


def test_service_url_is_parsed_with_password_decoded():
    target = db.parse_database_option('cinder_db', 'mysql+pymysql://cinder:s%40cret@db.example.org:3307/cinder?charset=utf8')
    assert (target.host, target.port, target.user, target.password, target.database) == \
        ('db.example.org', 3307, 'cinder', 's@cret', 'cinder')
    assert 's@cret' not in target.display() and 'secret' not in target.display()
    assert target.display() == 'mysql://cinder@db.example.org:3307/cinder'


def test_tls_from_url_query():
    target = db.parse_url('nova_db', 'mysql+pymysql://n:p@h/nova?ssl_ca=/etc/ca.pem&ssl_cert=/c&ssl_key=/k')
    assert target.ssl == {'ca': '/etc/ca.pem', 'cert': '/c', 'key': '/k'}


@pytest.mark.parametrize('url, fragment', [
    ('postgresql://u:p@h/db', 'only MySQL/MariaDB'),
    ('mysql+pymysql://u:p@h/', 'names no database'),
    ('mysql+pymysql://u:p@h/bad;name', 'not a valid database name'),
    ('mysql+pymysql://u:p@h:notaport/db', 'invalid port'),
    ('   ', 'empty'),
])
def test_bad_urls_get_clear_errors(url, fragment):
    with pytest.raises(InputError) as raised:
        db.parse_database_option('cinder_db', url)
    assert fragment in raised.value.msg
    assert 'cinder_db' in raised.value.msg


def test_config_file_section_defaults_per_option(tmp_path):
    conf = tmp_path / 'nova.conf'
    conf.write_text('[DEFAULT]\nhost = x\n[database]\nconnection = mysql+pymysql://nova:pw@10.0.0.5/nova?charset=utf8\n'
                    '[api_database]\nconnection = mysql+pymysql://nova:pw@10.0.0.5/nova_api?charset=utf8\n')
    assert db.parse_database_option('nova_db', {'config_file': str(conf)}).database == 'nova'
    assert db.parse_database_option('nova_api_db', {'config_file': str(conf)}).database == 'nova_api'
    assert db.parse_database_option('nova_db', {'config_file': str(conf), 'section': 'api_database'}).database == 'nova_api'


def test_config_file_problems_are_named(tmp_path):
    with pytest.raises(InputError, match='does not exist'):
        db.parse_database_option('cinder_db', {'config_file': str(tmp_path / 'missing.conf')})
    conf = tmp_path / 'cinder.conf'
    conf.write_text('[DEFAULT]\nhost = x\n')
    with pytest.raises(InputError, match=r'has no \[database\] connection'):
        db.parse_database_option('cinder_db', {'config_file': str(conf)})


def test_dict_needs_exactly_one_source_and_known_keys():
    with pytest.raises(InputError, match='give either url, or config_file and/or config_dir'):
        db.parse_database_option('cinder_db', {})
    with pytest.raises(InputError, match='unknown keys password'):
        db.parse_database_option('cinder_db', {'url': 'mysql://u@h/d', 'password': 'x'})
    with pytest.raises(InputError, match='must be a URL string, a config file path or a dict'):
        db.parse_database_option('cinder_db', ['mysql://u@h/d'])


def test_error_descriptions_never_contain_the_password():
    target = db.parse_url('cinder_db', 'mysql+pymysql://cinder:hunter2@h/cinder')

    class FakeError(Exception):
        pass
    for code in (1045, 1049, 2003, 1205, 1213, 2013, 9999):
        text = db.describe_error(target, FakeError(code, 'Access denied for hunter2'))
        assert 'hunter2' not in text
        assert 'mysql://cinder@h:3306/cinder' in text


def test_cell_url_templates_resolve_from_the_api_database():
    api = db.parse_url('nova_api_db', 'mysql+pymysql://nova:pw@db1:3306/nova_api?charset=utf8')
    url = db.format_cell_url('{scheme}://{username}:{password}@{hostname}:{port}/nova_cell1?{query}', api)
    assert url == 'mysql+pymysql://nova:pw@db1:3306/nova_cell1?charset=utf8'
    assert db.format_cell_url('mysql://a@b/c', api) == 'mysql://a@b/c'
