"""Test-only: log every SQL statement PyMySQL sends as (template, arguments).

Put this directory on PYTHONPATH and set STACKMENDER_SQL_LOG to a file; every
Python process started with that environment (Ansible's module processes
included) appends one JSON line per Cursor.execute/executemany call.
"""

import json
import os

_LOG = os.environ.get('STACKMENDER_SQL_LOG')


def _install():
    try:
        import pymysql.cursors
    except ImportError:
        return
    cursor_class = pymysql.cursors.Cursor
    if getattr(cursor_class, '_stackmender_spy', False):
        return
    original_execute = cursor_class.execute
    original_executemany = cursor_class.executemany

    def record(kind, query, args):
        line = json.dumps({'kind': kind, 'pid': os.getpid(), 'template': query if isinstance(query, str) else repr(query),
                           'args': repr(args)}) + '\n'
        descriptor = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line.encode('utf-8', 'backslashreplace'))
        finally:
            os.close(descriptor)

    def execute(self, query, args=None):
        # executemany sends its rows through execute with the values already in: that is PyMySQL's doing.
        if not getattr(self, '_stackmender_in_many', False):
            record('execute', query, args)
        return original_execute(self, query, args)

    def executemany(self, query, args):
        record('executemany', query, args)
        self._stackmender_in_many = True
        try:
            return original_executemany(self, query, args)
        finally:
            self._stackmender_in_many = False

    cursor_class.execute = execute
    cursor_class.executemany = executemany
    cursor_class._stackmender_spy = True


if _LOG:
    _install()
