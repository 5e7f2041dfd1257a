"""What the fault tests share: row locks held by another writer, waiting for
a module to block, and the check that data is unchanged or exactly as planned."""

import concurrent.futures
import glob
import json
import os
import time

import pymysql
import pytest

from tests.integration.helpers import snapshot
from tests.security.module_cases import OPTION_LOGICALS

WAIT_LIMIT = 180  # seconds before a wait for a module's state is given up as a broken test
# InnoDB serves INNODB_TRX from a cache that it refreshes only when the last read is over 0.1 s old.
# Tests polling it in parallel (one per pytest worker) every 0.1 s kept it from ever refreshing, and
# a module waiting for a lock was never seen. At 0.5 s, three pollers cannot cover every 0.1 s.
POLL_INTERVAL = 0.5


def wait_until(predicate, what, limit=WAIT_LIMIT, run=None, describe=None):
    """Poll ``predicate`` until it returns something true; fail the test after ``limit`` seconds,
    or as soon as ``run`` (a background module run that should be blocked) has ended.

    ``describe``, if given, is called when the wait is given up; what it returns
    (the module's connections, say) goes into the failure, to show where it was instead.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if run is not None and run.done():
            pytest.fail('the module ended instead of blocking (waiting for %s): %r' % (what, dict(run.result())))
        time.sleep(POLL_INTERVAL)
    pytest.fail('gave up waiting for %s after %d s%s' % (
        what, limit, '; meanwhile: %r' % (describe(),) if describe else ''))


class RowLock:
    """Another writer: a transaction of the test holding row locks until released."""

    def __init__(self, server, database, sql, params=()):
        self.connection = server.admin_connect(database=database, autocommit=False)
        with self.connection.cursor() as cursor:
            cursor.execute('SET SESSION innodb_lock_wait_timeout = 5')
            cursor.execute('BEGIN')
            cursor.execute(sql, params)
            self.rows = cursor.fetchall()
        assert self.rows, 'the lock statement matched no row: %s' % sql

    def release(self):
        if self.connection is not None:
            try:
                self.connection.rollback()
            finally:
                self.connection.close()
                self.connection = None


def lock_waiters(dbs, user):
    """Connections of ``user`` whose transaction waits for a row lock: [{'id', 'db', 'info'}]."""
    return dbs.query('nova_api', "SELECT p.ID AS id, p.DB AS db, p.INFO AS info FROM information_schema.INNODB_TRX t "
                                 "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                                 "WHERE t.trx_state = 'LOCK WAIT' AND p.USER = %s", (user,))


def kill(dbs, thread_id, statement='KILL'):
    assert statement in ('KILL', 'KILL QUERY')
    try:
        dbs.execute('nova_api', statement + ' %s', (thread_id,))
    except pymysql.err.OperationalError as error:
        if error.args[0] != 1094:  # unknown thread: it ended on its own
            raise


class Background:
    """Module runs in threads (each one is an ansible subprocess)."""

    def __init__(self):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)

    def start(self, function, *args, **kwargs):
        return self.pool.submit(function, *args, **kwargs)

    def close(self):
        self.pool.shutdown(wait=True)


def journals(directory):
    """Every journal document in ``directory``, oldest first."""
    found = []
    for path in sorted(glob.glob(os.path.join(directory, '*.json'))):
        with open(path) as stream:
            document = json.load(stream)
        document['path'] = path
        found.append(document)
    return found


def _row_key(row):
    return str(row.get('id'))


def assert_exactly_as_planned(dbs, original, result):
    """Every row equals the original, except the rows ``result`` planned, which hold exactly its ``after``.

    ``original`` is ``snapshot(dbs, tables)`` taken before the run; ``result`` a
    successful module result (its ``before``/``after`` name every planned row).
    """
    planned = {}
    for option, rows in result['after'].items():
        logical = OPTION_LOGICALS.get(option) or ('nova' if option == 'nova:cell1' else None)
        assert logical, 'unknown database option %s in the result' % option
        for label, after in rows.items():
            table, key = label.split('/', 1)
            planned[(logical, table, key)] = after
    now = snapshot(dbs, list(original))
    seen = set()
    for (logical, table), rows in original.items():
        current = dict((_row_key(row), row) for row in now[(logical, table)])
        for row in rows:
            key = _row_key(row)
            if (logical, table, key) not in planned:
                assert current.get(key) == row, '%s.%s/%s changed outside the plan' % (logical, table, key)
                continue
            seen.add((logical, table, key))
            after = planned[(logical, table, key)]
            if after is None:
                assert key not in current, '%s.%s/%s should be deleted' % (logical, table, key)
                continue
            expected = dict(row)
            expected.update(dict((column, None if value is None else value) for column, value in after.items()))
            live = dict(current[key])
            assert json.loads(json.dumps(live, default=str)) == json.loads(json.dumps(expected, default=str)), \
                '%s.%s/%s is not as planned' % (logical, table, key)
        new_keys = set(current) - set(_row_key(row) for row in rows)
        for key in new_keys:
            assert (logical, table, key) in planned, '%s.%s/%s appeared outside the plan' % (logical, table, key)
            seen.add((logical, table, key))
    assert seen == set(planned), 'planned rows not found in the snapshot tables: %s' % sorted(set(planned) - seen)
