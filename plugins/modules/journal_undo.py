#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: journal_undo
short_description: Revert a run of a stackmender module from its journal
version_added: 0.1.0
description:
  - Reads the journal a stackmender module wrote when it applied a plan. The journal holds
    the before-image of every row the run changed. This module puts those rows back, in
    reverse order, in one transaction per database.
  - A row is reverted only if it still holds exactly what the run wrote. A row that changed
    since is refused, with the evidence, unless O(force) is set. A row that already holds
    its before-image is left alone, so a second undo reports no change.
  - The undo plans first like every module. Check mode shows it and writes nothing. The undo
    writes a journal of its own, so an undo can be undone.
  - Give the same database options the original run used. Cell databases are found again
    through O(nova_api_db).
  - Only the databases whose transaction committed are reverted. A run that failed between the
    commits of two databases left some committed and others rolled back; the rows of a database
    that rolled back are never written, even with O(force). When the journal says a database's
    commit outcome is unknown (the connection died during its commit), the undo asks the server.
    If all of its journaled rows hold what the run wrote, it committed. If they all hold their
    before-images, it did not. A mix is refused, with the rows as evidence, even with O(force).
  - The undone journal is marked as undone, so that a re-run of the original task plans afresh
    instead of finishing the undone run.
  - A journal of a run on the API path (O(method=api)) lists the API calls and their outcomes, not
    rows. The cloud's API has no undo of them, so such a journal is refused, naming the calls that
    were done.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
options:
  journal:
    description:
      - Path of the journal file, as returned in RV(journal) by the run to revert.
    type: path
    required: true
    version_added: 0.1.0
notes:
  - The journal records each database by server and name, never by credentials. The undo
    refuses to write to a database whose name differs from the one recorded, unless O(force)
    is set.
seealso:
  - module: stackmender.openstack.cinder_volume_state
'''

EXAMPLES = r'''
- name: Show what undoing last night's reset would write back
  stackmender.openstack.journal_undo:
    journal: /var/lib/stackmender/journal/20261122T030405Z-cinder_volume_state-1a2b3c4d.json
    cinder_db:
      config_file: /etc/cinder/cinder.conf
  check_mode: true
  diff: true

- name: Undo it
  stackmender.openstack.journal_undo:
    journal: /var/lib/stackmender/journal/20261122T030405Z-cinder_volume_state-1a2b3c4d.json
    cinder_db:
      config_file: /etc/cinder/cinder.conf
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
method:
  description: Always V(db).
  returned: success
  type: str
method_reason:
  description: Why the database path was taken.
  returned: success
  type: str
plan:
  description: The statements that restore the rows, in order, with their parameters.
  returned: success
  type: list
  elements: dict
before:
  description:
    - Per database option and C(table/id), the fields as they are now.
    - A column that can hold a secret (C(connection_info), C(connector), C(provider_auth), C(user_data), the
      instance password metadata, cell URLs) shows a stand-in with its length and a short hash, never its value;
      the journal keeps the value.
  returned: success
  type: dict
after:
  description: The same fields as the journal recorded them before the original run, secrets redacted as in RV(before).
  returned: success
  type: dict
diff:
  description: RV(before) and RV(after) in Ansible's diff format.
  returned: in diff mode, when something changes
  type: dict
journal:
  description: Path of the journal this undo wrote (itself revertible); V(null) in check mode.
  returned: success
  type: str
force:
  description: Whether O(force) was set.
  returned: success
  type: bool
forced_guards:
  description: The guards O(force) overrode, with their evidence.
  returned: when force overrode a guard
  type: list
  elements: dict
guards:
  description:
    - On refusal, the rows that changed since the original run. The evidence names the row, the columns that
      differ, and for each its value as written by the run and now, secrets redacted as in RV(before).
  returned: failure by a guard
  type: list
  elements: dict
commit_outcomes:
  description:
    - Per database option of the journal, what its commit did and how that is known.
  returned: success
  type: dict
  version_added: 0.1.0
  sample:
    nova:cell1:
      outcome: committed
      known_from: as the journal recorded
    placement_db:
      outcome: rolled_back
      known_from: 'asked the server: 0 of 3 row(s) hold what the run wrote, 3 their before-image'
notes:
  description: Rows that already hold their before-image.
  returned: when there are any
  type: list
  elements: str
fingerprint:
  description: The fingerprint of the plan (see O(expected_fingerprint)); the same plan made again has the same one.
  returned: success
  type: str
  sample: "sha256:9f2c4e0b7d1a5c3e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c1e3f5a7b9d1c3e"
review:
  description: In check mode, the items the fingerprint is made of (one line per row change or API call, secrets
    by their stand-in) and the C(fingerprint); give it to O(expected_fingerprint) to apply only this plan.
  returned: check mode
  type: dict
'''

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import (
    API_METHOD,
    COMMITTED,
    ROLLED_BACK,
    load_journal,
    mark_journal,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.partial import (
    comparable,
    describe_outcomes,
    journal_outcomes,
    read_live_rows,
    row_identity,
    settle,
    utc_stamp,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import (
    Plan,
    DELETE,
    INSERT,
    UPDATE,
    RowChange,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import RemediationModule, db_only


def statement_runs(changes):
    """Undo changes reordered so that equal statement shapes are adjacent, where order is free.

    The journal is replayed backwards, and that order is kept between tables
    and between kinds of change. Inside a run of changes to one table with one
    action and distinct rows, the order carries no meaning, so changes of equal
    shape (the same restored values) are brought together and become one
    set-based statement instead of one statement per row.
    """
    ordered, run = [], []

    def flush():
        rows = set(repr(change.key_value) for change in run)
        if len(rows) == len(run):
            shapes = {}
            for change in run:
                shapes.setdefault(change.signature(), len(shapes))
            run.sort(key=lambda change: shapes[change.signature()])
        ordered.extend(run)
        del run[:]

    for change in changes:
        if run and (run[0].database, run[0].table, run[0].action) != (change.database, change.table, change.action):
            flush()
        run.append(change)
    flush()
    return ordered


def with_per_row_values(changes):
    """Undo updates that restore the same columns of one table, with the columns whose values differ
    between rows (each volume's own ``updated_at``) written per row, so that they share one statement.
    """
    first_of, varying, keys = {}, {}, {}
    for change in changes:
        if change.action != UPDATE or change.from_key:
            continue
        shape = (change.database, change.table, tuple(sorted(change.after)))
        first = first_of.setdefault(shape, change.after)
        varying.setdefault(shape, set()).update(column for column, value in change.after.items()
                                                if first[column] != value)
        keys.setdefault(shape, []).append(comparable(change.key_value))
    for shape, seen in keys.items():
        if len(set(seen)) != len(seen):
            # A row restored twice keeps one statement per value: one statement must not write a row twice.
            varying[shape] = set()
    rebuilt = []
    for change in changes:
        per_row = varying.get((change.database, change.table, tuple(sorted(change.after)))) \
            if change.action == UPDATE and not change.from_key else None
        if per_row:
            change = RowChange(change.database, change.table, change.key, before=change.before, after=change.after,
                               expect=change.expect, note=change.note, per_row=per_row)
        rebuilt.append(change)
    return rebuilt


def differences(label, table, written, live):
    """Evidence of a row that no longer holds what the run left: only the columns that differ, redacted.

    Each side is redacted as a whole row (a metadata ``value`` is secret by its ``key``), then cut
    down to the differing columns; a secret column shows its stand-in, so a change still shows.
    """
    columns = sorted(column for column in written if live.get(column) != written[column])
    was = redaction.redact_row(dict(live, **written), table)
    now = redaction.redact_row(live, table)
    return dict(row=label, columns=columns, written=dict((column, was.get(column)) for column in columns),
                now=dict((column, now.get(column)) for column in columns))


class JournalUndo(RemediationModule):
    module_name = 'stackmender.openstack.journal_undo'
    method_policy = db_only('a journal holds database rows, which only the database path restores')
    argument_spec = dict(journal=dict(type='path', required=True))

    def validate(self):
        self.document = load_journal(self.params['journal'])
        if self.document.get('method') == API_METHOD:
            done = [call for call in self.document.get('calls') or [] if call.get('outcome') == api.DONE]
            raise InputError('journal %s records API calls (method=api), not database rows: the cloud has no undo '
                             'of them, so nothing was changed. Of its %d call(s), %d were done: %s'
                             % (self.params['journal'], len(self.document.get('calls') or []), len(done),
                                ', '.join('%s %s' % (call.get('service'), call.get('call')) for call in done) or 'none'))

    def _check_database(self, plan, option):
        """The session for a journal's database option, after checking it is the same database."""
        if option.startswith('nova:'):
            self.nova_cells()
        if option not in self.targets:
            needed = 'nova_api_db (to find cell %s)' % option.split(':', 1)[1] if option.startswith('nova:') else option
            raise InputError('the journal changed rows in %s; give %s' % (option, needed))
        recorded = self.document.get('databases', {}).get(option, {})
        current = self.targets[option].identity()
        if recorded.get('database') and recorded['database'] != current['database']:
            message = ('the journal was written for database %r but %s names %r'
                       % (recorded['database'], option, current['database']))
            evidence = [dict(journal=recorded, given=current)]
            plan.refuse('different_database', message, evidence)
            # Reading another database's tables would only produce confusing errors: stop here.
            plan.stop_unless_forced(self.params['force'])
        elif recorded.get('server') and recorded['server'] != current['server']:
            plan.warn('%s: the journal recorded server %s, now %s (same database name)'
                      % (option, recorded['server'], current['server']))
        return self.session(option)

    def plan_db(self):
        plan = Plan()
        plan.results['commit_outcomes'] = {}
        if self.document['status'] == ROLLED_BACK:
            plan.note('the journaled run was rolled back; there is nothing to undo')
            return plan
        entries = self.document['entries']
        # Only the databases that committed, or may have, are read; one that rolled back is never written.
        sessions = {}
        for option, outcome in journal_outcomes(self.document).items():
            if outcome != ROLLED_BACK:
                sessions[option] = self._check_database(plan, option)
        live = read_live_rows(sessions, [entry for entry in entries if entry['database'] in sessions])
        outcomes, how = settle(self.params['journal'], self.document, live)
        for option, outcome in outcomes.items():
            plan.results['commit_outcomes'][option] = dict(outcome=outcome, known_from=how[option])
        reverted = [option for option, outcome in outcomes.items() if outcome == COMMITTED]
        if self.document['status'] != COMMITTED:
            plan.warn('the journal is %s: %s. Only what committed is reverted (%s)'
                      % (self.document['status'], describe_outcomes(outcomes, how), ', '.join(reverted) or 'nothing'))
        if self.document.get('finished_by'):
            plan.warn('a later run finished this partial run (journal %s): undo that journal as well to revert what '
                      'it wrote' % self.document['finished_by'])
        for entry in reversed(entries):
            if entry['database'] in reverted:
                self._plan_entry(plan, live, entry)
        plan.changes = statement_runs(with_per_row_values(plan.changes))
        return plan

    def _apply_db(self, plan, result):
        super(JournalUndo, self)._apply_db(plan, result)
        self._mark_undone(result['journal'])

    def _mark_undone(self, by):
        """So that a re-run of the original task does not try to finish a run that was undone."""
        try:
            mark_journal(self.params['journal'], undone_by=by, undone_at=utc_stamp())
        except (IOError, OSError, ValueError) as error:
            self.module.warn('journal %s could not be marked as undone (%s)' % (self.params['journal'], error))

    def add_results(self, result):
        if not result['changed'] and not self.module.check_mode and self.document['status'] != ROLLED_BACK:
            # Every row already holds its before-image: the run is undone all the same.
            self._mark_undone('nothing left to revert')

    def _plan_entry(self, plan, live_rows, entry):
        table, key = entry['table'], entry['key']
        live = live_rows.get(row_identity(entry['database'], table, key))
        label = '%s/%s' % (table, ','.join(str(value) for value in key.values()))
        if entry['action'] == UPDATE:
            if live is None:
                plan.refuse('row_missing', '%s no longer exists' % label, [dict(row=label)])
                return
            now = dict((column, live.get(column)) for column in entry['after'])
            if now == entry['before']:
                plan.note('%s already holds its before-image' % label)
                return
            if now != entry['after']:
                plan.refuse('row_changed_since', '%s changed since the run' % label,
                            [differences(label, table, entry['after'], live)])
            plan.change(entry['database'], table, key, before=now, after=entry['before'], note='restore the before-image')
        elif entry['action'] == DELETE:
            if live is None:
                plan.change(entry['database'], table, key, action=INSERT, after=entry.get('row') or entry['before'],
                            note='re-insert the deleted row')
            elif live == (entry.get('row') or entry['before']):
                plan.note('%s is already back' % label)
            else:
                plan.refuse('row_recreated', '%s was deleted by the run and exists again with other values' % label,
                            [differences(label, table, entry.get('row') or entry['before'], live)])
        elif entry['action'] == INSERT:
            if live is None:
                plan.note('%s is already gone' % label)
            elif all(live.get(column) == value for column, value in entry['after'].items()):
                plan.change(entry['database'], table, key, action=DELETE, before=live, note='remove the inserted row')
            else:
                plan.refuse('row_changed_since', '%s changed since the run inserted it' % label,
                            [differences(label, table, entry['after'], live)])

    def describe(self, plan):
        text = '%d row(s) to restore from %s' % (len(plan.changes), self.params['journal'])
        if self.document['status'] != COMMITTED:
            # Say what happened in each database of a partial run, and how that is known.
            outcomes = plan.results['commit_outcomes']
            text += ' (%s)' % describe_outcomes(dict((option, value['outcome']) for option, value in outcomes.items()),
                                                dict((option, value['known_from']) for option, value in outcomes.items()))
        return text


def main():
    JournalUndo().run()


if __name__ == '__main__':
    main()
