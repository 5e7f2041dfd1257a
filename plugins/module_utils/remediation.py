# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The base every remediation module stands on.

A module declares its options and computes a :class:`Plan` from what it
reads. This base does the rest, the same way for every module: argument
parsing, database connections, the choice of method, guards and ``force``,
check mode (return the plan, write nothing), applying exactly the plan in one
transaction per database with a journal written before commit, idempotence
(an empty plan is ``changed: false``), the result contract and the
translation of every error into a clean ``fail_json``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys
import threading

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.stackmender.openstack.plugins.module_utils import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils import partial
from ansible_collections.stackmender.openstack.plugins.module_utils import plan as planning
from ansible_collections.stackmender.openstack.plugins.module_utils import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.cloud import ApiCall
from ansible_collections.stackmender.openstack.plugins.module_utils.errors import (
    DatabaseError,
    GuardRefusal,
    InputError,
    StackmenderError,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.journal import (
    API_METHOD,
    CALLS_FAILED,
    COMMITTED,
    INCOMPLETE,
    ROLLED_BACK,
    Journal,
    default_journal_dir,
    load_journal,
    mark_journal,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.schema import Schema

# The options that reach Nova's cell databases (see RemediationModule.nova_cells): either one is enough.
NOVA_CELL_OPTIONS = nova_cells.NOVA_CELL_OPTIONS
NOVA_CELL_REQUIREMENT = nova_cells.NOVA_CELL_REQUIREMENT
DATABASE_OPTIONS = ('cinder_db', 'nova_db', 'nova_api_db', 'placement_db')


class ApiUnsuitable(Exception):
    """The API cannot express this change here (``method: auto`` may fall back to the database)."""


def connection_argument_spec():
    """How a module reaches the cloud: the databases, the API, and how long it waits for locks.

    The read-only modules take these alone; the remediation modules add the
    options of ``common_argument_spec``.
    """
    # no_log: never in the module's syslog line; register_secrets then masks only their credentials.
    return dict(
        cinder_db=dict(db.database_option_spec(), no_log=True),
        nova_db=dict(db.database_option_spec(), no_log=True),
        nova_api_db=dict(db.database_option_spec(), no_log=True),
        placement_db=dict(db.database_option_spec(), no_log=True),
        cloud=dict(type='raw', no_log=True),
        api_timeout=dict(type='int'),
        method=dict(type='str', default='auto', choices=['auto', 'api', 'db']),
        lock_timeout=dict(type='int', default=30),
    )


def register_secrets(module):
    """Mask the credentials of the connection options, before anything parses them (see redaction)."""
    return redaction.register_option_secrets(module, DATABASE_OPTIONS, 'cloud')


def common_argument_spec():
    """Options every remediation module accepts (see the doc fragments)."""
    return dict(
        connection_argument_spec(),
        force=dict(type='bool', default=False),
        force_reason=dict(type='str'),
        accept_unverified=dict(type='bool', default=False),
        unverified_reason=dict(type='str'),
        journal_dir=dict(type='path'),
    )


def validate_connection_options(params):
    """Checks of the connection options every module shares; InputError before anything connects."""
    lock_timeout = params.get('lock_timeout')
    if lock_timeout is not None and lock_timeout <= 0:
        raise InputError('lock_timeout must be a positive number of seconds, got %s' % lock_timeout)
    api_timeout = params.get('api_timeout')
    if api_timeout is not None and api_timeout <= 0:
        raise InputError('api_timeout must be a positive number of seconds, got %s' % api_timeout)


class Guard(object):
    """One invariant that does not hold, with the rows that show it."""

    def __init__(self, name, message, evidence=None):
        self.name = name
        self.message = message
        # Shown on every refusal and copied into forced_guards: secret columns show their stand-in.
        self.evidence = [redaction.redact(planning.normalize_row(row)) if isinstance(row, dict) else row
                         for row in (evidence or [])]

    def to_result(self):
        return dict(guard=self.name, message=self.message, evidence=self.evidence)


class BlindSpot(object):
    """A guard that could not look: its evidence source was not given."""

    def __init__(self, name, missing_option, message):
        self.name = name
        self.missing_option = missing_option
        self.message = message

    def to_result(self):
        return dict(guard=self.name, missing_option=self.missing_option, message=self.message)


class Plan(object):
    """What a run will do: row changes (db) or calls (api), plus what it owes."""

    def __init__(self, locked=False):
        # Made under lock (RemediationModule.planning_under_lock): every change is marked so.
        self.locked = locked
        self.changes = []
        self.calls = []
        self.guards = []
        # Guards that force never lifts (refuse(..., never=True)).
        self.never_guards = []
        # Guards that could not look (see blind); the run refuses unless accept_unverified.
        self.blind_spots = []
        self.warnings = []
        self.notes = []
        # The journal of an earlier, partly committed run of the same task that this plan finishes.
        self.resumes = None
        self._groups = None

    def change(self, *args, **kwargs):
        kwargs.setdefault('locked', self.locked)
        self.changes.append(planning.RowChange(*args, **kwargs))

    def updates(self, *args, **kwargs):
        """Many rows given the same values: see plan.uniform_updates."""
        kwargs.setdefault('locked', self.locked)
        self.changes.extend(planning.uniform_updates(*args, **kwargs))

    def statement_groups(self):
        """The changes as statement groups, formed once for the result and the executor alike."""
        if self._groups is None or self._groups[0] != len(self.changes):
            self._groups = (len(self.changes), planning.group_changes(self.changes))
        return self._groups[1]

    def call(self, *args, **kwargs):
        self.calls.append(ApiCall(*args, **kwargs))

    def refuse(self, name, message, evidence=None, never=False):
        """A guard that found a problem: the run refuses, with ``evidence``.

        The one way a module refuses. ``force`` (with a force_reason) lifts an ordinary refusal;
        ``never=True`` is for what force must never lift (a deleted instance, cell0, a target in
        another cell): the run then refuses at the latest when planning ends, or at once where the
        module calls :meth:`stop_if_never_overridden` because planning cannot go on.
        """
        (self.never_guards if never else self.guards).append(Guard(name, message, evidence))

    def stop_unless_forced(self, force):
        """Refuse now if an ordinary guard holds and ``force`` is not set; nothing has been written yet."""
        if not self.guards or force:
            return
        details = dict(guards=[guard.to_result() for guard in self.guards])
        if self.blind_spots:
            details['unverified_guards'] = [spot.to_result() for spot in self.blind_spots]
        raise GuardRefusal('refused: %s. Nothing was changed; fix the cause, or set force with a force_reason '
                           'if you have verified it is safe' % '; '.join(guard.message for guard in self.guards),
                           **details)

    def stop_if_never_overridden(self):
        """Refuse now if any guard that force never lifts holds; nothing has been written yet.

        The result shows them first, then the ordinary guards, so the operator sees everything
        that stands in the way at once.
        """
        if not self.never_guards:
            return
        guards = [guard.to_result() for guard in self.never_guards] + [guard.to_result() for guard in self.guards]
        raise GuardRefusal('refused: %s. This is never overridden, even with force. Nothing was changed'
                           % '; '.join(guard.message for guard in self.never_guards), guards=guards)

    def blind(self, guard_name, missing_option, message):
        """Guard ``guard_name`` cannot check its invariant because ``missing_option`` was not given.

        The run refuses, naming the option, unless the operator accepts the blind spot with
        accept_unverified and an unverified_reason (recorded in the result and the journal).
        One entry per guard and option: a later call's message, which can name more rows, replaces the earlier.
        """
        for spot in self.blind_spots:
            if (spot.name, spot.missing_option) == (guard_name, missing_option):
                spot.message = message
                return
        self.blind_spots.append(BlindSpot(guard_name, missing_option, message))

    def warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)

    def note(self, message):
        self.notes.append(message)


def describe_calls(calls):
    """``before``/``after`` of an API plan, per service and resource."""
    before, after = {}, {}
    for call in calls:
        if call.resource and (call.before or call.after):
            # The first call's view of a field is the state before the run; the last call's is the result.
            first = before.setdefault(call.service, {}).setdefault(call.resource, {})
            for field, value in call.before.items():
                first.setdefault(field, value)
            after.setdefault(call.service, {}).setdefault(call.resource, {}).update(call.after)
    return before, after


class RemediationModule(object):
    """Subclasses set ``module_name``, ``argument_spec`` and implement ``plan_db``."""

    module_name = None
    argument_spec = {}
    module_kwargs = {}
    # Database options whose presence makes the db method possible.
    required_databases = ()
    # True for modules whose db path works on Nova's cells: nova_db or nova_api_db, either one, is
    # then what the db path needs (instead of required_databases).
    uses_nova_cells = False
    # Why method=auto takes the API path when a cloud is configured (the result's method_reason).
    api_reason = 'the API can express this change and a cloud is configured'
    # True for modules that, when applying, read every row they change with query(..., lock=True) on
    # the session that writes it, into a Plan(locked=self.planning_under_lock): the rows are then
    # planned under the locks the write keeps until commit, and need no re-check. Check mode never locks.
    plans_under_lock = False

    def __init__(self):
        spec = common_argument_spec()
        spec.update(self.argument_spec)
        kwargs = dict(supports_check_mode=True, required_if=[('force', True, ['force_reason']),
                                                             ('accept_unverified', True, ['unverified_reason'])])
        for key, value in self.module_kwargs.items():
            kwargs[key] = kwargs.get(key, []) + value if isinstance(value, list) else value
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        register_secrets(self.module)
        self.params = self.module.params
        self.targets = {}
        self.sessions = {}
        self.schemas = {}
        self._cells = None
        self._conn = None

    # ----------------------------------------------------------------- inputs

    def _parse_databases(self):
        # The URLs' and the cloud's credentials were registered when the module started (register_secrets);
        # a password read from a config file is known only now.
        for option in DATABASE_OPTIONS:
            target = db.parse_database_option(option, self.params.get(option))
            if target is None:
                continue
            self.module.no_log_values.update(db.secret_forms(target.password))
            self.targets[option] = target

    def validate(self):
        """Module-specific input checks; raise InputError. Runs before any connection."""

    # ------------------------------------------------------------- databases

    def session(self, option):
        """The open session of a configured database option (connects lazily)."""
        if option not in self.sessions:
            if option not in self.targets:
                raise InputError('%s is required for this operation' % option)
            self.sessions[option] = db.Session(self.targets[option], lock_timeout=self.params['lock_timeout'],
                                               lock_rows=self.planning_under_lock).connect()
        return self.sessions[option]

    @property
    def planning_under_lock(self):
        """Whether this run's planning reads lock the rows they return (see plans_under_lock)."""
        return self.plans_under_lock and not self.module.check_mode

    def schema(self, option, service):
        if option not in self.schemas:
            self.schemas[option] = Schema.probe(self.session(option), service)
        return self.schemas[option]

    def nova_cells(self):
        """The Nova cells of this run (cells.NovaCells; empty when no Nova option is given).

        With nova_api_db every cell of cell_mappings; a nova_db given as well must be one of them.
        With nova_db alone its one cell, and the view is partial (see cells.resolve_cells).
        """
        if self._cells is None:
            found = nova_cells.resolve_cells(self.targets, lambda: self.session(nova_cells.NOVA_API_DB),
                                             self._register_password)
            if found is None:
                found = nova_cells.NovaCells([], complete=False)
            for cell in found:
                self.targets[cell.option] = cell.target
                cell.session = self.session(cell.option)
            self._cells = found
        return self._cells

    def _register_password(self, password):
        self.module.no_log_values.update(db.secret_forms(password))

    def absent_instances(self, uuids):
        """{uuid: cells.Absence} of instances none of the cells read holds (see cells.classify_absent)."""
        api_session = self.session(nova_cells.NOVA_API_DB) if nova_cells.NOVA_API_DB in self.targets else None
        return nova_cells.classify_absent(self.nova_cells(), uuids, api_session)

    # ------------------------------------------------------------------- api

    @property
    def conn(self):
        """The openstacksdk connection (opened on first use)."""
        if self._conn is None:
            self._conn = api.connect(self.params.get('cloud'), self.params.get('api_timeout'))
        return self._conn

    # ---------------------------------------------------------------- method

    def api_available(self):
        """Whether this module has an API path for the requested change at all."""
        return False

    def _has_databases(self):
        if self.uses_nova_cells:
            return any(option in self.targets for option in NOVA_CELL_OPTIONS)
        return all(option in self.targets for option in self.required_databases)

    def database_requirement(self):
        """The database options the db path needs, in words."""
        if self.uses_nova_cells:
            return NOVA_CELL_REQUIREMENT
        return ' and '.join(self.required_databases)

    def require_openstacksdk(self):
        if not api.HAS_OPENSTACKSDK:
            self.module.fail_json(msg=missing_required_lib('openstacksdk'), exception=str(api.OPENSTACKSDK_IMPORT_ERROR))

    def choose_method(self):
        """The first choice of path; ``auto`` may still fall back after planning."""
        requested = self.params['method']
        needs = self.database_requirement()
        if requested == 'db':
            if not self._has_databases():
                raise InputError('method=db needs %s' % needs)
            return 'db', 'requested'
        if requested == 'api':
            if not self.api_available():
                raise InputError('method=api cannot express this change with %s; use method=db' % self.module_name)
            self.require_openstacksdk()
            return 'api', 'requested'
        if self.api_available() and api.HAS_OPENSTACKSDK and api.cloud_configured(self.params.get('cloud')):
            return 'api', self.api_reason
        if self._has_databases():
            if not self.api_available():
                return 'db', 'the API cannot express this change; %s given' % needs
            given = [option for option in NOVA_CELL_OPTIONS if option in self.targets][0] if self.uses_nova_cells else needs
            return 'db', 'no cloud is configured; %s given' % given
        choices = ' or '.join(NOVA_CELL_OPTIONS) if self.uses_nova_cells else needs
        raise InputError('nothing to work with: configure a cloud (method=api) or give %s (method=db)' % choices)

    def plan_api(self):
        raise ApiUnsuitable('%s has no API path' % self.module_name)

    # ------------------------------------------------------------------- run

    def plan_db(self):
        raise NotImplementedError

    def describe(self, plan):
        """Summary sentence of a non-empty plan."""
        return '%d row change(s) planned' % len(plan.changes)

    def _database_identities(self):
        return dict((option, target.identity()) for option, target in self.targets.items())

    def _journal_arguments(self):
        hidden = ('cinder_db', 'nova_db', 'nova_api_db', 'placement_db', 'cloud')
        return dict((key, value) for key, value in self.params.items() if key not in hidden)

    def _resume_or_plan_db(self):
        """The database plan: what an earlier, partly committed run of this same task left undone, if any."""
        directory = os.path.abspath(os.path.expanduser(self.params.get('journal_dir') or default_journal_dir()))
        identities = dict((option, target.identity()) for option, target in self.targets.items()
                          if not option.startswith('nova:'))
        found = partial.unfinished_journals(directory, self.module_name, self._journal_arguments(), identities)
        if not found:
            return self.plan_db()
        path, document = found[0]
        outcomes, how, remaining = partial.finish_plan(path, document, self._journal_session)
        plan = Plan()
        plan.resumes = path
        for entry in remaining:
            plan.change(entry['database'], entry['table'], entry['key'], action=entry['action'],
                        before=entry['before'] if entry['action'] != planning.INSERT else None,
                        after=entry['after'] if entry['action'] != planning.DELETE else None,
                        note=entry.get('note'))
        plan.note('finishes the partial run of journal %s (%s)' % (path, partial.describe_outcomes(outcomes, how)))
        if not remaining and not self.module.check_mode:
            # It had committed everywhere after all: nothing is left to write, and nothing to finish again.
            self._mark_finished(plan, path, 'its databases committed (asked the server)')
        return plan

    def _journal_session(self, option):
        """The session of a database an earlier run's journal names (cells are found through nova_api_db)."""
        if option.startswith('nova:'):
            self.nova_cells()
        if option not in self.targets:
            raise InputError('the partial run to finish wrote %s, which the database options do not reach' % option)
        return self.session(option)

    def _mark_finished(self, plan, path, by):
        """Mark a finished journal, and the journals it finished in turn, so they are not finished twice."""
        stamp = partial.utc_stamp()
        while path:
            try:
                following = load_journal(path).get('resumes')
                mark_journal(path, finished_by=by, finished_at=stamp)
            except (StackmenderError, IOError, OSError, ValueError) as error:
                plan.warn('journal %s could not be marked as finished (%s): remove it from journal_dir before '
                          'this task runs again' % (path, error))
                return
            path = following

    def _new_journal(self, plan, method='db'):
        """The journal of this run, its directory checked, with what the operator accepted."""
        journal = Journal(self.params.get('journal_dir'), self.module_name, self._journal_arguments(),
                          self._database_identities() if method != API_METHOD else {}, self.params['force'],
                          self.params.get('force_reason'), method=method)
        journal.prepare_directory()
        if self.params['force']:
            journal.document['forced_guards'] = [guard.to_result() for guard in plan.guards]
        if plan.blind_spots:
            journal.document['unverified_guards'] = [spot.to_result() for spot in plan.blind_spots]
            journal.document['unverified_reason'] = self.params.get('unverified_reason')
        return journal

    def _run_calls(self, plan):
        """Run the plan's API calls; their journal has each call's outcome on disk as soon as it is known.

        Returns (outcomes, journal path). A failure carries the journal's path; the calls done are
        not undone (the API has no undo of them): the journal and the message say which they are.
        """
        journal = self._new_journal(plan, method=API_METHOD)
        journal.write(calls=redaction.redact([dict(call.describe(), outcome=api.NOT_RUN) for call in plan.calls]))
        try:
            outcomes = api.run_calls(plan.calls, progress=lambda done: journal.write(calls=redaction.redact(done)))
        except StackmenderError as error:
            journal.write(CALLS_FAILED, calls=redaction.redact(error.details.get('calls') or []))
            error.details.setdefault('journal', journal.path)
            raise
        journal.write(COMMITTED, calls=redaction.redact(outcomes))
        return outcomes, journal.path

    def _apply_db(self, plan, result):
        journal = self._new_journal(plan)
        if plan.resumes:
            journal.document['resumes'] = plan.resumes
        written_options = []
        for change in plan.changes:
            if change.database not in written_options:
                written_options.append(change.database)
        for option in written_options:
            self.session(option).require_writable_node()
        commits = journal.document['commits']
        try:
            self._write_and_journal(plan.statement_groups(), journal)
            for option in written_options:
                try:
                    self.session(option).commit()
                except DatabaseError:
                    # The COMMIT may have reached the server before the connection died: nobody knows.
                    commits[option] = partial.UNKNOWN
                    raise
                commits[option] = COMMITTED
        except StackmenderError as error:
            for option in written_options:
                if option not in commits:
                    self.session(option).rollback()
                    commits[option] = ROLLED_BACK
            if journal.written:
                settled = [commits[option] for option in written_options]
                status = INCOMPLETE if COMMITTED in settled or partial.UNKNOWN in settled else ROLLED_BACK
                journal.write(status, error=error.msg)
                error.details.setdefault('journal', journal.path)
                error.details.setdefault('journal_status', status)
                if status == INCOMPLETE:
                    error.details['commits'] = dict((option, commits[option]) for option in written_options)
                    # The database's own message says "rolled back"; that holds only for some databases.
                    error.msg = ('%s. %s: %s. Re-run this task to finish: it finds journal %s and writes only what '
                                 'did not commit, once the rows show that nothing changed since (it asks the server '
                                 'about an unknown outcome). Or run stackmender.openstack.journal_undo with journal '
                                 '%s to revert exactly what committed'
                                 % (error.msg, 'PARTLY APPLIED' if COMMITTED in settled else 'COMMIT OUTCOME UNKNOWN',
                                    partial.describe_outcomes(error.details['commits']), journal.path, journal.path))
            raise
        journal.write(COMMITTED)
        result['journal'] = journal.path
        if plan.resumes:
            self._mark_finished(plan, plan.resumes, journal.path)

    def _write_and_journal(self, groups, journal):
        """Run every statement and write the pending journal: both happen before any commit.

        Groups planned under lock are written exactly as planned, so when all are, the
        journal is known before writing: it is then encoded and fsynced while the server
        writes the rows (a thread runs the statements), which hides most of its cost at
        100,000 rows. Otherwise the journal records what the statements found.
        """
        if not all(group.planned_under_lock for group in groups):
            entries = []
            for group in groups:
                entries.extend(planning.execute_group(self.session(group.database), group))
            journal.document['entries'] = entries
            journal.write()
            return
        work = [(self.session(group.database), group) for group in groups]
        failures = []

        def write_rows():
            try:
                for session, group in work:
                    planning.execute_group(session, group, record=False)
            except BaseException as error:  # handed to the main thread, which raises it
                failures.append(error)

        writer = threading.Thread(target=write_rows, name='stackmender-writer')
        # The writer needs the interpreter only briefly between statements, but each time it may wait a
        # whole switch interval for the thread encoding the journal: keep that short meanwhile.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        writer.start()
        try:
            journal.document['entries'] = [change.to_journal() for group in groups for change in group.changes]
            journal.write()
        finally:
            writer.join()
            sys.setswitchinterval(interval)
        if failures:
            raise failures[0]

    def run(self):
        try:
            if not db.HAS_PYMYSQL and self.params['method'] != 'api':
                self.module.fail_json(msg=missing_required_lib('PyMySQL'), exception=str(db.PYMYSQL_IMPORT_ERROR))
            self._parse_databases()
            validate_connection_options(self.params)
            self.validate()
            method, reason = self.choose_method()
            if method == 'api':
                try:
                    plan = self.plan_api()
                except ApiUnsuitable as unsuitable:
                    if self.params['method'] == 'api' or not self._has_databases():
                        raise InputError('the API path cannot do this: %s' % unsuitable)
                    method, reason = 'db', 'the API path cannot do this (%s); fell back to the database' % unsuitable
                    plan = self._resume_or_plan_db()
            else:
                plan = self._resume_or_plan_db()
            plan.stop_if_never_overridden()
            result = dict(changed=False, method=method, method_reason=reason, plan=[], before={}, after={},
                          journal=None, force=self.params['force'])
            plan.stop_unless_forced(self.params['force'])
            if plan.guards:
                result['forced_guards'] = [guard.to_result() for guard in plan.guards]
                for guard in plan.guards:
                    plan.warn('guard overridden by force (%s): %s' % (self.params.get('force_reason'), guard.message))
            self._check_blind_spots(plan, result)
            if method == 'api':
                result['plan'] = [call.describe() for call in plan.calls]
                result['before'], result['after'] = [redaction.redact(side) for side in describe_calls(plan.calls)]
            else:
                result['plan'] = [group.describe() for group in plan.statement_groups()]
                result['before'], result['after'], hidden = planning.describe_changes(plan.changes, planning.SHOWN_ROWS)
                if hidden:
                    result['rows_not_shown'] = hidden
                    plan.note('before/after show the first %d of %d changed rows; the plan counts every row and '
                              'the journal keeps them all' % (planning.SHOWN_ROWS, len(plan.changes)))
            if not plan.changes and not plan.calls:
                result['msg'] = 'nothing to do: %s' % ('; '.join(plan.notes) if plan.notes else 'already in the desired state')
                self._finish(result, plan)
            result['changed'] = True
            if self.module._diff:
                result['diff'] = dict(before=result['before'], after=result['after'],
                                      before_header='%s: current' % self.module_name,
                                      after_header='%s: planned' % self.module_name)
            if self.module.check_mode:
                result['msg'] = 'check mode: %s, nothing written' % self._summary(plan)
                self._finish(result, plan)
            if method == 'api':
                result['calls'], result['journal'] = self._run_calls(plan)
                try:
                    self.verify_api(plan)
                except StackmenderError as error:
                    # Every call was done; what did not take shows in the message.
                    error.details.setdefault('calls', result['calls'])
                    raise
            else:
                self._apply_db(plan, result)
            result['msg'] = '%s, applied' % self._summary(plan)
            self._finish(result, plan)
        except StackmenderError as error:
            self._close()
            details = redaction.redact(dict(error.details))
            self.module.fail_json(msg=error.msg, **details)
        except Exception as error:  # an API error that escaped a module's own handling
            if not (api.HAS_OPENSTACKSDK and isinstance(error, api.openstack.exceptions.SDKException)):
                raise
            self._close()
            translated = api.translate(error, 'an OpenStack API call')
            self.module.fail_json(msg=translated.msg, **translated.details)

    def _check_blind_spots(self, plan, result):
        """Refuse when a guard could not look, unless the operator accepted it with a reason."""
        if not plan.blind_spots:
            return
        spots = [spot.to_result() for spot in plan.blind_spots]
        if not self.params['accept_unverified']:
            options = []
            for spot in plan.blind_spots:
                if spot.missing_option not in options:
                    options.append(spot.missing_option)
            raise GuardRefusal('refused: %s. Nothing was changed; give %s so the guard can look, or set '
                               'accept_unverified with an unverified_reason to go ahead without it'
                               % ('; '.join(spot.message for spot in plan.blind_spots), ' and '.join(options)),
                               guards=spots, unverified_guards=spots)
        result['unverified_guards'] = spots
        for spot in plan.blind_spots:
            plan.warn('guard not checked, accepted with accept_unverified (%s): %s'
                      % (self.params.get('unverified_reason'), spot.message))

    def verify_api(self, plan):
        """Read back what the API calls changed; raise ApiError if it did not take."""

    def add_results(self, result):
        """Add the module's own keys to a successful result (check mode, applied, or nothing to do)."""

    def _summary(self, plan):
        if plan.resumes:
            databases = sorted(set(change.database for change in plan.changes))
            return ('%d row change(s) left by the partial run of journal %s, in %s'
                    % (len(plan.changes), plan.resumes, ', '.join(databases)))
        return self.describe(plan)

    def _finish(self, result, plan):
        if plan.resumes:
            # The module's own keys describe what its planning found; finishing a run did not plan.
            result['finishes_journal'] = plan.resumes
        else:
            self.add_results(result)
        if self._cells:
            result['nova_cells'] = self._cells.describe()
            if not self._cells.complete:
                plan.note(nova_cells.PARTIAL_VIEW_NOTE)
        for message in plan.warnings:
            self.module.warn(message)
        if plan.notes:
            result['notes'] = plan.notes
        self._close()
        # The safety net: a row that reached the result by another way than evidence or before/after.
        self.module.exit_json(**redaction.redact(result))

    def _close(self):
        for session in self.sessions.values():
            session.rollback()
            session.close()
        self.sessions = {}
