"""Journals: format 2 groups rows of one shape, and load_journal gives back every entry as it was; a partly
committed run's outcomes, each database's as recorded or as its rows show it."""

import json
import os

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import partial
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import GuardRefusal, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import (
    COMMITTED,
    INCOMPLETE,
    Journal,
    load_journal,
    mark_journal,
)


def _update(key, before, after, note='move the volume', table='volumes', database='cinder_db'):
    return dict(database=database, table=table, key={'id': key}, action='update', before=before, after=after,
                note=note)


def _entries():
    moved = [_update('v%d' % number, {'host': 'old@lvm#lvm', 'updated_at': '2026-01-0%d 10:00:00' % number},
                     {'host': 'new@lvm#lvm', 'updated_at': '2026-11-22 03:00:00'}) for number in range(1, 5)]
    # The same columns listed in another order: its values must not be read in the first order.
    moved.append(_update('v5', {'updated_at': '2026-01-05 10:00:00', 'host': 'old@lvm'},
                         {'updated_at': '2026-11-22 03:00:00', 'host': 'new@lvm'}))
    odd_values = _update("v6 'quoted' \\ \u00e9\u6f22", {'host': None, 'status': ''},
                         {'host': {'base64': 'AAEC'}, 'status': 'caf\u00e9 "x"'}, note=None)
    deleted = [dict(database='cinder_db', table='workers', key={'id': number}, action='delete',
                    before={'status': 'detaching'}, after={}, row={'id': number, 'status': 'detaching'})
               for number in (7, 8)]
    inserted = [dict(database='nova:cell1', table='allocations', key={'id': number}, action='insert', before={},
                     after={'consumer_id': 'c', 'used': number}) for number in (9, 10, 11)]
    return moved + [odd_values] + deleted + inserted


def _written(tmp_path, entries):
    journal = Journal(str(tmp_path), 'stackmender.openstack.cinder_service_rehost', {'from_host': 'old'},
                      {'cinder_db': {'server': '127.0.0.1:3306', 'database': 'cinder'}})
    journal.prepare_directory()
    journal.document['entries'] = entries
    journal.write()
    journal.write(COMMITTED)
    return journal.path


def test_every_entry_comes_back_as_it_was_written(tmp_path):
    entries = _entries()
    document = load_journal(_written(tmp_path, entries))
    assert document['format'] == 2 and document['status'] == COMMITTED
    assert document['entries'] == json.loads(json.dumps(entries))


def test_runs_of_one_shape_are_grouped_and_the_rest_stand_alone(tmp_path):
    with open(_written(tmp_path, _entries())) as stream:
        raw = json.load(stream)['entries']
    groups = [item for item in raw if 'rows' in item]
    assert [(group['table'], len(group['rows'])) for group in groups] == [('volumes', 4), ('allocations', 3)]
    assert groups[0]['before_columns'] == ['host', 'updated_at'] and groups[0]['note'] == 'move the volume'
    assert groups[0]['rows'][0] == ['v1', ['old@lvm#lvm', '2026-01-01 10:00:00'], ['new@lvm#lvm', '2026-11-22 03:00:00']]
    # v5 (other column order), the odd values and each deleted row (its whole row kept) stand alone.
    alone = [item for item in raw if 'rows' not in item]
    assert [item['key']['id'] for item in alone] == ['v5', "v6 'quoted' \\ \u00e9\u6f22", 7, 8]


def test_the_grouped_journal_is_much_smaller_than_one_entry_per_row(tmp_path):
    entries = [_update('%08d-0000-4000-8000-000000000000' % number,
                       {'host': 'cinder-old@lvm#lvm', 'service_uuid': 'a' * 36, 'updated_at': '2026-01-01 10:00:00'},
                       {'host': 'cinder-new@lvm#lvm', 'service_uuid': 'b' * 36, 'updated_at': '2026-11-22 03:00:00'},
                       note='move the volume from cinder-old@lvm to cinder-new@lvm#lvm') for number in range(2000)]
    path = _written(tmp_path, entries)
    one_per_row = sum(len(json.dumps(entry, sort_keys=True)) + 4 for entry in entries)
    assert os.path.getsize(path) < one_per_row * 0.6, (os.path.getsize(path), one_per_row)
    assert load_journal(path)['entries'] == entries


def test_a_format_1_journal_still_loads(tmp_path):
    entries = _entries()
    path = tmp_path / 'old.json'
    path.write_text(json.dumps(dict(format=1, run_id='r', module='m', status='committed', arguments={}, databases={},
                                    force=False, commits={}, entries=entries)))
    assert load_journal(str(path))['entries'] == json.loads(json.dumps(entries))


@pytest.mark.parametrize('damage, message', [
    (lambda group: group.pop('key_column'), 'lacks database/table/action/key_column'),
    (lambda group: group['rows'].append(['v9', ['only one value'], ['x', 'y']]), 'row 4 of group 0 is not'),
    (lambda group: group['rows'].append('v9'), 'row 4 of group 0 is not'),
    (lambda group: group.update(rows={}), 'or its rows'),
])
def test_a_damaged_group_is_refused_naming_it(tmp_path, damage, message):
    path = _written(tmp_path, _entries()[:4])
    with open(path) as stream:
        document = json.load(stream)
    damage(document['entries'][0])
    with open(path, 'w') as stream:
        json.dump(document, stream)
    with pytest.raises(InputError) as raised:
        load_journal(path)
    assert 'is damaged' in str(raised.value) and message in str(raised.value), str(raised.value)


def test_an_unknown_format_is_refused(tmp_path):
    path = tmp_path / 'future.json'
    path.write_text(json.dumps(dict(format=3, status='committed', entries=[])))
    with pytest.raises(InputError, match='format 1 or 2 expected'):
        load_journal(str(path))


# --------------------------------------------------------------------------
# Partial commits: each database's outcome, asked of the rows when unknown

IDENTITIES = {'cinder_db': {'server': '127.0.0.1:3306', 'database': 'cinder'},
              'placement_db': {'server': '127.0.0.1:3306', 'database': 'placement'}}


def _partial_entries():
    return [_update('v1', {'status': 'detaching'}, {'status': 'available'}),
            dict(database='placement_db', table='allocations', key={'id': 4}, action='delete',
                 before={'used': 1}, after={}),
            dict(database='placement_db', table='allocations', key={'id': 9}, action='insert', before={},
                 after={'used': 2, 'consumer_id': 'c'})]


def _live(rows):
    return dict((partial.row_identity(database, table, {'id': key}), row) for (database, table, key), row in rows.items())


def test_outcomes_as_the_journal_records_them_and_old_journals_read_as_before():
    document = dict(status=INCOMPLETE, commits={'cinder_db': 'committed', 'placement_db': 'unknown'},
                    entries=_partial_entries())
    assert partial.journal_outcomes(document) == {'cinder_db': 'committed', 'placement_db': 'unknown'}
    # An earlier release named only the committed and unknown databases: the others rolled back.
    document['commits'] = {'cinder_db': 'committed'}
    assert partial.journal_outcomes(document) == {'cinder_db': 'committed', 'placement_db': 'rolled_back'}
    assert set(partial.journal_outcomes(dict(document, status='pending')).values()) == {'unknown'}
    assert set(partial.journal_outcomes(dict(document, status=COMMITTED)).values()) == {'committed'}


@pytest.mark.parametrize('rows,outcome', [
    # every row as the run wrote it: the delete is done, the insert is there
    ({('placement_db', 'allocations', 9): {'id': 9, 'used': 2, 'consumer_id': 'c'}}, 'committed'),
    # every row as before: the deleted row is there, the inserted one is not
    ({('placement_db', 'allocations', 4): {'id': 4, 'used': 1}}, 'rolled_back'),
    # a mix
    ({('placement_db', 'allocations', 4): {'id': 4, 'used': 1},
      ('placement_db', 'allocations', 9): {'id': 9, 'used': 2, 'consumer_id': 'c'}}, None),
    # a row that holds neither
    ({('placement_db', 'allocations', 4): {'id': 4, 'used': 7}}, None),
])
def test_an_unknown_outcome_is_settled_by_the_rows(rows, outcome):
    entries = [entry for entry in _partial_entries() if entry['database'] == 'placement_db']
    settled, detail = partial.settle_unknown('placement_db', entries, _live(rows))
    assert settled == outcome
    if outcome is None:
        assert detail['evidence'] and 'neither' in detail['counts']
    else:
        assert detail.startswith('asked the server')


def test_settle_refuses_a_mix_and_keeps_recorded_outcomes():
    document = dict(status=INCOMPLETE, commits={'cinder_db': 'committed', 'placement_db': 'unknown'},
                    entries=_partial_entries())
    live = _live({('placement_db', 'allocations', 4): {'id': 4, 'used': 1},
                  ('placement_db', 'allocations', 9): {'id': 9, 'used': 2, 'consumer_id': 'c'}})
    with pytest.raises(GuardRefusal) as refused:
        partial.settle('j.json', document, live)
    assert refused.value.details['guards'][0]['guard'] == 'commit_outcome_mixed'
    live = _live({('placement_db', 'allocations', 4): {'id': 4, 'used': 1}})
    outcomes, how = partial.settle('j.json', document, live)
    assert outcomes == {'cinder_db': 'committed', 'placement_db': 'rolled_back'}
    assert how['cinder_db'] == 'as the journal recorded' and how['placement_db'].startswith('asked the server')


def test_a_row_changed_twice_is_judged_by_its_first_before_and_last_after():
    entries = [_update('v1', {'status': 'detaching'}, {'status': 'error'}),
               _update('v1', {'status': 'error'}, {'status': 'available'})]
    assert partial.settle_unknown('cinder_db', entries, _live({('cinder_db', 'volumes', 'v1'): {
        'id': 'v1', 'status': 'available'}}))[0] == 'committed'
    assert partial.settle_unknown('cinder_db', entries, _live({('cinder_db', 'volumes', 'v1'): {
        'id': 'v1', 'status': 'detaching'}}))[0] == 'rolled_back'


def _incomplete(tmp_path, arguments, identities=None, module='stackmender.openstack.nova_task_state'):
    journal = Journal(str(tmp_path), module, arguments, identities or IDENTITIES)
    journal.prepare_directory()
    journal.document['entries'] = _partial_entries()
    journal.document['commits'] = {'cinder_db': 'committed', 'placement_db': 'unknown'}
    journal.write(INCOMPLETE)
    return journal.path


def test_unfinished_journals_match_module_arguments_and_databases(tmp_path):
    arguments = {'instance': ['i1'], 'journal_dir': 'a', 'lock_timeout': 30, 'force': False}
    path = _incomplete(tmp_path, arguments)
    module = 'stackmender.openstack.nova_task_state'
    # None of these changes what is written (force lifts guards of a fresh plan; finishing plans nothing afresh).
    same = dict(arguments, journal_dir='b', lock_timeout=5, force=True, force_reason='x')
    assert [found for found, _document in partial.unfinished_journals(str(tmp_path), module, same, IDENTITIES)] \
        == [path]
    assert partial.unfinished_journals(str(tmp_path), module, dict(arguments, instance=['i2']), IDENTITIES) == []
    other = dict(IDENTITIES, cinder_db={'server': '127.0.0.1:3306', 'database': 'other'})
    assert partial.unfinished_journals(str(tmp_path), module, arguments, other) == []
    assert partial.unfinished_journals(str(tmp_path), 'stackmender.openstack.nova_instance_host', arguments,
                                       IDENTITIES) == []
    # Once finished (or undone) it is not finished again; the marking keeps every entry.
    mark_journal(path, finished_by='later.json')
    assert partial.unfinished_journals(str(tmp_path), module, arguments, IDENTITIES) == []
    reloaded = load_journal(path)
    assert reloaded['finished_by'] == 'later.json' and reloaded['entries'] == _partial_entries()
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'


def test_describe_outcomes_names_each_database_and_how_it_is_known():
    text = partial.describe_outcomes({'nova:cell1': 'committed', 'placement_db': 'unknown', 'cinder_db': 'rolled_back'},
                                     {'placement_db': 'asked the server: 2 of 2 row(s) hold what the run wrote'})
    assert text == ('nova:cell1: committed; placement_db: commit outcome unknown (asked the server: 2 of 2 row(s) '
                    'hold what the run wrote); cinder_db: rolled back')
