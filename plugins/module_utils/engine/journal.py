# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Journals: the before-image of every row a run changes, on disk before commit.

One JSON file per run. It is written (and fsynced) while the transaction
still holds its row locks and before it commits, with status ``pending``;
after the commit it is rewritten as ``committed``, after a rollback as
``rolled_back``, and ``incomplete`` when a commit's outcome is unknown (the
connection died during it). ``journal_undo`` replays ``entries`` backwards.
A run on the API path (``method: api``) has a journal too: no rows, but its
``calls``, each with its outcome (done, failed, not run), rewritten as each call
ends; ``calls_failed`` when one failed. The cloud's API has no undo of them, so
``journal_undo`` refuses such a journal and says why.
Journals hold no database or cloud credentials: databases are named by server and
schema only. They do hold whole rows, with the secrets some columns keep (see
redaction.py), because undo needs them: a journal is a 0600 file in a directory
that belongs to the user and that no one else can write (prepare_private_directory).

Format 2 writes consecutive entries that change the same columns of the same
table, for the same reason, as one group: the shared fields once, then a line
per row holding its key, its before-values and its after-values. A 100,000-row
rehost's journal is less than half the size it had in format 1, where every entry
repeated them. :func:`load_journal` reads both formats and always returns the
entries one per row.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import stat
import tempfile
import uuid

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

JOURNAL_FORMAT = 2
READABLE_FORMATS = (1, 2)
# The fields of a group of entries (format 2), besides its ``rows``.
GROUP_FIELDS = ('database', 'table', 'action', 'key_column', 'before_columns', 'after_columns')
PENDING = 'pending'
COMMITTED = 'committed'
ROLLED_BACK = 'rolled_back'
INCOMPLETE = 'incomplete'
CALLS_FAILED = 'calls_failed'  # an API run: a call failed (the calls list says which were done)
STATUSES = (PENDING, COMMITTED, ROLLED_BACK, INCOMPLETE, CALLS_FAILED)
API_METHOD = 'api'


def default_journal_dir():
    """Per-user default: $XDG_STATE_HOME/stackmender/journal (~/.local/state/...)."""
    state = os.environ.get('XDG_STATE_HOME') or os.path.join(os.path.expanduser('~'), '.local', 'state')
    return os.path.join(state, 'stackmender', 'journal')


def prepare_private_directory(directory):
    """Make sure ``directory`` is private to the user running the module, creating it (0700) if needed.

    A journal holds whole rows, secrets included (CHAP passwords in connection_info,
    user_data, the instance password metadata): undo needs them. It is written only
    into a directory that belongs to this user and that no one else can write, where
    no one else could replace or pre-create the file. Anything else is refused
    before anything is written.
    """
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
            # makedirs' mode is filtered by the umask: set it as meant.
            os.chmod(directory, 0o700)
    except OSError as error:
        raise InputError('journal_dir %s cannot be created: %s' % (directory, error.strerror))
    status = os.stat(directory)
    if status.st_uid != os.geteuid():
        raise InputError('journal_dir %s belongs to uid %d, not to the user running the module (uid %d): journals '
                         'hold whole rows, secrets included, and are written only into a directory of your own. '
                         'Nothing was written; choose a directory you own (mode 0700)'
                         % (directory, status.st_uid, os.geteuid()))
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InputError('journal_dir %s can be written by its group or by others (mode %04o): journals hold whole '
                         'rows, secrets included, and are written only into a directory no one else can write. '
                         'Nothing was written; run chmod go-w (0700 is best) on it, or choose another directory'
                         % (directory, stat.S_IMODE(status.st_mode)))
    if not os.access(directory, os.W_OK):
        raise InputError('journal_dir %s is not writable' % directory)


def _utc_stamp():
    return datetime.datetime.utcnow().replace(microsecond=0).isoformat() + 'Z'


class Journal(object):
    """The journal of one run, created before its first commit."""

    def __init__(self, directory, module, arguments, databases, force=False, force_reason=None, method='db'):
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
        if method == API_METHOD:
            self.document.update(method=API_METHOD, calls=[])
        # True once the file exists on disk (a later rewrite must then record how the run ended).
        self.written = False

    def prepare_directory(self):
        """Create the directory early so a bad journal_dir fails before any lock is taken."""
        prepare_private_directory(self.directory)

    def _render(self):
        """The journal as JSON text: the header indented, then a line per entry or per grouped row.

        ``json.dump`` with an indent runs the pure-Python encoder over every
        entry, which for 100,000 rows takes many times longer than the
        transaction it records. Each line is encoded by the C encoder instead,
        once per list of entries however often the status is rewritten.
        """
        entries = self.document['entries']
        # The list itself is kept (not its id) so that a new list is never taken for the old one.
        cached = getattr(self, '_encoded', None)
        if cached is None or cached[0] is not entries or cached[1] != len(entries):
            text = ',\n'.join(_encoded_entries(entries))
            self._encoded = (entries, len(entries), '[\n%s\n ]' % text if entries else '[]')
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
        self.written = True
        directory_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
        return self.path


def _group_of(entry):
    """What entries must share to be written as one group; None for an entry written on its own."""
    key = entry['key']
    if 'row' in entry or len(key) != 1:
        return None
    # The column order of before/after is part of it, so that a row's values are listed in that order.
    return (entry['database'], entry['table'], entry['action'], next(iter(key)), tuple(entry['before']),
            tuple(entry['after']), entry.get('note'))


def _encoded_entries(entries):
    """The journal's entries as JSON lines: runs of rows of one shape as a group, the rest one by one."""
    encode = json.JSONEncoder(sort_keys=True, default=str).encode  # one encoder for every line
    encode_row = json.JSONEncoder(default=str).encode
    index = 0
    while index < len(entries):
        shape = _group_of(entries[index])
        end = index + 1
        if shape is not None:
            while end < len(entries) and _group_of(entries[end]) == shape:
                end += 1
        if end - index == 1:
            yield '  ' + encode(entries[index])
        else:
            database, table, action, key_column, before_columns, after_columns, note = shape
            header = dict(database=database, table=table, action=action, key_column=key_column,
                          before_columns=list(before_columns), after_columns=list(after_columns))
            if note:
                header['note'] = note
            rows = []
            for entry in entries[index:end]:
                row = [entry['key'][key_column], list(entry['before'].values()), list(entry['after'].values())]
                rows.append('   ' + encode_row(row))
            yield '  %s, "rows": [\n%s\n  ]}' % (encode(header)[:-1], ',\n'.join(rows))
        index = end


def _damaged(path, why):
    return InputError('journal %s is damaged: %s' % (path, why))


def _expand(path, items):
    """Format 2's groups back into one entry per row, in order."""
    entries = []
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise _damaged(path, 'entry %d is not an object' % number)
        if 'rows' not in item:
            if not {'database', 'table', 'key', 'action'} <= set(item):
                raise _damaged(path, 'entry %d lacks database/table/key/action' % number)
            entries.append(item)
            continue
        if not set(GROUP_FIELDS) <= set(item) or not isinstance(item['rows'], list):
            raise _damaged(path, 'group %d lacks %s or its rows' % (number, '/'.join(GROUP_FIELDS)))
        before_columns, after_columns = item['before_columns'], item['after_columns']
        for row_number, row in enumerate(item['rows']):
            if not (isinstance(row, list) and len(row) == 3 and isinstance(row[1], list) and isinstance(row[2], list)
                    and len(row[1]) == len(before_columns) and len(row[2]) == len(after_columns)):
                raise _damaged(path, 'row %d of group %d is not [key, before-values, after-values] matching its '
                                     'columns' % (row_number, number))
            entry = dict(database=item['database'], table=item['table'], action=item['action'],
                         key={item['key_column']: row[0]}, before=dict(zip(before_columns, row[1])),
                         after=dict(zip(after_columns, row[2])))
            if item.get('note'):
                entry['note'] = item['note']
            entries.append(entry)
    return entries


def load_journal(path):
    """Read and validate a journal file written by any stackmender module.

    The document's ``entries`` hold one entry per row, whichever format the file has.
    """
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
    if not isinstance(document, dict) or document.get('format') not in READABLE_FORMATS:
        raise InputError('%s is not a stackmender journal (format %s expected)'
                         % (path, ' or '.join(str(number) for number in READABLE_FORMATS)))
    if document.get('status') not in STATUSES or not isinstance(document.get('entries'), list):
        raise InputError('journal %s is damaged: unknown status or no entries list' % path)
    document['entries'] = _expand(path, document['entries'])
    return document


def mark_journal(path, **fields):
    """Add ``fields`` to a journal file (a run that finished it, an undo that reverted it), atomically.

    The file is rewritten as it is read, groups and all: only the header changes.
    """
    directory = os.path.dirname(os.path.abspath(path))
    with open(path) as stream:
        document = json.load(stream)
    document.update(fields)
    handle, temporary = tempfile.mkstemp(prefix='.journal-', dir=directory)
    try:
        with os.fdopen(handle, 'w') as stream:
            json.dump(document, stream, indent=1, sort_keys=True, default=str)
            stream.write('\n')
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path
