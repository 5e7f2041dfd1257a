# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Plans: the rows a module will change, computed once, shown in check mode
and executed exactly as shown when applying.

A :class:`RowChange` names one row by its primary key, the values it holds
now (``before``) and the values it will hold (``after``). The executor turns
consecutive changes of the same shape into set-based statements and
refuses, with nothing written, when a row no longer matches the plan. An
update checks its rows inside its own statement, by a hash of what each row
must still hold; when that does not account for every row, and for deletes
and inserts, the executor locks and re-reads the rows (``SELECT ... FOR
UPDATE``) and compares them one by one, which names every conflict. A change
marked ``locked`` was read under a lock that its session holds until commit
(the plan was made under lock), so it cannot have changed and is written as
planned; the statement must still touch exactly its rows.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import datetime
import decimal
import hashlib
import json
import re

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.cloud import ApiCall
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import GuardRefusal, PlanConflict
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import chunks, placeholders

UPDATE = 'update'
DELETE = 'delete'
INSERT = 'insert'

# Rows per statement when executing set-based changes.
CHUNK_SIZE = 500
# Keys shown per statement in a result; the count is always exact.
SHOWN_KEYS = 50
# Rows shown in a result's before/after (and diff); a 100k-row plan would otherwise
# make a result of tens of megabytes. The journal always has every row.
SHOWN_ROWS = 1000

_IDENTIFIER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,63}$')


def quote_identifier(name):
    """Backtick-quote a table or column name our own code chose.

    Identifiers never come from user input; this check makes sure of it.
    """
    if not _IDENTIFIER.match(name):
        raise ValueError('refusing unexpected SQL identifier %r' % (name,))
    return '`%s`' % name


# The timestamps this run's plans write (one module process is one run): a plan's fingerprint shows
# them as the time of the run, so the same change planned a minute later has the same fingerprint.
_RUN_STAMPS = set()
RUN_TIME = '<time of the run>'


def now():
    """The timestamp a plan writes: UTC, whole seconds, as the services store it."""
    stamp = datetime.datetime.utcnow().replace(microsecond=0)
    _RUN_STAMPS.add(stamp.isoformat(' '))
    return stamp


# Column values that are already JSON-safe and comparable: most of them, so they skip the checks below.
_PLAIN = frozenset([str, int, float, bool, type(None)])


def normalize(value):
    """A JSON-safe, comparable form of a column value."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, datetime.datetime):
        return value.isoformat(' ')
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {'base64': base64.b64encode(bytes(value)).decode('ascii')}
    return value


def normalize_row(row):
    # A 100,000-row plan normalizes millions of values, nearly all plain: test them all at once, in C.
    if _PLAIN.issuperset(map(type, row.values())):
        return dict(row)
    return {column: value if type(value) in _PLAIN else
            value.isoformat(' ') if isinstance(value, datetime.datetime) else normalize(value)
            for column, value in row.items()}


def sql_value(value):
    """Turn a normalized (journal) value back into a parameter for PyMySQL."""
    if isinstance(value, dict) and set(value) == {'base64'}:
        return base64.b64decode(value['base64'])
    return value


# The tests a scope's condition can make of a column, each with its placeholders.
SCOPE_TESTS = {
    'equals': '%s = %%s',
    'bytes_equal': '%s = BINARY %%s',
    'bytes_prefix': 'LEFT(%s, CHAR_LENGTH(%%s)) = BINARY %%s',
}


def scope_condition(terms):
    """The WHERE condition of a scope: terms joined by AND, each of (column, test) pairs joined by OR."""
    return ' AND '.join('(%s)' % ' OR '.join(SCOPE_TESTS[test] % quote_identifier(column) for column, test in term)
                        for term in terms)


def _checked_scope(scope, action, fixed):
    if scope is None:
        return None
    terms, params = scope
    if action != UPDATE or fixed:
        raise ValueError('a scope applies to updates that write the same values to every row')
    terms = tuple(tuple((column, test) for column, test in term) for term in terms)
    if not terms or not all(term and all(test in SCOPE_TESTS for _column, test in term) for term in terms):
        raise ValueError('a scope is terms of (column, test) pairs, tests among %s' % ', '.join(sorted(SCOPE_TESTS)))
    if scope_condition(terms).count('%s') != len(params):
        raise ValueError('a scope needs one parameter per placeholder of its condition')
    return (terms, tuple(params))


class RowChange(object):
    """One row to update, delete or insert, identified by its primary key."""

    __slots__ = ('from_key', 'per_row', 'database', 'table', 'key', 'action', 'before', 'after', 'expect', 'note',
                 'locked', 'scope', '_signature')

    def __init__(self, database, table, key, action=UPDATE, before=None, after=None, expect=None, note=None,
                 from_key=(), per_row=(), locked=False, scope=None):
        if action not in (UPDATE, DELETE, INSERT):
            raise ValueError('unknown row action %r' % (action,))
        # Columns that take the row's own key (Nova's soft delete: deleted = id). Their after
        # value is the key, and the statement writes the key column, so many rows share one statement.
        self.from_key = tuple(sorted(from_key)) if from_key else ()
        # Columns whose after value is this row's own (an undo restores each row's updated_at): rows
        # that differ only there still share one statement, which writes them with CASE key WHEN ...
        self.per_row = tuple(sorted(per_row)) if per_row else ()
        if self.from_key or self.per_row:
            if action != UPDATE:
                raise ValueError('from_key and per_row apply to updates only')
            if not set(self.per_row) <= set(after or {}) or set(self.per_row) & set(self.from_key):
                raise ValueError('per_row columns must be written by the change, and not from_key')
        self.database = database
        self.table = table
        self.key = dict(key)
        if len(self.key) > 1 and action == UPDATE:
            raise ValueError('a key of several columns (a table such as tags) applies to deletes and inserts only')
        self.action = action
        self.before = normalize_row(before or {})
        self.after = normalize_row(after or {})
        # Values that must still hold when applying, beyond those the change overwrites.
        self.expect = normalize_row(expect or {})
        self.note = note
        # Read with a lock held until commit, on the session that writes it: nothing to re-check.
        self.locked = bool(locked)
        # (terms, params): a condition (scope_condition) that matches exactly the rows of this change's group
        # (see uniform_updates); the group is then written with it, as one statement.
        self.scope = _checked_scope(scope, action, self.from_key or self.per_row)
        self._signature = None
        for column in self.from_key:
            self.after[column] = normalize(self.key_value)

    @property
    def key_column(self):
        """The key's column, or a tuple of them for a key of several columns."""
        return next(iter(self.key)) if len(self.key) == 1 else tuple(self.key)

    @property
    def key_value(self):
        """The key's value, or a tuple of them for a key of several columns."""
        return next(iter(self.key.values())) if len(self.key) == 1 else tuple(self.key.values())

    def label(self):
        value = self.key_value
        return '%s/%s' % (self.table, ','.join(str(part) for part in value) if isinstance(value, tuple) else value)

    def signature(self):
        """Changes with equal signatures run as one statement (computed once: a plan is not changed)."""
        if self._signature is None:
            self._signature = self._compute_signature()
        return self._signature

    def _compute_signature(self):
        if self.action == UPDATE:
            fixed = self.from_key + self.per_row
            # repr() of the sorted pairs, built in C: equal text means equal columns and values, and
            # keeps apart values Python holds equal but SQL writes differently (1, 1.0 and True).
            items = self.after.items()
            if fixed:
                items = [(column, value) for column, value in items if column not in fixed]
            values = (repr(sorted(items)), self.from_key, self.per_row)
        elif self.action == INSERT:
            values = tuple(sorted(self.after))
        else:
            values = ()
        return (self.database, self.table, self.action, self.key_column, values, self.locked, self.scope)

    def checked_values(self):
        """What the live row must hold at apply time for the plan to be valid."""
        if self.action == INSERT:
            return {}
        checked = dict(self.expect)
        checked.update(self.before)
        return checked

    def to_journal(self, locked_row=None):
        entry = dict(database=self.database, table=self.table, key=self.key, action=self.action,
                     before=self.before, after=self.after)
        if locked_row is not None:
            entry['row'] = normalize_row(locked_row)
        if self.note:
            entry['note'] = self.note
        return entry


def uniform_updates(database, table, key_column, rows, after, note=None, locked=False, scope=None):
    """Updates that write the same ``after`` values to many rows; ``rows`` are (key, before, expect).

    The same changes as a RowChange per row, built for 100,000 rows: ``after`` is
    normalized and the statement signature computed once, and every change shares them
    (a plan never changes a change).

    ``scope``: (terms, params), a condition (see scope_condition) the rows were read through under
    lock (``locked``) and that matched these rows and no other. The rows are then written
    by that condition in one statement, as a hand-written UPDATE would, and the statement
    must touch exactly as many rows as the plan has: every planned row still matches it
    (it was read through it and is locked), so an equal count means it touched no other.
    A row that entered the condition since (an insert; READ COMMITTED takes no gap locks)
    makes the count differ, and everything is rolled back.
    """
    changes = []
    first = None
    for key, before, expect in rows:
        if first is None:
            first = RowChange(database, table, {key_column: key}, before=before, after=after, expect=expect, note=note,
                              locked=locked, scope=scope)
            changes.append(first)
            continue
        change = RowChange.__new__(RowChange)
        change.database, change.table, change.action, change.note = database, table, UPDATE, note
        change.key = {key_column: key}
        change.before = normalize_row(before)
        change.after = first.after
        change.expect = normalize_row(expect)
        change.from_key = change.per_row = ()
        change.locked, change.scope = first.locked, first.scope
        change._signature = first.signature()
        changes.append(change)
    return changes


class StatementGroup(object):
    """Consecutive row changes that one statement shape can carry."""

    def __init__(self, changes):
        self.changes = changes
        first = changes[0]
        self.database = first.database
        self.table = first.table
        self.action = first.action
        self.key_column = first.key_column

    def keys(self):
        return [change.key_value for change in self.changes]

    @property
    def planned_under_lock(self):
        """Updates read under lock: written exactly as planned, so their journal is known before writing."""
        return self.action == UPDATE and self.changes[0].locked

    @property
    def scope(self):
        return self.changes[0].scope

    def statement(self, count):
        """The statement for ``count`` rows of this group (a scoped group's is the same for any count)."""
        table = quote_identifier(self.table)
        if self.action == UPDATE:
            key = quote_identifier(self.key_column)
            first = self.changes[0]
            assignments = []
            for column in sorted(first.after):
                if column in first.from_key:
                    value = key
                elif column in first.per_row:
                    value = 'CASE %s %s ELSE %s END' % (key, ' '.join(['WHEN %s THEN %s'] * count),
                                                        quote_identifier(column))
                else:
                    value = '%s'
                assignments.append('%s = %s' % (quote_identifier(column), value))
            where = (scope_condition(self.scope[0]) if self.scope is not None
                     else '%s IN (%s)' % (key, placeholders(count)))
            return 'UPDATE %s SET %s WHERE %s' % (table, ', '.join(assignments), where)
        if self.action == DELETE:
            return 'DELETE FROM %s WHERE %s' % (table, key_condition(self.key_column, count))
        columns = sorted(self.changes[0].after)
        row = '(%s)' % placeholders(len(columns))
        return 'INSERT INTO %s (%s) VALUES %s' % (
            table, ', '.join(quote_identifier(column) for column in columns), ', '.join([row] * count))

    def set_params(self, changes, shown=False):
        """The parameters of the SET clause for ``changes`` (rows of this group), in the statement's order.

        ``shown``: as a result shows them (JSON-safe), not as PyMySQL takes them.
        """
        if self.action != UPDATE:
            return []
        first = self.changes[0]
        table = self.table

        def shown_value(column, value):
            # Shown, a column that can hold a secret gives its stand-in (restoring connection_info, user_data).
            return redaction.redact_value(column, normalize(value), table) if shown else sql_value(value)
        params = []
        for column in sorted(first.after):
            if column in first.per_row:
                for change in changes:
                    params.extend((change.key_value, shown_value(column, change.after[column])))
            elif column not in first.from_key:
                params.append(shown_value(column, first.after[column]))
        return params

    def describe(self):
        """The plan entry shown to the operator: statement and parameters."""
        keys = self.keys()
        shown = keys[:SHOWN_KEYS]
        if self.action == INSERT:
            entry = dict(kind='sql', database=self.database, table=self.table, action=self.action,
                         statement=self.statement(1), rows=len(keys), keys=shown)
        elif self.scope is not None:
            # One statement by its condition, which must touch exactly these rows (the keys shown).
            entry = dict(kind='sql', database=self.database, table=self.table, action=self.action,
                         statement=self.statement(len(keys)), rows=len(keys), keys=shown, scoped=True,
                         params=self.set_params([], shown=True) + [normalize(value) for value in self.scope[1]])
        else:
            entry = dict(kind='sql', database=self.database, table=self.table, action=self.action,
                         statement=self.statement(len(shown)),
                         params=self.set_params(self.changes[:len(shown)], shown=True) + key_params(shown),
                         rows=len(keys))
        if len(keys) > SHOWN_KEYS:
            entry['keys_not_shown'] = len(keys) - SHOWN_KEYS
        notes = sorted(set(change.note for change in self.changes if change.note))
        if notes:
            entry['why'] = '; '.join(notes)
        return entry


def key_condition(key_column, count):
    """``key IN (...)`` for ``count`` keys; ``(a, b) IN ((...), ...)`` for a key of several columns."""
    if isinstance(key_column, tuple):
        row = '(%s)' % placeholders(len(key_column))
        return '(%s) IN (%s)' % (', '.join(quote_identifier(column) for column in key_column), ', '.join([row] * count))
    return '%s IN (%s)' % (quote_identifier(key_column), placeholders(count))


def key_params(keys):
    """The parameters of key_condition: the keys, those of several columns flattened."""
    params = []
    for key in keys:
        if isinstance(key, tuple):
            params.extend(key)
        else:
            params.append(key)
    return params


def normalized_key(value):
    return tuple(normalize(part) for part in value) if isinstance(value, tuple) else normalize(value)


def _row_key(row, key_column):
    if isinstance(key_column, tuple):
        return tuple(normalize(row[column]) for column in key_column)
    return normalize(row[key_column])


def same_shapes_together(changes):
    """The changes reordered so that rows of one statement shape are adjacent.

    Modules plan one resource at a time (a volume's row, its attachments, its
    metadata), which interleaves the shapes; a statement covers one run of
    equal shapes, so 200 volumes would cost some 800 statements.
    Every change names a distinct row, so the order inside one transaction is
    free: tables keep the order they first appear in, and within a table the
    shapes do too, and the rows within a shape keep their planned order.
    """
    rows = set((change.database, change.table, repr(change.key_value)) for change in changes)
    if len(rows) != len(changes):
        return changes  # a row changed twice: its order matters, keep the plan as made
    tables, shapes = {}, {}
    for change in changes:
        tables.setdefault((change.database, change.table), len(tables))
        shapes.setdefault(change.signature(), len(shapes))
    return sorted(changes, key=lambda change: (tables[(change.database, change.table)], shapes[change.signature()]))


def group_changes(changes):
    """The changes as statements: one per run of equal shapes, after bringing equal shapes together."""
    groups = []
    for change in same_shapes_together(changes):
        if groups and groups[-1].changes[0].signature() == change.signature():
            groups[-1].changes.append(change)
        else:
            groups.append(StatementGroup([change]))
    return groups


def _mismatches(change, live_row):
    """Columns whose live value differs from what the plan saw."""
    if live_row is None:
        return {'(row)': 'missing'} if change.action != INSERT else {}
    if change.action == INSERT:
        return {'(row)': 'already exists'}
    # Only the checked columns are normalized: at 100,000 rows the whole row costs seconds.
    problems = {}
    for column, expected in change.checked_values().items():
        now = normalize(live_row.get(column))
        if now != expected:
            # Shown in the error: a secret column shows its stand-in (equal values, equal stand-ins).
            problems[column] = {'planned': redaction.redact_value(column, expected, change.table, live_row),
                                'now': redaction.redact_value(column, now, change.table, live_row)}
    return problems


def _quoted(value):
    """What the server's QUOTE() prints for a column holding this planned value; None if not known."""
    if value is None:
        return 'NULL'
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return "'%d'" % value
    if not isinstance(value, str) or '\x00' in value or '\x1a' in value:
        return None  # QUOTE() has its own forms for these; such rows are compared one by one
    if '\\' in value or "'" in value:
        value = value.replace('\\', '\\\\').replace("'", "\\'")
    return "'%s'" % value


def _expected_hashes(chunk, key_column):
    """Per row, the hash the server computes of its key and checked columns as the plan expects them.

    None when the rows check different columns or hold a value whose printed form is not
    known here: the chunk is then checked row by row.
    """
    columns = sorted(chunk[0].checked_values())
    if key_column in columns:
        return None, None
    hashes = []
    for change in chunk:
        checked = change.checked_values()
        if len(checked) != len(columns):
            return None, None
        try:
            printed = [_quoted(change.key_value)] + [_quoted(checked[column]) for column in columns]
        except KeyError:
            return None, None
        if None in printed:
            return None, None
        hashes.append(hashlib.sha256('\x1f'.join(printed).encode('utf-8')).hexdigest())
    return columns, hashes


def _guarded_update(session, group, chunk, keys):
    """Check and write a chunk of updates in one statement; False (nothing written) if a row is not as planned.

    The UPDATE carries, next to the keys, the hash of what every row must still hold (its
    key and checked columns, printed by QUOTE()); a row that changed since the plan no
    longer matches its hash and is left alone. All rows written means all rows were as
    planned, with no row read back into Python. Otherwise the chunk is undone to a
    savepoint and the caller checks it row by row, which also names every conflict.
    """
    if group.action != UPDATE:
        return False
    columns, hashes = _expected_hashes(chunk, group.key_column)
    if hashes is None:
        return False
    row_hash = 'SHA2(CONCAT_WS(0x1f, %s), 256)' % ', '.join(
        'QUOTE(%s)' % quote_identifier(column) for column in [group.key_column] + columns)
    statement = '%s AND %s IN (%s)' % (StatementGroup(chunk).statement(len(chunk)), row_hash, placeholders(len(hashes)))
    params = group.set_params(chunk) + keys + hashes
    session.execute('SAVEPOINT stackmender_chunk')
    if session.execute(statement, params) == len(chunk):
        return True
    session.execute('ROLLBACK TO SAVEPOINT stackmender_chunk')
    return False


def _lock_and_compare(session, group, chunk, keys):
    """Lock and re-read a chunk's rows and compare them with the plan; the locked rows by key.

    Raises PlanConflict, naming every row that changed, before anything of the chunk is written.
    """
    if group.action == DELETE:
        selected = '*'  # the journal keeps the whole row, so that undo can re-insert it
    else:
        # The key and the columns the re-check compares: reading whole rows is most of the cost.
        columns = set(group.key_column if isinstance(group.key_column, tuple) else [group.key_column])
        for change in chunk:
            columns.update(change.checked_values())
        selected = ', '.join(quote_identifier(column) for column in sorted(columns))
    locked = session.query('SELECT %s FROM %s WHERE %s FOR UPDATE'
                           % (selected, quote_identifier(group.table), key_condition(group.key_column, len(keys))),
                           key_params(keys))
    by_key = dict((_row_key(row, group.key_column), row) for row in locked)
    conflicts = {}
    for change in chunk:
        problems = _mismatches(change, by_key.get(normalized_key(change.key_value)))
        if problems:
            conflicts['%s.%s' % (change.database, change.label())] = problems
    if conflicts:
        raise PlanConflict('%d row(s) changed since the plan was made; nothing was written. '
                           'Re-run to plan again from the current state' % len(conflicts), conflicts=conflicts)
    return by_key


def _write_chunk(session, group, chunk, keys):
    """Write a chunk by its keys; the statement must touch exactly its rows."""
    if group.action == INSERT:
        columns = sorted(chunk[0].after)
        params = []
        for change in chunk:
            params.extend(sql_value(change.after[column]) for column in columns)
    else:
        params = group.set_params(chunk) + key_params(keys)
    written = session.execute(StatementGroup(chunk).statement(len(chunk)), params)
    if written != len(chunk):
        raise PlanConflict('%s on %s touched %d row(s) where the plan expected %d; rolled back'
                           % (group.action, group.table, written, len(chunk)))


def _scoped_update(session, group):
    """Write a group planned under lock by its condition, in one statement (see uniform_updates)."""
    if not group.planned_under_lock:
        raise ValueError('an update by condition must be planned under lock')
    written = session.execute(group.statement(len(group.changes)), group.set_params([]) + list(group.scope[1]))
    if written != len(group.changes):
        raise PlanConflict('update on %s by its condition touched %d row(s) where the plan, made under lock, has %d '
                           '(a row entered the condition since the plan was read); rolled back. Re-run to plan '
                           'again from the current state' % (group.table, written, len(group.changes)))


def execute_group(session, group, record=True):
    """Lock, re-check and write one statement group; returns journal entries (none unless ``record``)."""
    if group.scope is not None:
        _scoped_update(session, group)
        return [change.to_journal() for change in group.changes] if record else []
    entries = []
    for chunk in chunks(group.changes, CHUNK_SIZE):
        keys = [change.key_value for change in chunk]
        by_key = {}
        if group.planned_under_lock:
            # Read under the lock the plan's session still holds: nothing can differ from the plan.
            _write_chunk(session, group, chunk, keys)
        elif not _guarded_update(session, group, chunk, keys):
            by_key = _lock_and_compare(session, group, chunk, keys)
            _write_chunk(session, group, chunk, keys)
        if not record:
            continue
        for change in chunk:
            # The whole row is kept only where undo must re-insert it: a row such as an
            # attachment can hold backend secrets in connection_info.
            locked_row = by_key.get(normalized_key(change.key_value)) if change.action == DELETE else None
            entries.append(change.to_journal(locked_row))
    return entries


def describe_changes(changes, limit=None):
    """``before``/``after`` of the result: only the fields the plan changes.

    With ``limit``, at most that many rows are shown (the plan and the journal
    still carry every row); the third value counts the rows left out.
    """
    before, after = {}, {}
    shown = changes if limit is None else changes[:limit]
    for change in shown:
        label = change.label()
        # Shown to the operator: a column that can hold a secret shows its stand-in (the journal keeps the value).
        before.setdefault(change.database, {})[label] = (redaction.redact_row(change.before, change.table)
                                                         if change.action != INSERT else None)
        after.setdefault(change.database, {})[label] = (redaction.redact_row(change.after, change.table)
                                                        if change.action != DELETE else None)
    return before, after, len(changes) - len(shown)


class Guard(object):
    """One invariant that does not hold, with the rows that show it."""

    def __init__(self, name, message, evidence=None):
        self.name = name
        self.message = message
        # Shown on every refusal and copied into forced_guards: secret columns show their stand-in.
        self.evidence = [redaction.redact(normalize_row(row)) if isinstance(row, dict) else row
                         for row in (evidence or [])]

    def to_result(self):
        return dict(guard=self.name, message=self.message, evidence=self.evidence)


class BlindSpot(object):
    """A guard that could not look: its evidence source was not given."""

    def __init__(self, name, missing_option, message):
        self.name = name
        self.missing_option = missing_option
        self.message = message

    def to_result(self):
        return dict(guard=self.name, missing_option=self.missing_option, message=self.message)


class Plan(object):
    """What a run will do: row changes (db) or calls (api), plus what it owes."""

    def __init__(self, locked=False):
        # Made under lock (RemediationModule.planning_under_lock): every change is marked so.
        self.locked = locked
        self.changes = []
        self.calls = []
        self.guards = []
        # Guards that force never lifts (refuse(..., never=True)).
        self.never_guards = []
        # Guards that could not look (see blind); the run refuses unless accept_unverified.
        self.blind_spots = []
        self.warnings = []
        self.notes = []
        # The journal of an earlier, partly committed run of the same task that this plan finishes.
        self.resumes = None
        # The module's own result keys (per-resource reports such as ``instances``), computed with the plan.
        self.results = {}
        # The fingerprint of the plan's review items (set by the base once planning ends).
        self.fingerprint = None
        self._groups = None

    def change(self, *args, **kwargs):
        kwargs.setdefault('locked', self.locked)
        self.changes.append(RowChange(*args, **kwargs))

    def updates(self, *args, **kwargs):
        """Many rows given the same values: see uniform_updates."""
        kwargs.setdefault('locked', self.locked)
        self.changes.extend(uniform_updates(*args, **kwargs))

    def statement_groups(self):
        """The changes as statement groups, formed once for the result and the executor alike."""
        if self._groups is None or self._groups[0] != len(self.changes):
            self._groups = (len(self.changes), group_changes(self.changes))
        return self._groups[1]

    def call(self, *args, **kwargs):
        self.calls.append(ApiCall(*args, **kwargs))

    def refuse(self, name, message, evidence=None, never=False):
        """A guard that found a problem: the run refuses, with ``evidence``.

        The one way a module refuses. ``force`` (with a force_reason) lifts an ordinary refusal;
        ``never=True`` is for what force must never lift (a deleted instance, cell0, a target in
        another cell): the run then refuses at the latest when planning ends, or at once where the
        module calls :meth:`stop_if_never_overridden` because planning cannot go on.
        """
        (self.never_guards if never else self.guards).append(Guard(name, message, evidence))

    def stop_unless_forced(self, force):
        """Refuse now if an ordinary guard holds and ``force`` is not set; nothing has been written yet."""
        if not self.guards or force:
            return
        details = dict(guards=[guard.to_result() for guard in self.guards])
        if self.blind_spots:
            details['unverified_guards'] = [spot.to_result() for spot in self.blind_spots]
        raise GuardRefusal('refused: %s. Nothing was changed; fix the cause, or set force with a force_reason '
                           'if you have verified it is safe' % '; '.join(guard.message for guard in self.guards),
                           **details)

    def stop_if_never_overridden(self):
        """Refuse now if any guard that force never lifts holds; nothing has been written yet.

        The result shows them first, then the ordinary guards, so the operator sees everything
        that stands in the way at once.
        """
        if not self.never_guards:
            return
        guards = [guard.to_result() for guard in self.never_guards] + [guard.to_result() for guard in self.guards]
        raise GuardRefusal('refused: %s. This is never overridden, even with force. Nothing was changed'
                           % '; '.join(guard.message for guard in self.never_guards), guards=guards)

    def blind(self, guard_name, missing_option, message):
        """Guard ``guard_name`` cannot check its invariant because ``missing_option`` was not given.

        The run refuses, naming the option, unless the operator accepts the blind spot with
        accept_unverified and an unverified_reason (recorded in the result and the journal).
        One entry per guard and option: a later call's message, which can name more rows, replaces the earlier.
        """
        for spot in self.blind_spots:
            if (spot.name, spot.missing_option) == (guard_name, missing_option):
                spot.message = message
                return
        self.blind_spots.append(BlindSpot(guard_name, missing_option, message))

    def review_items(self):
        """The plan as lines a reviewer reads: one per row change or API call (see fingerprint)."""
        return sorted([review_item(change) for change in self.changes] + [review_call(call) for call in self.calls])

    def warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    def note(self, message):
        self.notes.append(message)


def describe_calls(calls):
    """``before``/``after`` of an API plan, per service and resource."""
    before, after = {}, {}
    for call in calls:
        if call.resource and (call.before or call.after):
            # The first call's view of a field is the state before the run; the last call's is the result.
            first = before.setdefault(call.service, {}).setdefault(call.resource, {})
            for field, value in call.before.items():
                first.setdefault(field, value)
            after.setdefault(call.service, {}).setdefault(call.resource, {}).update(call.after)
    return before, after


# ------------------------------------------------------------ fingerprint

def _shown(value):
    return json.dumps(value, sort_keys=True, default=str)


def _after_shown(after):
    return dict((column, RUN_TIME if isinstance(value, str) and value in _RUN_STAMPS else value)
                for column, value in after.items())


def review_item(change):
    """One line a reviewer reads for one row change: what it holds now and what it will hold (secrets redacted)."""
    where = '%s %s %s' % (change.action, change.database, change.label())
    before = redaction.redact(change.before, change.table)
    after = redaction.redact(_after_shown(change.after), change.table)
    if change.action == UPDATE:
        parts = ['%s: %s -> %s' % (column, _shown(before.get(column)), _shown(after[column])) for column in sorted(after)]
        expect = redaction.redact(change.expect, change.table)
        if expect:
            parts.append('expects %s' % _shown(expect))
        return '%s: %s' % (where, '; '.join(parts))
    return '%s: %s' % (where, _shown(before if change.action == DELETE else after))


def review_call(call):
    """One line a reviewer reads for one API call."""
    line = 'call %s %s %s' % (call.service, call.call, _shown(redaction.redact(call.arguments)))
    if call.resource:
        line += ' on %s' % call.resource
    if call.before or call.after:
        line += ': %s -> %s' % (_shown(redaction.redact(call.before)), _shown(redaction.redact(call.after)))
    return line


def fingerprint(items):
    """The fingerprint of a plan's review items: equal plans, equal fingerprints, whatever their order."""
    digest = hashlib.sha256('\n'.join(sorted(items)).encode('utf-8', 'surrogateescape')).hexdigest()
    return 'sha256:%s' % digest
