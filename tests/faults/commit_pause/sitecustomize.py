"""Holds one COMMIT of a module so that a fault test can kill its connection between two commits.

A fault test puts this directory on PYTHONPATH and sets STACKMENDER_FAULT_COMMIT to
``<number>:<before|after>:<directory>``. Python loads this file in every process it
starts; in the one that commits (the module), the commit of that number (counted from
1, one per database) waits:

- ``before``: the COMMIT is not sent yet; the test kills the connection, so the
  COMMIT then fails and the server has rolled the transaction back.
- ``after``: the COMMIT was sent and succeeded; the test kills the connection, and
  the module is told the connection was lost while it waited for the answer, as when
  the answer of a COMMIT the server carried out never arrives.

While it waits, ``<directory>/paused`` holds the connection's server thread id; it
goes on once ``<directory>/go`` exists. Nothing here runs unless the variable is set.
"""

import json
import os
import time

SPEC = os.environ.get('STACKMENDER_FAULT_COMMIT')
WAIT_LIMIT = 240


def _install(number, where, directory):
    import pymysql.connections
    import pymysql.err

    original = pymysql.connections.Connection.commit
    seen = []

    def _pause(connection):
        paused = os.path.join(directory, 'paused')
        with open(paused + '.tmp', 'w') as stream:
            json.dump(dict(thread_id=connection.thread_id(), pid=os.getpid(), where=where), stream)
        os.rename(paused + '.tmp', paused)
        deadline = time.monotonic() + WAIT_LIMIT
        while not os.path.exists(os.path.join(directory, 'go')) and time.monotonic() < deadline:
            time.sleep(0.05)

    def commit(connection):
        seen.append(connection)
        if len(seen) != number:
            return original(connection)
        if where == 'before':
            _pause(connection)
            return original(connection)
        original(connection)
        _pause(connection)
        raise pymysql.err.OperationalError(2013, 'Lost connection to server during query')

    pymysql.connections.Connection.commit = commit


if SPEC:
    _number, _where, _directory = SPEC.split(':', 2)
    try:
        _install(int(_number), _where, _directory)
    except ImportError:  # a process without PyMySQL (the controller, say) commits nothing
        pass
