"""Hostile input: every option validator answers with an InputError naming
the option, never with another exception, and nothing is written.

Property tests (hypothesis) drive the validators directly with SQL
metacharacters, NUL bytes, unicode, empty strings, huge lists and values of
the wrong type; end-to-end runs through Ansible show a handful of them
failing cleanly for every module of the registry.
"""

import re
import string
import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import common_argument_spec
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import canonical_uuid, uuid_list
from ansible_collections.stackmender.openstack.plugins.modules.cinder_volume_state import CinderVolumeState
from ansible_collections.stackmender.openstack.plugins.modules.nova_bdm_purge import NovaBdmPurge
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from tests.integration.helpers import snapshot
from tests.security.module_cases import CASE_IDS, CASES, CaseContext

# What these check is the modules' code, not the schema: the newest release is enough.
pytestmark = pytest.mark.newest_release

CANONICAL = r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
SQL_SNIPPETS = ["'", '"', '`', ';', '--', '/*', '*/', '#', '%s', '%(x)s', '\\', "' OR '1'='1", '); DROP TABLE volumes; --',
                'UNION SELECT password FROM mysql.user', '\x00', '\n', '\r\n', '\t', '\u2028', '\ufeff', '\U0001f4a5']

# Text as an operator, a template engine or an attacker might send it.
hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec='utf-8')),
    st.lists(st.sampled_from(SQL_SNIPPETS + list(string.hexdigits) + ['-']), max_size=40).map(''.join),
    st.uuids().map(str).flatmap(lambda text: st.sampled_from([text, text.upper(), text + "'", "'" + text,
                                                              text + '\x00', text.replace('-', ';'), ' %s ' % text])),
)
wrong_types = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.booleans(), st.binary(max_size=20),
                        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                                             max_size=3))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_input_error(error, option):
    assert isinstance(error, InputError), 'unexpected %s: %s' % (error.__class__.__name__, error)
    assert option in error.msg, error.msg


# --------------------------------------------------------------------------
# validation.canonical_uuid / uuid_list


@FAST
@given(value=st.one_of(hostile_text, wrong_types))
@example(value='6B1A2F0E3C554C1E9A530D4C1F0B8A11')
@example(value='x' * 100000)
def test_canonical_uuid_answers_a_uuid_or_an_input_error_naming_the_option(value):
    try:
        result = canonical_uuid(value, 'volume')
    except Exception as error:  # noqa: BLE001 - the property is about every exception
        assert_input_error(error, 'volume')
        assert len(error.msg) < 300, 'the message carries the whole hostile value'
        return
    assert re.match(CANONICAL, result)
    assert result.replace('-', '') == value.strip().lower().replace('-', '')


@FAST
@given(values=st.one_of(st.lists(st.one_of(hostile_text, st.uuids().map(str)), max_size=30), hostile_text,
                        st.lists(wrong_types, max_size=3)))
def test_uuid_list_answers_distinct_uuids_or_an_input_error(values):
    try:
        result = uuid_list(values, 'instance')
    except Exception as error:  # noqa: BLE001
        assert_input_error(error, 'instance')
        return
    assert len(result) == len(set(result))
    assert all(re.match(CANONICAL, value) for value in result)
    assert result or values is None


def test_huge_uuid_lists_are_handled_in_full():
    ids = [str(uuid.uuid4()) for _number in range(5000)]
    assert uuid_list(ids + ids[:10], 'volume') == ids
    with pytest.raises(InputError) as raised:
        uuid_list(ids + ["'; DROP TABLE volumes; --"], 'volume')
    assert raised.value.msg.startswith('volume:') and 'DROP TABLE' in raised.value.msg
    with pytest.raises(InputError, match='volume: the list is empty'):
        uuid_list([], 'volume')


# --------------------------------------------------------------------------
# database.parse_database_option and URL parsing


url_part = st.one_of(st.text(max_size=20), st.sampled_from(SQL_SNIPPETS), st.just(''))
urls = st.one_of(
    hostile_text,
    st.builds(lambda scheme, user, password, host, port, name, query: '%s://%s:%s@%s%s/%s%s' % (
        scheme, user, password, host, port, name, query),
        st.sampled_from(['mysql+pymysql', 'mysql', 'mariadb', 'postgresql', '', 'MYSQL']), url_part, url_part,
        st.one_of(url_part, st.sampled_from(['127.0.0.1', 'db.example.org', '[::1]', 'ü' * 70])),
        st.one_of(st.just(''), st.integers(-5, 70000).map(lambda port: ':%d' % port), url_part.map(lambda p: ':' + p)),
        url_part, st.one_of(st.just(''), url_part.map(lambda q: '?' + q))),
)
option_dicts = st.dictionaries(
    st.one_of(st.sampled_from(list(db.DATABASE_OPTION_KEYS)), st.text(max_size=8)),
    st.one_of(urls, st.just('/nonexistent/cinder.conf'), st.text(max_size=10)), max_size=4)


@FAST
@given(value=st.one_of(urls, option_dicts, wrong_types))
@example(value='mysql+pymysql://cinder:secret@db/cinder;DROP')
@example(value={'url': 'mysql://u:p@h/d', 'password': "x'; --"})
@example(value={'config_file': 'a\x00b'})
def test_database_options_parse_or_fail_naming_the_option(value):
    try:
        target = db.parse_database_option('cinder_db', value)
    except Exception as error:  # noqa: BLE001
        assert_input_error(error, 'cinder_db')
        return
    if target is None:
        assert value in (None, '')
        return
    assert re.match(r'^[A-Za-z0-9_$-]{1,64}$', target.database)
    assert 0 < target.port < 65536
    if target.password:
        assert target.password not in target.display()


@FAST
@given(password=st.text(alphabet=string.ascii_letters + string.digits + '#@:/?%', min_size=8, max_size=20)
       .map(lambda text: 'PW' + text))
def test_url_errors_never_show_the_password(password):
    from urllib.parse import quote
    for url in ('mysql+pymysql://cinder:%s@db/' % quote(password, safe=''),
                'mysql+pymysql://cinder:%s@db:99999/cinder' % quote(password, safe=''),
                'mysql+pymysql://cinder:%s@db/bad;name' % quote(password, safe=''),
                'postgresql://cinder:%s@db/cinder' % quote(password, safe='')):
        with pytest.raises(InputError) as raised:
            db.parse_database_option('cinder_db', url)
        assert password not in raised.value.msg and quote(password, safe='') not in raised.value.msg


def test_unclosed_ipv6_bracket_is_an_input_error():
    with pytest.raises(InputError, match='cinder_db'):
        db.parse_database_option('cinder_db', 'mysql+pymysql://cinder:pw@[::1/cinder')


def test_tls_file_of_the_wrong_type_is_an_input_error():
    with pytest.raises(InputError, match='cinder_db'):
        db.parse_database_option('cinder_db', {'url': 'mysql://u:p@h/cinder', 'ca_cert': ['/etc/ca.pem']})


# --------------------------------------------------------------------------
# Module validators (validate() runs before any connection)


def module_with(module_class, **params):
    """A module object with Ansible's defaults plus ``params``, without AnsibleModule (pure validation)."""
    spec = common_argument_spec()
    spec.update(module_class.argument_spec)
    module = object.__new__(module_class)
    module.params = dict((name, option.get('default')) for name, option in spec.items())
    module.params.update(params)
    return module


@FAST
@given(volume=st.one_of(st.lists(st.one_of(hostile_text, st.uuids().map(str)), max_size=10), hostile_text),
       status=st.one_of(st.none(), st.sampled_from(cinder.VOLUME_STATUSES)),
       attach_status=st.one_of(st.none(), st.sampled_from(cinder.ATTACH_STATUSES)),
       migration_status=st.one_of(st.none(), st.sampled_from(cinder.MIGRATION_STATUSES)),
       from_status=st.one_of(st.none(),
                             st.lists(st.one_of(hostile_text, st.sampled_from(cinder.VOLUME_STATUSES)), max_size=5)))
def test_cinder_volume_state_validation(volume, status, attach_status, migration_status, from_status):
    module = module_with(CinderVolumeState, volume=volume, status=status, attach_status=attach_status,
                         migration_status=migration_status, from_status=from_status)
    try:
        module.validate()
    except Exception as error:  # noqa: BLE001
        assert isinstance(error, InputError), repr(error)
        assert any(option in error.msg for option in ('volume', 'status', 'from_status', 'attach_status')), error.msg
        return
    assert module.volume_ids and all(re.match(CANONICAL, value) for value in module.volume_ids)
    assert status not in cinder.TRANSITIONAL_STATUSES
    assert all(value in cinder.VOLUME_STATUSES for value in from_status or [])


@FAST
@given(instance=st.one_of(st.none(), st.lists(st.one_of(hostile_text, st.uuids().map(str)), max_size=10)),
       volume=st.one_of(st.none(), st.lists(st.one_of(hostile_text, st.uuids().map(str)), max_size=10), hostile_text))
def test_nova_bdm_purge_selectors(instance, volume):
    module = module_with(NovaBdmPurge, instance=instance, volume=volume)
    try:
        module.validate()
    except Exception as error:  # noqa: BLE001
        assert isinstance(error, InputError), repr(error)
        assert 'instance' in error.msg or 'volume' in error.msg, error.msg
        return
    assert module.instance_ids or module.volume_ids


# --------------------------------------------------------------------------
# End to end through Ansible: a clean failure, nothing written

HOSTILE_IDS = ["'; DROP TABLE volumes; --", 'a\x00b', '', 'ünïcødé-☃-6b1a2f0e', '6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a1g']
# A one-letter password would be masked wherever that letter appears (the option's name included):
# these passwords appear nowhere else in a message.
HOSTILE_URLS = ["mysql+pymysql://u:hostile7@h/cinder'; DROP DATABASE x; --", 'mysql+pymysql://u:hostile7@h:99999/cinder',
                'postgresql://u:hostile7@h/cinder', 'mysql+pymysql://u:hostile7@a\x00b/cinder']


def _hostile_values(kind, scenario_value):
    if kind == 'uuid_list':
        huge = [str(uuid.uuid4()) for _number in range(2500)] + ["' OR 1=1 --"]
        return [[value] for value in HOSTILE_IDS[:4]] + [huge, list(scenario_value or []) + ['%s']]
    if kind == 'choice_list':
        return [["detaching'; --"], ['\x00'], ['']]
    if kind == 'host':
        # Host names are matched byte for byte, so only what cannot be a host is refused.
        return ["x'; DROP TABLE volumes; --", 'a\x00b', '', 'h' * 256, 'a@b@c', 'a#p@b']
    if kind == 'path':
        return ["/nonexistent/'; DROP TABLE volumes; --.json", 'journal\x00.json', '']
    return ["INC-1'; DROP TABLE volumes; -- \x00 ☃ %s %(x)s"]


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_hostile_values_fail_cleanly_through_ansible(case, cloud, dbs, ansible, journal_dir):
    ctx = CaseContext(cloud, dbs, ansible, journal_dir)
    scenario = case.build(ctx)
    before = snapshot(dbs, scenario.tables)
    base = dict(scenario.args, journal_dir=journal_dir, **ctx.admin_args(*scenario.databases))

    def run(module, args, check=False):
        # tests/ansible_run.py sets ANSIBLE_NO_TARGET_SYSLOG: without it Ansible itself fails a task whose
        # arguments hold a NUL byte (it cannot syslog them), and the value would never reach the module.
        return ctx.ansible(module, args, check=check)

    for option, kind in sorted(case.hostile_options.items()):
        for value in _hostile_values(kind, scenario.args.get(option)):
            if kind == 'free_text':
                # Free text is stored, never interpreted: check mode with it works and writes nothing.
                result = run(case.module, dict(base, force=True, force_reason=value), check=True)
                assert not result.failed, result
                continue
            result = run(case.module, dict(base, **{option: value}))
            assert result.failed, 'hostile %s=%r was accepted: %r' % (option, value, dict(result))
            message = result['msg']
            assert 'Traceback' not in message and 'MODULE FAILURE' not in message, message
            assert option in message or (kind == 'path' and 'journal' in message), message
            assert snapshot(dbs, scenario.tables) == before
    database_option = {'cinder': 'cinder_db', 'nova_api': 'nova_api_db'}[scenario.databases[0]]
    # Every module parses its database options with the same code: once per module is enough.
    first_of_module = [entry.name for entry in CASES if entry.module == case.module][0] == case.name
    for url in HOSTILE_URLS if first_of_module else ():
        result = run(case.module, dict(base, **{database_option: url}))
        assert result.failed and 'Traceback' not in result['msg'] and 'MODULE FAILURE' not in result['msg'], result
        assert database_option in result['msg'] or 'mysql://u@' in result['msg'], result['msg']
        assert 'hostile7' not in result['msg'], result['msg']
    assert snapshot(dbs, scenario.tables) == before


def test_unencodable_host_name_fails_cleanly(ansible, journal_dir):
    result = ansible('cinder_volume_state', dict(cinder_db='mysql+pymysql://u:p@%s/cinder' % ('ü' * 70),
                                                 volume=str(uuid.uuid4()), status='available', method='db',
                                                 journal_dir=journal_dir))
    assert result.failed and 'MODULE FAILURE' not in result['msg'] and 'cinder_db' in result['msg'], result['msg']
