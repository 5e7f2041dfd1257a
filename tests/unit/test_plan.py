"""Plans: grouping into statements, rendering, journal entries."""

import datetime
import sys

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import plan as planning
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import DatabaseError


def _change(key, status='available', action=planning.UPDATE):
    return planning.RowChange('cinder_db', 'volumes', {'id': key}, action=action,
                              before={'status': 'detaching'}, after={'status': status} if action == planning.UPDATE else None)


def test_changes_of_one_shape_become_one_statement_wherever_they_are_planned():
    # The executor brings equal shapes together: a/b/d are one statement although c was planned between them.
    groups = planning.group_changes([_change('a'), _change('b'), _change('c', status='error'), _change('d')])
    assert [len(group.changes) for group in groups] == [3, 1]
    described = groups[0].describe()
    assert described['statement'] == 'UPDATE `volumes` SET `status` = %s WHERE `id` IN (%s, %s, %s)'
    assert described['params'] == ['available', 'a', 'b', 'd']
    assert described['rows'] == 3
    assert groups[1].describe()['params'] == ['error', 'c']


def test_a_row_changed_twice_keeps_the_planned_order():
    # Its second change depends on its first: nothing is reordered.
    changes = [_change('a'), _change('b', status='error'), _change('a', status='error')]
    groups = planning.group_changes(changes)
    assert [[change.key_value for change in group.changes] for group in groups] == [['a'], ['b', 'a']]


def test_tables_keep_the_order_they_first_appear_in():
    child = planning.RowChange('cinder_db', 'volume_attachment', {'id': 'x1'}, action=planning.DELETE,
                               before={'volume_id': 'a'})
    child2 = planning.RowChange('cinder_db', 'volume_attachment', {'id': 'x2'}, action=planning.DELETE,
                                before={'volume_id': 'b'})
    groups = planning.group_changes([child, _change('a', action=planning.DELETE), child2, _change('b', action=planning.DELETE)])
    assert [group.changes[0].table for group in groups] == ['volume_attachment', 'volumes']
    assert [len(group.changes) for group in groups] == [2, 2]


def test_long_key_lists_are_counted_not_dumped():
    group = planning.group_changes([_change('v%04d' % number) for number in range(1200)])[0]
    described = group.describe()
    assert described['rows'] == 1200
    assert described['keys_not_shown'] == 1200 - planning.SHOWN_KEYS
    assert len(described['params']) == 1 + planning.SHOWN_KEYS


def test_soft_delete_with_the_own_key_shares_one_statement():
    stamp = datetime.datetime(2026, 11, 22, 3, 4, 5)
    changes = [planning.RowChange('nova_db', 'block_device_mapping', {'id': key}, before={'deleted': 0, 'deleted_at': None},
                                  after={'deleted_at': stamp}, from_key=('deleted',)) for key in (12, 13, 20)]
    group, = planning.group_changes(changes)
    described = group.describe()
    assert described['statement'] == ('UPDATE `block_device_mapping` SET `deleted` = `id`, `deleted_at` = %s '
                                      'WHERE `id` IN (%s, %s, %s)')
    assert described['params'] == ['2026-11-22 03:04:05', 12, 13, 20]
    # The journal and the result still show each row's own value.
    assert [change.after['deleted'] for change in changes] == [12, 13, 20]
    assert planning.describe_changes(changes)[1]['nova_db']['block_device_mapping/13']['deleted'] == 13
    with pytest.raises(ValueError):
        planning.RowChange('nova_db', 'instances', {'id': 1}, action=planning.DELETE, from_key=('deleted',))


def test_results_show_a_bounded_number_of_rows():
    changes = [_change('v%04d' % number) for number in range(30)]
    before, after, hidden = planning.describe_changes(changes, limit=10)
    assert len(before['cinder_db']) == len(after['cinder_db']) == 10 and hidden == 20
    assert 'volumes/v0009' in after['cinder_db'] and 'volumes/v0010' not in after['cinder_db']


def test_identifiers_are_checked():
    with pytest.raises(ValueError):
        planning.quote_identifier('volumes; DROP TABLE x')
    assert planning.quote_identifier('volume_attachment') == '`volume_attachment`'


def test_values_normalise_for_json_and_comparison():
    moment = datetime.datetime(2026, 11, 22, 3, 4, 5)
    assert planning.normalize(moment) == '2026-11-22 03:04:05'
    assert planning.sql_value(planning.normalize(b'\x00\x01')) == b'\x00\x01'
    change = planning.RowChange('cinder_db', 'volumes', {'id': 'a'}, before={'updated_at': moment},
                                after={'updated_at': None}, expect={'deleted': 0})
    assert change.checked_values() == {'deleted': 0, 'updated_at': '2026-11-22 03:04:05'}


def test_before_and_after_show_only_changed_fields():
    before, after, hidden = planning.describe_changes([_change('a'), _change('w', action=planning.DELETE)])
    assert hidden == 0
    assert before == {'cinder_db': {'volumes/a': {'status': 'detaching'}, 'volumes/w': {'status': 'detaching'}}}
    assert after == {'cinder_db': {'volumes/a': {'status': 'available'}, 'volumes/w': None}}


def test_quota_decrements_follow_cinder_delete():
    volumes = [
        {'id': 'v1', 'project_id': 'p', 'size': 10, 'volume_type_id': 't', 'use_quota': 1},
        {'id': 'v2', 'project_id': 'p', 'size': 5, 'volume_type_id': 't', 'use_quota': 1},
        {'id': 'v3', 'project_id': 'p', 'size': 7, 'volume_type_id': 't', 'use_quota': 0},
    ]
    totals = cinder.quota_decrements(volumes, {'t': 'ssd'}, {'v1': [{'volume_size': 10, 'use_quota': 1}]})
    assert totals == {('p', 'volumes'): 2, ('p', 'gigabytes'): 25, ('p', 'volumes_ssd'): 2,
                      ('p', 'gigabytes_ssd'): 25, ('p', 'snapshots'): 1, ('p', 'snapshots_ssd'): 1}


def test_transitional_statuses_are_a_subset_of_known_ones():
    assert set(cinder.TRANSITIONAL_STATUSES) < set(cinder.VOLUME_STATUSES)
    assert 'error_deleting' not in cinder.TRANSITIONAL_STATUSES
    assert cinder.is_migrating('target:abc') and cinder.is_migrating('migrating') and not cinder.is_migrating(None)


def _restore(key, stamp, host='old@lvm'):
    return planning.RowChange('cinder_db', 'volumes', {'id': key}, before={'host': 'new@lvm', 'updated_at': 'now'},
                              after={'host': host, 'updated_at': stamp}, per_row=('updated_at',))


def test_rows_differing_only_in_per_row_columns_share_one_statement():
    groups = planning.group_changes([_restore('a', '2026-01-01 00:00:00'), _restore('b', '2026-02-02 00:00:00'),
                                     _restore('c', '2026-03-03 00:00:00', host='other@lvm')])
    assert [len(group.changes) for group in groups] == [2, 1]
    described = groups[0].describe()
    assert described['statement'] == ('UPDATE `volumes` SET `host` = %s, `updated_at` = CASE `id` WHEN %s THEN %s '
                                      'WHEN %s THEN %s ELSE `updated_at` END WHERE `id` IN (%s, %s)')
    assert described['params'] == ['old@lvm', 'a', '2026-01-01 00:00:00', 'b', '2026-02-02 00:00:00', 'a', 'b']


def test_per_row_values_are_shown_json_safe_and_written_as_bytes():
    change = planning.RowChange('cinder_db', 'volumes', {'id': 'a'}, before={'blob': b'old'}, after={'blob': b'\x00\x01'},
                                per_row=('blob',))
    group = planning.group_changes([change])[0]
    assert group.describe()['params'] == ['a', {'base64': 'AAE='}, 'a']
    assert group.set_params([change]) == ['a', b'\x00\x01']


@pytest.mark.parametrize('kwargs', [dict(action=planning.DELETE, per_row=('status',)),
                                    dict(after={'status': 'error'}, per_row=('host',)),
                                    dict(after={'deleted': 1}, per_row=('deleted',), from_key=('deleted',))])
def test_per_row_columns_must_be_written_by_an_update(kwargs):
    with pytest.raises(ValueError):
        planning.RowChange('cinder_db', 'volumes', {'id': 'a'}, **kwargs)


def test_undo_writes_the_varying_columns_per_row_unless_a_row_comes_twice():
    from ansible_collections.stackmender.openstack.plugins.modules.journal_undo import with_per_row_values

    def undo(key, stamp, host='old@lvm'):
        return planning.RowChange('cinder_db', 'volumes', {'id': key}, before={'host': 'new', 'updated_at': 'now'},
                                  after={'host': host, 'updated_at': stamp})
    changes = with_per_row_values([undo('a', '1'), undo('b', '2'), undo('c', '3')])
    assert [change.per_row for change in changes] == [('updated_at',)] * 3
    assert len(planning.group_changes(changes)) == 1
    # Host differs too: both columns per row, still one statement.
    assert with_per_row_values([undo('a', '1'), undo('b', '2', host='x')])[0].per_row == ('host', 'updated_at')
    # The same row twice: each keeps its own statement, or one statement would write the row twice.
    twice = with_per_row_values([undo('a', '1'), undo('A', '2')])
    assert [change.per_row for change in twice] == [(), ()]
    assert len(planning.group_changes(twice)) == 2


def _volume_rows(count):
    base = datetime.datetime(2026, 1, 1)
    return [('v-%03d' % number, {'host': 'old@lvm#lvm', 'updated_at': base + datetime.timedelta(seconds=number)},
             {'deleted': 0, 'status': 'available'}) for number in range(count)]


def test_uniform_updates_equal_a_change_per_row():
    rows = _volume_rows(3)
    after = {'host': 'new@lvm#lvm', 'updated_at': datetime.datetime(2026, 2, 1)}
    shared = planning.uniform_updates('cinder_db', 'volumes', 'id', rows, after, note='move', locked=True)
    single = [planning.RowChange('cinder_db', 'volumes', {'id': key}, before=before, after=after, expect=expect,
                                 note='move', locked=True) for key, before, expect in rows]
    for one, other in zip(shared, single):
        assert [getattr(one, name) for name in planning.RowChange.__slots__[:-1]] == \
            [getattr(other, name) for name in planning.RowChange.__slots__[:-1]]
        assert one.signature() == other.signature()
        assert one.to_journal() == other.to_journal()
    assert shared[1].after == {'host': 'new@lvm#lvm', 'updated_at': '2026-02-01 00:00:00'}
    assert shared[2].before['updated_at'] == '2026-01-01 00:00:02'
    groups = planning.group_changes(shared)
    assert len(groups) == 1 and groups[0].planned_under_lock
    assert groups[0].describe() == planning.group_changes(single)[0].describe()
    assert planning.uniform_updates('cinder_db', 'volumes', 'id', [], after) == []


def test_locked_and_unlocked_changes_never_share_a_statement():
    after = {'status': 'available'}
    locked = planning.RowChange('cinder_db', 'volumes', {'id': 'a'}, before={'status': 'error'}, after=after, locked=True)
    unlocked = planning.RowChange('cinder_db', 'volumes', {'id': 'b'}, before={'status': 'error'}, after=after)
    groups = planning.group_changes([locked, unlocked])
    assert [group.planned_under_lock for group in groups] == [True, False]


def test_signature_keeps_apart_values_python_holds_equal():
    def change(value):
        return planning.RowChange('cinder_db', 'volumes', {'id': 'a'}, after={'size': value})
    assert change(1).signature() == change(1).signature()
    assert len({change(1).signature(), change(True).signature(), change(1.0).signature()}) == 3


class _CountingSession(object):
    """Stands in for a database session: reports ``touched`` rows for every write."""

    def __init__(self, touched):
        self.touched = touched
        self.statements = []

    def execute(self, sql, params=None):
        self.statements.append((sql, params))
        return self.touched


def test_an_update_planned_under_lock_is_written_without_a_recheck_and_must_touch_every_row():
    rows = _volume_rows(3)
    changes = planning.uniform_updates('cinder_db', 'volumes', 'id', rows, {'host': 'new@lvm#lvm'}, locked=True)
    group = planning.group_changes(changes)[0]
    session = _CountingSession(3)
    assert planning.execute_group(session, group, record=False) == []
    [(sql, params)] = session.statements
    assert sql == 'UPDATE `volumes` SET `host` = %s WHERE `id` IN (%s, %s, %s)'
    assert params == ['new@lvm#lvm', 'v-000', 'v-001', 'v-002']
    assert [entry['key'] for entry in planning.execute_group(_CountingSession(3), group)] == \
        [{'id': 'v-000'}, {'id': 'v-001'}, {'id': 'v-002'}]
    with pytest.raises(planning.PlanConflict, match='touched 2 row.*expected 3'):
        planning.execute_group(_CountingSession(2), group)


HOST_SCOPE = (((('deleted', 'equals'),), cinder.host_scope('host')), [0, 'old@lvm', 'old@lvm#', 'old@lvm#'])


def test_a_scoped_group_is_one_statement_by_its_condition_that_must_touch_exactly_its_rows():
    changes = planning.uniform_updates('cinder_db', 'volumes', 'id', _volume_rows(3), {'host': 'new@lvm#lvm'},
                                       locked=True, scope=HOST_SCOPE)
    [group] = planning.group_changes(changes)
    assert group.statement(3) == ('UPDATE `volumes` SET `host` = %s WHERE (`deleted` = %s) AND '
                                  '(`host` = BINARY %s OR LEFT(`host`, CHAR_LENGTH(%s)) = BINARY %s)')
    entry = group.describe()
    assert entry['scoped'] and entry['rows'] == 3 and entry['keys'] == ['v-000', 'v-001', 'v-002']
    assert entry['params'] == ['new@lvm#lvm', 0, 'old@lvm', 'old@lvm#', 'old@lvm#']
    session = _CountingSession(3)
    assert [entry['key']['id'] for entry in planning.execute_group(session, group)] == ['v-000', 'v-001', 'v-002']
    assert session.statements == [(group.statement(3), ['new@lvm#lvm', 0, 'old@lvm', 'old@lvm#', 'old@lvm#'])]
    # A row that entered the condition since the plan's read: the count differs and nothing stays written.
    with pytest.raises(planning.PlanConflict, match='touched 4 row.*has 3.*entered the condition'):
        planning.execute_group(_CountingSession(4), group)


def test_a_scope_needs_a_plan_made_under_lock_and_a_well_formed_condition():
    unlocked = planning.uniform_updates('cinder_db', 'volumes', 'id', _volume_rows(2), {'host': 'x'}, scope=HOST_SCOPE)
    [group] = planning.group_changes(unlocked)
    with pytest.raises(ValueError, match='planned under lock'):
        planning.execute_group(_CountingSession(2), group)
    for scope, problem in (((((('host', 'like'),),), ['x']), 'tests among'),
                           (((), []), 'tests among'),
                           ((((('host', 'equals'),),), []), 'one parameter per placeholder')):
        with pytest.raises(ValueError, match=problem):
            planning.RowChange('cinder_db', 'volumes', {'id': 'a'}, after={'host': 'x'}, scope=scope)
    with pytest.raises(ValueError, match='same values to every row'):
        planning.RowChange('cinder_db', 'volumes', {'id': 'a'}, action=planning.DELETE, scope=HOST_SCOPE)


class _FailingSession(object):
    def execute(self, sql, params=None):
        raise DatabaseError('the connection to cinder was lost or killed mid-transaction')


class _Sessions(object):
    """What _write_and_journal asks of its module: a session per database option."""

    def __init__(self, session):
        self.given = session

    def session(self, option):
        return self.given


def test_a_write_under_lock_that_fails_in_its_thread_fails_the_run_after_the_journal_is_written(tmp_path):
    from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import Journal, load_journal
    from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import RemediationModule
    changes = planning.uniform_updates('cinder_db', 'volumes', 'id', _volume_rows(3), {'host': 'new@lvm#lvm'},
                                       locked=True)
    journal = Journal(str(tmp_path), 'stackmender.openstack.cinder_service_rehost', {}, {})
    journal.prepare_directory()
    interval = sys.getswitchinterval()
    with pytest.raises(DatabaseError, match='lost or killed'):
        RemediationModule._write_and_journal(_Sessions(_FailingSession()), planning.group_changes(changes), journal)
    # The caller then rolls back and marks this journal rolled back (the fault tests cover that part).
    assert journal.written
    document = load_journal(journal.path)
    assert document['status'] == 'pending'
    assert [entry['key'] for entry in document['entries']] == [{'id': 'v-000'}, {'id': 'v-001'}, {'id': 'v-002'}]
    assert sys.getswitchinterval() == interval

    written = _CountingSession(3)
    journal = Journal(str(tmp_path), 'stackmender.openstack.cinder_service_rehost', {}, {})
    RemediationModule._write_and_journal(_Sessions(written), planning.group_changes(changes), journal)
    assert len(written.statements) == 1 and load_journal(journal.path)['entries'][2]['after'] == {'host': 'new@lvm#lvm'}
