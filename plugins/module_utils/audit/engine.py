# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Read-only consistency audit of Nova, Cinder and Placement.

One function per class of inconsistency. Each reads with set-based SQL
(joins and anti-joins inside one database) and, across databases, reads
compact key sets once and joins them in Python with dicts and sets; no
query ever runs per row. Host names are compared in Python, exactly and
case-sensitively: a volume host ``h@b#pool`` belongs to the service host
``h@b`` and to nothing else (never LIKE, so ``controller1`` is not
``controller10``).

Every database is read in one read-only transaction with a consistent
snapshot; nothing is ever written. Each finding names its class, severity,
resources, evidence rows (never ``connection_info``, connectors, network
info or database URLs), its age, and the module call that repairs it, or
``repair: None`` and a ``hint`` where no module can.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
import datetime

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.services import instance_records
from ansible_collections.stackmender.openstack.plugins.module_utils.services import network_info
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import DatabaseError, InputError, SchemaError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import normalize, normalize_row, quote_identifier
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.schema import Schema
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders

CINDER = 'cinder_db'
NOVA_DB = 'nova_db'
NOVA_API = 'nova_api_db'
PLACEMENT = 'placement_db'
COLLECTION = 'stackmender.openstack.'

SEVERITIES = ('critical', 'error', 'warning', 'info')

# Volume and snapshot statuses that mean an operation is in flight.
STUCK_STATUSES = ('attaching', 'detaching', 'creating', 'deleting', 'reserved', 'error_deleting', 'migrating')
# Nova migration statuses after which nothing more happens (nova's in-progress filter).
MIGRATION_DONE = nova.FINISHED_MIGRATION_STATUSES
# Placement trait of providers whose inventory is shared with compute nodes through aggregates.
SHARING_TRAIT = 'MISC_SHARES_VIA_AGGREGATE'

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
DEFAULT_SERVICE_DOWN_TIME = 60
# Ids listed per table in findings that aggregate rows; the count is always exact.
SHOWN_IDS = 50

# Child tables whose live rows must go when their parent is soft-deleted: what nova's instance_destroy
# and cinder's volume_destroy soft-delete, as (table, column naming the parent). Live attachments of
# deleted volumes have their own class (attachment_of_deleted_volume).
NOVA_CHILD_TABLES = instance_records.CHILD_TABLES
CINDER_VOLUME_CHILD_TABLES = tuple((table, 'volume_id') for table in cinder.VOLUME_DEPENDENT_TABLES
                                   if table != 'volume_attachment')
CINDER_SNAPSHOT_CHILD_TABLES = (('snapshot_metadata', 'snapshot_id'),)
# Tables checked for soft-deleted rows without deleted_at.
NOVA_SOFT_DELETE_TABLES = ('instances', 'block_device_mapping', 'migrations', 'services', 'compute_nodes')
CINDER_SOFT_DELETE_TABLES = ('volumes', 'volume_attachment', 'snapshots', 'services', 'backups', 'groups',
                             'volume_metadata', 'volume_admin_metadata')

INSTANCE_COLUMNS = ('uuid', 'host', 'node', 'vm_state', 'task_state', 'power_state', 'project_id', 'deleted',
                    'deleted_at', 'updated_at', 'created_at')
VOLUME_COLUMNS = ('id', 'status', 'attach_status', 'migration_status', 'host', 'project_id', 'multiattach',
                  'deleted', 'deleted_at', 'updated_at', 'created_at')
# What evidence shows of a cinder service row.
SERVICE_COLUMNS = ('id', 'uuid', 'host', 'binary', 'cluster_name', 'disabled', 'disabled_reason', 'modified_at',
                   'created_at', 'updated_at', 'heartbeat_age')
# What evidence shows of an attachment: never connection_info or connector.
ATTACHMENT_COLUMNS = ('id', 'volume_id', 'instance_uuid', 'attached_host', 'attach_status', 'attach_time',
                      'deleted', 'deleted_at', 'updated_at', 'created_at')


def text(value):
    """A str from a column read with BINARY (bytes) or as text."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8', 'replace')
    return value


def service_host(volume_host):
    """The cinder-volume service host (``h@b``) owning a volume host (``h@b#pool``)."""
    if not volume_host:
        return None
    return volume_host.split('#', 1)[0]


def host_keys(host):
    """The exact names a ``hosts`` filter matches: ``h@b#pool``, ``h@b`` and ``h``."""
    if not host:
        return set()
    return set([host, host.split('#', 1)[0], host.split('#', 1)[0].split('@', 1)[0]])


def columns_sql(alias, columns):
    return ', '.join('%s.%s' % (alias, quote_identifier(column)) for column in columns)


def repair(module, **args):
    return dict(module=COLLECTION + module, args=args)


def seconds_between(earlier, later):
    if earlier is None or later is None:
        return None
    return max(0, int((later - earlier).total_seconds()))


def first_time(*values):
    for value in values:
        if value is not None:
            return value
    return None


class AuditClass(object):
    """One class of inconsistency: its detector and what it needs."""

    def __init__(self, name, function, needs, severity, title, thresholded=False):
        self.name = name
        self.function = function
        self.needs = needs
        self.severity = severity
        self.title = title
        self.thresholded = thresholded


class AuditOptions(object):
    """Validated filters and thresholds."""

    def __init__(self, classes=None, projects=None, hosts=None, min_age=0, stuck_after=None,
                 service_down_time=DEFAULT_SERVICE_DOWN_TIME):
        names = [spec.name for spec in CLASSES]
        for name in classes or []:
            if name not in names:
                raise InputError('classes: %r is not a class of this audit (known: %s)' % (name, ', '.join(names)))
        self.classes = list(classes) if classes else names
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
        timed = [spec.name for spec in CLASSES if spec.thresholded]
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
    """One audit run: sessions, cached key sets, the class detectors' shared reads."""

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
        """The database server's UTC clock: ages are measured against the clock the rows were compared with."""
        if option not in self._now:
            self._now[option] = self.session(option).query('SELECT UTC_TIMESTAMP() AS now')[0]['now']
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
        options = {'cinder': 'cinder_db', 'nova': 'nova_db or nova_api_db', 'nova_api': 'nova_api_db',
                   'placement': 'placement_db'}
        if spec.needs == ('any',):
            if not (self.has('cinder') or self.has('nova')):
                return 'needs cinder_db, nova_db or nova_api_db'
            return None
        missing = [options[need] for need in spec.needs if not self.has(need)]
        if missing:
            return 'needs %s' % ' and '.join(missing)
        return None

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

    def note(self, message):
        if message not in self.notes:
            self.notes.append(message)

    # ------------------------------------------------------- shared key sets

    def volume_bdms(self):
        """(cell, instance_uuid, volume_id, attachment_id) of every live volume BDM of a live instance."""
        def read():
            found = []
            live = self.live_instances()
            for cell in self.cells():
                self.nova_schema(cell).require('block_device_mapping', ('instance_uuid', 'volume_id', 'attachment_id',
                                                                        'destination_type', 'deleted'),
                                               purpose='read the volume block device mappings')
                # Joined to the live instances in memory: they are read once for several classes.
                for instance_uuid, volume_id, attachment_id in self.packed(
                        cell.option, ('b.instance_uuid', 'b.volume_id', 'b.attachment_id'),
                        "FROM block_device_mapping b WHERE b.deleted = 0 AND b.destination_type = 'volume' "
                        "AND b.volume_id IS NOT NULL", 'b.id DIV 1000'):
                    instance = live.get(instance_uuid)
                    if instance is not None and instance[0] is cell:
                        found.append((cell, instance_uuid, volume_id, attachment_id))
            return found
        return self.cached('volume_bdms', read)

    def live_instances(self):
        """{uuid: (cell, host, node, task_state)} of every live instance in every cell read."""
        def read():
            found = {}
            for cell in self.cells():
                for uuid, host, node, task_state in self.packed(
                        cell.option, ('uuid', 'host', 'node', 'task_state'), 'FROM instances WHERE deleted = 0',
                        'id DIV 1000'):
                    found[uuid] = (cell, host, node, task_state)
            return found
        return self.cached('live_instances', read)

    def instance_rows(self, uuids):
        """{uuid: row} of the instances with these uuids in any cell, live or deleted (the live row wins)."""
        found = {}
        if not uuids:
            return found
        for cell in self.cells():
            sql = 'SELECT %s FROM instances i WHERE i.uuid IN (%%s)' % columns_sql('i', INSTANCE_COLUMNS)
            for row in self.rows_in(cell.option, sql, uuids):
                row['cell'] = cell.option
                if row['uuid'] not in found or row['deleted'] == 0:
                    found[row['uuid']] = row
        return found

    def inuse_volumes(self):
        """{id: (status, attach_status, migration_status)} of live volumes Cinder counts as attached."""
        def read():
            return dict((row[0], row[1:]) for row in self.packed(
                CINDER, ('id', 'status', 'attach_status', 'migration_status'),
                "FROM volumes WHERE deleted = 0 AND (status = 'in-use' OR attach_status = 'attached')", 'LEFT(id, 2)'))
        return self.cached('inuse_volumes', read)

    def live_attachments(self):
        """{id: (volume_id, instance_uuid, attach_status)} of every live volume_attachment row."""
        def read():
            return dict((row[0], row[1:]) for row in self.packed(
                CINDER, ('id', 'volume_id', 'instance_uuid', 'attach_status'),
                'FROM volume_attachment WHERE deleted = 0', 'LEFT(id, 2)'))
        return self.cached('live_attachments', read)

    def volume_rows(self, ids):
        sql = 'SELECT %s FROM volumes v WHERE v.id IN (%%s)' % columns_sql('v', VOLUME_COLUMNS)
        return dict((row['id'], row) for row in self.rows_in(CINDER, sql, ids))

    def attachment_rows(self, ids=None, volume_ids=None, live_only=True):
        column, values = ('id', ids) if ids is not None else ('volume_id', volume_ids)
        sql = 'SELECT %s FROM volume_attachment a WHERE %sa.%s IN (%%s) ORDER BY a.created_at, a.id' % (
            columns_sql('a', ATTACHMENT_COLUMNS), 'a.deleted = 0 AND ' if live_only else '', column)
        return self.rows_in(CINDER, sql, values)

    def cinder_services(self):
        """Live cinder-volume services by exact host, with whether each is up (the rule the Cinder modules share)."""
        def read():
            self.schema(CINDER, 'cinder').require('services', ('host', 'binary', 'disabled', 'updated_at', 'deleted'),
                                                  purpose='tell whether cinder-volume services are up')
            by_host = {}
            for service in cinder.live_services(self.session(CINDER), 'cinder-volume'):
                row = dict((column, service[column]) for column in SERVICE_COLUMNS if column in service)
                row['up'] = cinder.service_is_up(service, self.options.service_down_time)
                row['heartbeat'] = service['updated_at']
                by_host.setdefault(row['host'], []).append(row)
            return by_host
        return self.cached('cinder_services', read)

    def compute_services(self, cell):
        """Live nova-compute services of a cell by exact host, with whether each is up."""
        def read():
            self.nova_schema(cell).require('services', ('host', 'binary', 'disabled', 'forced_down', 'last_seen_up',
                                                        'created_at', 'deleted'),
                                           purpose='tell whether nova-compute services are up')
            now = self.now(cell.option)
            by_host = {}
            for row in self.rows(cell.option, "SELECT id, host, disabled, forced_down, last_seen_up, created_at "
                                              "FROM services WHERE deleted = 0 AND `binary` = 'nova-compute' "
                                              "ORDER BY id"):
                row['heartbeat'] = first_time(row['last_seen_up'], row['created_at'])
                row['up'] = nova.service_is_up(row, now, self.options.service_down_time)
                by_host.setdefault(row['host'], []).append(row)
            return by_host
        return self.cached(('compute_services', cell.option), read)

    def compute_nodes(self, cell):
        """{(host, hypervisor_hostname): row} of a cell's live compute nodes."""
        def read():
            self.nova_schema(cell).require('compute_nodes', ('id', 'uuid', 'host', 'hypervisor_hostname', 'deleted'),
                                           purpose='match instances to compute nodes')
            return dict(((row['host'], row['hypervisor_hostname']), row) for row in self.rows(
                cell.option, 'SELECT id, uuid, host, hypervisor_hostname FROM compute_nodes WHERE deleted = 0 ORDER BY id'))
        return self.cached(('compute_nodes', cell.option), read)

    def migrating_instances(self, cell):
        """Uuids of instances with a migration in progress in a cell."""
        def read():
            return set(row[0] for row in self.tuples(
                cell.option, 'SELECT DISTINCT instance_uuid FROM migrations WHERE deleted = 0 AND status NOT IN (%s)'
                             % placeholders(len(MIGRATION_DONE)), MIGRATION_DONE))
        return self.cached(('migrating_instances', cell.option), read)

    # -------------------------------------------------------------- results

    def finding(self, spec, message, resources, evidence=(), project=None, host=None, since=None, now=None,
                severity=None, fix=None, hint=None, key=None):
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
            count('instances', lambda: len(self.live_instances()))
            count('volume_bdms', lambda: len(self.volume_bdms()))
            for cell in self._cells or []:
                self.now(cell.option)
        if self.has('placement'):
            self.now(PLACEMENT)
            count('resource_providers', lambda: self.tuples(PLACEMENT, 'SELECT COUNT(*) FROM resource_providers')[0][0])
        return dict((name, int(value)) for name, value in counts.items())

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
                produced = list(spec.function(self, spec))
            except SchemaError as error:
                skipped.append({'class': spec.name, 'reason': error.msg})
                continue
            timings[spec.name] = round(time.time() - began, 3)
            kept = sorted((found for found in produced if self.keep(found)),
                          key=lambda found: (SEVERITIES.index(found['severity']), found['host'] or '', found['key']))
            counts[spec.name] = len(kept)
            findings.extend(kept)
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
        clocks = [self._now[option] for option in (CINDER, NOVA_DB, NOVA_API, PLACEMENT) if option in self._now]
        clocks += [self._now[option] for option in sorted(self._now)]
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


# ---------------------------------------------------------------------------
# Cinder and Nova disagree about volumes


def volume_attached_without_bdm(audit, spec):
    """Volumes Cinder calls in-use/attached that no live Nova BDM (of a live instance) references."""
    audit.schema(CINDER, 'cinder').require('volumes', VOLUME_COLUMNS, purpose='find attached volumes')
    referenced = set(volume_id for _cell, _instance, volume_id, _attachment in audit.volume_bdms())
    # Transitional statuses belong to volume_stuck; migration targets are Cinder's own temporary volumes.
    candidates = [volume_id for volume_id, (status, _attach, migration) in audit.inuse_volumes().items()
                  if volume_id not in referenced and status not in STUCK_STATUSES
                  and not (migration or '').startswith(cinder.MIGRATION_TARGET_PREFIX)]
    if not candidates:
        return
    volumes = audit.volume_rows(candidates)
    attachments = {}
    for row in audit.attachment_rows(volume_ids=candidates):
        attachments.setdefault(row['volume_id'], []).append(row)
    instances = audit.instance_rows(set(row['instance_uuid'] for rows in attachments.values() for row in rows
                                        if row['instance_uuid']))
    # An instance in none of the cells read is only missing when Nova has no trace of it anywhere.
    absent = audit.absent_instances(set(row['instance_uuid'] for rows in attachments.values() for row in rows
                                        if row['instance_uuid'] and row['instance_uuid'] not in instances))
    not_judged = sorted(uuid for uuid, absence in absent.items() if not absence.gone)
    if not_judged:
        audit.note('volume_attached_without_bdm: %d volume(s) attached to instance(s) in no cell read were not judged '
                   '(%s)' % (len(not_judged), '; '.join(absent[uuid].explain() for uuid in not_judged[:5])))
    now = audit.now(CINDER)
    for volume_id in sorted(volumes):
        volume = volumes[volume_id]
        rows = attachments.get(volume_id, [])
        if any(row['instance_uuid'] in absent and not absent[row['instance_uuid']].gone for row in rows):
            continue
        seen = [instances.get(row['instance_uuid']) for row in rows if row['instance_uuid']]
        if seen and all(instance is not None and instance['deleted'] for instance in seen):
            why = 'its instance(s) %s are deleted' % ', '.join(sorted(instance['uuid'] for instance in seen))
        elif seen and all(instance is None for instance in seen):
            why = 'Nova has no instance %s' % ', '.join(sorted(row['instance_uuid'] for row in rows if row['instance_uuid']))
        else:
            why = 'Nova has no live block device mapping for it'
        evidence = [dict(volume, table='volumes')] + [dict(row, table='volume_attachment') for row in rows]
        evidence += [dict(instance, table='instances') for instance in seen if instance is not None]
        yield audit.finding(
            spec, 'volume %s is %s/%s but %s' % (volume_id, volume['status'], volume['attach_status'], why),
            dict(volume=volume_id, attachments=[row['id'] for row in rows],
                 instances=sorted(set(row['instance_uuid'] for row in rows if row['instance_uuid']))),
            evidence, project=volume['project_id'], host=service_host(volume['host']),
            since=first_time(volume['updated_at'], volume['created_at']), now=now, key='volume/%s' % volume_id,
            fix=repair('cinder_volume_state', volume=[volume_id], status='available', attach_status='detached',
                       from_status=[volume['status']]),
            hint='with a cloud configured the module deletes stale attachments through Cinder, which also removes '
                 'the backend export; through the database the export is left for the operator to remove')


def bdm_without_attachment(audit, spec):
    """Live Nova volume BDMs whose Cinder volume or attachment is gone or detached."""
    audit.schema(CINDER, 'cinder').require('volume_attachment', ATTACHMENT_COLUMNS, purpose='match attachments')
    bdms = [bdm for bdm in audit.volume_bdms() if not bdm[0].is_cell0]
    inuse = audit.inuse_volumes()
    attachments = audit.live_attachments()
    live_pairs = set((volume_id, instance) for volume_id, instance, status in attachments.values() if status != 'detached')
    any_pairs = set((volume_id, instance) for volume_id, instance, _status in attachments.values())
    others = audit.volume_rows(set(bdm[2] for bdm in bdms if bdm[2] not in inuse))
    flagged = {}
    for cell, instance, volume_id, attachment_id in bdms:
        volume = others.get(volume_id)
        if volume_id not in inuse and volume is None:
            reason = 'volume_missing'
        elif volume is not None and volume['deleted']:
            reason = 'volume_deleted'
        elif attachment_id:
            attachment = attachments.get(attachment_id)
            if attachment is None:
                reason = 'attachment_gone'
            elif attachment[2] == 'detached':
                reason = 'attachment_detached'
            else:
                continue
        elif (volume_id, instance) not in live_pairs:
            reason = 'no_attachment'
        else:
            continue
        flagged[(cell.option, instance, volume_id, attachment_id)] = (cell, instance, volume_id, attachment_id, reason)
    flagged = [flagged[key] for key in sorted(flagged, key=lambda key: tuple(part or '' for part in key))]
    if not flagged:
        return
    gone = audit.attachment_rows(ids=set(item[3] for item in flagged if item[3]), live_only=False)
    attachment_by_id = dict((row['id'], row) for row in gone)
    details = {}
    for cell in set(item[0] for item in flagged):
        schema = audit.nova_schema(cell)
        columns = ['id', 'instance_uuid', 'volume_id', 'attachment_id', 'device_name', 'boot_index', 'created_at',
                   'updated_at'] + (['uuid'] if schema.has('block_device_mapping', 'uuid') else [])
        sql = ("SELECT %s, i.host AS instance_host, i.node AS instance_node, i.vm_state, i.project_id "
               "FROM block_device_mapping b JOIN instances i ON i.uuid = b.instance_uuid "
               "WHERE b.deleted = 0 AND i.deleted = 0 AND b.destination_type = 'volume' AND b.instance_uuid IN (%%s) "
               "ORDER BY b.id" % columns_sql('b', columns))
        for row in audit.rows_in(cell.option, sql, set(item[1] for item in flagged if item[0] is cell)):
            details.setdefault((cell.option, row['instance_uuid'], row['volume_id'], row['attachment_id']), []).append(row)
    for cell, instance, volume_id, attachment_id, reason in flagged:
        now = audit.now(cell.option)
        volume = others.get(volume_id)
        attachment = attachment_by_id.get(attachment_id)
        if reason == 'attachment_gone':
            reason = 'attachment_deleted' if attachment is not None else 'attachment_missing'
        for bdm in details.get((cell.option, instance, volume_id, attachment_id), []):
            since = first_time(attachment and attachment['deleted_at'], volume and volume['deleted_at'],
                               bdm['updated_at'], bdm['created_at'])
            explain = {
                'volume_missing': 'Cinder has no volume %s' % volume_id,
                'volume_deleted': 'Cinder volume %s is deleted' % volume_id,
                'attachment_deleted': 'its Cinder attachment %s is deleted' % attachment_id,
                'attachment_missing': 'Cinder has no attachment %s' % attachment_id,
                'attachment_detached': 'its Cinder attachment %s is detached' % attachment_id,
                'no_attachment': 'Cinder has no live attachment of volume %s to the instance' % volume_id,
            }[reason]
            evidence = [dict(bdm, table='block_device_mapping', cell=cell.option)]
            if volume is not None:
                evidence.append(dict(volume, table='volumes'))
            if attachment is not None:
                evidence.append(dict(attachment, table='volume_attachment'))
            fix, hint = None, None
            if (volume_id, instance) in any_pairs:
                hint = ('Cinder still has a live attachment row of volume %s to instance %s, so the block device '
                        'mapping cannot simply go: refresh it with nova-manage volume_attachment refresh, or delete '
                        'the stale Cinder attachment first' % (volume_id, instance))
            elif bdm['boot_index'] == 0:
                hint = ('this is the root disk of instance %s: rebuild or delete the instance rather than removing '
                        'its root mapping' % instance)
            else:
                fix = repair('nova_bdm_purge', instance=[instance], volume=[volume_id])
                hint = 'hard reboot (or stop and start) instance %s afterwards so the hypervisor drops the disk' % instance
            yield audit.finding(
                spec, 'instance %s maps volume %s (block device mapping %s) but %s'
                % (instance, volume_id, bdm['id'], explain),
                dict(instance=instance, volume=volume_id, bdm=bdm['id'], attachment=attachment_id, cell=cell.option,
                     reason=reason),
                evidence, project=bdm['project_id'], host=bdm['instance_host'], since=since, now=now,
                key='%s/bdm/%s' % (cell.option, bdm['id']), fix=fix, hint=hint)


def volume_stuck(audit, spec):
    """Volumes in a transitional status (or mid-migration) for longer than the threshold."""
    schema = audit.schema(CINDER, 'cinder')
    schema.require('volumes', VOLUME_COLUMNS, purpose='find volumes stuck in a transitional status')
    now = audit.now(CINDER)
    cutoff = now - datetime.timedelta(seconds=audit.options.stuck_after[spec.name])
    # A migration in flight is what the Cinder modules call one (cinder.is_migrating); SQL only narrows.
    rows = audit.rows(
        CINDER, 'SELECT %s FROM volumes v WHERE v.deleted = 0 AND (v.status IN (%s) OR %s) '
                'AND COALESCE(v.updated_at, v.created_at) <= %%s ORDER BY v.id'
        % (columns_sql('v', VOLUME_COLUMNS), placeholders(len(STUCK_STATUSES)),
           cinder.migrating_condition('v.migration_status')),
        list(STUCK_STATUSES) + cinder.migrating_condition_params() + [cutoff])
    rows = [row for row in rows if row['status'] in STUCK_STATUSES or cinder.is_migrating(row['migration_status'])]
    if not rows:
        return
    ids = [row['id'] for row in rows]
    attachments = {}
    for row in audit.attachment_rows(volume_ids=ids):
        attachments.setdefault(row['volume_id'], []).append(row)
    bdms = None
    if audit.has('nova'):
        bdms = {}
        for row in nova.live_volume_bdms(audit.cells(), ids):
            bdms.setdefault(row['volume_id'], []).append(row)
    for volume in rows:
        volume_id, status = volume['id'], volume['status']
        attached = [row for row in attachments.get(volume_id, []) if row['attach_status'] == 'attached']
        nova_rows = None if bdms is None else bdms.get(volume_id, [])
        fix, hint = None, None
        if cinder.is_migrating(volume['migration_status']) or status == 'migrating':
            what = 'migration_status %s' % volume['migration_status']
            fix = repair('cinder_volume_state', volume=[volume_id], migration_status='error')
            hint = 'ends the migration as failed; check the destination volume and re-audit'
        else:
            what = 'status %s' % status
            if status == 'creating':
                fix = repair('cinder_volume_state', volume=[volume_id], status='error', from_status=[status])
            elif status in ('deleting', 'error_deleting'):
                if nova_rows:
                    hint = 'Nova still maps the volume; detach it from instance(s) %s first' % ', '.join(
                        sorted(set(row['instance_uuid'] for row in nova_rows)))
                else:
                    fix = repair('cinder_volume_state', volume=[volume_id], status='deleted', from_status=[status])
                    hint = ('with a cloud configured the module force-deletes through Cinder, which removes the '
                            'backend object when its cinder-volume is up; through the database the backend object '
                            'is left for the operator')
            elif nova_rows is None:
                hint = 'give nova_db or nova_api_db: whether to go back to in-use or to available depends on Nova'
            elif not nova_rows:
                fix = repair('cinder_volume_state', volume=[volume_id], status='available', attach_status='detached',
                             from_status=[status])
            elif attached:
                fix = repair('cinder_volume_state', volume=[volume_id], status='in-use', attach_status='attached',
                             from_status=[status])
                hint = 'Nova still maps the volume and Cinder has a completed attachment: back to in-use'
            else:
                hint = ('Nova maps the volume on instance(s) %s but Cinder has no completed attachment: detach it '
                        'through Nova, or remove the mapping with nova_bdm_purge once the guest no longer uses it'
                        % ', '.join(sorted(set(row['instance_uuid'] for row in nova_rows))))
        evidence = [dict(volume, table='volumes')] + [dict(row, table='volume_attachment')
                                                      for row in attachments.get(volume_id, [])]
        evidence += [dict(row, table='block_device_mapping') for row in nova_rows or []]
        since = first_time(volume['updated_at'], volume['created_at'])
        yield audit.finding(
            spec, 'volume %s has been in %s for %s s' % (volume_id, what, seconds_between(since, now)),
            dict(volume=volume_id, status=status, migration_status=volume['migration_status']), evidence,
            project=volume['project_id'], host=service_host(volume['host']), since=since, now=now,
            key='volume/%s' % volume_id, fix=fix, hint=hint)


def snapshot_stuck(audit, spec):
    """Snapshots in a transitional status for longer than the threshold."""
    audit.schema(CINDER, 'cinder').require('snapshots', ('id', 'volume_id', 'status', 'project_id', 'updated_at',
                                                         'created_at', 'deleted'),
                                           purpose='find snapshots stuck in a transitional status')
    now = audit.now(CINDER)
    cutoff = now - datetime.timedelta(seconds=audit.options.stuck_after[spec.name])
    rows = audit.rows(
        CINDER, 'SELECT s.id, s.volume_id, s.status, s.progress, s.project_id, s.updated_at, s.created_at, '
                'v.host AS volume_host FROM snapshots s LEFT JOIN volumes v ON v.id = s.volume_id '
                'WHERE s.deleted = 0 AND s.status IN (%s) AND COALESCE(s.updated_at, s.created_at) <= %%s ORDER BY s.id'
        % placeholders(len(STUCK_STATUSES)), list(STUCK_STATUSES) + [cutoff])
    for row in rows:
        since = first_time(row['updated_at'], row['created_at'])
        yield audit.finding(
            spec, 'snapshot %s of volume %s has been %s for %s s' % (row['id'], row['volume_id'], row['status'],
                                                                     seconds_between(since, now)),
            dict(snapshot=row['id'], volume=row['volume_id'], status=row['status']), [dict(row, table='snapshots')],
            project=row['project_id'], host=service_host(row['volume_host']), since=since, now=now,
            key='snapshot/%s' % row['id'],
            hint='reset it through Cinder (openstack volume snapshot set --state error %s), then delete it if it is '
                 'unwanted; for deleting/error_deleting first make sure the backend snapshot is gone' % row['id'])


def attachment_of_deleted_volume(audit, spec):
    """Live attachment rows of soft-deleted volumes."""
    audit.schema(CINDER, 'cinder').require('volume_attachment', ATTACHMENT_COLUMNS, purpose='find orphaned attachments')
    now = audit.now(CINDER)
    rows = audit.rows(
        CINDER, 'SELECT %s, v.status AS volume_status, v.host AS volume_host, v.project_id, '
                'v.deleted_at AS volume_deleted_at FROM volume_attachment a JOIN volumes v ON v.id = a.volume_id '
                'WHERE a.deleted = 0 AND v.deleted <> 0 ORDER BY a.id' % columns_sql('a', ATTACHMENT_COLUMNS))
    for row in rows:
        yield audit.finding(
            spec, 'attachment %s (instance %s) is live but its volume %s is deleted'
            % (row['id'], row['instance_uuid'], row['volume_id']),
            dict(attachment=row['id'], volume=row['volume_id'], instance=row['instance_uuid']),
            [dict(row, table='volume_attachment')], project=row['project_id'], host=service_host(row['volume_host']),
            since=first_time(row['volume_deleted_at'], row['updated_at'], row['created_at']), now=now,
            key='attachment/%s' % row['id'],
            hint='soft-delete the attachment row as volume_destroy does (deleted = 1, deleted_at, attach_status = '
                 'detached), after checking that the backend export and the host connection of %s are gone'
                 % (row['attached_host'] or 'the compute host'))


def attachment_of_deleted_instance(audit, spec):
    """Live attachments of live volumes whose instance Nova has deleted (or, with every cell read, lost)."""
    audit.schema(CINDER, 'cinder').require('volume_attachment', ATTACHMENT_COLUMNS, purpose='find orphaned attachments')
    live = audit.live_instances()
    candidates = [(attachment_id, volume_id, instance) for attachment_id, (volume_id, instance, _status)
                  in audit.live_attachments().items() if instance and instance not in live]
    if not candidates:
        return
    instances = audit.instance_rows(set(instance for _a, _v, instance in candidates))
    # Only every cell read, with no mapping and no build request, makes an instance missing.
    absent = audit.absent_instances(set(instance for _a, _v, instance in candidates if instance not in instances))
    chosen = []
    for attachment_id, volume_id, instance in candidates:
        row = instances.get(instance)
        if row is not None and row['deleted']:
            chosen.append((attachment_id, 'deleted'))
        elif row is None and absent[instance].gone:
            chosen.append((attachment_id, 'missing'))
    if not chosen:
        return
    rows = dict((row['id'], row) for row in audit.attachment_rows(ids=[item[0] for item in chosen]))
    volumes = audit.volume_rows(set(row['volume_id'] for row in rows.values()))
    siblings = {}
    for row in audit.attachment_rows(volume_ids=list(volumes)):
        siblings.setdefault(row['volume_id'], []).append(row)
    referenced = set(volume_id for _cell, _instance, volume_id, _attachment in audit.volume_bdms())
    orphans = set(item[0] for item in chosen)
    now = audit.now(CINDER)
    for attachment_id, state in chosen:
        attachment = rows.get(attachment_id)
        if attachment is None:
            continue
        volume = volumes[attachment['volume_id']]
        instance_row = instances.get(attachment['instance_uuid'])
        others = [row['id'] for row in siblings.get(volume['id'], []) if row['id'] not in orphans]
        fix, hint = None, None
        if not others and volume['id'] not in referenced:
            fix = repair('cinder_volume_state', volume=[volume['id']], status='available', attach_status='detached',
                         from_status=[volume['status']])
            hint = 'with a cloud configured the module deletes the attachment through Cinder, which removes the export'
        else:
            hint = ('volume %s has other live attachments or Nova mappings: delete only this one through Cinder '
                    '(openstack volume attachment delete %s)' % (volume['id'], attachment_id))
        evidence = [dict(attachment, table='volume_attachment'), dict(volume, table='volumes')]
        if instance_row is not None:
            evidence.append(dict(instance_row, table='instances'))
        yield audit.finding(
            spec, 'attachment %s of volume %s is live but instance %s is %s'
            % (attachment_id, volume['id'], attachment['instance_uuid'],
               'deleted' if state == 'deleted' else 'in no cell and has no instance mapping'),
            dict(attachment=attachment_id, volume=volume['id'], instance=attachment['instance_uuid'],
                 instance_state=state),
            evidence, project=volume['project_id'], host=attachment['attached_host'],
            since=first_time(instance_row and instance_row['deleted_at'], attachment['updated_at'],
                             attachment['created_at']), now=now,
            key='attachment/%s' % attachment_id, fix=fix, hint=hint)


def volume_service_unavailable(audit, spec):
    """Volumes whose host names a cinder-volume service that is missing, down or disabled."""
    schema = audit.schema(CINDER, 'cinder')
    schema.require('volumes', VOLUME_COLUMNS, purpose='match volumes to their cinder-volume service')
    services = audit.cinder_services()
    clustered = schema.has('volumes', 'cluster_name')
    cluster_up = set()
    for rows in services.values():
        for row in rows:
            if row.get('cluster_name') and row['up'] and not row['disabled']:
                cluster_up.add(row['cluster_name'])
    groups = audit.tuples(CINDER, 'SELECT BINARY host, %s, COUNT(*) FROM volumes WHERE deleted = 0 AND host IS NOT NULL '
                                  'GROUP BY BINARY host%s' % (('BINARY cluster_name', ', BINARY cluster_name') if clustered
                                                              else ('NULL', '')))
    pools = {}
    bad = {}
    for host, cluster, _count in groups:
        host, cluster = text(host), text(cluster)
        owner = service_host(host)
        if '#' in host:
            pools.setdefault(owner, set()).add(host.split('#', 1)[1])
        if cluster and cluster in cluster_up:
            continue  # an active-active cluster member serves it
        rows = services.get(owner, [])
        if not rows:
            bad[host] = ('missing', owner, [])
        elif not [row for row in rows if row['up']]:
            bad[host] = ('down', owner, rows)
        elif not [row for row in rows if row['up'] and not row['disabled']]:
            bad[host] = ('disabled', owner, rows)
    if not bad:
        return
    columns = VOLUME_COLUMNS + (('cluster_name',) if clustered else ())
    volumes = [row for row in audit.rows_in(
        CINDER, 'SELECT %s FROM volumes v WHERE v.deleted = 0 AND v.host IN (%%s) ORDER BY v.id' % columns_sql('v', columns),
        list(bad)) if row['host'] in bad]
    now = audit.now(CINDER)
    for volume in volumes:
        state, owner, rows = bad[volume['host']]
        shown = [dict((key, value) for key, value in row.items() if key not in ('up', 'heartbeat')) for row in rows]
        fix, hint, since = None, None, first_time(volume['updated_at'], volume['created_at'])
        if state == 'missing':
            severity = 'critical'
            machine = owner.split('@', 1)[0]
            candidates = sorted(host for host, rows_of in services.items()
                                if host != owner and host.split('@', 1)[0] == machine
                                and [row for row in rows_of if row['up'] and not row['disabled']])
            known = sorted(pools.get(candidates[0], ())) if len(candidates) == 1 else []
            if len(known) == 1:
                # The multi-backend rename: one live service on the same machine, whose volumes use one pool.
                # The volume is named, so a gate's class cap bounds the rows written, not only the findings.
                fix = repair('cinder_service_rehost', from_host=owner, to_host='%s#%s' % (candidates[0], known[0]),
                             volumes=[volume['id']])
                hint = ('no live cinder-volume service is %s; %s is the only live one on %s. Every finding of %s '
                        'proposes the same call for its own volume: the gate merges them into one call, run once '
                        'after checking that the storage behind it holds the volumes'
                        % (owner, candidates[0], machine, owner))
            elif len(candidates) == 1:
                hint = ('no live cinder-volume service is %s: rehost its volumes with cinder_service_rehost to %s'
                        '#<pool> (its volumes use pool(s): %s)' % (owner, candidates[0], ', '.join(known) or 'none yet'))
            else:
                hint = ('no live cinder-volume service is %s: rehost its volumes with cinder_service_rehost to a '
                        'live host@backend#pool (candidates on %s: %s)'
                        % (owner, machine, ', '.join(candidates) if candidates else 'none'))
        elif state == 'down':
            severity = 'error'
            beats = [row['heartbeat'] for row in rows if row['heartbeat'] is not None]
            since = max(beats) if beats else since
            hint = ('cinder-volume %s is down: start it; if it is gone for good, rehost its volumes with '
                    'cinder_service_rehost' % owner)
        else:
            severity = 'warning'
            modified = [row.get('modified_at') for row in rows if row.get('modified_at')]
            since = max(modified) if modified else None
            hint = ('cinder-volume %s is disabled (%s): its volumes still work but nothing new is scheduled there; '
                    'enable it or rehost its volumes' % (owner, '; '.join(sorted(set(
                        row.get('disabled_reason') or 'no reason given' for row in rows)))))
        yield audit.finding(
            spec, 'volume %s is on %s, whose cinder-volume service %s is %s' % (volume['id'], volume['host'], owner, state),
            dict(volume=volume['id'], volume_host=volume['host'], service_host=owner, service_state=state),
            [dict(volume, table='volumes')] + [dict(row, table='services') for row in shown],
            project=volume['project_id'], host=owner, since=since, now=now, severity=severity,
            key='volume/%s' % volume['id'], fix=fix, hint=hint)


# ---------------------------------------------------------------------------
# Nova instances and their hosts


def _host_groups(audit, cell):
    """(host, node, compute_id, count) of a cell's live instances that have a host, exact (BINARY) values."""
    def read():
        has_compute_id = audit.nova_schema(cell).has('instances', 'compute_id')
        return [(text(host), text(node), compute_id, count) for host, node, compute_id, count in audit.tuples(
            cell.option, 'SELECT BINARY host, BINARY node, %s, COUNT(*) FROM instances WHERE deleted = 0 '
                         'AND host IS NOT NULL GROUP BY BINARY host, BINARY node%s'
            % (('compute_id', ', compute_id') if has_compute_id else ('NULL', '')))]
    return audit.cached(('host_groups', cell.option), read)


def _instances_on(audit, cell, hosts, extra=()):
    sql = 'SELECT %s FROM instances i WHERE i.deleted = 0 AND i.host IN (%%s) ORDER BY i.id' % columns_sql(
        'i', INSTANCE_COLUMNS + tuple(extra))
    return [row for row in audit.rows_in(cell.option, sql, hosts) if row['host'] in hosts]


def instance_on_unavailable_host(audit, spec):
    """Live instances on a compute host whose nova-compute service is missing or down."""
    for cell in audit.host_cells():
        audit.nova_schema(cell).require('instances', INSTANCE_COLUMNS, purpose='find instances on dead hosts')
        services = audit.compute_services(cell)
        bad = {}
        for host, _node, _compute_id, _count in _host_groups(audit, cell):
            rows = services.get(host, [])
            if not rows:
                bad[host] = ('missing', rows)
            elif not [row for row in rows if row['up']]:
                bad[host] = ('forced_down' if [row for row in rows if row['forced_down']] else 'down', rows)
        if not bad:
            continue
        now = audit.now(cell.option)
        for instance in _instances_on(audit, cell, set(bad)):
            state, rows = bad[instance['host']]
            beats = [row['heartbeat'] for row in rows if row['heartbeat'] is not None]
            since = max(beats) if beats else first_time(instance['updated_at'], instance['created_at'])
            yield audit.finding(
                spec, 'instance %s is on %s, whose nova-compute service is %s'
                % (instance['uuid'], instance['host'], state.replace('_', ' ')),
                dict(instance=instance['uuid'], host=instance['host'], node=instance['node'], cell=cell.option,
                     service_state=state),
                [dict(instance, table='instances', cell=cell.option)] + [dict(row, table='services') for row in rows],
                project=instance['project_id'], host=instance['host'], since=since, now=now,
                severity='critical' if state == 'missing' else 'error', key='%s/instance/%s' % (cell.option, instance['uuid']),
                hint='if %s is really dead, fence it and evacuate its instances (openstack server evacuate, or '
                     'nova_instance_host with a target host); if it is healthy, start nova-compute there'
                     % instance['host'])


def instance_task_stuck(audit, spec):
    """Live instances whose task_state has not changed for longer than the threshold."""
    for cell in audit.cells():
        audit.nova_schema(cell).require('instances', INSTANCE_COLUMNS, purpose='find instances stuck in a task')
        now = audit.now(cell.option)
        cutoff = now - datetime.timedelta(seconds=audit.options.stuck_after[spec.name])
        rows = audit.rows(cell.option, 'SELECT %s FROM instances i WHERE i.deleted = 0 AND i.task_state IS NOT NULL '
                                       'AND COALESCE(i.updated_at, i.created_at) <= %%s ORDER BY i.id'
                          % columns_sql('i', INSTANCE_COLUMNS), (cutoff,))
        for instance in rows:
            since = first_time(instance['updated_at'], instance['created_at'])
            if instance['task_state'] == 'migrating':
                fix = repair('nova_task_state', instance=[instance['uuid']], action='abort')
                hint = ('aborts the live migration through the Compute API (2.24; 2.65 while queued or preparing); '
                        'without a cloud, or when Nova cannot abort it, the database path ends it as cancelled and '
                        'gives its placement hold back')
            else:
                fix = repair('nova_task_state', instance=[instance['uuid']])
                hint = ('clears task_state as os-resetState does (active stays active, any other vm_state becomes '
                        'error: hard reboot those) and ends its unfinished migrations')
            yield audit.finding(
                spec, 'instance %s has been in task_state %s for %s s'
                % (instance['uuid'], instance['task_state'], seconds_between(since, now)),
                dict(instance=instance['uuid'], task_state=instance['task_state'], vm_state=instance['vm_state'],
                     cell=cell.option),
                [dict(instance, table='instances', cell=cell.option)], project=instance['project_id'],
                host=instance['host'], since=since, now=now, key='%s/instance/%s' % (cell.option, instance['uuid']),
                fix=fix, hint=hint)


def migration_unfinished(audit, spec):
    """Migrations in a non-final status for longer than the threshold."""
    for cell in audit.host_cells():
        schema = audit.nova_schema(cell)
        base = ('id', 'instance_uuid', 'migration_type', 'status', 'source_compute', 'dest_compute', 'source_node',
                'dest_node', 'created_at', 'updated_at', 'deleted')
        schema.require('migrations', base, purpose='find unfinished migrations')
        columns = tuple(column for column in base if column != 'deleted') + (
            ('uuid',) if schema.has('migrations', 'uuid') else ())
        now = audit.now(cell.option)
        cutoff = now - datetime.timedelta(seconds=audit.options.stuck_after[spec.name])
        rows = audit.rows(
            cell.option,
            'SELECT %s, i.project_id, i.host AS instance_host, i.vm_state, i.task_state, i.deleted AS instance_deleted '
            'FROM migrations m LEFT JOIN instances i ON i.uuid = m.instance_uuid WHERE m.deleted = 0 '
            'AND m.status NOT IN (%s) AND COALESCE(m.updated_at, m.created_at) <= %%s ORDER BY m.id'
            % (columns_sql('m', columns), placeholders(len(MIGRATION_DONE))), list(MIGRATION_DONE) + [cutoff])
        for row in rows:
            since = first_time(row['updated_at'], row['created_at'])
            waiting = row['status'] == 'finished' and row['migration_type'] in ('resize', 'migration')
            # Migration uuids are unique across cells; ids are not.
            reference = row.get('uuid') or row['id']
            fix = None
            if row['instance_deleted'] != 0:  # None: no instance row; else the deleted row's id
                hint = 'the instance is gone; the migration row is a leftover (nova-manage db archive_deleted_rows)'
            elif waiting:
                hint = 'the resize waits for confirmation: confirm or revert it (openstack server resize confirm|revert)'
            elif row['migration_type'] == 'live-migration':
                fix = repair('nova_task_state', instance=[row['instance_uuid']], migration=[reference], action='abort')
                hint = 'aborts it through the Compute API; the database path ends it as cancelled and gives the hold back'
            else:
                fix = repair('nova_task_state', migration=[reference])
                hint = ('ends it as error and releases its placement hold as a rollback (instance on the source) or a '
                        'confirm (instance on the destination) would; check where the instance runs first')
            yield audit.finding(
                spec, '%s %s of instance %s from %s to %s has been %s for %s s'
                % (row['migration_type'] or 'migration', row['id'], row['instance_uuid'], row['source_compute'],
                   row['dest_compute'], row['status'], seconds_between(since, now)),
                dict(migration=row['id'], instance=row['instance_uuid'], status=row['status'], cell=cell.option),
                [dict(row, table='migrations', cell=cell.option)], project=row['project_id'],
                host=row['source_compute'], since=since, now=now, severity='info' if waiting else None,
                key='%s/migration/%s' % (cell.option, row['id']), fix=fix, hint=hint)


# The class each defect of a cached VIF belongs to. What is a defect is network_info.vif_defects's call,
# the rule nova_network_info_cache repairs by.
DEFECT_CLASSES = {
    network_info.DEFECT_BINDING_FAILED: 'info_cache_binding_failed',
    network_info.DEFECT_UNBOUND: 'info_cache_binding_failed',
    network_info.DEFECT_MIGRATING_TO: 'info_cache_migrating_to',
    network_info.DEFECT_NO_NETWORK: 'info_cache_vif_without_network',
}
# Text that marks a cache worth reading in full: a binding type that is no binding, a leftover
# migrating_to. One LIKE each in _info_cache_rows.
CACHE_MARKERS = network_info.FAILED_VIF_TYPES + (network_info.MIGRATING_TO,)
# A VIF's network as Nova writes it (json.dumps): a cache with fewer of these than VIFs has a VIF whose
# network is null, missing, empty or not an object.
NETWORK_MARK = '"network": {"'


def cache_defects(text):
    """(VIFs, {class: [VIF]}) of a cache's text, the defects as network_info.vif_defects finds them.

    A cache nova_network_info_cache cannot read (it refuses to repair one) has no VIFs and no defects.
    """
    try:
        vifs = network_info.parse_cache(text)
    except network_info.CacheUnreadable:
        return [], {}
    by_class = {}
    for vif in vifs:
        for name in sorted(set(DEFECT_CLASSES[defect] for defect in network_info.vif_defects(vif))):
            by_class.setdefault(name, []).append(vif)
    return vifs, by_class


def _info_cache_rows(audit, cell):
    """Live instances of a cell whose info cache is missing, short (NULL, empty, []) or may hold a defect:
    one sequential scan of the caches flags them (the SQL only narrows, cache_defects decides), then only
    the flagged rows are read in full."""
    def read():
        audit.nova_schema(cell).require('instance_info_caches', ('id', 'instance_uuid', 'network_info', 'deleted'),
                                        purpose='read the network info caches')
        # Byte comparisons (LIKE BINARY, REPLACE), as exact as the JSON's, and faster than a collation's.
        flag_sql = ("CASE WHEN c.deleted <> 0 THEN 'deleted' "
                    "WHEN c.network_info IS NULL OR LENGTH(c.network_info) < 8 OR %s "
                    "OR CASE WHEN JSON_VALID(c.network_info) THEN JSON_LENGTH(c.network_info) ELSE 0 END "
                    "> (LENGTH(c.network_info) - LENGTH(REPLACE(c.network_info, %%s, ''))) DIV %d "
                    "THEN 'look' ELSE '' END" % (' OR '.join(['c.network_info LIKE BINARY %s'] * len(CACHE_MARKERS)),
                                                 len(NETWORK_MARK)))
        flags = audit.packed(cell.option, ('c.id', 'c.instance_uuid', flag_sql), 'FROM instance_info_caches c',
                             'c.id DIV 1000', tuple('%' + marker + '%' for marker in CACHE_MARKERS) + (NETWORK_MARK,))
        live = audit.live_instances()
        cached = set(instance for _id, instance, flag in flags if flag != 'deleted')
        look = [int(cache_id) for cache_id, instance, flag in flags if flag == 'look' and instance in live]
        missing = [uuid for uuid, entry in live.items() if entry[0] is cell and uuid not in cached]
        caches = dict((row['instance_uuid'], row) for row in audit.rows_in(
            cell.option, 'SELECT id, instance_uuid, created_at, updated_at, network_info FROM instance_info_caches '
                         'WHERE id IN (%s)', look))
        instances = audit.instance_rows(list(caches) + missing)
        found = []
        for uuid in sorted(instances):
            instance = instances[uuid]
            if instance['deleted'] or instance['cell'] != cell.option:
                continue
            cache = caches.get(uuid, {})
            found.append(dict(instance_uuid=uuid, host=instance['host'], project_id=instance['project_id'],
                              vm_state=instance['vm_state'], task_state=instance['task_state'],
                              instance_created_at=instance['created_at'], instance_updated_at=instance['updated_at'],
                              id=cache.get('id'), created_at=cache.get('created_at'),
                              updated_at=cache.get('updated_at'), network_info=cache.get('network_info')))
        return found
    return audit.cached(('info_cache_rows', cell.option), read)


def _info_cache_defects(audit, cell):
    """(row, VIFs, {class: [VIF]}) of the flagged caches of a cell, parsed once for the cache classes."""
    def read():
        return [(row,) + cache_defects(row['network_info']) for row in _info_cache_rows(audit, cell)
                if row['network_info']]
    return audit.cached(('info_cache_defects', cell.option), read)


def _cache_defects_of(audit, spec):
    """(cell, now, row, VIFs, the VIFs with a defect of ``spec``'s class) of every live instance's cache."""
    for cell in audit.host_cells():
        now = audit.now(cell.option)
        for row, vifs, by_class in _info_cache_defects(audit, cell):
            if spec.name in by_class:
                yield cell, now, row, vifs, by_class[spec.name]


def _cache_evidence(row, vifs):
    shown = dict((key, row[key]) for key in ('id', 'instance_uuid', 'created_at', 'updated_at', 'host', 'vm_state',
                                             'task_state'))
    # VIF ids, types and profile keys only: the cache also holds addresses and networks.
    shown['vifs'] = [dict(id=vif.get('id'), type=vif.get('type'),
                          profile_keys=sorted((vif.get('profile') or {}).keys())
                          if isinstance(vif.get('profile'), dict) else []) for vif in vifs]
    return dict(shown, table='instance_info_caches')


def info_cache_binding_failed(audit, spec):
    """Info caches with VIFs whose binding type is no binding: binding_failed or unbound."""
    for cell, now, row, vifs, failed in _cache_defects_of(audit, spec):
        yield audit.finding(
            spec, 'instance %s has %d port(s) with a failed or no binding in its info cache (%s)'
            % (row['instance_uuid'], len(failed), ', '.join('%s: %s' % (vif.get('id'), vif.get('type'))
                                                            for vif in failed)),
            dict(instance=row['instance_uuid'], ports=[vif.get('id') for vif in failed], cell=cell.option),
            [_cache_evidence(row, vifs)], project=row['project_id'], host=row['host'],
            since=first_time(row['updated_at'], row['created_at']), now=now,
            key='%s/instance/%s' % (cell.option, row['instance_uuid']),
            fix=repair('nova_network_info_cache', instance=[row['instance_uuid']]),
            hint='bind the port to %s in Neutron if it is bound elsewhere, then rewrite the cache from the port '
                 '(nova_network_info_cache); hard reboot an instance nova-compute set to ERROR'
                 % (row['host'] or '(the instance host)'))


def info_cache_vif_without_network(audit, spec):
    """Info caches with a VIF whose network is null, missing or empty: Nova's API answers 500 for the instance.

    GET /servers/detail reads every cached VIF's network label, so one such VIF breaks the listing
    of every server of the project, not only this one.
    """
    for cell, now, row, vifs, bare in _cache_defects_of(audit, spec):
        yield audit.finding(
            spec, 'instance %s has %d VIF(s) without a network in its info cache (%s): the Compute API answers '
                  '500 for it and for every server listing of project %s'
            % (row['instance_uuid'], len(bare), ', '.join(str(vif.get('id')) for vif in bare), row['project_id']),
            dict(instance=row['instance_uuid'], ports=[vif.get('id') for vif in bare], cell=cell.option),
            [_cache_evidence(row, vifs)], project=row['project_id'], host=row['host'],
            since=first_time(row['updated_at'], row['created_at']), now=now,
            key='%s/instance/%s' % (cell.option, row['instance_uuid']),
            fix=repair('nova_network_info_cache', instance=[row['instance_uuid']], binding_from='neutron'),
            hint='only Neutron can rebuild the network of a VIF: run the repair with a cloud (binding_from=neutron)')


def info_cache_migrating_to(audit, spec):
    """Info caches whose VIF profiles keep migrating_to while no migration runs."""
    for cell, now, row, vifs, stale in _cache_defects_of(audit, spec):
        if row['instance_uuid'] in audit.migrating_instances(cell) or row['task_state'] == 'migrating':
            continue
        targets = sorted(set(str(vif['profile'][network_info.MIGRATING_TO]) for vif in stale))
        yield audit.finding(
            spec, 'instance %s has port(s) %s with migrating_to %s in their binding profile, and no migration runs'
            % (row['instance_uuid'], ', '.join(str(vif.get('id')) for vif in stale), ', '.join(targets)),
            dict(instance=row['instance_uuid'], ports=[vif.get('id') for vif in stale], migrating_to=targets,
                 cell=cell.option),
            [_cache_evidence(row, vifs)], project=row['project_id'], host=row['host'],
            since=first_time(row['updated_at'], row['created_at']), now=now,
            key='%s/instance/%s' % (cell.option, row['instance_uuid']),
            fix=repair('nova_network_info_cache', instance=[row['instance_uuid']]),
            hint='remove migrating_to from the ports\' binding profile in Neutron, then rewrite the cache from the '
                 'ports (nova_network_info_cache)')


def info_cache_empty(audit, spec):
    """Live instances whose info cache is missing, NULL, empty or an empty list."""
    for cell in audit.host_cells():
        now = audit.now(cell.option)
        rows = [row for row in _info_cache_rows(audit, cell) if row['vm_state'] != 'building' and (
            row['id'] is None or row['network_info'] is None or row['network_info'].strip() in ('', '[]'))]
        for row in rows:
            if row['id'] is None:
                state, severity = 'missing', 'warning'
            elif row['network_info'] is None or not row['network_info'].strip():
                state, severity = 'null' if row['network_info'] is None else 'empty', 'warning'
            else:
                state, severity = 'empty_list', 'info'
            evidence = dict(table='instance_info_caches', instance_uuid=row['instance_uuid'], host=row['host'],
                            vm_state=row['vm_state'], id=row['id'], updated_at=row['updated_at'],
                            network_info=row['network_info'])
            yield audit.finding(
                spec, 'instance %s has %s' % (row['instance_uuid'], {
                    'missing': 'no network info cache', 'null': 'a NULL network info cache',
                    'empty': 'an empty network info cache',
                    'empty_list': 'no ports in its network info cache ([])'}[state]),
                dict(instance=row['instance_uuid'], cache=state, cell=cell.option), [evidence],
                project=row['project_id'], host=row['host'],
                since=first_time(row['updated_at'], row['created_at'], row['instance_updated_at'],
                                 row['instance_created_at']), now=now,
                severity=severity, key='%s/instance/%s' % (cell.option, row['instance_uuid']),
                hint='rebuild the cache from Neutron (a network-changed event or a hard reboot); periodic healing is '
                     'off by default since 2025.1' + ('. [] is right for an instance without ports: compare with '
                                                      'Neutron' if state == 'empty_list' else ''))


def instance_node_unknown(audit, spec):
    """Live instances whose (host, node) pair is not a live compute node, or whose compute_id is not that node's id."""
    for cell in audit.host_cells():
        schema = audit.nova_schema(cell)
        schema.require('instances', INSTANCE_COLUMNS, purpose='match instances to compute nodes')
        has_compute_id = schema.has('instances', 'compute_id')
        nodes = audit.compute_nodes(cell)
        nodes_of_host = {}
        for (host, node), row in nodes.items():
            nodes_of_host.setdefault(host, []).append(row)
        bad = {}
        for host, node, compute_id, _count in _host_groups(audit, cell):
            row = nodes.get((host, node))
            if row is None:
                bad[(host, node, compute_id)] = 'node_unknown'
            elif has_compute_id and compute_id is not None and compute_id != row['id']:
                bad[(host, node, compute_id)] = 'compute_id_mismatch'
        if not bad:
            continue
        now = audit.now(cell.option)
        extra = ('compute_id',) if has_compute_id else ()
        for instance in _instances_on(audit, cell, set(host for host, _node, _compute_id in bad), extra):
            group = (instance['host'], instance['node'], instance.get('compute_id') if has_compute_id else None)
            reason = bad.get(group)
            if reason is None:
                continue
            host = instance['host']
            candidates = nodes_of_host.get(host, [])
            if reason == 'compute_id_mismatch':
                hint = ('nova-compute on %s corrects compute_id for the instances of its nodes when its resource '
                        'tracker runs; restart it if it does not' % host)
            elif len(candidates) == 1:
                # nova_instance_host's guard refuses while the (same) source host is up: the operator decides.
                hint = ('if the instance runs on %s, its node is %s: nova_instance_host instance=%s host=%s node=%s, '
                        'with force and a force_reason, since the instance stays on a live host'
                        % (host, candidates[0]['hypervisor_hostname'], instance['uuid'], host,
                           candidates[0]['hypervisor_hostname']))
            else:
                hint = 'host %s has %s live compute node(s)%s: find the node the instance runs on' % (
                    host, len(candidates), ' (%s)' % ', '.join(sorted(row['hypervisor_hostname'] for row in candidates))
                    if candidates else '')
            if reason == 'node_unknown':
                message = 'instance %s is on host %s node %s, which is not a live compute node' % (
                    instance['uuid'], host, instance['node'])
            else:
                message = 'instance %s has compute_id %s, but compute node %s of host %s has id %s' % (
                    instance['uuid'], instance['compute_id'], instance['node'], host, nodes[(host, instance['node'])]['id'])
            yield audit.finding(
                spec, message, dict(instance=instance['uuid'], host=host, node=instance['node'], cell=cell.option,
                                    reason=reason),
                [dict(instance, table='instances', cell=cell.option)]
                + [dict(row, table='compute_nodes') for row in candidates],
                project=instance['project_id'], host=host,
                since=first_time(instance['updated_at'], instance['created_at']), now=now,
                key='%s/instance/%s' % (cell.option, instance['uuid']), hint=hint)


def instance_mapping_missing(audit, spec):
    """Live instances without an instance mapping, with a NULL cell, or mapped to another cell."""
    schema = audit.schema(NOVA_API, 'nova_api')
    schema.require('instance_mappings', ('instance_uuid', 'cell_id'), purpose='check the instance mappings')
    mappings = dict((uuid, None if cell_id is None else int(cell_id)) for uuid, cell_id in audit.packed(
        NOVA_API, ('instance_uuid', 'cell_id'), 'FROM instance_mappings', 'id DIV 1000'))
    flagged = []
    for uuid, (cell, _host, _node, _task) in audit.live_instances().items():
        if uuid not in mappings:
            flagged.append((uuid, cell, 'missing'))
        elif mappings[uuid] is None:
            flagged.append((uuid, cell, 'cell_null'))
        elif cell.mapping_id is not None and mappings[uuid] != cell.mapping_id:
            flagged.append((uuid, cell, 'wrong_cell'))
    if not flagged:
        return
    rows = audit.instance_rows(set(uuid for uuid, _cell, _reason in flagged))
    for uuid, cell, reason in sorted(flagged, key=lambda item: item[0]):
        instance = rows[uuid]
        now = audit.now(cell.option)
        where = 'cell %s%s' % (cell.option, ' (%s)' % cell.uuid if cell.uuid else '')
        message = {
            'missing': 'instance %s in %s has no instance mapping' % (uuid, where),
            'cell_null': 'the instance mapping of instance %s in %s has no cell' % (uuid, where),
            'wrong_cell': 'instance %s is in %s but its mapping points at cell id %s' % (uuid, where, mappings.get(uuid)),
        }[reason]
        hint = ('nova-manage cell_v2 map_instances --cell_uuid %s creates the missing mappings' % (cell.uuid or '<cell uuid>')
                if reason == 'missing' else
                'set instance_mappings.cell_id of %s to the id of the cell that holds it (%s)'
                % (uuid, cell.mapping_id if cell.mapping_id is not None else 'see cell_mappings'))
        yield audit.finding(
            spec, message, dict(instance=uuid, cell=cell.option, reason=reason, mapped_cell_id=mappings.get(uuid)),
            [dict(instance, table='instances')], project=instance['project_id'], host=instance['host'],
            since=first_time(instance['updated_at'], instance['created_at']), now=now,
            key='%s/instance/%s' % (cell.option, uuid), hint=hint)


# ---------------------------------------------------------------------------
# Soft-delete bookkeeping


def _children(audit, option, parent_table, parent_key, tables, schema):
    for table, child_key in tables:
        if not (schema.has(table, child_key) and schema.has(table, 'deleted') and schema.has(table, 'id')):
            continue
        extra = ', p.project_id' if schema.has(parent_table, 'project_id') else ', NULL'
        extra += ', p.host' if schema.has(parent_table, 'host') else ', NULL'
        for child_id, parent, deleted_at, project, host in audit.tuples(
                option, 'SELECT c.id, c.%s, p.deleted_at%s FROM %s c JOIN %s p ON p.%s = c.%s '
                        'WHERE c.deleted = 0 AND p.deleted <> 0 ORDER BY c.id'
                % (quote_identifier(child_key), extra, quote_identifier(table), quote_identifier(parent_table),
                   quote_identifier(parent_key), quote_identifier(child_key))):
            yield table, child_id, parent, deleted_at, project, host


def live_child_of_deleted_parent(audit, spec):
    """Live rows that belong to a soft-deleted instance, volume or snapshot."""
    groups = {}
    if audit.has('nova'):
        for cell in audit.cells():
            schema = audit.nova_schema(cell)
            for table, child_id, parent, deleted_at, project, host in _children(
                    audit, cell.option, 'instances', 'uuid', NOVA_CHILD_TABLES, schema):
                groups.setdefault((cell.option, 'instance', parent, table), [deleted_at, project, host, []])[3].append(child_id)
    else:
        audit.note('live_child_of_deleted_parent: Nova not read (give nova_db or nova_api_db)')
    if audit.has('cinder'):
        schema = audit.schema(CINDER, 'cinder')
        for table, child_id, parent, deleted_at, project, host in _children(
                audit, CINDER, 'volumes', 'id', CINDER_VOLUME_CHILD_TABLES, schema):
            groups.setdefault((CINDER, 'volume', parent, table), [deleted_at, project, host, []])[3].append(child_id)
        for table, child_id, parent, deleted_at, project, host in _children(
                audit, CINDER, 'snapshots', 'id', CINDER_SNAPSHOT_CHILD_TABLES, schema):
            groups.setdefault((CINDER, 'snapshot', parent, table), [deleted_at, project, host, []])[3].append(child_id)
    else:
        audit.note('live_child_of_deleted_parent: Cinder not read (give cinder_db)')
    for (option, kind, parent, table), (deleted_at, project, host, ids) in sorted(groups.items(), key=lambda item: item[0]):
        convention = 'deleted = id' if kind == 'instance' else 'deleted = 1'
        if kind == 'volume':
            host = service_host(host)
        yield audit.finding(
            spec, '%d live %s row(s) belong to %s %s, which is deleted' % (len(ids), table, kind, parent),
            {kind: parent, 'database': option, 'table': table, 'rows': ids[:SHOWN_IDS], 'count': len(ids)},
            [dict(table=table, id=child_id) for child_id in ids[:SHOWN_IDS]], project=project, host=host,
            since=deleted_at, now=audit.now(option), key='%s/%s/%s/%s' % (option, kind, parent, table),
            hint='soft-delete these rows as the service\'s own destroy does (%s, deleted_at = %s); live children keep '
                 'the deleted parent from being archived or purged' % (convention, normalize(deleted_at)))


def deleted_without_deleted_at(audit, spec):
    """Soft-deleted rows (deleted set) that have no deleted_at."""
    sources = []
    if audit.has('nova'):
        for cell in audit.cells():
            sources.append((cell.option, audit.nova_schema(cell), NOVA_SOFT_DELETE_TABLES))
    if audit.has('cinder'):
        sources.append((CINDER, audit.schema(CINDER, 'cinder'), CINDER_SOFT_DELETE_TABLES))
    for option, schema, tables in sources:
        for table in tables:
            if not (schema.has(table, 'deleted') and schema.has(table, 'deleted_at')):
                continue
            where = 'WHERE deleted <> 0 AND deleted_at IS NULL'
            count = audit.tuples(option, 'SELECT COUNT(*) FROM %s %s' % (quote_identifier(table), where))[0][0]
            if not count:
                continue
            ids = [row[0] for row in audit.tuples(option, 'SELECT id FROM %s %s ORDER BY id LIMIT %d'
                                                  % (quote_identifier(table), where, SHOWN_IDS))]
            yield audit.finding(
                spec, '%d soft-deleted row(s) of %s in %s have no deleted_at' % (count, table, option),
                dict(database=option, table=table, rows=ids, count=count),
                [dict(table=table, id=row_id) for row_id in ids], key='%s/%s' % (option, table),
                hint='set deleted_at (for example to updated_at) so age-based archiving and purging '
                     '(nova-manage db archive_deleted_rows --before, cinder-manage db purge) sees them')


# ---------------------------------------------------------------------------
# Placement


def allocation_wrong_provider(audit, spec):
    """Allocations of an instance on a provider outside its host's compute node tree (and not a sharing provider)."""
    schema = audit.schema(PLACEMENT, 'placement')
    schema.require('allocations', ('consumer_id', 'resource_provider_id', 'resource_class_id', 'used'),
                   purpose='read the allocations')
    schema.require('resource_providers', ('id', 'uuid', 'name', 'root_provider_id'), purpose='read the providers')
    providers = dict((row[0], row[1:]) for row in audit.tuples(
        PLACEMENT, 'SELECT id, uuid, name, root_provider_id FROM resource_providers'))
    provider_by_uuid = dict((uuid, provider_id) for provider_id, (uuid, _name, _root) in providers.items())
    sharing = set()
    if schema.has('resource_provider_traits') and schema.has('traits'):
        sharing = set(row[0] for row in audit.tuples(
            PLACEMENT, 'SELECT rpt.resource_provider_id FROM resource_provider_traits rpt '
                       'JOIN traits t ON t.id = rpt.trait_id WHERE t.name = %s', (SHARING_TRAIT,)))
    by_consumer = {}
    for consumer, provider_id in audit.packed(PLACEMENT, ('consumer_id', 'resource_provider_id'), 'FROM allocations',
                                              'id DIV 1000'):
        by_consumer.setdefault(consumer, set()).add(int(provider_id))
    live = audit.live_instances()
    cells = audit.host_cells()
    migrating = dict((cell.option, audit.migrating_instances(cell)) for cell in cells)
    nodes = dict((cell.option, audit.compute_nodes(cell)) for cell in cells)
    flagged = []
    for consumer, provider_ids in by_consumer.items():
        instance = live.get(consumer)
        if instance is None:
            continue
        cell, host, node, task_state = instance
        if cell.is_cell0 or task_state is not None or consumer in migrating[cell.option]:
            continue  # allocations move during operations and migrations
        expected = nodes[cell.option].get((host, node)) if host else None
        expected_root = None
        if expected is not None and expected['uuid'] in provider_by_uuid:
            expected_root = providers[provider_by_uuid[expected['uuid']]][2]
        if host and expected is None:
            continue  # instance_node_unknown reports it; the right provider is unknown
        wrong = [provider_id for provider_id in provider_ids
                 if provider_id not in sharing and (expected_root is None or providers[provider_id][2] != expected_root)]
        if wrong:
            flagged.append((consumer, cell, host, node, expected, wrong))
    if not flagged:
        return
    details = {}
    for row in audit.rows_in(
            PLACEMENT, 'SELECT a.consumer_id, rp.uuid AS provider_uuid, rp.name AS provider_name, '
                       'rc.name AS resource_class, a.used FROM allocations a '
                       'JOIN resource_providers rp ON rp.id = a.resource_provider_id '
                       'LEFT JOIN resource_classes rc ON rc.id = a.resource_class_id '
                       'WHERE a.consumer_id IN (%s) ORDER BY a.id', [item[0] for item in flagged]):
        details.setdefault(row['consumer_id'], []).append(row)
    instances = audit.instance_rows([item[0] for item in flagged])
    for consumer, cell, host, node, expected, wrong in sorted(flagged, key=lambda item: item[0]):
        instance = instances.get(consumer, {})
        wrong_uuids = sorted(providers[provider_id][0] for provider_id in wrong)
        wrong_names = sorted(providers[provider_id][1] for provider_id in wrong)
        if host is None:
            where = 'has no host'
        else:
            where = 'is on %s (compute node %s)' % (host, expected['uuid'])
        yield audit.finding(
            spec, 'instance %s %s but has allocations on %s' % (consumer, where, ', '.join(wrong_names)),
            dict(instance=consumer, providers=wrong_uuids, expected_provider=expected['uuid'] if expected else None,
                 cell=cell.option),
            [dict(instance, table='instances')] + [dict(row, table='allocations') for row in details.get(consumer, [])],
            project=instance.get('project_id'), host=host,
            since=first_time(instance.get('updated_at'), instance.get('created_at')), now=audit.now(cell.option),
            key='%s/instance/%s' % (cell.option, consumer),
            hint='after checking that the instance really runs on %s, replace its allocations with nova-manage '
                 'placement heal_allocations --instance %s --force, then clean the old provider with nova-manage '
                 'placement audit --resource_provider <uuid> --delete' % (host or 'its host', consumer))


CLASSES = [
    AuditClass('volume_attached_without_bdm', volume_attached_without_bdm, ('cinder', 'nova'), 'error',
               'Volumes in-use/attached with no live Nova block device mapping'),
    AuditClass('bdm_without_attachment', bdm_without_attachment, ('cinder', 'nova'), 'error',
               'Nova block device mappings whose Cinder volume or attachment is gone or detached'),
    AuditClass('volume_stuck', volume_stuck, ('cinder',), 'warning',
               'Volumes stuck in a transitional status', thresholded=True),
    AuditClass('snapshot_stuck', snapshot_stuck, ('cinder',), 'warning',
               'Snapshots stuck in a transitional status', thresholded=True),
    AuditClass('attachment_of_deleted_volume', attachment_of_deleted_volume, ('cinder',), 'warning',
               'Live attachments of deleted volumes'),
    AuditClass('attachment_of_deleted_instance', attachment_of_deleted_instance, ('cinder', 'nova'), 'error',
               'Live attachments of deleted instances'),
    AuditClass('volume_service_unavailable', volume_service_unavailable, ('cinder',), 'error',
               'Volumes whose cinder-volume service is missing, down or disabled'),
    AuditClass('instance_on_unavailable_host', instance_on_unavailable_host, ('nova',), 'error',
               'Instances on a compute host whose service is missing or down'),
    AuditClass('instance_task_stuck', instance_task_stuck, ('nova',), 'warning',
               'Instances stuck in a task_state', thresholded=True),
    AuditClass('migration_unfinished', migration_unfinished, ('nova',), 'warning',
               'Migrations unfinished for too long', thresholded=True),
    AuditClass('info_cache_binding_failed', info_cache_binding_failed, ('nova',), 'error',
               'Network info caches with binding_failed or unbound ports'),
    AuditClass('info_cache_vif_without_network', info_cache_vif_without_network, ('nova',), 'critical',
               'Network info caches with a VIF without a network (the Compute API answers 500)'),
    AuditClass('info_cache_migrating_to', info_cache_migrating_to, ('nova',), 'warning',
               'Network info caches with a leftover migrating_to profile'),
    AuditClass('info_cache_empty', info_cache_empty, ('nova',), 'warning',
               'Missing, NULL or empty network info caches'),
    AuditClass('instance_node_unknown', instance_node_unknown, ('nova',), 'error',
               'Instances whose host/node pair is not a live compute node'),
    AuditClass('instance_mapping_missing', instance_mapping_missing, ('nova', 'nova_api'), 'error',
               'Instances with a missing, NULL or wrong instance mapping'),
    AuditClass('live_child_of_deleted_parent', live_child_of_deleted_parent, ('any',), 'info',
               'Live rows of soft-deleted parents'),
    AuditClass('deleted_without_deleted_at', deleted_without_deleted_at, ('any',), 'info',
               'Soft-deleted rows without deleted_at'),
    AuditClass('allocation_wrong_provider', allocation_wrong_provider, ('nova', 'placement'), 'error',
               'Placement allocations on a provider other than the instance\'s compute node'),
]

CLASS_NAMES = [spec.name for spec in CLASSES]
CLASS_TITLES = dict((spec.name, spec.title) for spec in CLASSES)
