"""Passwords never leave the module: not in results, diffs, journals, the
Ansible log (ANSIBLE_LOG_PATH) or -vvv output, in successful runs, failing
runs and guard refusals alike.

Every registry module runs under an account whose password is known (in the
URLs given and in the cell URLs nova_api's cell_mappings holds), with -vvv
and --diff; a second set of runs also passes a cloud dict with its own
known password.
"""

import os
import re
import secrets
import urllib.parse
import uuid

import pytest

from tests.security.dbusers import DatabaseUser
from tests.security.module_cases import CASE_IDS, CASES, CaseContext, LOGICAL_OPTIONS

# What these check is the modules' code, not the schema: the newest release is enough.
pytestmark = pytest.mark.newest_release


def forms(password):
    """Every form a password could leak in: raw, URL-quoted, and its random core."""
    core = re.search(r'[0-9a-f]{12}', password).group(0)
    return {password, urllib.parse.quote(password, safe=''), urllib.parse.quote(password), core}


def cloud_settings(password):
    # Nothing listens on port 9 of loopback: the API path fails to connect, after reading the password.
    return {'auth': {'auth_url': 'http://127.0.0.1:9/v3', 'username': 'admin', 'password': password,
                     'project_name': 'admin', 'user_domain_name': 'Default', 'project_domain_name': 'Default'},
            'region_name': 'RegionOne'}


def everything_written(result, journal_dir, log_path):
    """The text of a run as an operator, AWX or a log collector could see it."""
    texts = [repr(dict(result)), result.stdout, result.stderr]
    for path in (log_path,):
        if os.path.exists(path):
            with open(path, errors='replace') as stream:
                texts.append(stream.read())
    if os.path.isdir(journal_dir):
        for name in sorted(os.listdir(journal_dir)):
            with open(os.path.join(journal_dir, name), errors='replace') as stream:
                texts.append(stream.read())
    return '\n'.join(texts)


def runs_of(case, ctx, user, journal_dir, extra):
    """(what, args, check) of every run: check, apply, re-run, refusal, failures of several kinds."""
    scenario = case.build(ctx)
    refusal = case.refusal(ctx)

    def args(scenario_args, databases, **more):
        full = dict(scenario_args, journal_dir=journal_dir, **user.args(*databases))
        full.update(extra)
        full.update(more)
        return full

    first = LOGICAL_OPTIONS[scenario.databases[0]]
    runs = [('check', args(scenario.args, scenario.databases), True)]
    if case.api:
        # Before the apply, on the broken state: a module that asks the API only about what needs repair asks it.
        runs.append(('api path', args(case.arguments_for_api(scenario.args), scenario.databases), False))
    runs += [
        ('apply', args(scenario.args, scenario.databases), False),
        ('re-run', args(scenario.args, scenario.databases), False),
        ('guard refusal', args(refusal.args, refusal.databases), False),
        ('bad input', args(scenario.args, scenario.databases, **dict(
            (option, {'uuid_list': ['not-a-uuid'], 'host': 'no such host'}.get(kind, '/nonexistent/journal.json'))
            for option, kind in case.hostile_options.items() if kind in ('uuid_list', 'path', 'host'))), False),
        ('wrong password', args(scenario.args, scenario.databases, **{first: user.url(
            scenario.databases[0], password=user.password[::-1])}), False),
        ('server down', args(scenario.args, scenario.databases, **{first: user.url(scenario.databases[0]).replace(
            ':%d/' % user.server.port, ':9/')}), False),
    ]
    return runs


def _run_everything(case, cloud, dbs, ansible, journal_dir, tmp_path, extra, secrets_to_hide, inject=False):
    ctx = CaseContext(cloud, dbs, ansible, journal_dir)
    user = DatabaseUser(dbs)
    try:
        user.grant_all()
        user.point_cells_here()
        hidden = forms(user.password) | set().union(*(forms(secret) for secret in secrets_to_hide))
        outcomes = []
        for what, args, check in runs_of(case, ctx, user, journal_dir, extra):
            log_path = str(tmp_path / ('ansible-%s.log' % uuid.uuid4().hex[:8]))
            # INJECT_INVOCATION: the module arguments come back in the result, as before ansible-core 2.19.
            result = ansible(case.module, args, check=check, diff=True, verbosity=3,
                             env={'ANSIBLE_LOG_PATH': log_path, 'ANSIBLE_INJECT_INVOCATION': str(inject).lower()})
            assert 'invocation' in result or not inject, 'the arguments were not echoed: %r' % dict(result)
            outcomes.append((what, result.failed, result.get('msg', '')[:200]))
            text = everything_written(result, journal_dir, log_path)
            leaked = sorted(secret for secret in hidden if secret in text)
            assert not leaked, '%s of %s shows %s:\n%s' % (what, case.name, leaked, _around(text, leaked[0]))
    finally:
        user.drop()
    return dict((what, (failed, message)) for what, failed, message in outcomes)


def _around(text, secret):
    position = text.index(secret)
    return text[max(0, position - 300):position + 100]


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_passwords_never_appear(case, cloud, dbs, ansible, journal_dir, tmp_path):
    cloud_password = 'Cl#%s' % secrets.token_hex(6)
    outcomes = _run_everything(case, cloud, dbs, ansible, journal_dir, tmp_path,
                               {'cloud': cloud_settings(cloud_password)}, (cloud_password,))
    # The runs did what they are meant to, so the text checked is the text of each situation.
    assert not outcomes['check'][0] and not outcomes['apply'][0], outcomes
    for failing in ('guard refusal', 'bad input', 'wrong password', 'server down'):
        assert outcomes[failing][0], (failing, outcomes[failing])
    assert 'access denied' in outcomes['wrong password'][1]
    if case.api:
        # It fails connecting to the cloud, or refuses first where the API cannot express the change.
        failed, message = outcomes['api path']
        assert failed and ('connect' in message or 'cannot express' in message), outcomes['api path']
    assert os.listdir(journal_dir)


# Before ansible-core 2.19 (and with INJECT_INVOCATION, which AWX users set to see arguments) every
# result carries ``invocation.module_args``, masked only by the module's no_log values.

def test_echoed_arguments_hide_url_encoded_database_passwords(cloud, dbs, ansible, journal_dir, tmp_path):
    from tests.security.module_cases import case
    _run_everything(case('cinder_volume_state'), cloud, dbs, ansible, journal_dir, tmp_path, {}, (), inject=True)


def test_echoed_arguments_hide_the_cloud_password(cloud, dbs, ansible, journal_dir, tmp_path):
    from tests.security.module_cases import case
    plain = DatabaseUser(dbs, password='plain%s' % secrets.token_hex(6))
    try:
        plain.grant_all()
        cloud_password = 'Cl%s' % secrets.token_hex(6)
        ctx = CaseContext(cloud, dbs, ansible, journal_dir)
        scenario = case('cinder_volume_state').build(ctx)
        args = dict(scenario.args, journal_dir=journal_dir, cloud=cloud_settings(cloud_password),
                    **plain.args(*scenario.databases))
        result = ansible('cinder_volume_state', args, check=True, env={'ANSIBLE_INJECT_INVOCATION': 'true'})
        if 'invocation' not in result or plain.password in repr(dict(result)):
            pytest.fail('the scenario did not echo the arguments with the database password hidden: %r' % dict(result))
        assert cloud_password not in repr(dict(result)) + result.stdout
    finally:
        plain.drop()
