# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Journals: the before-image of every row a run changes, on disk before commit.

One JSON file per run. It is written (and fsynced) while the transaction
still holds its row locks and before it commits, with status ``pending``;
after the commit it is rewritten as ``committed``, after a rollback as
``rolled_back``, and ``incomplete`` when a commit's outcome is unknown (the
connection died during it). ``journal_undo`` replays ``entries`` backwards.
Journals hold no credentials: databases are named by server and schema only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import tempfile
import uuid

from ansible_collections.stackmender.openstack.plugins.module_utils.errors import InputError

JOURNAL_FORMAT = 1
PENDING = 'pending'
COMMITTED = 'committed'
ROLLED_BACK = 'rolled_back'
INCOMPLETE = 'incomplete'
STATUSES = (PENDING, COMMITTED, ROLLED_BACK, INCOMPLETE)


def default_journal_dir():
    """Per-user default: $XDG_STATE_HOME/stackmender/journal (~/.local/state/...)."""
    state = os.environ.get('XDG_STATE_HOME') or os.path.join(os.path.expanduser('~'), '.local', 'state')
    return os.path.join(state, 'stackmender', 'journal')


def _utc_stamp():
    return datetime.datetime.utcnow().replace(microsecond=0).isoformat() + 'Z'


class Journal(object):
    """The journal of one run, created before its first commit."""

    def __init__(self, directory, module, arguments, databases, force=False, force_reason=None):
        self.directory = os.path.abspath(os.path.expanduser(directory or default_journal_dir()))
        self.run_id = str(uuid.uuid4())
        stamp = datetime.datetime.utcnow().strftime('%Y%m%dT%H%M%SZ')
        self.path = os.path.join(self.directory, '%s-%s-%s.json' % (stamp, module.split('.')[-1], self.run_id[:8]))
        self.document = {
            'format': JOURNAL_FORMAT,
            'run_id': self.run_id,
            'module': module,
            'created_at': _utc_stamp(),
            'status': PENDING,
            'arguments': arguments,
            'databases': databases,
            'force': bool(force),
            'force_reason': force_reason,
            'commits': {},
            'entries': [],
        }

    def prepare_directory(self):
        """Create the directory early so a bad journal_dir fails before any lock is taken."""
        try:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory, 0o700)
        except OSError as error:
            raise InputError('journal_dir %s cannot be created: %s' % (self.directory, error.strerror))
        if not os.access(self.directory, os.W_OK):
            raise InputError('journal_dir %s is not writable' % self.directory)

    def _render(self):
        """The journal as JSON text: the header indented, then one line per entry.

        ``json.dump`` with an indent runs the pure-Python encoder over every
        entry, which for 100,000 rows takes many times longer than the
        transaction it records. Each entry is encoded by the C encoder instead,
        once per list of entries however often the status is rewritten. The
        document is the same JSON that ``load_journal`` always read.
        """
        entries = self.document['entries']
        # The list itself is kept (not its id) so that a new list is never taken for the old one.
        cached = getattr(self, '_encoded', None)
        if cached is None or cached[0] is not entries or cached[1] != len(entries):
            encode = json.JSONEncoder(sort_keys=True, default=str).encode  # one encoder for every entry
            lines = ',\n'.join('  ' + encode(entry) for entry in entries)
            self._encoded = (entries, len(entries), '[\n%s\n ]' % lines if entries else '[]')
        marker = 'entries-%s' % uuid.uuid4().hex
        head = json.dumps(dict(self.document, entries=marker), indent=1, sort_keys=True, default=str)
        return head.replace('"%s"' % marker, self._encoded[2], 1)

    def write(self, status=None, **extra):
        """Atomically (re)write the journal file and flush it to disk."""
        if status:
            self.document['status'] = status
            self.document['%s_at' % status] = _utc_stamp()
        self.document.update(extra)
        text = self._render()
        handle, temporary = tempfile.mkstemp(prefix='.journal-', dir=self.directory)
        try:
            with os.fdopen(handle, 'w') as stream:
                stream.write(text)
                stream.write('\n')
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        directory_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
        return self.path


def load_journal(path):
    """Read and validate a journal file written by any stackmender module."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise InputError('journal %s does not exist' % path)
    try:
        with open(path) as stream:
            document = json.load(stream)
    except ValueError as error:
        raise InputError('journal %s is not valid JSON: %s' % (path, error))
    except (IOError, OSError) as error:
        raise InputError('journal %s cannot be read: %s' % (path, error.strerror))
    if not isinstance(document, dict) or document.get('format') != JOURNAL_FORMAT:
        raise InputError('%s is not a stackmender journal (format %s expected)' % (path, JOURNAL_FORMAT))
    if document.get('status') not in STATUSES or not isinstance(document.get('entries'), list):
        raise InputError('journal %s is damaged: unknown status or no entries list' % path)
    for number, entry in enumerate(document['entries']):
        if not isinstance(entry, dict) or not {'database', 'table', 'key', 'action'} <= set(entry):
            raise InputError('journal %s is damaged: entry %d lacks database/table/key/action' % (path, number))
    return document
