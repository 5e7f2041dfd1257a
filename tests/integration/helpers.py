"""Shared checks of the integration tests: independent SQL reads of the state."""

import json
import os


def table_rows(dbs, logical, table, order='id'):
    """Every row of a table, as plain JSON-comparable dicts, in ``order`` (whole rows where it has no such column)."""
    rows = json.loads(json.dumps(dbs.query(logical, 'SELECT * FROM `%s`' % table), default=str))
    if rows and order not in rows[0]:
        return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True))
    return sorted(rows, key=lambda row: (row[order] is None, row[order]))


def one(dbs, logical, sql, *params):
    """The single row ``sql`` returns; fails when there is not exactly one."""
    rows = dbs.query(logical, sql, params)
    assert len(rows) == 1, rows
    return rows[0]


def allocations(dbs, consumer):
    """{(provider uuid, class): used} of one consumer, read from placement directly."""
    rows = dbs.query('placement', 'SELECT p.uuid, rc.name, a.used FROM allocations a JOIN resource_providers p '
                     'ON p.id = a.resource_provider_id JOIN resource_classes rc ON rc.id = a.resource_class_id '
                     'WHERE a.consumer_id = %s', (consumer,))
    return dict(((row['uuid'], row['name']), row['used']) for row in rows)


def generation(dbs, table, uuid):
    """The placement generation of a resource provider or consumer."""
    return one(dbs, 'placement', 'SELECT generation FROM `%s` WHERE uuid = %%s' % table, uuid)['generation']


def snapshot(dbs, tables):
    """The full contents of several tables: {(logical, table): rows}."""
    return dict(((logical, table), table_rows(dbs, logical, table)) for logical, table in tables)


CINDER_TABLES = [('cinder', table) for table in (
    'volumes', 'volume_attachment', 'volume_admin_metadata', 'volume_metadata', 'volume_glance_metadata',
    'snapshots', 'transfers', 'workers', 'quota_usages')]

NOVA_TABLES = [('nova', 'block_device_mapping'), ('nova', 'instances')]


def db_args(dbs, *logicals, **extra):
    """Module arguments naming the test's own databases."""
    names = {'cinder': 'cinder_db', 'nova': 'nova_db', 'nova_api': 'nova_api_db', 'placement': 'placement_db'}
    args = dict((names[logical], dbs.url(logical)) for logical in logicals)
    args.update(extra)
    return args


def assert_clean_failure(result, fragment):
    """A failed run with a clear message naming the problem."""
    assert result.failed, 'expected a failure, got %r' % dict(result)
    assert fragment in result['msg'], result['msg']
    assert 'Traceback' not in result['msg']


def run_full_cycle(ansible, dbs, module, args, tables, verify_applied):
    """check -> apply -> verify -> re-run -> undo -> verify originals; returns the applied result."""
    original = snapshot(dbs, tables)

    checked = ansible(module, args, check=True, diff=True)
    assert not checked.failed, checked['msg']
    assert checked.changed and checked['journal'] is None
    assert checked['plan'] and checked['diff']['before'] and checked['diff']['after']
    assert snapshot(dbs, tables) == original, 'check mode wrote something'

    applied = ansible(module, args)
    assert not applied.failed, applied['msg']
    assert applied.changed and 'diff' not in applied
    assert [step['statement'] for step in applied['plan']] == [step['statement'] for step in checked['plan']]
    assert os.path.isfile(applied['journal'])
    verify_applied()

    again = ansible(module, args, check=True)
    assert not again.failed and not again.changed, again
    again = ansible(module, args)
    assert not again.failed and not again.changed, again
    assert again['msg'].startswith('nothing to do') and again['notes']

    undo_args = dict((key, value) for key, value in args.items() if key.endswith('_db') or key == 'journal_dir')
    undo_args['journal'] = applied['journal']
    undone = ansible('journal_undo', undo_args)
    assert not undone.failed and undone.changed, undone
    assert snapshot(dbs, tables) == original, 'undo did not restore the original rows'
    assert not ansible('journal_undo', undo_args).changed
    return applied
