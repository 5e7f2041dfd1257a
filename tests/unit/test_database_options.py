"""Parsing of the *_db options: URLs and service config files."""

import os

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError


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


def test_cell_url_templates_resolve_from_the_api_url_when_it_is_a_url():
    api = db.parse_database_option('nova_api_db', 'mysql+pymysql://nova:pw@db1:3306/nova_api?charset=utf8')
    url = db.format_cell_url('{scheme}://{username}:{password}@{hostname}:{port}/nova_cell1?{query}', api)
    assert url == 'mysql+pymysql://nova:pw@db1:3306/nova_cell1?charset=utf8'
    assert db.format_cell_url('mysql://a@b/c', api) == 'mysql://a@b/c'


def test_cell_url_templates_resolve_from_database_connection_of_nova_conf(tmp_path):
    # Nova (CellMapping.format_db_url) fills templates from [database] connection, not [api_database].
    conf = tmp_path / 'nova.conf'
    conf.write_text('[api_database]\nconnection = mysql+pymysql://nova_api:apipw@api-db:3306/nova_api?charset=utf8\n'
                    '[database]\nconnection = mysql+pymysql://nova:cell%40pw@cell-db:3307/nova?charset=utf8mb4\n')
    api = db.parse_database_option('nova_api_db', str(conf))
    assert api.database == 'nova_api' and api.host == 'api-db'
    url = db.format_cell_url('{scheme}://{username}:{password}@{hostname}:{port}/{path}_cell1?{query}', api)
    # The password stays percent-encoded, as Nova puts it back into a URL.
    assert url == 'mysql+pymysql://nova:cell%40pw@cell-db:3307/nova_cell1?charset=utf8mb4'
    cell = db.parse_url('nova_api_db cell cell1', url)
    assert (cell.password, cell.port, cell.database) == ('cell@pw', 3307, 'nova_cell1')
    # The target of another database copies it (with_database keeps the source).
    assert db.format_cell_url('{hostname}', api.with_database('x')) == 'cell-db'


def test_cell_url_template_fallback_and_unfillable_fields(tmp_path):
    conf = tmp_path / 'nova.conf'
    conf.write_text('[api_database]\nconnection = mysql+pymysql://nova:pw@api-db/nova_api\n')
    api = db.parse_database_option('nova_api_db', {'config_file': str(conf)})
    assert 'is not set' in api.cell_template_source[1]
    assert db.format_cell_url('mysql+pymysql://{username}:{password}@{hostname}/c1', api) == \
        'mysql+pymysql://nova:pw@api-db/c1'
    # The URL has no port: Nova would write "None"; here it is a clear error without the password.
    with pytest.raises(InputError) as raised:
        db.format_cell_url('mysql+pymysql://{username}:{password}@{hostname}:{port}/c1', api)
    assert 'has no port' in raised.value.msg and 'pw' not in raised.value.msg.replace('api_database', '')
    with pytest.raises(InputError, match='Nova does not fill'):
        db.format_cell_url('mysql+pymysql://{user}@h/c1', api)


def test_a_string_without_scheme_is_the_config_file_as_the_docs_show(tmp_path):
    conf = tmp_path / 'cinder.conf'
    conf.write_text('[DEFAULT]\nconnection = mysql+pymysql://leak:leak@leak/leak\n'
                    '[database]\nconnection = "mysql+pymysql://cinder:s3cret@db.example.org/cinder?charset=utf8"\n')
    target = db.parse_database_option('cinder_db', str(conf))
    assert (target.user, target.password, target.host, target.database) == ('cinder', 's3cret', 'db.example.org', 'cinder')
    assert target.source == '%s [database]' % conf
    with pytest.raises(InputError) as raised:
        db.parse_database_option('cinder_db', str(tmp_path / 'absent.conf'))
    assert 'absent.conf is neither a database URL (no ://) nor an existing config file' in raised.value.msg
    # A mistyped URL is not echoed: it holds the password.
    with pytest.raises(InputError) as raised:
        db.parse_database_option('cinder_db', 'mysql+pymysql:/cinder:Hunter2@db/cinder')
    assert 'Hunter2' not in raised.value.msg and 'neither a database URL' in raised.value.msg


def test_config_file_list_and_config_dir_read_as_oslo_config(tmp_path):
    base = tmp_path / 'nova.conf'
    base.write_text('[DEFAULT]\nstate_path = /var/lib/nova\ndb = db0\n[database]\nconnection = mysql://nova:a@$db/nova\n'
                    '[api_database]\nconnection = mysql://nova:a@db0/nova_api\n')
    override = tmp_path / 'override.conf'
    override.write_text('[DEFAULT]\ndb = db1\n')
    confd = tmp_path / 'nova.conf.d'
    confd.mkdir()
    (confd / '10-db.conf').write_text('[database]\nconnection = mysql://nova:b@$db/nova_cell1\n')
    (confd / '20-db.conf').write_text("[api_database]\nconnection = 'mysql://nova:b@db2/nova_api'\n")
    (confd / 'ignored.txt').write_text('[database]\nconnection = mysql://x:x@x/x\n')
    target = db.parse_database_option('nova_db', {'config_file': [str(base), str(override)]})
    assert (target.host, target.database) == ('db1', 'nova')
    target = db.parse_database_option('nova_db', {'config_file': str(base), 'config_dir': str(confd)})
    assert (target.host, target.database, target.password) == ('db0', 'nova_cell1', 'b')
    api = db.parse_database_option('nova_api_db', {'config_file': [str(base)], 'config_dir': [str(confd)]})
    assert (api.host, api.database) == ('db2', 'nova_api')
    assert db.format_cell_url('{hostname}/{path}', api) == 'db0/nova_cell1'
    only_dir = db.parse_database_option('nova_api_db', {'config_dir': str(confd)})
    assert only_dir.database == 'nova_api'
    # Its [database] connection refers to an unset $db: an error only when a template needs it.
    assert db.format_cell_url('mysql://u@h/c', only_dir) == 'mysql://u@h/c'
    with pytest.raises(InputError, match=r'refers to \$db, which is not set'):
        db.format_cell_url('{hostname}', only_dir)


@pytest.mark.parametrize('value, message', [
    ({'config_dir': '/nonexistent/nova.conf.d'}, 'config directory /nonexistent/nova.conf.d does not exist'),
    ({'config_file': []}, 'give either url, or config_file'),
    ({'config_file': ['a', 3]}, 'config_file must be a path or a list of paths'),
    ({'config_file': 'x', 'url': 'mysql://u:p@h/d'}, 'give either url, or config_file'),
])
def test_config_option_shapes_are_checked(value, message):
    with pytest.raises(InputError) as raised:
        db.parse_database_option('nova_db', value)
    assert message in raised.value.msg


def test_config_file_errors_name_the_files_and_never_the_password(tmp_path):
    first = tmp_path / 'a.conf'
    first.write_text('[DEFAULT]\nconnection = mysql://u:Secret1@h/d\n[database]\npool = 1\n')
    second = tmp_path / 'b.conf'
    second.write_text('[database]\nmax_retries = 1\n')
    with pytest.raises(InputError) as raised:
        db.parse_database_option('cinder_db', {'config_file': [str(first), str(second)]})
    assert 'has no [database] connection' in raised.value.msg
    assert str(first) in raised.value.msg and str(second) in raised.value.msg and 'Secret1' not in raised.value.msg
    unreadable = tmp_path / 'c.conf'
    unreadable.write_text('[database]\nconnection = mysql://u:Secret1@h/d\n')
    unreadable.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(InputError, match='permission denied'):
            db.parse_database_option('cinder_db', str(unreadable))
    broken = tmp_path / 'd.conf'
    broken.write_text('[database]\nconnection = mysql://u:Secret1@h/d\n\n  Secret2\n')
    with pytest.raises(InputError) as raised:
        db.parse_database_option('cinder_db', str(broken))
    assert 'line 4' in raised.value.msg and 'Secret' not in raised.value.msg
