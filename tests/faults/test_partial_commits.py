"""Partial commits: a module that writes several databases commits them one after the
other, and its connection to one of them dies between two commits.

For every module whose plan writes more than one database, and for every point between
two of its commits, the connection of the next database is killed (KILL on the server,
while the module holds that COMMIT: see commit_pause/sitecustomize.py). Then, on one copy:
a re-run of the same task finishes the job, and on another: journal_undo brings back the
original. Both are proved by reading every table of every database involved with
independent SQL. The matrix is printed at the end of the run (see conftest.py).
"""

import json
import os
import time
import uuid

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import normalize_row

from tests.faults.helpers import Background
from tests.security.cases.nova_instance_delete import build_nova_instance_delete, build_nova_instance_purge
from tests.security.cases.nova_instance_host import build_nova_instance_host
from tests.security.cases.nova_task_state import build_nova_task_state
from tests.security.module_cases import CaseContext, build_nova_bdm_purge

pytestmark = pytest.mark.newest_release

HOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'commit_pause')
WAIT_LIMIT = 180


# ---------------------------------------------------------------- scenarios

def _extra_cell(ctx, name, instance):
    """A further cell database holding a copy of the instance and its BDMs, in cell_mappings."""
    dbs = ctx.dbs
    database = '%s_%s' % (dbs.prefix, name)
    dbs.execute('nova_api', 'CREATE DATABASE `%s`' % database)
    for table in ('instances', 'block_device_mapping'):
        dbs.execute('nova_api', 'CREATE TABLE `%s`.`%s` LIKE `%s`.`%s`' % (database, table, dbs.name('nova'), table))
        dbs.execute('nova_api', 'INSERT INTO `%s`.`%s` SELECT * FROM `%s`.`%s` WHERE `%s` = %%s'
                    % (database, table, dbs.name('nova'), table, 'uuid' if table == 'instances' else 'instance_uuid'),
                    (instance,))
    url = dbs.url('nova').replace('/%s?' % dbs.name('nova'), '/%s?' % database)
    dbs.execute('nova_api', 'INSERT INTO cell_mappings (created_at, uuid, name, transport_url, database_connection) '
                            'VALUES (NOW(), %s, %s, %s, %s)', (str(uuid.uuid4()), name, 'none:///', url))
    ctx.extra_databases.append(database)


def _bdm_purge_in_three_cells(ctx):
    scenario = build_nova_bdm_purge(ctx, count=2)
    # The harness cloud has cell2 already (empty of this instance): the copies are cell3 and cell4.
    for name in ('cell3', 'cell4'):
        _extra_cell(ctx, name, scenario.args['instance'][0])
    return scenario


# name: (builder, the database options its plan writes, in the order it commits them)
MODULES = {
    'nova_instance_host': (build_nova_instance_host, ['nova:cell1', 'placement_db', 'cinder_db']),
    'nova_task_state': (build_nova_task_state, ['nova:cell1', 'placement_db']),
    'nova_instance_delete': (build_nova_instance_delete, ['nova:cell1', 'nova_api_db', 'placement_db', 'cinder_db']),
    'nova_instance_delete:purge': (build_nova_instance_purge, ['nova:cell1', 'nova_api_db', 'placement_db']),
    'nova_bdm_purge:3cells': (_bdm_purge_in_three_cells, ['nova:cell1', 'nova:cell3', 'nova:cell4']),
}
# Each point between two commits: (module, number of the commit whose connection is killed).
KILL_POINTS = [(name, number) for name, (_build, written) in MODULES.items() for number in range(2, len(written) + 1)]


class Context(CaseContext):
    extra_databases = None


@pytest.fixture
def context(cloud, dbs, ansible, journal_dir):
    ctx = Context(cloud, dbs, ansible, journal_dir)
    ctx.extra_databases = []
    yield ctx
    for database in ctx.extra_databases:
        dbs.execute('nova_api', 'DROP DATABASE IF EXISTS `%s`' % database)


@pytest.fixture
def background():
    runner = Background()
    yield runner
    runner.close()


# ------------------------------------------------------- independent reads

def _sort(rows):
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


def database_state(ctx):
    """Every row of every table of every database of the test: {(database, table): rows}."""
    dbs = ctx.dbs
    databases = [dbs.name(logical) for logical in ('nova', 'nova_api', 'placement', 'cinder')] + ctx.extra_databases
    state = {}
    for database in databases:
        tables = dbs.query('nova_api', "SELECT table_name AS name FROM information_schema.tables "
                                       "WHERE table_schema = %s AND table_type = 'BASE TABLE'", (database,))
        for table in tables:
            rows = dbs.query('nova_api', 'SELECT * FROM `%s`.`%s`' % (database, table['name']))
            state[(database, table['name'])] = _sort(normalize_row(row) for row in rows)
    return state


def _physical(journal, option):
    return journal['databases'][option]['database']


def expected_complete(original, journal):
    """The original state with every entry of the journal written: what a run without a fault leaves.

    Returns (state, inserted): rows a plan inserts are matched by the columns it gave.
    """
    state = dict((place, [dict(row) for row in rows]) for place, rows in original.items())
    inserted = {}
    for entry in journal['entries']:
        place = (_physical(journal, entry['database']), entry['table'])
        column, value = next(iter(entry['key'].items()))
        rows = state[place]
        found = [index for index, row in enumerate(rows) if row.get(column) == value]
        if entry['action'] == 'insert':
            inserted.setdefault(place, []).append(entry['after'])
            continue
        assert len(found) == 1, 'journaled row %s %s=%s not found once in the original' % (place, column, value)
        if entry['action'] == 'update':
            rows[found[0]].update(entry['after'])
        else:
            del rows[found[0]]
    return dict((place, _sort(rows)) for place, rows in state.items()), inserted


def assert_state(now, expected, inserted=None):
    differing = []
    for place, rows in expected.items():
        live = list(now.get(place, []))
        for row in (inserted or {}).get(place, []):
            match = [candidate for candidate in live if all(candidate.get(column) == value
                                                            for column, value in row.items())]
            assert match, '%s: inserted row %r missing' % (place, row)
            live.remove(match[0])
        if _sort(live) != rows:
            differing.append(place)
    assert not differing, 'tables not as expected: %s' % differing
    assert set(now) == set(expected)


# ---------------------------------------------------------------- the fault

def run_with_killed_commit(ctx, background, module, args, number, where='before'):
    """Run ``module``, holding its commit number ``number``, KILL that connection, let it go on."""
    control = os.path.join(ctx.journal_dir + '-fault-%s' % uuid.uuid4().hex[:8])
    os.makedirs(control)
    env = dict(PYTHONPATH=os.pathsep.join(filter(None, [HOOK, os.environ.get('PYTHONPATH')])),
               STACKMENDER_FAULT_COMMIT='%d:%s:%s' % (number, where, control))
    run = background.start(ctx.ansible, module, args, env=env)
    paused = os.path.join(control, 'paused')
    deadline = time.monotonic() + WAIT_LIMIT
    while not os.path.exists(paused):
        if run.done():
            pytest.fail('the module ended before its commit %d: %r' % (number, dict(run.result())))
        assert time.monotonic() < deadline, 'the module never reached its commit %d' % number
        time.sleep(0.1)
    with open(paused) as stream:
        held = json.load(stream)
    ctx.dbs.execute('nova_api', 'KILL %s', (held['thread_id'],))
    open(os.path.join(control, 'go'), 'w').close()
    return run.result()


def module_args(ctx, scenario):
    return dict(scenario.args, journal_dir=ctx.journal_dir, **ctx.admin_args(*scenario.databases))


def partial_run(ctx, background, name, number, where='before'):
    """Build the scenario, plan it, kill commit ``number``; returns what the checks need."""
    build, written = MODULES[name]
    module = name.split(':')[0]
    scenario = build(ctx)
    args = module_args(ctx, scenario)
    original = database_state(ctx)
    checked = ctx.ansible(module, args, check=True)
    assert not checked.failed and checked.changed, checked
    planned = []
    for group in checked['plan']:
        if group['database'] not in planned:
            planned.append(group['database'])
    assert planned == written, 'the plan writes %s, the matrix expects %s' % (planned, written)

    failed = run_with_killed_commit(ctx, background, module, args, number, where)
    assert failed.failed and 'Traceback' not in failed['msg'], failed
    assert failed['journal_status'] == 'incomplete', failed
    journal = load_journal(failed['journal'])
    outcomes = dict((option, 'committed' if index < number - 1 else 'unknown' if index == number - 1
                     else 'rolled_back') for index, option in enumerate(written))
    assert journal['commits'] == outcomes
    assert failed['commits'] == outcomes
    # The message says what happened in each database.
    for option, outcome in outcomes.items():
        word = {'committed': 'committed', 'unknown': 'commit outcome unknown', 'rolled_back': 'rolled back'}[outcome]
        assert '%s: %s' % (option, word) in failed['msg'], failed['msg']
    assert 'Re-run this task to finish' in failed['msg'] and 'journal_undo' in failed['msg']
    labels = set((group['database'], group['table']) for group in checked['plan'])
    assert set((entry['database'], entry['table']) for entry in journal['entries']) == labels
    return scenario, module, args, original, journal, failed


@pytest.mark.parametrize('name,number', KILL_POINTS, ids=['%s-commit%d' % point for point in KILL_POINTS])
def test_rerun_after_a_killed_commit_finishes_the_job(name, number, context, background):
    scenario, module, args, original, journal, failed = partial_run(context, background, name, number)
    written = MODULES[name][1]
    between = database_state(context)
    # Between: the databases before the killed commit hold what the run wrote, the others the original.
    complete, inserted = expected_complete(original, journal)
    for place in set(original) | set(complete):
        committed = any(_physical(journal, option) == place[0] for option in written[:number - 1])
        if committed:
            assert between[place] == complete[place] or place in inserted, '%s should hold the run\'s writes' % (place,)
        else:
            assert between[place] == original[place], '%s should be untouched' % (place,)

    rerun = context.ansible(module, args)
    assert not rerun.failed and rerun.changed, rerun
    assert rerun['finishes_journal'] == failed['journal']
    assert failed['journal'] in rerun['msg']
    assert set(group['database'] for group in rerun['plan']) == set(written[number - 1:])
    assert_state(database_state(context), complete, inserted)
    if scenario.verify:
        scenario.verify()
    assert load_journal(failed['journal'])['finished_by'] == rerun['journal']

    again = context.ansible(module, args)
    assert not again.failed and not again.changed, again
    assert 'finishes_journal' not in again
    assert_state(database_state(context), complete, inserted)


@pytest.mark.parametrize('name,number', KILL_POINTS, ids=['%s-commit%d' % point for point in KILL_POINTS])
def test_undo_after_a_killed_commit_restores_the_original(name, number, context, background):
    scenario, module, args, original, journal, failed = partial_run(context, background, name, number)
    written = MODULES[name][1]
    undo_args = dict(context.admin_args(*scenario.databases), journal=failed['journal'],
                     journal_dir=context.journal_dir)
    undone = context.ansible('journal_undo', undo_args)
    assert not undone.failed and undone.changed, undone
    assert set(group['database'] for group in undone['plan']) == set(written[:number - 1])
    outcomes = undone['commit_outcomes']
    assert outcomes[written[number - 1]]['outcome'] == 'rolled_back'
    assert outcomes[written[number - 1]]['known_from'].startswith('asked the server')
    assert all(outcomes[option]['outcome'] == 'committed' for option in written[:number - 1])
    assert database_state(context) == original
    assert load_journal(failed['journal'])['undone_by'] == undone['journal']

    # The undone run is not finished by a later run of the task: that plans afresh.
    fresh = context.ansible(module, args, check=True)
    assert not fresh.failed and 'finishes_journal' not in fresh, fresh


# ------------------------------------------------ the outcome is really unknown

def test_commit_whose_answer_was_lost_is_found_committed_by_asking_the_server(context, background):
    """The COMMIT of placement reached the server, its answer did not: the journal says unknown, the rows say
    committed. The re-run writes only Cinder; the undo reverts Nova and Placement."""
    name, number = 'nova_instance_host', 2
    scenario, module, args, original, journal, failed = partial_run(context, background, name, number, 'after')
    complete, inserted = expected_complete(original, journal)
    undo_args = dict(context.admin_args(*scenario.databases), journal=failed['journal'],
                     journal_dir=context.journal_dir)
    checked_undo = context.ansible('journal_undo', undo_args, check=True)
    assert not checked_undo.failed, checked_undo
    assert checked_undo['commit_outcomes']['placement_db']['outcome'] == 'committed'
    assert set(group['database'] for group in checked_undo['plan']) == {'nova:cell1', 'placement_db'}

    rerun = context.ansible(module, args)
    assert not rerun.failed and rerun.changed, rerun
    assert set(group['database'] for group in rerun['plan']) == {'cinder_db'}
    assert 'placement_db: committed (asked the server' in ' '.join(rerun.get('notes', []))
    assert_state(database_state(context), complete, inserted)


def test_unknown_outcome_with_a_mix_of_rows_is_refused_by_rerun_and_undo(context, background):
    name, number = 'nova_task_state', 2
    scenario, module, args, original, journal, failed = partial_run(context, background, name, number)
    # Placement's commit was killed, so its rows hold their before-images; one of them now holds what
    # the run wrote, as if part of the transaction had landed.
    entry = [entry for entry in journal['entries'] if entry['database'] == 'placement_db'
             and entry['action'] == 'update'] or [entry for entry in journal['entries']
                                                  if entry['database'] == 'placement_db']
    entry = entry[0]
    table, (column, value) = entry['table'], next(iter(entry['key'].items()))
    if entry['action'] == 'update':
        assignments = ', '.join('`%s` = %%s' % column_name for column_name in entry['after'])
        context.dbs.execute('placement', 'UPDATE `%s` SET %s WHERE `%s` = %%s' % (table, assignments, column),
                            list(entry['after'].values()) + [value])
    else:
        context.dbs.execute('placement', 'DELETE FROM `%s` WHERE `%s` = %%s' % (table, column), (value,))
    mixed = database_state(context)

    rerun = context.ansible(module, dict(args, force=True, force_reason='test: force does not lift it'))
    assert rerun.failed and 'show neither outcome' in rerun['msg'], rerun
    assert rerun['guards'][0]['guard'] == 'commit_outcome_mixed'
    assert any(row['holds'] == 'what the run wrote' for row in rerun['guards'][0]['evidence'])
    undo_args = dict(context.admin_args(*scenario.databases), journal=failed['journal'],
                     journal_dir=context.journal_dir, force=True, force_reason='test: force does not lift it')
    undone = context.ansible('journal_undo', undo_args)
    assert undone.failed and undone['guards'][0]['guard'] == 'commit_outcome_mixed', undone
    assert database_state(context) == mixed


def test_rerun_refuses_when_a_row_left_to_write_changed_since(context, background):
    """Cinder rolled back (its commit was never reached); one of its rows changed since: finishing the run
    would write over it."""
    name, number = 'nova_instance_host', 2
    scenario, module, args, original, journal, failed = partial_run(context, background, name, number)
    attachment = [entry for entry in journal['entries'] if entry['database'] == 'cinder_db'][0]
    key = next(iter(attachment['key'].values()))
    context.dbs.execute('cinder', 'UPDATE volume_attachment SET attached_host = %s WHERE id = %s',
                        ('somewhere-else', key))
    changed = database_state(context)
    rerun = context.ansible(module, args)
    assert rerun.failed and 'changed since' in rerun['msg'], rerun
    guard = rerun['guards'][0]
    assert guard['guard'] == 'partial_run_changed_since'
    assert guard['evidence'][0]['row'] == 'volume_attachment/%s' % key
    assert guard['evidence'][0]['differences']['attached_host']['now'] == 'somewhere-else'
    assert database_state(context) == changed


def test_undo_with_force_never_writes_a_database_that_did_not_commit(context, background):
    """Cinder rolled back; one of its rows changed since. The old undo, forced, wrote the stale
    before-image over it: now that row is never touched, and only the committed cell is reverted."""
    name, number = 'nova_instance_host', 2
    scenario, module, args, original, journal, failed = partial_run(context, background, name, number)
    attachment = [entry for entry in journal['entries'] if entry['database'] == 'cinder_db'][0]
    key = next(iter(attachment['key'].values()))
    context.dbs.execute('cinder', 'UPDATE volume_attachment SET attached_host = %s WHERE id = %s',
                        ('changed-by-nova-since', key))
    expected = database_state(context)
    cell = _physical(journal, 'nova:cell1')
    for place in original:
        if place[0] == cell:
            expected[place] = original[place]
    undo_args = dict(context.admin_args(*scenario.databases), journal=failed['journal'],
                     journal_dir=context.journal_dir, force=True, force_reason='test: what force may reach')
    undone = context.ansible('journal_undo', undo_args)
    assert not undone.failed and undone.changed, undone
    assert set(group['database'] for group in undone['plan']) == {'nova:cell1'}
    assert undone['commit_outcomes']['cinder_db'] == dict(outcome='rolled_back', known_from='as the journal recorded')
    assert database_state(context) == expected
    assert context.dbs.query('cinder', 'SELECT attached_host FROM volume_attachment WHERE id = %s',
                             (key,))[0]['attached_host'] == 'changed-by-nova-since'
