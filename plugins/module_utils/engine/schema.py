# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Schema probing: detect the tables and columns a plan needs, never guess.

A plan names what it reads and writes up front; if the connected database
(created by some release's migrations) lacks one, the module fails before
planning with a message that names the column and, where known, the release
that introduced it, instead of a SQL error halfway through.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import SchemaError

# Columns that appeared within the releases operators still run, with the
# OpenStack release whose migrations added them.
INTRODUCED_IN = {
    ('nova', 'instances', 'compute_id'): '2023.2 (Bobcat)',
    ('nova', 'migrations', 'dest_compute_id'): '2023.2 (Bobcat)',
    ('nova', 'block_device_mapping', 'encryption_secret_uuid'): '2023.1 (Antelope)',
    ('cinder', 'volumes', 'use_quota'): 'Yoga',
    ('cinder', 'snapshots', 'use_quota'): 'Yoga',
    ('cinder', 'volumes', 'shared_targets'): 'Rocky',
    ('cinder', 'volumes', 'service_uuid'): 'Rocky',
}


class Schema(object):
    """The tables and columns of one database, read once from information_schema."""

    def __init__(self, service, database, columns):
        self.service = service
        self.database = database
        self.columns = columns  # {table: set(column names)}

    @classmethod
    def probe(cls, session, service):
        rows = session.query(
            'SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS '
            'WHERE TABLE_SCHEMA = %s', (session.target.database,))
        columns = {}
        for row in rows:
            columns.setdefault(row['t'], set()).add(row['c'])
        if not columns:
            raise SchemaError('database %s is empty or not readable: is this the %s database?'
                              % (session.target.display(), service))
        return cls(service, session.target.database, columns)

    def has(self, table, column=None):
        if table not in self.columns:
            return False
        return column is None or column in self.columns[table]

    def require(self, table, columns=(), purpose=None):
        """Fail with a clear message unless ``table`` has every one of ``columns``."""
        why = ' (needed to %s)' % purpose if purpose else ''
        if table not in self.columns:
            raise SchemaError('the %s database %s has no table %s%s, or the account has no privilege on it that '
                              'shows its columns (SELECT): is this really a %s database, with the grants of '
                              'docs/privileges.md?' % (self.service, self.database, table, why, self.service))
        missing = [column for column in columns if column not in self.columns[table]]
        if missing:
            notes = []
            for column in missing:
                release = INTRODUCED_IN.get((self.service, table, column))
                notes.append('%s.%s%s' % (table, column, ' (added in %s)' % release if release else ''))
            raise SchemaError('this release of the %s schema lacks column %s%s; upgrade the database '
                              'schema or use a method that does not need it'
                              % (self.service, ', '.join(notes), why),
                              missing=['%s.%s' % (table, column) for column in missing])
