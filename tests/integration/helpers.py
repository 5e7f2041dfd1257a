"""Shared checks of the integration tests: independent SQL reads of the state."""

import json


def table_rows(dbs, logical, table, order='id'):
    """Every row of a table, as plain JSON-comparable dicts."""
    rows = dbs.query(logical, 'SELECT * FROM `%s` ORDER BY `%s`' % (table, order))
    return json.loads(json.dumps(rows, default=str))


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
