# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Partial commits: what a journal says about each database, and what the server says.

A run writes one transaction per database and commits them one after the
other, so a failure between two commits leaves some databases committed and
others not. The journal records the outcome of each commit: ``committed``,
``rolled_back``, or ``unknown`` when the connection died during the commit.
An unknown outcome is settled by asking the server: the journaled rows all
hold what the run wrote (it committed), all hold their before-images (it did
not), or a mix (nobody can say: refuse).

A re-run of the same task finishes such a run (:func:`unfinished_journals`
finds its journal; the base module plans what did not commit) and
``journal_undo`` reverts exactly what did commit.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import glob
import json
import os

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import GuardRefusal
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import (
    COMMITTED,
    INCOMPLETE,
    PENDING,
    ROLLED_BACK,
    load_journal,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import (
    DELETE,
    INSERT,
    normalize,
    normalize_row,
    quote_identifier,
    sql_value,
)

UNKNOWN = 'unknown'
# Keys per SELECT when reading the journaled rows back.
READ_CHUNK = 500
# Arguments that do not change what a run writes: a re-run may differ in them and still finish the run.
# force among them: it lifts the guards of a fresh plan, and finishing a run plans nothing afresh (its own
# refusals are never lifted), so a forced re-run must still finish the run rather than plan past it.
NEUTRAL_ARGUMENTS = ('journal_dir', 'lock_timeout', 'force', 'force_reason')
# Rows of evidence shown per refusal; the count is always exact.
SHOWN_EVIDENCE = 20
# The bytes at the end of a journal file searched for its status (see _may_be_incomplete).
STATUS_TAIL = 4 * 1024 * 1024


def utc_stamp():
    return datetime.datetime.utcnow().replace(microsecond=0).isoformat() + 'Z'


def comparable(value):
    """A key as MariaDB compares it: string keys are case-insensitive there."""
    value = normalize(value)
    return value.lower() if isinstance(value, str) else value


def row_identity(option, table, key):
    """A journaled row by its whole key (one column, or several as in Nova's tags)."""
    return (option, table, tuple(key), tuple(comparable(value) for value in key.values()))


def read_live_rows(sessions, entries):
    """The current row of every journaled key, a few hundred keys per SELECT.

    Rows are read by the first column of their key; a key of several columns then tells them
    apart. Returns {row_identity: normalized row}; a key with no row is absent.
    """
    wanted = {}
    for entry in entries:
        key_value = list(entry['key'].values())[0]
        keys = wanted.setdefault((entry['database'], entry['table'], tuple(entry['key'])), {})
        keys.setdefault(comparable(key_value), sql_value(key_value))
    live = {}
    for (option, table, key_columns), keys in wanted.items():
        rows = sessions[option].select_in('SELECT * FROM %s WHERE %s IN ({in})' % (
            quote_identifier(table), quote_identifier(key_columns[0])), list(keys.values()), size=READ_CHUNK)
        for row in rows:
            identity = row_identity(option, table, dict((column, row[column]) for column in key_columns))
            live[identity] = normalize_row(row)
    return live


def live_row(live_rows, entry):
    return live_rows.get(row_identity(entry['database'], entry['table'], entry['key']))


def entry_label(entry):
    return '%s/%s' % (entry['table'], ','.join(str(value) for value in entry['key'].values()))


def _differences(expected, live):
    """{column: {expected, now}} where the live row differs from ``expected``."""
    return dict((column, dict(expected=value, now=live.get(column)))
                for column, value in expected.items() if live.get(column) != value)


def at_after(entry, live):
    """Whether the live row (or None) holds what the run wrote; returns (bool, differences)."""
    if entry['action'] == DELETE:
        return live is None, {} if live is None else {'(row)': dict(expected='deleted', now='exists')}
    if live is None:
        return False, {'(row)': dict(expected='exists', now='missing')}
    differences = _differences(entry['after'], live)
    return not differences, differences


def at_before(entry, live):
    """Whether the live row (or None) holds its before-image; returns (bool, differences)."""
    if entry['action'] == INSERT:
        return live is None, {} if live is None else {'(row)': dict(expected='absent', now='exists')}
    if live is None:
        return False, {'(row)': dict(expected='exists', now='missing')}
    differences = _differences(entry['before'], live)
    return not differences, differences


def journal_outcomes(document):
    """What the journal says of each database it has entries for: committed, rolled_back or unknown.

    A journal still ``pending`` belongs to a run that died, or is still running: no outcome is known.
    An ``incomplete`` journal of an earlier release named only the committed and the unknown databases;
    that release rolled back the others.
    """
    status = document['status']
    recorded = document.get('commits') or {}
    outcomes = {}
    for entry in document['entries']:
        option = entry['database']
        if option in outcomes:
            continue
        if status == COMMITTED:
            outcomes[option] = COMMITTED
        elif status == ROLLED_BACK:
            outcomes[option] = ROLLED_BACK
        elif status == PENDING:
            outcomes[option] = UNKNOWN
        else:
            outcomes[option] = recorded.get(option, ROLLED_BACK)
    return outcomes


def rows_of(entries):
    """Each journaled row once, as (its first entry, its last entry): a row the run changed twice held the
    first entry's before-image, and holds the last entry's after-image."""
    first, last, order = {}, {}, []
    for entry in entries:
        identity = row_identity(entry['database'], entry['table'], entry['key'])
        if identity not in first:
            first[identity] = entry
            order.append(identity)
        last[identity] = entry
    return [(first[identity], last[identity]) for identity in order]


def settle_unknown(option, entries, live_rows):
    """Ask the server whether a database whose commit outcome is unknown committed.

    Returns (COMMITTED or ROLLED_BACK, how it was checked), or (None, evidence) for a mix: some rows
    hold what the run wrote and others their before-image, or a row holds neither.
    """
    written, untouched, neither = [], [], []
    rows = rows_of(entries)
    for first, entry in rows:
        live = live_row(live_rows, entry)
        after, after_differences = at_after(entry, live)
        before, before_differences = at_before(first, live)
        if after and before:
            continue  # the run wrote what the row held already: it tells nothing
        if after:
            written.append(entry)
        elif before:
            untouched.append(entry)
        else:
            neither.append(dict(row=entry_label(entry), written=after_differences, before_image=before_differences))
    counts = '%d of %d row(s) hold what the run wrote, %d their before-image' % (
        len(written), len(rows), len(untouched))
    if neither or (written and untouched):
        evidence = [dict(database=option, row=entry_label(entry), holds='what the run wrote') for entry in written]
        evidence += [dict(database=option, row=entry_label(entry), holds='its before-image') for entry in untouched]
        evidence += [dict(row, database=option, holds='neither') for row in neither]
        return None, dict(counts=counts + ', %d neither' % len(neither), evidence=evidence[:SHOWN_EVIDENCE],
                          rows=len(evidence))
    if written or not untouched:
        return COMMITTED, 'asked the server: %s' % counts
    return ROLLED_BACK, 'asked the server: %s' % counts


def describe_outcomes(outcomes, how=None):
    """'nova_db committed; placement_db: outcome unknown; cinder_db rolled back' in the order given."""
    words = {COMMITTED: 'committed', ROLLED_BACK: 'rolled back', UNKNOWN: 'commit outcome unknown'}
    parts = []
    for option, outcome in outcomes.items():
        text = '%s: %s' % (option, words.get(outcome, outcome))
        if how and how.get(option):
            text += ' (%s)' % how[option]
        parts.append(text)
    return '; '.join(parts)


def _may_be_incomplete(path):
    """Cheap pre-check of a journal's status, without parsing a file of 100,000 rows.

    The header's keys are sorted, so ``status`` comes after the entries: only the file's tail is read,
    and a journal_dir of many large journals costs a few megabytes per run at most.
    """
    try:
        with open(path, 'rb') as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(0, stream.tell() - STATUS_TAIL))
            tail = stream.read()
    except (IOError, OSError):
        return False
    return b'"status": "%s"' % INCOMPLETE.encode('ascii') in tail


def _plain(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def unfinished_journals(directory, module, arguments, identities):
    """Incomplete journals of ``module`` in ``directory`` that a run with ``arguments`` on the databases
    ``identities`` ({option: identity}, options as given, not cells) would finish, newest first.

    A journal that was finished, or undone, since is not listed.
    """
    if not directory or not os.path.isdir(directory):
        return []
    short = module.split('.')[-1]
    wanted = dict((key, value) for key, value in _plain(arguments).items() if key not in NEUTRAL_ARGUMENTS)
    found = []
    for path in sorted(glob.glob(os.path.join(directory, '*-%s-*.json' % short)), reverse=True):
        if not _may_be_incomplete(path):
            continue
        try:
            document = load_journal(path)
        except Exception:  # a damaged file is journal_undo's business, not a reason to stop this run
            continue
        if document['status'] != INCOMPLETE or document.get('module') != module:
            continue
        if document.get('finished_by') or document.get('undone_by'):
            continue
        recorded = dict((key, value) for key, value in (document.get('arguments') or {}).items()
                        if key not in NEUTRAL_ARGUMENTS)
        if recorded != wanted:
            continue
        databases = dict((option, identity) for option, identity in (document.get('databases') or {}).items()
                         if not option.startswith('nova:'))
        if databases != _plain(identities):
            continue
        found.append((path, document))
    return found


def entries_by_database(entries):
    found = {}
    for entry in entries:
        found.setdefault(entry['database'], []).append(entry)
    return found


def settle(path, document, live_rows):
    """Each database's outcome, unknown ones asked of the server: ({option: outcome}, {option: how}).

    Raises GuardRefusal when the server shows a mix for a database whose outcome is unknown.
    """
    outcomes = journal_outcomes(document)
    how = {}
    by_option = entries_by_database(document['entries'])
    for option, outcome in outcomes.items():
        if outcome != UNKNOWN:
            how[option] = 'as the journal recorded'
            continue
        settled, detail = settle_unknown(option, by_option[option], live_rows)
        if settled is None:
            message = ('the commit outcome of %s in journal %s is unknown, and its rows show neither outcome: %s'
                       % (option, path, detail['counts']))
            raise GuardRefusal('refused: %s. Nothing was changed; compare the rows shown with the journal and '
                               'repair them by hand. This is never overridden, even with force' % message,
                               guards=[dict(guard='commit_outcome_mixed', message=message,
                                            evidence=detail['evidence'], rows=detail['rows'])])
        outcomes[option] = settled
        how[option] = detail
    return outcomes, how


def finish_plan(path, document, session_of):
    """What finishing an incomplete run writes: the entries of the databases that did not commit.

    ``session_of(option)`` opens a database of the journal. Every row the run wrote is read back first:
    the committed databases' rows must hold what the run wrote, the others' their before-images;
    otherwise GuardRefusal (never overridden), with the rows that differ. Returns
    ({option: outcome}, {option: how it was known}, [entries to write, in order]).
    """
    entries = document['entries']
    sessions = dict((option, session_of(option)) for option in entries_by_database(entries))
    live_rows = read_live_rows(sessions, entries)
    outcomes, how = settle(path, document, live_rows)
    differing = []
    for first, last in rows_of(entries):
        option = first['database']
        live = live_row(live_rows, last)
        if outcomes[option] == COMMITTED:
            holds, differences = at_after(last, live)
            expected = 'what the run wrote (%s committed)' % option
        else:
            holds, differences = at_before(first, live)
            expected = 'its before-image (%s did not commit)' % option
        if not holds:
            differing.append(dict(database=option, row=entry_label(first), expected=expected, differences=differences))
    if differing:
        message = ('journal %s records a partial run of this task (%s), but %d row(s) changed since'
                   % (path, describe_outcomes(outcomes, how), len(differing)))
        raise GuardRefusal('refused: %s, so finishing it would write over them. Nothing was changed. Revert what '
                           'committed with stackmender.openstack.journal_undo (journal %s), then re-run; or, if '
                           'the rows were repaired by hand, move that journal out of journal_dir. This is never '
                           'overridden, even with force' % (message, path),
                           guards=[dict(guard='partial_run_changed_since', message=message,
                                        evidence=differing[:SHOWN_EVIDENCE], rows=len(differing))])
    remaining = [entry for entry in entries if outcomes[entry['database']] != COMMITTED]
    return outcomes, how, remaining
