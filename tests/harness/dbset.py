"""Fresh sets of the five databases of a cloud, loaded from a schema snapshot.

Every set gets never-used databases with unique names
(``smt_<8 hex>_<logical>``), so parallel runs and pytest-xdist workers never
collide. Creating ~300 InnoDB tables costs about half a second on an idle
machine (each CREATE TABLE creates and syncs a file), so:

* the DDL goes out as multi-statement batches over a few parallel
  connections (one round trip each);
* a background thread keeps a small pool of sets ready per snapshot, so a
  test usually gets its set at once while the next one is being built;
* dropping happens in the background too (``drop(wait=False)``).

Pooled sets are never handed out twice and are dropped at exit if unused.
"""

import atexit
import collections
import logging
import queue
import secrets
import threading
import time

import pymysql
import pymysql.converters
from pymysql.constants import CLIENT

import uuid

from tests.harness import EXTRA_CELLS, SET_DATABASES, schema_source

LOG = logging.getLogger("stackmender.harness.dbset")

SET_PREFIX = "smt_"  # test sets; schema builds use "smb_"
CELL0_UUID = "00000000-0000-0000-0000-000000000000"
DEFAULT_POOL_SIZE = 1
TAKE_TIMEOUT = 300  # seconds to wait for the pool before giving up
DDL_CONNECTIONS = 3


class DatabaseSet:
    """One cloud's five databases. Not thread-safe (one connection per
    logical database, opened on first use)."""

    def __init__(self, server, snapshot, prefix):
        self.server = server
        self.snapshot = snapshot
        self.prefix = prefix
        self.names = {logical: f"{prefix}_{logical}" for logical in SET_DATABASES}
        self.create_seconds = None  # how long building this set took
        self.wait_seconds = None  # how long the caller waited for it
        self._connections = {}
        self.dropped = False

    def __repr__(self):
        return f"<DatabaseSet {self.prefix} ({self.snapshot.release})>"

    def _check(self, logical):
        if logical not in self.names:
            raise KeyError(f"unknown logical database {logical!r}; use one of {', '.join(self.names)}")

    def name(self, logical):
        """The real database name of ``logical`` (e.g. ``smt_1a2b3c4d_cinder``)."""
        self._check(logical)
        return self.names[logical]

    def url(self, logical):
        """``mysql+pymysql://...?charset=utf8``, as in a service's ``[database] connection``."""
        return self.server.url(self.name(logical))

    def connect(self, logical, **kwargs):
        """A new autocommit PyMySQL connection to ``logical`` (the caller closes it)."""
        kwargs.setdefault("autocommit", True)
        return self.server.admin_connect(database=self.name(logical), **kwargs)

    def _connection(self, logical):
        conn = self._connections.get(logical)
        if conn is None or not conn.open:
            conn = self._connections[logical] = self.connect(logical)
        return conn

    def query(self, logical, sql, params=None):
        """Rows of a SELECT as a list of dicts."""
        with self._connection(logical).cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def scalar(self, logical, sql, params=None):
        """The first column of the first row, or None."""
        with self._connection(logical).cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
            return row[0] if row else None

    def execute(self, logical, sql, params=None):
        """Run one statement (autocommit); returns the affected row count."""
        with self._connection(logical).cursor() as cursor:
            return cursor.execute(sql, params)

    def insert(self, logical, table, values):
        """INSERT one row given as a dict (parameterized); returns lastrowid."""
        columns = ", ".join(f"`{column}`" for column in values)
        placeholders = ", ".join(["%s"] * len(values))
        with self._connection(logical).cursor() as cursor:
            cursor.execute(f"INSERT INTO `{table}` ({columns}) VALUES ({placeholders})", list(values.values()))
            return cursor.lastrowid

    def close(self):
        for conn in self._connections.values():
            try:
                conn.close()
            except pymysql.err.Error:
                pass
        self._connections.clear()

    def drop(self, wait=True):
        """Drop the five databases (in the background with ``wait=False``)."""
        if self.dropped:
            return
        self.dropped = True
        self.close()
        if wait:
            _drop_databases(self.server, list(self.names.values()))
        else:
            _dropper().put(self.server, list(self.names.values()))


# ---------------------------------------------------------------------------
# Building a set


def run_batch(server, statements):
    """Run ``statements`` as one multi-statement batch: one round trip; reading
    every result surfaces an error in any statement."""
    conn = server.admin_connect(client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        with conn.cursor() as cursor:
            cursor.execute(";\n".join(statements))
            while cursor.nextset():
                pass
    finally:
        conn.close()


def _seed_rows(snapshot, logical, set_):
    """The snapshot's seed rows of ``logical``, with the cell mappings
    pointing at this set's own cell databases, and a mapping per further cell."""
    rows = snapshot.seed_rows(schema_source(logical))
    if logical == "nova_api":
        mappings = rows.get("cell_mappings", [])
        cell1 = None
        for row in mappings:
            if row["uuid"] == CELL0_UUID:
                row["database_connection"] = set_.url("nova_cell0")
            elif row["name"] == "cell1":
                row["database_connection"] = set_.url("nova")
                cell1 = row
        for extra, name in EXTRA_CELLS.items():
            row = {column: value for column, value in cell1.items() if column != "id"}
            row.update(uuid=str(uuid.uuid4()), name=name, database_connection=set_.url(extra))
            mappings.append(row)
    return rows


def build_database_set(server, snapshot, connections=DDL_CONNECTIONS):
    """Create a new set now, in the calling thread.

    The ~300 CREATE TABLE statements are dealt round-robin to a few
    connections working in parallel (measured on 2 cores: 2-3 connections
    beat 1 by ~10-20 %, and 5 or more are slower again)."""
    started = time.monotonic()
    set_ = DatabaseSet(server, snapshot, SET_PREFIX + secrets.token_hex(4))
    # A clash of random names is practically impossible, but CREATE DATABASE
    # without IF NOT EXISTS makes it an error, never a reuse.
    run_batch(server, [f"CREATE DATABASE `{name}`" for name in set_.names.values()])
    try:
        # Each chunk switches database with USE, so the unqualified FOREIGN
        # KEY ... REFERENCES in the DDL resolve inside the right database.
        chunks = [["SET SESSION foreign_key_checks = 0"] for _chunk in range(connections)]
        current = [None] * connections
        position = 0
        for logical in SET_DATABASES:
            source = schema_source(logical)
            for table in snapshot.tables(source):
                index = position % connections
                position += 1
                if current[index] != logical:
                    chunks[index].append(f"USE `{set_.names[logical]}`")
                    current[index] = logical
                chunks[index].append(snapshot.create_statement(source, table))
        errors = []

        def run(chunk):
            try:
                run_batch(server, chunk)
            except Exception as error:  # re-raised in the calling thread
                errors.append(error)

        threads = [threading.Thread(target=run, args=(chunk,), name="dbset-ddl") for chunk in chunks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

        seeds = ["SET SESSION foreign_key_checks = 0"]
        escape = pymysql.converters.escape_item
        for logical in SET_DATABASES:
            for table, rows in _seed_rows(snapshot, logical, set_).items():
                for row in rows:
                    columns = ", ".join(f"`{column}`" for column in row)
                    values = ", ".join(escape(value, "utf8mb4") for value in row.values())
                    seeds.append(f"INSERT INTO `{set_.names[logical]}`.`{table}` ({columns}) VALUES ({values})")
        run_batch(server, seeds)
    except Exception as error:
        _drop_databases(server, list(set_.names.values()))
        raise RuntimeError(f"creating database set {set_.prefix} from the {snapshot.release} snapshot failed: "
                           f"{error}") from error
    set_.create_seconds = time.monotonic() - started
    return set_


def _drop_databases(server, names):
    conn = server.admin_connect()
    try:
        with conn.cursor() as cursor:
            for name in names:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# The pool of ready sets, and the background dropper


class _SetPool:
    """Keeps ``size`` never-used sets of one snapshot ready."""

    def __init__(self, server, snapshot, size):
        self.server = server
        self.snapshot = snapshot
        self.size = size
        self.ready = collections.deque()
        self.error = None
        self.closed = False
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._fill, name=f"dbset-pool-{snapshot.release}", daemon=True)
        self.thread.start()

    def _fill(self):
        while True:
            with self.condition:
                while not self.closed and len(self.ready) >= self.size:
                    self.condition.wait()
                if self.closed:
                    return
            try:
                set_ = build_database_set(self.server, self.snapshot)
            except Exception as error:  # handed to the next take()
                with self.condition:
                    self.error = error
                    self.condition.notify_all()
                return
            with self.condition:
                if not self.closed:
                    self.ready.append(set_)
                    self.condition.notify_all()
                    continue
            set_.drop()
            return

    def take(self):
        started = time.monotonic()
        with self.condition:
            while not self.ready and self.error is None:
                if not self.condition.wait(timeout=TAKE_TIMEOUT):
                    raise TimeoutError(f"no database set ready after {TAKE_TIMEOUT} s")
            if not self.ready:
                raise RuntimeError(f"the database set pool failed: {self.error}") from self.error
            set_ = self.ready.popleft()
            self.condition.notify_all()  # wake the filler
        set_.wait_seconds = time.monotonic() - started
        return set_

    def close(self):
        with self.condition:
            self.closed = True
            self.condition.notify_all()
        self.thread.join(timeout=120)
        while self.ready:
            self.ready.popleft().drop()


class _Dropper:
    """Drops databases in a background thread, so a test's teardown does not wait."""

    def __init__(self):
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="dbset-dropper", daemon=True)
        self.thread.start()

    def put(self, server, names):
        self.queue.put((server, names))

    def _run(self):
        while True:
            server, names = self.queue.get()
            try:
                _drop_databases(server, names)
            except Exception as error:  # a failed drop only leaves garbage behind
                LOG.warning("could not drop %s: %s", names, error)
            finally:
                self.queue.task_done()

    def flush(self):
        self.queue.join()


_pools = {}
_state_lock = threading.Lock()
_dropper_instance = None


def _dropper():
    global _dropper_instance
    with _state_lock:
        if _dropper_instance is None:
            _dropper_instance = _Dropper()
        return _dropper_instance


def _pool(server, snapshot, pool_size=DEFAULT_POOL_SIZE):
    key = (server.host, server.port, snapshot.release, snapshot.key)
    with _state_lock:
        pool = _pools.get(key)
        if pool is None or pool.error is not None:
            pool = _pools[key] = _SetPool(server, snapshot, pool_size)
        return pool


def prefill(server, snapshot, pool_size=DEFAULT_POOL_SIZE):
    """Start building the pool of ``snapshot`` now (returns at once), so the
    first test does not wait for its set."""
    if pool_size > 0:
        _pool(server, snapshot, pool_size)


def ready_sets(server, snapshot):
    """How many pooled sets of ``snapshot`` are ready right now."""
    with _state_lock:
        pool = _pools.get((server.host, server.port, snapshot.release, snapshot.key))
    return len(pool.ready) if pool else 0


def create_database_set(server, snapshot, pool_size=DEFAULT_POOL_SIZE):
    """A fresh, never-used set of the five databases loaded from ``snapshot``.

    With ``pool_size`` > 0 the set comes from (and is replaced in) a pool
    kept filled by a background thread; ``pool_size=0`` builds it now.
    ``set.create_seconds`` says how long building it took, ``set.wait_seconds``
    how long this call waited.
    """
    if pool_size <= 0:
        started = time.monotonic()
        set_ = build_database_set(server, snapshot)
        set_.wait_seconds = time.monotonic() - started
        return set_
    return _pool(server, snapshot, pool_size).take()


def shutdown():
    """Drop the unused pooled sets and finish background drops. Runs at
    exit; the fixtures call it at the end of the session too."""
    with _state_lock:
        pools = list(_pools.values())
        _pools.clear()
        dropper = _dropper_instance
    for pool in pools:
        pool.close()
    if dropper is not None:
        dropper.flush()


atexit.register(shutdown)


def drop_stale_sets(server, older_than_hours=12):
    """Drop test sets and schema-build databases left behind by killed runs
    (recognised by their prefix and the age of their newest table; a
    database without tables may be one being created right now, and is kept).
    Returns the dropped names."""
    conn = server.admin_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_schema LIKE 'smt\\_%%' OR table_schema LIKE 'smb\\_%%' "
                "GROUP BY table_schema HAVING MAX(create_time) < NOW() - INTERVAL %s HOUR",
                (older_than_hours,))
            names = [row[0] for row in cursor.fetchall()]
            for name in names:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        return names
    finally:
        conn.close()
