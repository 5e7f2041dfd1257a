# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Read-only consistency audit of Nova, Cinder and Placement: the run.

The classes are listed in ``registry`` and detected in ``detectors/`` (one module per family,
their shared reads in ``detectors/reads``). This module is the pipeline: it validates the options,
opens the sessions and reads the cells, runs each class whose databases are given, filters and
orders the findings, and assembles the result.

Each detector reads with set-based SQL (joins and anti-joins inside one database) and, across
databases, reads compact key sets once and joins them in Python with dicts and sets; no query ever
runs per row. Host names are compared in Python, exactly and case-sensitively: a volume host
``h@b#pool`` belongs to the service host ``h@b`` and to nothing else (never LIKE, so
``controller1`` is not ``controller10``).

Every database is read in one read-only transaction with a consistent snapshot; nothing is ever
written. Each finding names its class, severity, resources, evidence rows (never
``connection_info``, connectors, network info or database URLs), its age, and the module call that
repairs it, or ``repair: None`` and a ``hint`` where no module can.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import DatabaseError, InputError, SchemaError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import normalize, normalize_row
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.schema import Schema
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.audit import registry
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import reads
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import (
    CINDER, NOVA_API, NOVA_DB, PLACEMENT, host_keys, seconds_between, text)

# The classes, as consistency_info and the reports name them (registry.py holds them).
CLASSES = registry.CLASSES
CLASS_NAMES = registry.CLASS_NAMES
CLASS_TITLES = registry.CLASS_TITLES
SEVERITIES = registry.SEVERITIES
DATABASE_OPTIONS = (CINDER, NOVA_DB, NOVA_API, PLACEMENT)

# Big key sets travel as one long string per bucket of rows (GROUP_CONCAT) instead of one packet
# per row: ASCII unit, record and group separators never occur in ids and host names, and a
# count per bucket catches any value that holds one (or a truncated bucket), which then falls back
# to plain rows.
FIELD_SEPARATOR = '\x1f'
RECORD_SEPARATOR = '\x1e'
NULL_MARK = '\x1d'
END_MARK = '\x1c'  # closes every record, so a record cut short is never taken as complete
GROUP_CONCAT_MAX_LEN = 33554432

DEFAULT_STUCK_AFTER = 3600
# Nova's and Cinder's default [DEFAULT] service_down_time.
DEFAULT_SERVICE_DOWN_TIME = nova.SERVICE_DOWN_TIME


class AuditOptions(object):
    """Validated filters and thresholds."""

    def __init__(self, classes=None, projects=None, hosts=None, min_age=0, stuck_after=None,
                 service_down_time=DEFAULT_SERVICE_DOWN_TIME):
        for name in classes or []:
            if name not in registry.BY_NAME:
                raise InputError('classes: %r is not a class of this audit (known: %s)'
                                 % (name, ', '.join(CLASS_NAMES)))
        self.classes = list(classes) if classes else list(CLASS_NAMES)
        self.projects = set(projects) if projects else None
        self.hosts = set(hosts) if hosts else None
        if min_age is None or int(min_age) < 0:
            raise InputError('min_age must be 0 or more seconds')
        self.min_age = int(min_age)
        if service_down_time is None or int(service_down_time) <= 0:
            raise InputError('service_down_time must be a positive number of seconds')
        self.service_down_time = int(service_down_time)
        self.stuck_after = self._thresholds(stuck_after)

    @staticmethod
    def _thresholds(value):
        timed = registry.THRESHOLDED
        default, per_class = DEFAULT_STUCK_AFTER, {}
        if value is None or value == '':
            pass
        elif isinstance(value, dict):
            for key, seconds in value.items():
                if key != 'default' and key not in timed:
                    raise InputError('stuck_after: %r is not a class with a threshold (those are: default, %s)'
                                     % (key, ', '.join(timed)))
                try:
                    seconds = int(seconds)
                except (TypeError, ValueError):
                    raise InputError('stuck_after: %s must be a number of seconds, not %r' % (key, seconds))
                if seconds < 0:
                    raise InputError('stuck_after: %s must be 0 or more seconds' % key)
                if key == 'default':
                    default = seconds
                else:
                    per_class[key] = seconds
        else:
            try:
                default = int(value)
            except (TypeError, ValueError):
                raise InputError('stuck_after must be a number of seconds or a dict of them per class, not %r' % (value,))
            if default < 0:
                raise InputError('stuck_after must be 0 or more seconds')
        return dict((name, per_class.get(name, default)) for name in timed)


class Audit(object):
    """One audit run: sessions, the cells, cached key sets, and the findings of each class."""

    def __init__(self, targets, options, register_secret=None, lock_timeout=30):
        self.targets = dict(targets)
        self.options = options
        self.register_secret = register_secret
        self.lock_timeout = lock_timeout
        self.sessions = {}
        self.schemas = {}
        self.notes = []
        self._now = {}
        self._cache = {}
        self._cells = None

    # ------------------------------------------------------------ plumbing

    def session(self, option):
        if option not in self.sessions:
            session = db.Session(self.targets[option], lock_timeout=self.lock_timeout).connect()
            self.sessions[option] = session
            session.execute('SET SESSION group_concat_max_len = %s', (GROUP_CONCAT_MAX_LEN,))
            # One consistent, read-only view of each database for the whole run.
            session.execute('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
        return self.sessions[option]

    def close(self):
        for session in self.sessions.values():
            session.rollback()
            session.close()
        self.sessions = {}

    def schema(self, option, service):
        if option not in self.schemas:
            self.schemas[option] = Schema.probe(self.session(option), service)
        return self.schemas[option]

    def now(self, option):
        """The database server's UTC clock (Session.utc_now, read once): ages are measured against the
        clock the rows were compared with."""
        if option not in self._now:
            self._now[option] = self.session(option).utc_now()
        return self._now[option]

    def rows(self, option, sql, params=None):
        return self.session(option).query(sql, params)

    def tuples(self, option, sql, params=None):
        """Compact reads of key sets: plain tuples, no dict per row."""
        session = self.session(option)
        try:
            with session.connection.cursor(db.pymysql.cursors.Cursor) as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except db.pymysql.err.MySQLError as error:
            raise DatabaseError(db.describe_error(session.target, error))

    def packed(self, option, columns, source, bucket, params=None):
        """Tuples of ``columns`` (SQL expressions) from ``source`` (``FROM ... WHERE ...``), every value
        as text or None, read as one string per ``bucket`` group (bounded, e.g. ``id DIV 1000``).
        ``params`` fill the placeholders of ``columns`` and then of ``source``."""
        record = "CONCAT_WS('%s', %s, '%s')" % (FIELD_SEPARATOR, ', '.join(
            "IFNULL(%s, '%s')" % (column, NULL_MARK) for column in columns), END_MARK)
        groups = self.tuples(option, "SELECT COUNT(*), GROUP_CONCAT(%s SEPARATOR '%s') %s GROUP BY %s" % (
            record, RECORD_SEPARATOR, source, bucket), params)
        found = []
        for count, joined in groups:
            records = text(joined).split(RECORD_SEPARATOR) if joined is not None else []
            if len(records) != count:
                return self._unpacked(option, columns, source, params)
            width = len(columns) + 1
            for record_text in records:
                fields = record_text.split(FIELD_SEPARATOR)
                if len(fields) != width or fields[-1] != END_MARK:
                    return self._unpacked(option, columns, source, params)
                del fields[-1]
                if NULL_MARK in record_text:
                    fields = [None if field == NULL_MARK else field for field in fields]
                found.append(tuple(fields))
        return found

    def _unpacked(self, option, columns, source, params):
        rows = self.tuples(option, 'SELECT %s %s' % (', '.join(columns), source), params)
        return [tuple(None if value is None else text(value) if isinstance(value, (bytes, bytearray)) else str(value)
                      for value in row) for row in rows]

    def rows_in(self, option, sql, values, params_before=()):
        """``sql`` has one ``IN (%s)`` spot filled with chunks of ``values`` (in sorted order): Session.select_in."""
        return self.session(option).select_in(sql % '{in}', sorted(set(values)), before=params_before)

    def cached(self, key, function):
        if key not in self._cache:
            self._cache[key] = function()
        return self._cache[key]

    def has(self, requirement):
        if requirement == 'cinder':
            return CINDER in self.targets
        if requirement == 'nova':
            return NOVA_DB in self.targets or NOVA_API in self.targets
        if requirement == 'nova_api':
            return NOVA_API in self.targets
        if requirement == 'placement':
            return PLACEMENT in self.targets
        raise ValueError(requirement)

    def unmet(self, spec):
        """Why a class cannot run with the databases given, or None."""
        options = {'cinder': CINDER, 'nova': '%s or %s' % (NOVA_DB, NOVA_API), 'nova_api': NOVA_API,
                   'placement': PLACEMENT}
        if spec.needs == ('any',):
            if not (self.has('cinder') or self.has('nova')):
                return 'needs %s, %s or %s' % (CINDER, NOVA_DB, NOVA_API)
            return None
        missing = [options[need] for need in spec.needs if not self.has(need)]
        if missing:
            return 'needs %s' % ' and '.join(missing)
        return None

    def note(self, message):
        if message not in self.notes:
            self.notes.append(message)

    # ---------------------------------------------------------------- cells

    def cells(self):
        """The Nova cells read (cells.NovaCells): every cell of ``nova_api_db``, else ``nova_db`` alone."""
        if self._cells is not None:
            return self._cells
        found = nova_cells.resolve_cells(self.targets, lambda: self.session(NOVA_API), self.register_secret)
        if found is None:
            found = nova_cells.NovaCells([], complete=False)
        elif not found.complete:
            self.note(nova_cells.PARTIAL_VIEW_NOTE)
        for cell in found:
            self.targets[cell.option] = cell.target
            cell.session = self.session(cell.option)
            self.nova_schema(cell).require('instances', ('uuid', 'host', 'node', 'task_state', 'deleted'),
                                           purpose='read the instances of %s' % cell.option)
        self._cells = found
        return found

    def host_cells(self):
        """Cells whose instances have hosts: cell0 holds only instances that were never scheduled."""
        return self.cells().with_hosts()

    def absent_instances(self, uuids):
        """{uuid: cells.Absence} of instances none of the cells read holds."""
        return nova_cells.classify_absent(self.cells(), uuids, self.session(NOVA_API) if NOVA_API in self.targets
                                          else None)

    def nova_schema(self, cell):
        return self.schema(cell.option, 'nova')

    # -------------------------------------------------------------- results

    def finding(self, spec, message, resources, evidence=(), project=None, host=None, since=None, now=None,
                severity=None, fix=None, hint=None, key=None):
        """One finding of class ``spec``; ``fix`` is ``spec.repair(...)`` or None."""
        return {
            'class': spec.name,
            'severity': severity or spec.severity,
            'key': '%s:%s' % (spec.name, key),
            'message': message,
            'resources': resources,
            'project': project,
            'host': host,
            'age': seconds_between(since, now),
            'since': normalize(since),
            # Evidence reads named columns; the redaction is the safety net for a secret column among them.
            'evidence': [redaction.redact_row(normalize_row(row), row.get('table')) for row in evidence],
            'repair': fix,
            'hint': hint,
        }

    def keep(self, finding):
        options = self.options
        if options.projects is not None and finding['project'] not in options.projects:
            return False
        if options.hosts is not None and not host_keys(finding['host']) & options.hosts:
            return False
        if options.min_age and finding['age'] is not None and finding['age'] < options.min_age:
            return False
        return True

    def inventory(self):
        """Counts of the live rows every class is judged against, read in the same snapshots.

        An empty or sharply smaller count than last time means a wrong or broken source
        (remediation_gate aborts on it). Also reads each database's clock, so audited_at
        is set even when nothing was found.
        """
        counts = {}

        def count(name, read):
            # A database of the wrong service has its classes skipped, not the run failed;
            # its counts are left out (the gate then has nothing to compare for them).
            try:
                counts[name] = read()
            except SchemaError as error:
                self.note('inventory: %s not counted: %s' % (name, error.msg))

        if self.has('cinder'):
            self.now(CINDER)
            count('volumes', lambda: self.tuples(CINDER, 'SELECT COUNT(*) FROM volumes WHERE deleted = 0')[0][0])
            count('volume_attachments', lambda: self.tuples(
                CINDER, 'SELECT COUNT(*) FROM volume_attachment WHERE deleted = 0')[0][0])
        if self.has('nova'):
            count('cells', lambda: len(self.cells()))
            count('instances', lambda: len(reads.live_instances(self)))
            count('volume_bdms', lambda: len(reads.volume_bdms(self)))
            for cell in self._cells or []:
                self.now(cell.option)
        if self.has('placement'):
            self.now(PLACEMENT)
            count('resource_providers', lambda: self.tuples(PLACEMENT, 'SELECT COUNT(*) FROM resource_providers')[0][0])
        return dict((name, int(value)) for name, value in counts.items())

    def detect(self, spec):
        """The findings of one class the filters keep, in report order (severity, host, key)."""
        kept = [found for found in spec.function(self, spec) if self.keep(found)]
        return sorted(kept, key=lambda found: (SEVERITIES.index(found['severity']), found['host'] or '', found['key']))

    def clocks(self):
        """The database clocks read during the run, the fixed options first."""
        return ([self._now[option] for option in DATABASE_OPTIONS if option in self._now]
                + [self._now[option] for option in sorted(self._now)])

    def run(self):
        started = time.time()
        findings, skipped, counts, timings = [], [], {}, {}
        for spec in CLASSES:
            if spec.name not in self.options.classes:
                continue
            reason = self.unmet(spec)
            if reason:
                skipped.append({'class': spec.name, 'reason': reason})
                continue
            began = time.time()
            try:
                kept = self.detect(spec)
            except SchemaError as error:
                skipped.append({'class': spec.name, 'reason': error.msg})
                continue
            timings[spec.name] = round(time.time() - began, 3)
            counts[spec.name] = len(kept)
            findings.extend(kept)
        return self.result(findings, skipped, counts, timings, started)

    def result(self, findings, skipped, counts, timings, started):
        summary = {}
        for found in findings:
            entry = summary.setdefault(found['host'] or '(no host)', {'total': 0, 'classes': {}})
            entry['total'] += 1
            entry['classes'][found['class']] = entry['classes'].get(found['class'], 0) + 1
        severity_counts = dict((severity, 0) for severity in SEVERITIES)
        for found in findings:
            severity_counts[found['severity']] += 1
        inventory = self.inventory()
        cells = [dict(name=cell.option, uuid=cell.uuid, cell0=cell.is_cell0) for cell in (self._cells or [])]
        cells_complete = bool(self._cells and self._cells.complete)
        databases = dict((option, target.display()) for option, target in self.targets.items())
        clocks = self.clocks()
        audited_at = normalize(clocks[0]) if clocks else None
        return dict(
            findings=findings, counts=counts, severity_counts=severity_counts, summary=summary, skipped_classes=skipped,
            classes_run=[spec.name for spec in CLASSES if spec.name in counts], cells=cells,
            cells_complete=cells_complete, databases=databases,
            thresholds=dict(stuck_after=self.options.stuck_after, service_down_time=self.options.service_down_time,
                            min_age=self.options.min_age),
            filters=dict(classes=self.options.classes if len(self.options.classes) < len(CLASSES) else None,
                         projects=sorted(self.options.projects) if self.options.projects else None,
                         hosts=sorted(self.options.hosts) if self.options.hosts else None),
            inventory=inventory, audited_at=audited_at, timings=timings, elapsed=round(time.time() - started, 3),
            notes=list(self.notes))
