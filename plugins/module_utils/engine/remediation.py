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
import re
import sys
import threading

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import partial
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import plan as planning
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import (
    DatabaseError,
    GuardRefusal,
    InputError,
    PlanDrift,
    StackmenderError,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import (
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
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, describe_calls
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.schema import Schema

# The options that reach Nova's cell databases (see RemediationModule.nova_cells): either one is enough.
NOVA_CELL_OPTIONS = nova_cells.NOVA_CELL_OPTIONS
NOVA_CELL_REQUIREMENT = nova_cells.NOVA_CELL_REQUIREMENT
DATABASE_OPTIONS = ('cinder_db', 'nova_db', 'nova_api_db', 'placement_db')


class Methods(object):
    """The paths a module has for a change, declared by the module; the base chooses among them.

    ``api`` is why ``method: auto`` takes the API when a cloud is configured, or None when no API
    can express the change. ``db`` says whether the database path exists. ``because`` says why
    there is only one path (shown in refusals and as the result's method_reason).
    """

    def __init__(self, api=None, db=True, because=None):
        self.api = api
        self.db = db
        self.because = because


def api_or_db(reason='the API can express this change and a cloud is configured'):
    return Methods(api=reason)


def db_only(because):
    return Methods(because=because)


def api_only(because):
    return Methods(api=because, db=False, because=because)


class ApiUnsuitable(Exception):
    """The API cannot express this change here (``method: auto`` may fall back to the database)."""


def connection_argument_spec():
    """How a module reaches the cloud: the databases, the API, and how long it waits for locks.

    The read-only modules take these alone; the remediation modules add the
    options of ``common_argument_spec``.
    """
    # no_log: never in the module's syslog line; register_secrets then masks only their credentials.
    return dict(
        # Each also read from STACKMENDER_<OPTION> (a URL or a config file path), as AWX's credential sets it.
        cinder_db=dict(db.database_option_spec(), no_log=True, fallback=(env_fallback, ['STACKMENDER_CINDER_DB'])),
        nova_db=dict(db.database_option_spec(), no_log=True, fallback=(env_fallback, ['STACKMENDER_NOVA_DB'])),
        nova_api_db=dict(db.database_option_spec(), no_log=True, fallback=(env_fallback, ['STACKMENDER_NOVA_API_DB'])),
        placement_db=dict(db.database_option_spec(), no_log=True,
                          fallback=(env_fallback, ['STACKMENDER_PLACEMENT_DB'])),
        cloud=dict(type='raw', no_log=True),
        api_timeout=dict(type='int'),
        # The connection options of openstack.cloud, with their names and meaning (doc fragment database).
        auth=dict(type='dict', no_log=True),
        auth_type=dict(type='str'),
        region_name=dict(type='str'),
        interface=dict(type='str', choices=['admin', 'internal', 'public'], aliases=['endpoint_type']),
        validate_certs=dict(type='bool', aliases=['verify']),
        ca_cert=dict(type='str', aliases=['cacert']),
        client_cert=dict(type='str', aliases=['cert']),
        client_key=dict(type='str', no_log=False, aliases=['key']),
        sdk_log_path=dict(type='str'),
        sdk_log_level=dict(type='str', default='INFO', choices=['INFO', 'DEBUG']),
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
        expected_fingerprint=dict(type='raw'),
    )


def wait_argument_spec():
    """The options of a module that waits for the cloud after its API calls, named as openstack.cloud names them."""
    return dict(
        wait=dict(type='bool', default=True),
        timeout=dict(type='int', default=180),
    )


FINGERPRINT = re.compile(r'^sha256:[0-9a-f]{64}$')


def expected_fingerprint(value):
    """(fingerprint, reviewed items or None) from the option expected_fingerprint; (None, None) when not given.

    The option takes a fingerprint, a check run's ``review`` (fingerprint and items), or the whole
    result of a check run (which holds its review).
    """
    if value is None or value == '':
        return None, None
    if isinstance(value, dict) and 'review' in value:
        value = value['review']
    items = None
    if isinstance(value, dict):
        items = value.get('items')
        if items is not None and (not isinstance(items, list) or not all(isinstance(item, str) for item in items)):
            raise InputError('expected_fingerprint: the review\'s items must be a list of strings')
        if value.get('items_not_shown'):
            items = None  # a partial list cannot show the difference: compare the fingerprints only
        value = value.get('fingerprint')
    if not isinstance(value, str) or not FINGERPRINT.match(value):
        raise InputError('expected_fingerprint must be a fingerprint (sha256: and 64 hex digits) or the review of a '
                         'check run, got %r' % (str(value)[:80],))
    return value, items


def validate_connection_options(params):
    """Checks of the connection options every module shares; InputError before anything connects."""
    lock_timeout = params.get('lock_timeout')
    if lock_timeout is not None and lock_timeout <= 0:
        raise InputError('lock_timeout must be a positive number of seconds, got %s' % lock_timeout)
    for option in ('api_timeout', 'timeout'):
        value = params.get(option)
        if value is not None and value <= 0:
            raise InputError('%s must be a positive number of seconds, got %s' % (option, value))


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
    # The paths the module has (see Methods); a module whose paths depend on its options overrides methods().
    method_policy = Methods(because='the API cannot express this change')
    # True for modules that wait, after their API calls, for the cloud to finish (options wait and timeout).
    waits = False
    # True for modules that, when applying, read every row they change with query(..., lock=True) on
    # the session that writes it, into a Plan(locked=self.planning_under_lock): the rows are then
    # planned under the locks the write keeps until commit, and need no re-check. Check mode never locks.
    plans_under_lock = False

    def __init__(self):
        spec = common_argument_spec()
        if self.waits:
            spec.update(wait_argument_spec())
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
            api.enable_sdk_log(self.params.get('sdk_log_path'), self.params.get('sdk_log_level'))
            self._conn = api.connect(self.params.get('cloud'), self.params.get('api_timeout'),
                                     api.connection_settings(self.params))
        return self._conn

    # ---------------------------------------------------------------- method

    def _has_databases(self):
        if self.uses_nova_cells:
            return any(option in self.targets for option in NOVA_CELL_OPTIONS)
        return all(option in self.targets for option in self.required_databases)

    def database_requirement(self):
        """The database options the db path needs, in words."""
        if self.uses_nova_cells:
            return NOVA_CELL_REQUIREMENT
        return ' and '.join(self.required_databases)

    def cloud_configured(self):
        """Whether the API can be tried: the option cloud or auth, OS_* variables, or a clouds.yaml."""
        return bool(self.params.get('auth')) or api.cloud_configured(self.params.get('cloud'))

    def require_openstacksdk(self):
        """A missing or too old openstacksdk is reported as the missing library it is."""
        problem = api.openstacksdk_problem()
        if problem:
            self._close()
            self.module.fail_json(msg=missing_required_lib(problem), exception=str(api.OPENSTACKSDK_IMPORT_ERROR or ''))

    def require_pymysql(self):
        if not db.HAS_PYMYSQL:
            self._close()
            self.module.fail_json(msg=missing_required_lib('PyMySQL'), exception=str(db.PYMYSQL_IMPORT_ERROR))

    def methods(self):
        """The paths this module has for the change asked (a :class:`Methods`); the base chooses among them."""
        return self.method_policy

    def choose_method(self):
        """The first choice of path, from the module's declared :class:`Methods`; ``auto`` may still fall back."""
        requested = self.params['method']
        policy = self.methods()
        needs = self.database_requirement()
        because = ': %s' % policy.because if policy.because else ''
        if requested == 'api':
            if policy.api is None:
                raise InputError('method=api cannot express this change with %s%s; use method=db'
                                 % (self.module_name, because))
            self.require_openstacksdk()
            return 'api', 'requested'
        if requested == 'db':
            if not policy.db:
                raise InputError('method=db cannot express this change with %s%s; use method=api'
                                 % (self.module_name, because))
            if not self._has_databases():
                raise InputError('method=db needs %s' % needs)
            return 'db', 'requested'
        if not policy.db:
            self.require_openstacksdk()
            if not self.cloud_configured():
                raise InputError('%s needs the API%s; configure a cloud' % (self.module_name, because))
            return 'api', policy.because
        if policy.api is not None and self.cloud_configured():
            if api.openstacksdk_problem() and not self._has_databases():
                self.require_openstacksdk()  # a cloud is configured: the library is what is missing
            if not api.openstacksdk_problem():
                return 'api', policy.api
        if self._has_databases():
            if policy.api is None:
                return 'db', '%s; %s given' % (policy.because or 'the API cannot express this change', needs)
            given = [option for option in NOVA_CELL_OPTIONS if option in self.targets][0] if self.uses_nova_cells else needs
            return 'db', 'no cloud is configured; %s given' % given
        if policy.api is None:
            raise InputError('%s works on the database%s: give %s' % (self.module_name, because, needs))
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
        # expected_fingerprint is an approval of one plan, not part of the task: a re-run that finishes
        # a partial run is the same task whatever it was approved with.
        hidden = ('cinder_db', 'nova_db', 'nova_api_db', 'placement_db', 'cloud', 'auth', 'expected_fingerprint')
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
        journal.document['fingerprint'] = plan.fingerprint
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
            self._parse_databases()
            validate_connection_options(self.params)
            expected_fingerprint(self.params.get('expected_fingerprint'))
            self.validate()
            method, reason = self.choose_method()
            if method == 'db' or self.targets:
                # The database path, or guards that read the databases given: PyMySQL. An API-only run needs none.
                self.require_pymysql()
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
            review = plan.review_items()
            plan.fingerprint = planning.fingerprint(review)
            self._check_fingerprint(plan, review)
            plan.stop_if_never_overridden()
            result = dict(changed=False, method=method, method_reason=reason, plan=[], before={}, after={},
                          journal=None, force=self.params['force'], fingerprint=plan.fingerprint)
            if self.module.check_mode:
                result['review'] = dict(fingerprint=plan.fingerprint, items=review[:planning.SHOWN_ROWS])
                if len(review) > planning.SHOWN_ROWS:
                    result['review']['items_not_shown'] = len(review) - planning.SHOWN_ROWS
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
                    self._wait_for_cloud(plan)
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

    def _check_fingerprint(self, plan, review):
        """Refuse, with nothing written, when the plan made now is not the plan that was reviewed."""
        expected, reviewed = expected_fingerprint(self.params.get('expected_fingerprint'))
        if expected is None or expected == plan.fingerprint:
            return
        details = dict(expected_fingerprint=expected, fingerprint=plan.fingerprint)
        if reviewed is not None:
            details['added'] = sorted(set(review) - set(reviewed))[:planning.SHOWN_ROWS]
            details['removed'] = sorted(set(reviewed) - set(review))[:planning.SHOWN_ROWS]
            difference = '%d item(s) added, %d removed (see added and removed)' % (
                len(set(review) - set(reviewed)), len(set(reviewed) - set(review)))
        else:
            details['review'] = review[:planning.SHOWN_ROWS]
            difference = 'pass the check run\'s review (not only its fingerprint) to see the difference; review holds the new plan'
        raise PlanDrift('refused: the plan made now is not the plan that was reviewed (expected %s, now %s): %s. '
                        'Nothing was changed; run the check again and review the new plan'
                        % (expected, plan.fingerprint, difference), **details)

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

    def api_pending(self, plan):
        """After the calls: what the cloud has not finished yet, as {name: state shown}; empty when all is done.

        A module that waits (``waits = True``) reads the resources back here; a state that can no
        longer become the planned one (``error_deleting``) raises ApiError at once.
        """
        return {}

    # What api_pending's entries are, and what they have not done yet (the wait's timeout message).
    pending_what = 'resource(s) not finished'

    def _wait_for_cloud(self, plan):
        if not self.waits:
            return
        if not self.params['wait']:
            plan.note('wait=false: the calls were accepted; nothing was read back to check that they took effect')
            return
        api.wait_until(lambda: self.api_pending(plan), self.params['timeout'], self.pending_what)

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
            result.update(plan.results)
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
