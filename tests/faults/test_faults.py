"""Faults during a run: killed connections, a concurrent writer holding the
locks, two runs of the same change at once, a stopped server, a Galera node
outside the Primary component.

Every case ends with the data either unchanged or exactly as the successful
run planned, never in between, proved with independent SQL snapshots.
"""

import json
import os
import uuid

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.faults.helpers import (
    Background,
    RowLock,
    assert_exactly_as_planned,
    journals,
    kill,
    lock_waiters,
    wait_until,
)
from tests.harness import builder, dbset, mariadb
from tests.integration.helpers import assert_clean_failure, snapshot
from tests.security.cases.cinder_service_rehost import build_cinder_service_rehost
from tests.security.dbusers import DatabaseUser
from tests.security.module_cases import (
    CaseContext,
    build_cinder_volume_state,
    build_nova_bdm_purge,
)

# What these check is the modules' code, not the schema: the newest release is enough.
pytestmark = pytest.mark.newest_release

KILLED = 'was lost or killed mid-transaction'
GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so'  # Debian's galera-4


@pytest.fixture
def module_user(dbs):
    """The account the module runs as, so its connections can be found in the processlist."""
    user = DatabaseUser(dbs)
    user.grant_all()
    user.point_cells_here()
    yield user
    user.drop()


@pytest.fixture
def background():
    runner = Background()
    yield runner
    runner.close()


@pytest.fixture
def context(cloud, dbs, ansible, journal_dir):
    return CaseContext(cloud, dbs, ansible, journal_dir)


def module_args(user, scenario, journal_dir, **extra):
    return dict(scenario.args, journal_dir=journal_dir, **user.args(*scenario.databases), **extra)


def live_journals(journal_dir):
    return [document for document in journals(journal_dir) if document['status'] in ('pending', 'committed')]


# --------------------------------------------------------------------------
# The module's connection is killed while it is inside its transaction


@pytest.mark.parametrize('statement', ['KILL', 'KILL QUERY'])
def test_connection_killed_mid_transaction_leaves_nothing_half_applied(
        statement, context, module_user, background, dbs, ansible, journal_dir):
    scenario = build_cinder_volume_state(context, count=6)
    volumes = scenario.args['volume']
    last_worker = dbs.query('cinder', 'SELECT id FROM workers WHERE resource_id = %s', (volumes[-1],))[0]['id']
    original = snapshot(dbs, scenario.tables)
    # The plan writes the volumes one after the other; the last one's worker row is
    # locked, so the module has already updated five volumes when it blocks.
    lock = RowLock(dbs.server, dbs.name('cinder'), 'SELECT id FROM workers WHERE id = %s FOR UPDATE', (last_worker,))
    try:
        run = background.start(ansible, 'cinder_volume_state',
                               module_args(module_user, scenario, journal_dir, lock_timeout=600))
        waiter = wait_until(lambda: lock_waiters(dbs, module_user.name), 'the worker row lock', run=run,
                            describe=module_user.processlist)[0]
        assert 'workers' in waiter['info'] and 'FOR UPDATE' in waiter['info']
        kill(dbs, waiter['id'], statement)
        result = run.result()
    finally:
        lock.release()

    assert_clean_failure(result, 'mysql://%s@' % module_user.name)
    assert KILLED in result['msg'] or 'interrupted' in result['msg'], result['msg']
    assert snapshot(dbs, scenario.tables) == original, 'a killed transaction left changes behind'
    # The journal is written only once every statement succeeded: nothing to record, nothing pending.
    assert live_journals(journal_dir) == []
    assert module_user.processlist() == []

    again = ansible('cinder_volume_state', module_args(module_user, scenario, journal_dir))
    assert not again.failed and again.changed, again
    assert_exactly_as_planned(dbs, original, again)


def _add_cell(dbs, user, name, copy_instances):
    """A further cell database with the tables the BDM module reads, holding copies of cell1's rows."""
    database = '%s_%s' % (dbs.prefix, name)
    dbs.execute('nova_api', 'CREATE DATABASE `%s`' % database)
    dbs.execute('nova_api', 'GRANT ALL ON `%s`.* TO %%s@%%s' % database, (user.name, '%'))
    for table in ('instances', 'block_device_mapping'):
        dbs.execute('nova_api', 'CREATE TABLE `%s`.`%s` LIKE `%s`.`%s`' % (database, table, dbs.name('nova'), table))
        dbs.execute('nova_api', 'INSERT INTO `%s`.`%s` SELECT * FROM `%s`.`%s` WHERE %s IN (%s)'
                    % (database, table, dbs.name('nova'), table, 'uuid' if table == 'instances' else 'instance_uuid',
                       ', '.join(['%s'] * len(copy_instances))), copy_instances)
    url = user.url('nova').replace('/%s?' % dbs.name('nova'), '/%s?' % database)
    dbs.execute('nova_api', 'INSERT INTO cell_mappings (created_at, uuid, name, transport_url, database_connection) '
                            'VALUES (NOW(), %s, %s, %s, %s)', (str(uuid.uuid4()), name, 'none:///', url))
    return database


@pytest.fixture
def extra_cells(dbs):
    created = []
    yield created
    for database in created:
        dbs.execute('nova_api', 'DROP DATABASE IF EXISTS `%s`' % database)


def test_cell_connection_killed_between_writes_and_commits_is_journaled_incomplete_and_undone(
        context, module_user, background, extra_cells, dbs, ansible, journal_dir):
    """nova_bdm_purge writes three cells; cell3's connection dies while cell4 waits for a lock.

    Commits go cell by cell, so cell1 commits and cell3's commit fails: the only
    "in between" a multi-database plan can reach. The journal says so
    (incomplete, cell1 committed) and journal_undo brings cell1 back.
    """
    scenario = build_nova_bdm_purge(context, count=2)
    instance = scenario.args['instance'][0]
    cell3 = _add_cell(dbs, module_user, 'cell3', [instance])
    cell4 = _add_cell(dbs, module_user, 'cell4', [instance])
    extra_cells.extend([cell3, cell4])

    def cell_rows():
        return dict((database, dbs.query('nova_api', 'SELECT id, deleted, deleted_at FROM `%s`.block_device_mapping '
                                                     'WHERE instance_uuid = %%s ORDER BY id' % database, (instance,)))
                    for database in (dbs.name('nova'), cell3, cell4))

    original_cells = cell_rows()
    original = snapshot(dbs, scenario.tables)
    stale = [row['id'] for row in dbs.query('nova', 'SELECT id FROM block_device_mapping WHERE instance_uuid = %s '
                                                    'AND volume_id IS NOT NULL ORDER BY id', (instance,))]
    lock = RowLock(dbs.server, cell4, 'SELECT id FROM block_device_mapping WHERE id = %s FOR UPDATE', (stale[-1],))
    try:
        run = background.start(ansible, 'nova_bdm_purge', module_args(module_user, scenario, journal_dir, lock_timeout=600))
        wait_until(lambda: [row for row in lock_waiters(dbs, module_user.name) if row['db'] == cell4],
                   'the cell4 lock', run=run)
        idle = [row for row in module_user.processlist() if row['db'] == cell3]
        assert len(idle) == 1, idle
        kill(dbs, idle[0]['id'])
    finally:
        lock.release()
    result = run.result()

    assert result.failed and 'Traceback' not in result['msg'], result
    assert cell3 in result['msg'] and KILLED in result['msg'], result['msg']
    assert result['journal_status'] == 'incomplete'
    journal = load_journal(result['journal'])
    assert journal['status'] == 'incomplete'
    assert journal['commits'] == {'nova:cell1': 'committed', 'nova:cell3': 'unknown', 'nova:cell4': 'rolled_back'}
    now = cell_rows()
    assert now[cell3] == original_cells[cell3] and now[cell4] == original_cells[cell4]
    assert all(row['deleted'] == row['id'] for row in now[dbs.name('nova')] if row['id'] in stale)

    undo_args = dict(module_user.args('nova_api'), journal=result['journal'], journal_dir=journal_dir)
    undone = ansible('journal_undo', undo_args)
    assert not undone.failed and undone.changed, undone
    assert any('incomplete' in warning for warning in undone['warnings'])
    assert cell_rows() == original_cells
    assert snapshot(dbs, scenario.tables) == original


def test_partial_commit_message_tells_the_operator_to_undo(
        context, module_user, background, extra_cells, dbs, ansible, journal_dir):
    scenario = build_nova_bdm_purge(context, count=1)
    instance = scenario.args['instance'][0]
    cell3 = _add_cell(dbs, module_user, 'cell3', [instance])
    cell4 = _add_cell(dbs, module_user, 'cell4', [instance])
    extra_cells.extend([cell3, cell4])
    bdm = dbs.query('nova', 'SELECT id FROM block_device_mapping WHERE volume_id IS NOT NULL')[0]['id']
    lock = RowLock(dbs.server, cell4, 'SELECT id FROM block_device_mapping WHERE id = %s FOR UPDATE', (bdm,))
    try:
        run = background.start(ansible, 'nova_bdm_purge', module_args(module_user, scenario, journal_dir, lock_timeout=600))
        wait_until(lambda: lock_waiters(dbs, module_user.name), 'the cell4 lock', run=run,
                   describe=module_user.processlist)
        kill(dbs, [row for row in module_user.processlist() if row['db'] == cell3][0]['id'])
    finally:
        lock.release()
    result = run.result()
    if result.get('journal_status') != 'incomplete':
        pytest.fail('the scenario did not produce a partial commit: %r' % dict(result))
    assert 'nova:cell1' in result['msg'] and 'journal_undo' in result['msg'], result['msg']
    # Each database's outcome, the unknown one apart from the ones that rolled back.
    assert 'nova:cell1: committed; nova:cell3: commit outcome unknown; nova:cell4: rolled back' in result['msg']
    assert 'Re-run this task to finish: it finds journal %s' % result['journal'] in result['msg']


def test_killed_read_only_connection_does_not_stop_the_write(
        context, module_user, background, dbs, ansible, journal_dir):
    """cinder_volume_state writes cinder and only reads Nova: losing the Nova connection after planning is harmless."""
    scenario = build_cinder_volume_state(context, count=3)
    original = snapshot(dbs, scenario.tables)
    first = dbs.query('cinder', 'SELECT id FROM volumes WHERE id = %s', (scenario.args['volume'][0],))[0]['id']
    lock = RowLock(dbs.server, dbs.name('cinder'), 'SELECT id FROM volumes WHERE id = %s FOR UPDATE', (first,))
    try:
        run = background.start(ansible, 'cinder_volume_state',
                               module_args(module_user, scenario, journal_dir, lock_timeout=600))
        wait_until(lambda: lock_waiters(dbs, module_user.name), 'the volume lock', run=run,
                   describe=module_user.processlist)
        readers = [row for row in module_user.processlist() if row['db'] == dbs.name('nova')]
        assert readers, module_user.processlist()
        for reader in readers:
            kill(dbs, reader['id'])
    finally:
        lock.release()
    result = run.result()
    assert not result.failed and result.changed, result
    assert_exactly_as_planned(dbs, original, result)
    assert [document['status'] for document in journals(journal_dir)] == ['committed']


# --------------------------------------------------------------------------
# A concurrent writer holds the locks


def test_lock_held_by_another_writer_times_out_cleanly_then_applies_once(
        context, module_user, dbs, ansible, journal_dir):
    scenario = build_cinder_volume_state(context, count=3)
    original = snapshot(dbs, scenario.tables)
    args = module_args(module_user, scenario, journal_dir, lock_timeout=2)
    lock = RowLock(dbs.server, dbs.name('cinder'), 'SELECT id FROM volumes WHERE id IN (%s) FOR UPDATE'
                   % ', '.join(['%s'] * 3), scenario.args['volume'])
    try:
        # The run returns while the lock is still held: the wait was bounded by lock_timeout.
        refused = ansible('cinder_volume_state', args)
        still_held = lock.connection is not None and lock.connection.open
    finally:
        lock.release()
    assert still_held
    assert_clean_failure(refused, 'locked by another transaction; gave up after lock_timeout')
    assert 'Nothing was changed' in refused['msg']
    assert snapshot(dbs, scenario.tables) == original
    assert live_journals(journal_dir) == []

    applied = ansible('cinder_volume_state', args)
    assert not applied.failed and applied.changed, applied
    assert_exactly_as_planned(dbs, original, applied)
    again = ansible('cinder_volume_state', args)
    assert not again.failed and not again.changed
    assert_exactly_as_planned(dbs, original, applied)
    assert [document['status'] for document in journals(journal_dir)] == ['committed']


# --------------------------------------------------------------------------
# Two runs of the same change at once


def _race_outcome(results):
    applied = [result for result in results if not result.failed and result.changed]
    others = [result for result in results if result.failed or not result.changed]
    return applied, others


def _race_behind_a_lock(context, module_user, background, module, args, lock):
    """Start two runs of ``module`` while ``lock`` (a RowLock) holds them both, release it, and return
    (the runs that applied, the others)."""
    try:
        runs = [background.start(context.ansible, module, args) for _run in range(2)]
        wait_until(lambda: len(lock_waiters(context.dbs, module_user.name)) == 2, 'both runs to wait for the lock',
                   describe=module_user.processlist)
        assert not any(run.done() for run in runs)
    finally:
        lock.release()
    return _race_outcome([run.result() for run in runs])


def test_two_parallel_runs_on_200_volumes_apply_exactly_once(
        context, module_user, background, dbs, ansible, journal_dir):
    scenario = build_cinder_volume_state(context, count=200, one_instance=True)
    original = snapshot(dbs, scenario.tables)
    args = module_args(module_user, scenario, journal_dir, lock_timeout=600)
    runs = [background.start(ansible, 'cinder_volume_state', args) for _run in range(2)]
    results = [run.result() for run in runs]

    applied, others = _race_outcome(results)
    assert len(applied) == 1, results
    other = others[0]
    if other.failed:
        # It planned before the winner committed: the re-check under lock refuses.
        assert 'Traceback' not in other['msg']
        assert 'changed since the plan was made' in other['msg'] or 'deadlock' in other['msg'], other['msg']
    else:
        assert not other.changed and other['msg'].startswith('nothing to do'), other
    assert_exactly_as_planned(dbs, original, applied[0])
    assert [document['status'] for document in live_journals(journal_dir)] == ['committed']


def test_two_runs_planned_together_one_applies_the_other_refuses(
        context, module_user, background, dbs, ansible, journal_dir):
    """Both runs plan, then wait for the same lock: the loser finds the rows changed and writes nothing."""
    scenario = build_cinder_volume_state(context, count=200, one_instance=True)
    original = snapshot(dbs, scenario.tables)
    args = module_args(module_user, scenario, journal_dir, lock_timeout=600)
    lock = RowLock(dbs.server, dbs.name('cinder'), 'SELECT id FROM volumes WHERE id = %s FOR UPDATE',
                   (scenario.args['volume'][0],))
    applied, others = _race_behind_a_lock(context, module_user, background, 'cinder_volume_state', args, lock)
    assert len(applied) == 1, applied + others
    loser = others[0]
    assert loser.failed and 'Traceback' not in loser['msg']
    assert 'changed since the plan was made' in loser['msg'] or 'deadlock' in loser['msg'], loser['msg']
    if 'conflicts' in loser:
        assert all('volumes/' in label for label in loser['conflicts'])
    assert_exactly_as_planned(dbs, original, applied[0])
    assert [document['status'] for document in live_journals(journal_dir)] == ['committed']


# --------------------------------------------------------------------------
# Planned under lock: cinder_service_rehost, when applying, reads every row it
# changes with FOR UPDATE on the connection that writes it


def _rehost_scenario(context, count):
    """The registry's rehost incident with ``count`` more volumes in a pool of the old host."""
    scenario = build_cinder_service_rehost(context)
    old = scenario.args['from_host']
    volumes = [context.cloud.volume(host=old + '#DEFAULT') for _number in range(count)]
    return scenario, volumes


def test_rehost_apply_waits_for_a_writer_at_its_read_and_check_mode_takes_no_lock(
        context, module_user, dbs, ansible, journal_dir):
    scenario, volumes = _rehost_scenario(context, 3)
    original = snapshot(dbs, scenario.tables)
    args = module_args(module_user, scenario, journal_dir, lock_timeout=2)
    lock = RowLock(dbs.server, dbs.name('cinder'), 'SELECT id FROM volumes WHERE id = %s FOR UPDATE', (volumes[1],))
    try:
        checked = ansible('cinder_service_rehost', args, check=True)
        refused = ansible('cinder_service_rehost', args)
        still_held = lock.connection is not None and lock.connection.open
    finally:
        lock.release()
    assert not checked.failed and checked.changed, checked
    assert checked['plan'] and 'volumes/%s' % volumes[1] in checked['after']['cinder_db']
    assert still_held
    assert_clean_failure(refused, 'locked by another transaction; gave up after lock_timeout')
    assert snapshot(dbs, scenario.tables) == original
    # It stopped while planning: no statement ran, so there is no journal at all.
    assert journals(journal_dir) == []

    applied = ansible('cinder_service_rehost', args)
    assert not applied.failed and applied.changed, applied
    assert_exactly_as_planned(dbs, original, applied)
    assert applied['before'] == checked['before']
    assert [document['status'] for document in journals(journal_dir)] == ['committed']


def test_two_rehosts_at_once_one_applies_the_other_finds_nothing_to_do(
        context, module_user, background, dbs, ansible, journal_dir):
    """Both runs wait at their read for a writer's lock; the one that reads second reads after the first committed."""
    scenario, volumes = _rehost_scenario(context, 200)
    original = snapshot(dbs, scenario.tables)
    args = module_args(module_user, scenario, journal_dir, lock_timeout=600)
    lock = RowLock(dbs.server, dbs.name('cinder'), 'SELECT id FROM services WHERE host = %s FOR UPDATE',
                   (scenario.args['from_host'],))
    applied, others = _race_behind_a_lock(context, module_user, background, 'cinder_service_rehost', args, lock)
    assert len(applied) == 1, applied + others
    other = others[0]
    assert not other.failed and not other.changed, other
    assert other['msg'].startswith('nothing to do'), other['msg']
    assert len([label for label in applied[0]['after']['cinder_db'] if label.startswith('volumes/')]) == 202
    assert_exactly_as_planned(dbs, original, applied[0])
    assert [document['status'] for document in journals(journal_dir)] == ['committed']


def test_rehost_waiting_at_its_read_locks_no_row_it_does_not_change(
        context, module_user, background, dbs, ansible, journal_dir):
    """READ COMMITTED: the locking read keeps only the rows it returns, not every row it scanned."""
    scenario, volumes = _rehost_scenario(context, 3)
    # Ids and hosts that sort first: whichever way the read scans, it passes these before it blocks.
    others = [context.cloud.volume(host='bystander-%d@lvm#lvm' % number, id='0000' + str(uuid.uuid4())[4:])
              for number in range(5)]
    args = module_args(module_user, scenario, journal_dir, lock_timeout=600)
    lock = RowLock(dbs.server, dbs.name('cinder'), 'SELECT id FROM volumes WHERE id = %s FOR UPDATE', (volumes[-1],))
    try:
        run = background.start(ansible, 'cinder_service_rehost', args)
        waiter = wait_until(lambda: lock_waiters(dbs, module_user.name), 'the volume lock', run=run,
                            describe=module_user.processlist)[0]
        assert 'FOR UPDATE' in waiter['info'], waiter
        writer = dbs.server.admin_connect(database=dbs.name('cinder'), autocommit=False)
        try:
            with writer.cursor() as cursor:
                cursor.execute('SET SESSION innodb_lock_wait_timeout = 1')
                for volume in others:
                    # Fails with a lock wait timeout if the module's read kept this row.
                    assert cursor.execute('UPDATE volumes SET display_description = %s WHERE id = %s',
                                          ('written while the rehost waits', volume)) == 1
            writer.commit()
        finally:
            writer.close()
    finally:
        lock.release()
    result = run.result()
    assert not result.failed and result.changed, result
    rows = dbs.query('cinder', 'SELECT host, display_description FROM volumes WHERE id IN (%s)'
                     % ', '.join(['%s'] * len(others)), others)
    assert [row['display_description'] for row in rows] == ['written while the rehost waits'] * len(others)
    assert all(row['host'].startswith('bystander-') for row in rows)


# --------------------------------------------------------------------------
# The server is down


@pytest.fixture
def private_server():
    servers = []

    def start(extra_args=()):
        server = mariadb.start_private_server(extra_args=extra_args)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()


def _fake_journal(directory, database):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, 'recorded.json')
    with open(path, 'w') as stream:
        json.dump({'format': 1, 'run_id': str(uuid.uuid4()), 'module': 'stackmender.openstack.cinder_volume_state',
                   'status': 'committed', 'arguments': {}, 'databases': {'cinder_db': {'database': database}},
                   'force': False, 'commits': {}, 'entries': [
                       {'database': 'cinder_db', 'table': 'volumes', 'key': {'id': str(uuid.uuid4())},
                        'action': 'update', 'before': {'status': 'detaching'}, 'after': {'status': 'available'}}]},
                  stream)
    return path


def test_stopped_server_fails_with_a_clear_error_naming_it(private_server, schema_snapshot, ansible, journal_dir, tmp_path):
    server = private_server()
    stopped_set = dbset.build_database_set(server, schema_snapshot)
    cloud = builder.CloudBuilder(stopped_set)
    volume = cloud.volume(status='detaching')
    stopped_set.close()
    where = '%s:%s' % (server.host, server.port)
    server.stop()

    def url(logical):
        return stopped_set.url(logical)

    runs = [
        ('cinder_volume_state', dict(cinder_db=url('cinder'), nova_api_db=url('nova_api'), volume=volume,
                                     status='available', method='db'), False),
        ('cinder_volume_state', dict(cinder_db=url('cinder'), volume=volume, status='available', method='db'), True),
        ('nova_bdm_purge', dict(nova_api_db=url('nova_api'), volume=volume, method='db'), False),
        ('journal_undo', dict(cinder_db=url('cinder'), journal=_fake_journal(str(tmp_path), stopped_set.name('cinder'))),
         False),
    ]
    for module, args, check in runs:
        result = ansible(module, dict(args, journal_dir=journal_dir), check=check)
        assert_clean_failure(result, 'cannot connect to the database server of mysql://root@%s/' % where)
        assert 'the connection was refused: nothing listens on that host and port' in result['msg']
        assert 'exception' not in result or 'Traceback' not in result.get('exception', ''), result['exception']
        assert 'MODULE FAILURE' not in result['msg']
    assert not os.path.exists(journal_dir) or live_journals(journal_dir) == []


# --------------------------------------------------------------------------
# Galera


def test_plain_server_without_wsrep_is_writable(context, dbs, ansible, journal_dir):
    assert dbs.query('cinder', "SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")[0]['Value'] == 'OFF'
    scenario = build_cinder_volume_state(context, count=1)
    original = snapshot(dbs, scenario.tables)
    applied = ansible('cinder_volume_state', dict(scenario.args, journal_dir=journal_dir,
                                                  **context.admin_args(*scenario.databases)))
    assert not applied.failed and applied.changed, applied
    assert_exactly_as_planned(dbs, original, applied)


def _galera_arguments(port):
    return ['--wsrep-on=ON', '--wsrep-provider=%s' % GALERA_PROVIDER, '--wsrep-cluster-address=gcomm://',
            '--binlog-format=ROW', '--innodb-autoinc-lock-mode=2', '--wsrep-node-address=127.0.0.1',
            '--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d;pc.wait_prim_timeout=PT2S' % port]


def _galera_status(database_set):
    rows = database_set.query('cinder', "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_status', 'wsrep_ready')")
    return dict((row['Variable_name'], row['Value']) for row in rows)


def test_galera_node_outside_the_primary_component_is_refused(private_server, schema_snapshot, ansible, journal_dir):
    """A real one-node Galera cluster: writable while Primary; refused once it loses the cluster."""
    assert os.path.exists(GALERA_PROVIDER), 'the galera-4 package (a dependency of mariadb-server) is missing'
    server = private_server(_galera_arguments(mariadb._free_port()))
    galera_set = dbset.build_database_set(server, schema_snapshot)
    ctx = CaseContext(builder.CloudBuilder(galera_set), galera_set, ansible, journal_dir)
    assert _galera_status(galera_set) == {'wsrep_cluster_status': 'Primary', 'wsrep_ready': 'ON'}

    healthy = build_cinder_volume_state(ctx, count=2)
    original = snapshot(galera_set, healthy.tables)
    applied = ansible('cinder_volume_state', dict(healthy.args, journal_dir=journal_dir,
                                                  **ctx.admin_args(*healthy.databases)))
    assert not applied.failed and applied.changed, applied
    assert_exactly_as_planned(galera_set, original, applied)

    scenario = build_cinder_volume_state(ctx, count=2)
    before = snapshot(galera_set, scenario.tables)
    args = dict(scenario.args, journal_dir=journal_dir, **ctx.admin_args(*scenario.databases))
    galera_set.close()
    # Point the node at a peer that does not exist: it leaves the Primary component.
    admin = server.admin_connect()
    try:
        with admin.cursor() as cursor:
            try:
                cursor.execute("SET GLOBAL wsrep_cluster_address = 'gcomm://127.0.0.1:%d'" % mariadb._free_port())
            except Exception:  # the node cannot reach the peer; that is the point
                pass
            # Operators allow reads on such a node with wsrep_dirty_reads; writes must still be refused.
            cursor.execute('SET GLOBAL wsrep_dirty_reads = ON')
    finally:
        admin.close()
    status = _galera_status(galera_set)
    assert status['wsrep_cluster_status'] != 'Primary' and status['wsrep_ready'] == 'OFF', status

    refused = ansible('cinder_volume_state', args)
    assert_clean_failure(refused, 'this Galera node is not part of the Primary component')
    assert refused['galera']['wsrep_cluster_status'] == status['wsrep_cluster_status']
    assert snapshot(galera_set, scenario.tables) == before
    assert [document['status'] for document in journals(journal_dir)] == ['committed']

    checked = ansible('cinder_volume_state', args, check=True)
    assert not checked.failed and checked.changed, 'check mode only reads, so it still shows the plan'

    admin = server.admin_connect()
    try:
        with admin.cursor() as cursor:
            cursor.execute('SET GLOBAL wsrep_dirty_reads = OFF')
    finally:
        admin.close()
    unreadable = ansible('cinder_volume_state', args)
    assert_clean_failure(unreadable, 'WSREP')
    assert 'mysql://root@127.0.0.1:%d/' % server.port in unreadable['msg']
