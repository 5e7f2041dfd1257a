"""The executor's lock re-check on a real Cinder schema.

The executor writes a planned row only while it still holds what the plan
read. A chunk of updates carries, in its own UPDATE, the hash of what each
row must hold (key and checked columns as QUOTE() prints them), so 100,000
rows need not travel back to Python. Unless every row matched, the chunk is
undone to a savepoint and checked row by row. These tests hold that
shortcut to the row-by-row check it stands in for: it agrees on tricky
values, it never lets a changed row through, and what it cannot predict
goes row by row.
"""

import datetime

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import plan as planning
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import PlanConflict

pytestmark = pytest.mark.newest_release

# Values QUOTE() must print exactly as the plan predicts: quotes, backslashes, unicode, NULL.
NAMES = ["it's", 'back\\slash', 'caf\u00e9 \u2603', '', None, "both ' and \\ at once"]


class RecordingSession(db.Session):
    """The module's own session, remembering the statements it ran."""

    def __init__(self, target):
        super().__init__(target)
        self.statements = []

    def query(self, sql, params=None):
        self.statements.append(sql)
        return super().query(sql, params)

    def execute(self, sql, params=None):
        self.statements.append(sql)
        return super().execute(sql, params)


def _session(dbs):
    return RecordingSession(db.parse_url('cinder_db', dbs.url('cinder'))).connect()


def _plan(session, ids, stamp):
    """Rename the volumes, checking the columns a rehost checks, from rows read in ``session``."""
    rows = session.query('SELECT id, display_name, status, migration_status, deleted, updated_at FROM volumes '
                         'WHERE id IN (%s)' % planning.placeholders(len(ids)), ids)
    assert len(rows) == len(ids)
    return [planning.RowChange('cinder_db', 'volumes', {'id': row['id']},
                               before=dict(display_name=row['display_name'], updated_at=row['updated_at']),
                               after=dict(display_name='renamed', updated_at=stamp),
                               expect=dict(deleted=row['deleted'], status=row['status'],
                                           migration_status=row['migration_status']))
            for row in sorted(rows, key=lambda row: row['id'])]


STAMP = datetime.datetime(2026, 11, 22, 12, 0, 0)


def _plan_and_apply(dbs, volumes, meanwhile=None):
    """Plan the rename in the module's session, let ``meanwhile`` change the rows, then apply.

    Returns the session (its statements recorded), the journal entries and the PlanConflict
    raised, if any; a conflict rolls back, a success commits.
    """
    session = _session(dbs)
    entries, conflict = None, None
    try:
        changes = _plan(session, volumes, STAMP)
        if meanwhile:
            meanwhile()
        [group] = planning.group_changes(changes)
        try:
            entries = planning.execute_group(session, group)
            session.commit()
        except PlanConflict as error:
            conflict = error
            session.rollback()
    finally:
        session.close()
    return session, entries, conflict


def _kinds(session):
    """The statements after the plan's read, by kind."""
    kinds = []
    for sql in session.statements[1:]:
        if sql.endswith('FOR UPDATE'):
            kinds.append('locking read')
        elif sql.startswith('UPDATE'):
            kinds.append('guarded update' if 'SHA2(' in sql else 'update')
        else:
            kinds.append(sql)
    return kinds


@pytest.fixture
def volumes(cloud):
    cloud.cinder_service('cinder@lvm')
    return [cloud.volume(display_name=name, migration_status='migrating' if index % 2 else None)
            for index, name in enumerate(NAMES)]


def test_unchanged_rows_pass_on_the_digest_alone(dbs, volumes):
    session, entries, conflict = _plan_and_apply(dbs, volumes)
    assert conflict is None
    # One statement checked and wrote every row: none came back to be compared in Python.
    assert _kinds(session) == ['SAVEPOINT stackmender_chunk', 'guarded update']
    assert [entry['key']['id'] for entry in entries] == sorted(volumes)
    names = dbs.query('cinder', 'SELECT display_name, updated_at FROM volumes WHERE id IN (%s)'
                      % ', '.join(['%s'] * len(volumes)), volumes)
    assert names == [dict(display_name='renamed', updated_at=STAMP)] * len(volumes)


@pytest.mark.parametrize('column, value', [('display_name', "it's changed"), ('status', 'error'),
                                           ('migration_status', None), ('updated_at', '2020-01-01 00:00:00')])
def test_a_row_changed_after_the_plan_is_caught_and_named(dbs, volumes, column, value):
    changed = volumes[1]  # migration_status 'migrating', so setting it to NULL is a change
    session, _entries, conflict = _plan_and_apply(dbs, volumes, lambda: dbs.execute(
        'cinder', 'UPDATE volumes SET `%s` = %%s WHERE id = %%s' % column, (value, changed)))
    assert conflict is not None
    # The changed row did not match its hash: the chunk was undone, then compared row by row, naming the row.
    assert _kinds(session) == ['SAVEPOINT stackmender_chunk', 'guarded update',
                               'ROLLBACK TO SAVEPOINT stackmender_chunk', 'locking read']
    assert list(conflict.details['conflicts']) == ['cinder_db.volumes/%s' % changed]
    assert list(conflict.details['conflicts'].values())[0].keys() == {column}
    assert dbs.scalar('cinder', "SELECT COUNT(*) FROM volumes WHERE display_name = 'renamed'") == 0


def test_a_vanished_row_is_caught(dbs, volumes):
    _unused, _entries, conflict = _plan_and_apply(dbs, volumes, lambda: dbs.execute(
        'cinder', 'DELETE FROM volumes WHERE id = %s', (volumes[0],)))
    assert conflict is not None
    assert conflict.details['conflicts'] == {'cinder_db.volumes/%s' % volumes[0]: {'(row)': 'missing'}}
    assert dbs.scalar('cinder', "SELECT COUNT(*) FROM volumes WHERE display_name = 'renamed'") == 0


def test_values_the_digest_cannot_predict_go_row_by_row(dbs, volumes):
    """A NUL byte is printed by QUOTE() in a way the plan does not predict: the rows are compared one by one."""
    dbs.execute('cinder', 'UPDATE volumes SET display_name = %s WHERE id = %s', ('nul\x00inside', volumes[0]))
    session, _entries, conflict = _plan_and_apply(dbs, volumes)
    assert conflict is None
    assert _kinds(session) == ['locking read', 'update']
    assert dbs.scalar('cinder', "SELECT COUNT(*) FROM volumes WHERE display_name = 'renamed'") == len(volumes)


@pytest.mark.parametrize('value, printed', [(None, 'NULL'), (0, "'0'"), (True, "'1'"), (-7, "'-7'"),
                                            ("a'b\\c", "'a\\'b\\\\c'"), ('caf\u00e9', "'caf\u00e9'"),
                                            ('nul\x00', None), (1.5, None), ({'base64': 'AA=='}, None)])
def test_the_plan_predicts_what_quote_prints_or_says_it_cannot(dbs, value, printed):
    assert planning._quoted(value) == printed
    if printed is not None and not isinstance(value, bool):
        shown = dbs.scalar('cinder', 'SELECT QUOTE(%s)', (value,))
        assert (shown.decode() if isinstance(shown, bytes) else shown) == printed


def _per_row_changes(session, ids, meanwhile=None):
    """Give every volume its own display_name and updated_at back, as an undo does, in one statement group."""
    rows = session.query('SELECT id, display_name, updated_at, deleted FROM volumes WHERE id IN (%s) ORDER BY id'
                         % planning.placeholders(len(ids)), ids)
    if meanwhile:
        meanwhile()
    return [planning.RowChange('cinder_db', 'volumes', {'id': row['id']},
                               before=dict(display_name=row['display_name'], updated_at=row['updated_at'],
                                           status='available'),
                               after=dict(display_name='name %d \' \\ \u00e9' % number,
                                          updated_at=STAMP - datetime.timedelta(days=number), status='error'),
                               expect=dict(deleted=row['deleted']), per_row=('display_name', 'updated_at'))
            for number, row in enumerate(rows)]


def test_rows_with_values_of_their_own_share_one_statement(dbs, volumes):
    session = _session(dbs)
    try:
        groups = planning.group_changes(_per_row_changes(session, volumes))
        assert len(groups) == 1
        planning.execute_group(session, groups[0])
        session.commit()
    finally:
        session.close()
    assert _kinds(session) == ['SAVEPOINT stackmender_chunk', 'guarded update']
    rows = dbs.query('cinder', 'SELECT display_name, updated_at, status FROM volumes WHERE id IN (%s) ORDER BY id'
                     % ', '.join(['%s'] * len(volumes)), volumes)
    assert rows == [dict(display_name='name %d \' \\ \u00e9' % number, updated_at=STAMP - datetime.timedelta(days=number),
                         status='error') for number in range(len(volumes))]


def test_rows_with_values_of_their_own_are_still_checked(dbs, volumes):
    changed = sorted(volumes)[2]
    session = _session(dbs)
    try:
        [group] = planning.group_changes(_per_row_changes(session, volumes, lambda: dbs.execute(
            'cinder', "UPDATE volumes SET display_name = 'someone else' WHERE id = %s", (changed,))))
        with pytest.raises(PlanConflict) as raised:
            planning.execute_group(session, group)
        session.rollback()
    finally:
        session.close()
    assert list(raised.value.details['conflicts']) == ['cinder_db.volumes/%s' % changed]
    assert dbs.scalar('cinder', "SELECT COUNT(*) FROM volumes WHERE status = 'error'") == 0
