# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The safeguards between an audit and unattended repairs.

``decide`` takes a ``consistency_info`` result, the state of earlier runs and
the options, and answers which repairs may run now and why each other
finding is held back:

- an authority check first: the counts of the lists everything else is
  judged against (instances, volumes, ...) must not be empty nor have shrunk
  sharply since the last accepted run, or the whole run aborts;
- each finding must have been seen in ``min_sightings`` consecutive audits,
  with the same repair and the same ``since`` (a changed row starts over);
- a class whose repairable findings exceed its cap gets no repair at all,
  and a run whose approved repairs exceed the run cap gets none either.

The state (sightings and accepted counts) is plain JSON, read and written
here with an atomic replace. Everything else is pure data in, data out.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import copy
import datetime
import errno
import fcntl
import hashlib
import json
import os
import tempfile

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError, StackmenderError

STATE_VERSION = 1
DEFAULT_AUTHORITIES = ('instances', 'volumes')
DEFAULT_MAX_PER_CLASS = 25
DEFAULT_MAX_TOTAL = 50
DEFAULT_MIN_SIGHTINGS = 2
DEFAULT_MAX_DROP_PERCENT = 50.0
DEFAULT_MIN_DROP = 10

# Arguments of a repair that may hold a list of resources, per module: calls
# that differ only in these are merged into one call (one transaction).
MERGEABLE = {
    'stackmender.openstack.cinder_volume_state': 'volume',
    'stackmender.openstack.cinder_service_rehost': 'volumes',
}
# Options a repair from an audit must never carry: the gate approves what the
# audit proposed, never an override of a guard, and the playbook adds the connections.
FORBIDDEN_ARGUMENTS = ('force', 'force_reason', 'cinder_db', 'nova_db', 'nova_api_db', 'placement_db', 'cloud')

# Why a finding is held back, in the order they are checked.
NO_REPAIR = 'no_repair'
CLASS_DISABLED = 'class_disabled'
MODULE_UNSUPPORTED = 'module_unsupported'
UNSAFE_ARGUMENTS = 'unsafe_arguments'
TOO_YOUNG = 'too_young'
SIGHTINGS = 'sightings'
CLASS_CAP = 'class_cap'
RUN_CAP = 'run_cap'


class GateAbort(StackmenderError):
    """The run must not repair anything; ``details`` say why."""


class GateOptions(object):
    """Validated options of one gate run."""

    def __init__(self, min_sightings=DEFAULT_MIN_SIGHTINGS, max_per_class=DEFAULT_MAX_PER_CLASS, class_limits=None,
                 max_total=DEFAULT_MAX_TOTAL, classes=None, modules=None, min_age=0, authorities=DEFAULT_AUTHORITIES,
                 counts=None, max_drop_percent=DEFAULT_MAX_DROP_PERCENT, min_drop=DEFAULT_MIN_DROP, allow_empty=None,
                 accept_counts=False, require_counts=True, merge=True):
        self.min_sightings = _whole(min_sightings, 'min_sightings', minimum=1)
        self.max_per_class = _whole(max_per_class, 'max_per_class')
        self.class_limits = {}
        for name, limit in (class_limits or {}).items():
            self.class_limits[name] = _whole(limit, 'class_limits: %s' % name)
        self.max_total = _whole(max_total, 'max_total')
        self.classes = None if classes is None else set(classes)
        self.modules = None if modules is None else set(modules)
        self.min_age = _whole(min_age, 'min_age')
        self.authorities = list(authorities or [])
        self.counts = {}
        for name, value in (counts or {}).items():
            self.counts[name] = _whole(value, 'counts: %s' % name)
        try:
            self.max_drop_percent = float(max_drop_percent)
        except (TypeError, ValueError):
            raise InputError('max_drop_percent must be a number between 0 and 100, not %r' % (max_drop_percent,))
        if not 0 <= self.max_drop_percent <= 100:
            raise InputError('max_drop_percent must be between 0 and 100, not %s' % max_drop_percent)
        self.min_drop = _whole(min_drop, 'min_drop')
        self.allow_empty = set(allow_empty or [])
        self.accept_counts = bool(accept_counts)
        self.require_counts = bool(require_counts)
        self.merge = bool(merge)

    def limit_of(self, name):
        return self.class_limits.get(name, self.max_per_class)


def _whole(value, name, minimum=0):
    if isinstance(value, bool):
        raise InputError('%s must be a whole number, not %r' % (name, value))
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError('%s must be a whole number, not %r' % (name, value))
    if number != value and not (isinstance(value, str) and str(number) == value.strip()):
        raise InputError('%s must be a whole number, not %r' % (name, value))
    if number < minimum:
        raise InputError('%s must be %d or more, not %d' % (name, minimum, number))
    return number


def utc_now():
    return datetime.datetime.utcnow().replace(microsecond=0).strftime('%Y-%m-%d %H:%M:%S')


# ---------------------------------------------------------------- the audit

def check_audit(audit):
    """The parts of a ``consistency_info`` result the gate reads, validated."""
    if not isinstance(audit, dict):
        raise InputError('audit must be the registered result of consistency_info (a dict), not %s'
                         % type(audit).__name__)
    if audit.get('failed'):
        raise InputError('audit is the result of a failed consistency_info run: %s' % audit.get('msg', 'no message'))
    if audit.get('skipped'):
        raise InputError('audit is the result of a skipped consistency_info task: nothing was audited')
    findings = audit.get('findings')
    if not isinstance(findings, list):
        raise InputError('audit has no findings list: give the registered result of consistency_info')
    for index, finding in enumerate(findings):
        if not isinstance(finding, dict) or not finding.get('class') or not finding.get('key'):
            raise InputError('audit findings[%d] has no class and key: give the registered result of consistency_info'
                             % index)
        fix = finding.get('repair')
        if fix is not None and (not isinstance(fix, dict) or not isinstance(fix.get('module'), str)
                                or not isinstance(fix.get('args'), dict)):
            raise InputError('audit findings[%d] (%s) has a repair without module and args' % (index, finding['key']))
    classes_run = audit.get('classes_run')
    if not isinstance(classes_run, list):
        raise InputError('audit has no classes_run list: give the registered result of consistency_info')
    if 'audited_at' not in audit:
        raise InputError('audit has no audited_at: give the registered result of consistency_info')
    # consistency_info leaves audited_at empty when no class read the database clock (nothing found).
    return findings, set(classes_run), str(audit['audited_at']) if audit['audited_at'] else None


def fingerprint(finding):
    """What must stay the same between sightings: the repair and the time the state began."""
    body = json.dumps({'repair': finding.get('repair'), 'since': finding.get('since')}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode('utf-8')).hexdigest()[:16]


# ---------------------------------------------------------------- the state

def empty_state():
    return {'version': STATE_VERSION, 'runs': 0, 'audited_at': None, 'clock': None, 'updated_at': None, 'sightings': {},
            'authority': {}, 'last_abort': None}


def load_state(path):
    """The state file's contents, or an empty state when it does not exist yet."""
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as error:
        if error.errno == errno.ENOENT:
            return empty_state()
        raise InputError('state_file %s cannot be read: %s' % (path, error.strerror))
    try:
        state = json.loads(text)
    except ValueError as error:
        raise InputError('state_file %s is not valid JSON (%s). It holds the sighting counts and the accepted counts '
                         'of the authoritative lists; move it aside to start over (every finding then needs its '
                         'sightings again)' % (path, error))
    if not isinstance(state, dict) or state.get('version') != STATE_VERSION or \
            not isinstance(state.get('sightings'), dict) or not isinstance(state.get('authority'), dict):
        raise InputError('state_file %s is not a remediation_gate state file of version %d; move it aside to '
                         'start over' % (path, STATE_VERSION))
    merged = empty_state()
    merged.update(state)
    return merged


def save_state(path, state):
    """Write the state atomically (a temporary file in the same directory, then rename), mode 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        handle, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    except (IOError, OSError) as error:
        raise InputError('state_file %s cannot be written: %s' % (path, error.strerror))
    try:
        with os.fdopen(handle, 'w') as stream:
            json.dump(state, stream, indent=2, sort_keys=True)
            stream.write('\n')
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600)
        os.rename(temporary, path)
    except (IOError, OSError) as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise InputError('state_file %s cannot be written: %s' % (path, error.strerror))
    try:
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass  # not every file system lets a directory be synced; the rename itself is atomic


@contextlib.contextmanager
def state_lock(path):
    """Hold ``<state_file>.lock`` for the whole read-decide-write, so two runs never interleave."""
    lock_path = path + '.lock'
    directory = os.path.dirname(os.path.abspath(lock_path))
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except (IOError, OSError) as error:
        raise InputError('state_file %s: the lock file cannot be created: %s' % (path, error.strerror))
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            raise InputError('state_file %s is locked by another run of remediation_gate; nothing was decided'
                             % path)
        yield
    finally:
        os.close(descriptor)


# ------------------------------------------------------------ the authority

def check_authority(audit, state, options):
    """Each authoritative count against the last accepted one.

    Returns ``(report, problems, counts)``: per name the current and previous
    count and a verdict; the problems that abort the run; the counts to record.
    """
    inventory = {}
    for name, value in (audit.get('inventory') or {}).items():
        if isinstance(value, int) and not isinstance(value, bool):
            inventory[name] = value
    report, problems, recorded = {}, [], {}
    for name in options.authorities:
        previous = (state['authority'].get(name) or {}).get('count')
        database_count, given = inventory.get(name), options.counts.get(name)
        known = [value for value in (database_count, given) if value is not None]
        # Both sources are kept: the smaller one is judged, so neither can hide the other's collapse.
        entry = {'count': min(known) if known else None, 'previous': previous,
                 'previous_at': (state['authority'].get(name) or {}).get('recorded_at'), 'verdict': 'ok'}
        if database_count is not None and given is not None:
            entry['database_count'], entry['given_count'] = database_count, given
        report[name] = entry
        if not known:
            entry['verdict'] = 'unknown'
            continue
        count = entry['count']
        recorded[name] = count
        if len(known) == 2 and _disagree(database_count, given, options):
            entry['verdict'] = 'disagree'
            problems.append('%s: the audit counted %d in the databases but counts gives %d; one of the two reads '
                            'the wrong or a broken source' % (name, database_count, given))
            continue
        if count == 0 and name not in options.allow_empty:
            entry['verdict'] = 'empty'
            problems.append('%s: the audit counted none%s; an empty list is how a wrong or broken source looks'
                            % (name, ' (the last accepted run counted %d)' % previous if previous else ''))
            continue
        if previous:
            drop = previous - count
            entry['drop_percent'] = round(100.0 * drop / previous, 1) if drop > 0 else 0.0
            if drop >= max(options.min_drop, 1) and 100.0 * drop / previous > options.max_drop_percent:
                entry['verdict'] = 'shrunk'
                problems.append('%s: %d, down from %d at %s (-%s%%, more than max_drop_percent %s%%)'
                                % (name, count, previous, entry['previous_at'], entry['drop_percent'],
                                   _number(options.max_drop_percent)))
    if options.require_counts and not recorded:
        problems.append('no authoritative count (%s) was given or found in the audit, so an empty or shrunken '
                        'source cannot be told from a healthy one; give counts, or set require_counts=false'
                        % ', '.join(options.authorities or ['none named']))
    return report, problems, recorded


def _disagree(first, second, options):
    """Whether two counts of one list differ by more than the churn the drop thresholds allow."""
    difference = abs(first - second)
    return difference >= max(options.min_drop, 1) and 100.0 * difference / max(first, second) > options.max_drop_percent


def _number(value):
    return ('%d' % value) if float(value).is_integer() else ('%s' % value)


# ---------------------------------------------------------------- decisions

def advance_sightings(previous, findings, classes_run, audited_at):
    """The sightings after this audit: seen again with the same fingerprint counts up, anything else starts at 1.

    Entries of classes this audit ran but did not see are dropped (the finding
    went away, so the next sighting starts over); entries of classes it did not
    run are kept as they are.
    """
    sightings = {}
    for finding in findings:
        if finding.get('repair') is None:
            continue
        key = finding['key']
        mark = fingerprint(finding)
        before = previous.get(key)
        if before and before.get('fingerprint') == mark:
            entry = dict(before, count=int(before.get('count', 0)) + 1, last_seen=audited_at)
        else:
            entry = {'class': finding['class'], 'fingerprint': mark, 'count': 1, 'first_seen': audited_at,
                     'last_seen': audited_at}
        sightings[key] = entry
    for key, entry in previous.items():
        if key not in sightings and entry.get('class') not in classes_run:
            sightings[key] = entry
    return sightings


def _held(finding, code, reason, sightings=None):
    return {'key': finding['key'], 'class': finding['class'], 'severity': finding.get('severity'),
            'message': finding.get('message'), 'code': code, 'reason': reason, 'sightings': sightings,
            'repair': finding.get('repair')}


def group_repairs(findings, merge=True):
    """The module calls that repair ``findings``: identical calls once, mergeable ones as one call."""
    calls, order = {}, []
    for finding in findings:
        fix = finding['repair']
        module, args = fix['module'], copy.deepcopy(fix['args'])
        field = MERGEABLE.get(module) if merge else None
        ids = []
        if field and isinstance(args.get(field), list):
            ids = args.pop(field)
        identity = json.dumps([module, args], sort_keys=True, default=str)
        if identity not in calls:
            calls[identity] = {'module': module, 'args': args, 'classes': [], 'finding_keys': [], 'field': field,
                               'ids': []}
            order.append(identity)
        call = calls[identity]
        if finding['class'] not in call['classes']:
            call['classes'].append(finding['class'])
        call['finding_keys'].append(finding['key'])
        for value in ids:
            if value not in call['ids']:
                call['ids'].append(value)
    grouped = []
    for identity in order:
        call = calls[identity]
        args = call['args']
        if call['field'] and call['ids']:
            args[call['field']] = sorted(call['ids'])
        grouped.append({'module': call['module'], 'args': args, 'classes': call['classes'],
                        'finding_keys': call['finding_keys']})
    return grouped


def decide(audit, state, options, now=None):
    """What may be repaired after ``audit``; returns ``(decision, new_state)``.

    Raises :class:`GateAbort` (with the details to return) when the
    authoritative counts are empty or have shrunk sharply; the new state then
    records the abort only.
    """
    findings, classes_run, audited_at = check_audit(audit)
    now = now or utc_now()
    last = state.get('audited_at')
    clock = 'database'
    if audited_at is None:
        # No database clock in the result: the controller's clock stands in, and cannot be compared with it.
        audited_at, clock = now, 'controller'
    elif last and state.get('clock', 'database') == 'database' and audited_at <= last:
        raise InputError('this audit (audited_at %s) is not newer than the last one the gate counted (%s): run '
                         'consistency_info again instead of feeding the same result twice' % (audited_at, last))
    authority, problems, counts = check_authority(audit, state, options)
    new_state = copy.deepcopy(state)
    new_state['updated_at'] = now
    if problems and not options.accept_counts:
        new_state['last_abort'] = {'at': now, 'audited_at': audited_at, 'reasons': problems}
        raise GateAbort('aborted, nothing approved: %s. If the change is real, run once with accept_counts=true '
                        'to accept the new counts' % '; '.join(problems),
                        authority=authority, problems=problems, approved=[], held=[], state=new_state)

    sightings = advance_sightings(state.get('sightings') or {}, findings, classes_run, audited_at)
    held, candidates = [], []
    for finding in findings:
        fix = finding.get('repair')
        seen = sightings.get(finding['key'], {}).get('count')
        if fix is None:
            held.append(_held(finding, NO_REPAIR, 'no module repairs this class; by hand: %s'
                              % (finding.get('hint') or 'see the finding'), seen))
        elif options.classes is not None and finding['class'] not in options.classes:
            held.append(_held(finding, CLASS_DISABLED, 'class %s is not among the classes this run may repair'
                              % finding['class'], seen))
        elif options.modules is not None and fix['module'] not in options.modules:
            held.append(_held(finding, MODULE_UNSUPPORTED, 'this run does not call %s' % fix['module'], seen))
        elif [name for name in FORBIDDEN_ARGUMENTS if name in fix['args']]:
            held.append(_held(finding, UNSAFE_ARGUMENTS, 'the repair carries %s, which an unattended run never passes'
                              % ', '.join(name for name in FORBIDDEN_ARGUMENTS if name in fix['args']), seen))
        else:
            candidates.append(finding)

    per_class = {}
    for finding in candidates:
        per_class.setdefault(finding['class'], []).append(finding)
    ripe = []
    class_report = {}
    for name in sorted(per_class):
        members = per_class[name]
        limit = options.limit_of(name)
        class_report[name] = {'findings': len(members), 'limit': limit, 'approved': 0}
        if len(members) > limit:
            class_report[name]['over_limit'] = True
            for finding in members:
                held.append(_held(finding, CLASS_CAP, 'class %s has %d repairable finding(s), more than its cap of %d: '
                                  'none of them is repaired this run (a problem this wide needs a person)'
                                  % (name, len(members), limit), sightings[finding['key']]['count']))
            continue
        for finding in members:
            seen = sightings[finding['key']]['count']
            age = finding.get('age')
            if options.min_age and (age is None or age < options.min_age):
                held.append(_held(finding, TOO_YOUNG, 'age %s s is under min_age %d s' % (
                    'unknown' if age is None else age, options.min_age), seen))
            elif seen < options.min_sightings:
                held.append(_held(finding, SIGHTINGS, 'seen in %d consecutive audit(s), %d needed' % (
                    seen, options.min_sightings), seen))
            else:
                ripe.append(finding)
    position = dict((id(finding), index) for index, finding in enumerate(findings))
    ripe.sort(key=lambda finding: position[id(finding)])
    if len(ripe) > options.max_total:
        for finding in ripe:
            held.append(_held(finding, RUN_CAP, '%d repairs are ripe in this run, more than max_total %d: none is '
                              'repaired' % (len(ripe), options.max_total), sightings[finding['key']]['count']))
        ripe = []
    for finding in ripe:
        class_report[finding['class']]['approved'] += 1

    approved = group_repairs(ripe, merge=options.merge)
    by_module = {}
    for call in approved:
        by_module.setdefault(call['module'], []).append(call['args'])

    new_state['sightings'] = sightings
    new_state['audited_at'] = audited_at
    new_state['clock'] = clock
    new_state['runs'] = int(state.get('runs') or 0) + 1
    for name, count in counts.items():
        new_state['authority'][name] = {'count': count, 'recorded_at': audited_at}
    codes = {}
    for entry in held:
        codes[entry['code']] = codes.get(entry['code'], 0) + 1
    decision = {
        'approved': approved,
        'approved_by_module': by_module,
        'approved_keys': [finding['key'] for finding in ripe],
        'held': held,
        'held_counts': codes,
        'classes': class_report,
        'authority': authority,
        'accepted_counts': bool(problems),
        'authority_notes': problems if problems else [],
    }
    return decision, new_state
