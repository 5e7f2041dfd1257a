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
  description: Per database option and C(table/id), the fields as they are now.
  returned: success
  type: dict
after:
  description: The same fields as the journal recorded them before the original run.
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
  description: On refusal, the rows that changed since the original run, with their values.
  returned: failure by a guard
  type: list
  elements: dict
notes:
  description: Rows that already hold their before-image.
  returned: when there are any
  type: list
  elements: str
'''

from ansible_collections.stackmender.openstack.plugins.module_utils.errors import GuardRefusal, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.journal import ROLLED_BACK, load_journal
from ansible_collections.stackmender.openstack.plugins.module_utils.plan import (
    DELETE,
    INSERT,
    UPDATE,
    RowChange,
    normalize,
    normalize_row,
    quote_identifier,
    sql_value,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.remediation import Plan, RemediationModule
from ansible_collections.stackmender.openstack.plugins.module_utils.validation import chunks, placeholders


# Keys per SELECT when reading the journaled rows back.
READ_CHUNK = 500


def _comparable(value):
    """A key as MariaDB compares it: string keys are case-insensitive there."""
    value = normalize(value)
    return value.lower() if isinstance(value, str) else value


def row_identity(option, table, key):
    """A journaled row by its whole key (one column, or several as in Nova's tags)."""
    return (option, table, tuple(key), tuple(_comparable(value) for value in key.values()))


def read_live_rows(sessions, entries):
    """The current row of every journaled key, a few hundred keys per SELECT.

    Rows are read by the first column of their key; a key of several columns then tells them
    apart. Returns {row_identity: normalized row}; a key with no row is absent.
    """
    wanted = {}
    for entry in entries:
        key_column, key_value = list(entry['key'].items())[0]
        keys = wanted.setdefault((entry['database'], entry['table'], tuple(entry['key'])), {})
        keys.setdefault(_comparable(key_value), sql_value(key_value))
    live = {}
    for (option, table, key_columns), keys in wanted.items():
        values = list(keys.values())
        for chunk in chunks(values, READ_CHUNK):
            rows = sessions[option].query('SELECT * FROM %s WHERE %s IN (%s)' % (
                quote_identifier(table), quote_identifier(key_columns[0]), placeholders(len(chunk))), chunk)
            for row in rows:
                identity = row_identity(option, table, dict((column, row[column]) for column in key_columns))
                live[identity] = normalize_row(row)
    return live


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
        keys.setdefault(shape, []).append(_comparable(change.key_value))
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


class JournalUndo(RemediationModule):
    module_name = 'stackmender.openstack.journal_undo'
    argument_spec = dict(journal=dict(type='path', required=True))

    def validate(self):
        self.document = load_journal(self.params['journal'])

    def choose_method(self):
        if self.params['method'] == 'api':
            raise InputError('journal_undo restores database rows; method=api does not apply')
        return 'db', 'a journal holds database rows'

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
            if not self.params['force']:
                # Reading another database's tables would only produce confusing errors: stop here.
                raise GuardRefusal('refused: %s. Nothing was changed' % message,
                                   guards=[dict(guard='different_database', message=message, evidence=evidence)])
            plan.refuse('different_database', message, evidence)
        elif recorded.get('server') and recorded['server'] != current['server']:
            plan.warn('%s: the journal recorded server %s, now %s (same database name)'
                      % (option, recorded['server'], current['server']))
        return self.session(option)

    def plan_db(self):
        plan = Plan()
        if self.document['status'] == ROLLED_BACK:
            plan.note('the journaled run was rolled back; there is nothing to undo')
            return plan
        if self.document['status'] != 'committed':
            plan.warn('the journal is %s: its run may not have committed; only rows that hold what it wrote are '
                      'reverted' % self.document['status'])
        sessions = {}
        entries = list(reversed(self.document['entries']))
        for entry in entries:
            option = entry['database']
            if option not in sessions:
                sessions[option] = self._check_database(plan, option)
        live = read_live_rows(sessions, entries)
        for entry in entries:
            self._plan_entry(plan, live, entry)
        plan.changes = statement_runs(with_per_row_values(plan.changes))
        return plan

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
                            [dict(row=label, written=entry['after'], now=now)])
            plan.change(entry['database'], table, key, before=now, after=entry['before'], note='restore the before-image')
        elif entry['action'] == DELETE:
            if live is None:
                plan.change(entry['database'], table, key, action=INSERT, after=entry.get('row') or entry['before'],
                            note='re-insert the deleted row')
            elif live == (entry.get('row') or entry['before']):
                plan.note('%s is already back' % label)
            else:
                plan.refuse('row_recreated', '%s was deleted by the run and exists again with other values' % label,
                            [dict(row=label, now=live)])
        elif entry['action'] == INSERT:
            if live is None:
                plan.note('%s is already gone' % label)
            elif all(live.get(column) == value for column, value in entry['after'].items()):
                plan.change(entry['database'], table, key, action=DELETE, before=live, note='remove the inserted row')
            else:
                plan.refuse('row_changed_since', '%s changed since the run inserted it' % label,
                            [dict(row=label, written=entry['after'], now=live)])

    def describe(self, plan):
        return '%d row(s) to restore from %s' % (len(plan.changes), self.params['journal'])


def main():
    JournalUndo().run()


if __name__ == '__main__':
    main()
