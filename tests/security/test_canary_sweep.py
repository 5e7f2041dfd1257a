"""The canary sweep: nothing secret leaves the database except into the private journal.

Every secret-bearing column of the test databases holds a canary (see
canary.py), and so do the database password (so every cell URL of
cell_mappings), the cells' transport_url and the cloud password. Every module
of the registry (module_cases.CASES) then runs at -vvv with --diff and with
the arguments echoed (INJECT_INVOCATION): check mode, apply, a re-run, a
guard refusal, the same refusal forced, failures (bad input, a wrong password,
a server down, the API path against a cloud that does not answer), and
journal_undo of the apply, in check mode and applied. The audit runs with its
reports, the info modules beside it, and a journal_undo job runs through
ansible-runner as AWX runs it.

Each run's text is read channel by channel: the result, the diff, stdout,
stderr, the Ansible log, the reports, the runner's events and artifacts. The
column canary may appear only in the journals (0600 files in a 0700
directory); the credential canary nowhere at all. Run with ``-rP`` to see the
figures (modules x modes x channels, hits).
"""

import json
import os

import pytest

from tests.security.canary import Canaries, channels_of, private_journals
from tests.security.dbusers import DatabaseUser
from tests.security.module_cases import CASE_IDS, CASES, CaseContext, case, _journal_of
from tests.security.test_secrets import runs_of

# What these check is the modules' code, not the schema: the newest release is enough.
pytestmark = pytest.mark.newest_release

DATABASE_OPTIONS = ('cinder_db', 'nova_db', 'nova_api_db', 'placement_db')


class Sweep:
    """The runs of one test, their channels and the canaries found in them."""

    def __init__(self, canaries):
        self.canaries = canaries
        self.runs = []
        self.leaks = []
        self.channels = set()
        self.journal_canaries = 0

    def check(self, what, result, journal_dir=None, log_path=None, files=()):
        channels = channels_of(result, journal_dir, log_path, files)
        self.runs.append((what, result.failed, result.get('msg', '')[:160]))
        for channel, text in channels.items():
            self.channels.add(channel)
            for kind in self.canaries.hits(text, journal_allowed=(channel == 'journal')):
                self.leaks.append('%s: %s canary in %s: ...%s...' % (what, kind, channel, _around(text, self.canaries)))
        if self.canaries.column_core in channels.get('journal', ''):
            self.journal_canaries += 1
        if journal_dir:
            self.leaks.extend('%s: %s' % (what, problem) for problem in private_journals(journal_dir))

    def figures(self, title):
        modes = sorted(set(what for what, _failed, _msg in self.runs))
        lines = ['canary sweep %s: %d run(s) in %d mode(s) x %d channel(s) (%s); canary hits outside journals: %d; '
                 'runs after which the private journals hold the column canary: %d'
                 % (title, len(self.runs), len(modes), len(self.channels), ', '.join(sorted(self.channels)),
                    len(self.leaks), self.journal_canaries)]
        lines.extend('  %-16s %s %s' % (what, 'FAILED' if failed else 'ok    ', msg) for what, failed, msg in self.runs)
        print('\n'.join(lines))

    def assert_clean(self):
        assert not self.leaks, '\n'.join(self.leaks[:20])


def _around(text, canaries):
    for core in (canaries.credential_core, canaries.column_core):
        if core in text:
            position = text.index(core)
            return text[max(0, position - 200):position + 60].replace('\n', ' ')
    return ''


def _setup(cloud, dbs, ansible, journal_dir):
    canaries = Canaries()
    user = DatabaseUser(dbs, password=canaries.db_password)
    user.grant_all()
    user.point_cells_here()

    def plant():
        canaries.plant(dbs, cloud.has_column)

    return canaries, user, CaseContext(cloud, dbs, ansible, journal_dir, after_build=plant), plant


def _run(ansible, module, args, tmp_path, check=False):
    log_path = str(tmp_path / ('ansible-%s.log' % os.urandom(4).hex()))
    result = ansible(module, args, check=check, diff=True, verbosity=3,
                     env={'ANSIBLE_LOG_PATH': log_path, 'ANSIBLE_INJECT_INVOCATION': 'true'})
    return result, log_path


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_canaries_stay_in_the_database_and_the_journal(case, cloud, dbs, ansible, journal_dir, tmp_path):
    canaries, user, ctx, plant = _setup(cloud, dbs, ansible, journal_dir)
    sweep = Sweep(canaries)
    try:
        runs = []
        for what, args, check in runs_of(case, ctx, user, journal_dir, {'cloud': canaries.cloud()}):
            runs.append((what, args, check))
            if what == 'guard refusal':
                # force copies the guards' evidence into the result (forced_guards) and the journal.
                runs.append(('forced refusal', dict(args, force=True, force_reason='canary sweep'), False))
        plant()
        planted = (dbs.scalar('cinder', 'SELECT COUNT(*) FROM volumes WHERE provider_auth LIKE %s',
                              ('%' + canaries.column + '%',))
                   + dbs.scalar('nova', "SELECT COUNT(*) FROM instance_system_metadata WHERE `key` = 'password_0'"))
        assert planted, 'the canaries were not planted'
        applied = None
        for what, args, check in runs:
            if what == 'guard refusal':
                # Built again now: a refusal by a live service heartbeat must not age out during the runs before.
                refusal = case.refusal(ctx)
                plant()
                args = dict(args, **refusal.args)
                forced = dict(args, force=True, force_reason='canary sweep')
            elif what == 'forced refusal':
                args = forced
            result, log_path = _run(ansible, case.module, args, tmp_path, check=check)
            assert 'invocation' in result, 'the arguments were not echoed'
            sweep.check(what, result, journal_dir, log_path)
            if what == 'apply':
                applied = (args, result)
        args, result = applied
        assert not result.failed and result.get('journal'), result.get('msg')
        undo = dict((option, args[option]) for option in DATABASE_OPTIONS if option in args)
        undo.update(journal=result['journal'], journal_dir=journal_dir, cloud=canaries.cloud())
        for what, check in (('undo check', True), ('undo apply', False)):
            result, log_path = _run(ansible, 'journal_undo', undo, tmp_path, check=check)
            sweep.check(what, result, journal_dir, log_path)
            assert not result.failed, (what, result.get('msg'))
    finally:
        user.drop()
    sweep.figures(case.name)
    outcomes = dict((what, failed) for what, failed, _msg in sweep.runs)
    # Each mode did what it is meant to, so the text read is the text of that situation.
    assert not outcomes['check'] and not outcomes['apply'], sweep.runs
    for failing in ('guard refusal', 'bad input', 'wrong password', 'server down'):
        assert outcomes[failing], (failing, sweep.runs)
    sweep.assert_clean()


def test_audit_reports_and_info_modules_show_no_canary(cloud, dbs, ansible, journal_dir, tmp_path):
    canaries, user, ctx, plant = _setup(cloud, dbs, ansible, journal_dir)
    sweep = Sweep(canaries)
    try:
        # Findings with attachments, BDMs, snapshots and instances as evidence.
        case('cinder_volume_state').build(ctx)
        case('cinder_volume_state:retire').refusal(ctx)
        case('nova_bdm_purge').build(ctx)
        plant()
        everything = user.args('cinder', 'nova', 'nova_api', 'placement')
        markdown, html = str(tmp_path / 'audit.md'), str(tmp_path / 'audit.html')
        audit = dict(everything, report_markdown=markdown, report_html=html, return_markdown=True,
                     cloud=canaries.cloud())
        result, log_path = _run(ansible, 'consistency_info', audit, tmp_path)
        assert not result.failed and result['findings'], result.get('msg')
        assert os.path.exists(markdown) and os.path.exists(html)
        sweep.check('consistency_info', result, log_path=log_path, files=(markdown, html))
        result, log_path = _run(ansible, 'consistency_info', dict(everything, nova_db=dict(url='mysql+pymysql://'
                                'nova:%s@[::1/nova' % canaries.db_password)), tmp_path)
        assert result.failed, 'a malformed URL is refused'
        sweep.check('malformed url', result, log_path=log_path)
        state = dict(audit=dict(result_of(ansible, everything)), state_file=str(tmp_path / 'gate.json'))
        result, log_path = _run(ansible, 'remediation_gate', state, tmp_path)
        sweep.check('remediation_gate', result, log_path=log_path, files=(state['state_file'],))
        result, log_path = _run(ansible, 'attachment_snapshot_info', dict(cloud=canaries.cloud()), tmp_path)
        assert result.failed, 'nothing answers the cloud'
        sweep.check('attachment_snapshot_info', result, log_path=log_path)
    finally:
        user.drop()
    sweep.figures('of the audit and info modules')
    sweep.assert_clean()


def result_of(ansible, args):
    result = ansible('consistency_info', args)
    assert not result.failed, result.get('msg')
    return dict((key, value) for key, value in result.items() if key not in ('invocation', '_ansible_no_log'))


def test_an_awx_job_shows_no_canary(cloud, dbs, ansible, journal_dir, tmp_path):
    from tests.awx.test_runner import AwxJob, controller_objects, task_results, template
    canaries, user, ctx, plant = _setup(cloud, dbs, ansible, journal_dir)
    sweep = Sweep(canaries)
    try:
        # A purge whose journal holds whole BDM rows (connection_info with CHAP) to re-insert.
        journal, _scenario = _journal_of(ctx, case('nova_bdm_purge:purge'))
        with open(journal) as stream:
            assert canaries.column in stream.read(), 'the journal keeps whole rows'
        databases, = controller_objects('credential_types.yml')['controller_credential_types']
        inputs = dict(cinder_url=user.url('cinder'), nova_api_url=user.url('nova_api'))
        answers = {'journal_undo_journal': journal, 'journal_undo_journal_dir': journal_dir}
        for name in ('check', 'apply'):
            job = AwxJob(tmp_path / name, template('stackmender journal undo (%s)' % name), answers)
            job.custom_credential(databases, inputs)
            with open(os.path.join(job.root, 'env', 'cmdline')) as handle:
                cmdline = handle.read()
            with open(os.path.join(job.root, 'env', 'cmdline'), 'w') as handle:
                handle.write(cmdline + ' -vvv')
            runner = job.run()
            stdout = runner.stdout.read()
            assert (runner.status, runner.rc) == ('successful', 0), stdout[-3000:]
            result, = task_results(runner, 'Revert the journal')
            assert result['changed'] and result['diff'], result.get('msg')
            artifacts = []
            for directory, _dirs, names in os.walk(os.path.join(job.root, 'artifacts')):
                artifacts.extend(os.path.join(directory, name) for name in names)
            texts = {'runner stdout': stdout, 'runner events': json.dumps(list(runner.events), default=str)}
            for channel, text in texts.items():
                sweep.channels.add(channel)
                for kind in canaries.hits(text):
                    sweep.leaks.append('awx %s: %s canary in %s: ...%s...'
                                       % (name, kind, channel, _around(text, canaries)))
            for path in artifacts:
                sweep.channels.add('artifacts')
                with open(path, errors='replace') as stream:
                    text = stream.read()
                for kind in canaries.hits(text):
                    sweep.leaks.append('awx %s: %s canary in artifact %s'
                                       % (name, kind, os.path.relpath(path, job.root)))
            sweep.runs.append(('awx %s' % name, False, result.get('msg', '')[:160]))
        for problem in private_journals(journal_dir):
            sweep.leaks.append(problem)
    finally:
        user.drop()
    sweep.figures('of an AWX journal_undo job (ansible-runner)')
    sweep.assert_clean()


def test_the_sweep_reads_the_channels_it_names():
    """The sweep's own check: a canary in any channel but the journal is found."""
    canaries = Canaries()

    class Result(dict):
        stdout = 'x %s' % canaries.column
        stderr = ''
        failed = False

    sweep = Sweep(canaries)
    sweep.check('self-test', Result(msg='ok', diff={'after': canaries.cloud_password}))
    found = sorted(leak.split(' ...')[0] for leak in sweep.leaks)
    assert found == ['self-test: column canary in stdout:', 'self-test: credential canary in diff:'], sweep.leaks
