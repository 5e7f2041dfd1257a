# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Cinder facts shared by the modules: statuses, dependent rows, quota usage.

The rules mirror Cinder's own database API: soft delete is ``deleted = 1``
with ``deleted_at`` set; ``volume_destroy`` soft-deletes a volume's dependent
rows and keeps their ``updated_at``; a detached attachment also gets
``attach_status = 'detached'`` and ``detach_time``; the cleanup ``workers``
row of a volume is hard-deleted, never the ``SENTINEL`` row.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.cloud import translate
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import quote_identifier, scope_condition
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import host_name, placeholders

# Every volume status Cinder's reset-status accepts, plus 'deleted' (ours).
VOLUME_STATUSES = (
    'available', 'in-use', 'error', 'error_deleting', 'error_managing', 'error_restoring',
    'error_extending', 'error_backing-up', 'creating', 'deleting', 'attaching', 'detaching',
    'maintenance', 'restoring-backup', 'reserved', 'awaiting-transfer', 'backing-up',
    'downloading', 'uploading', 'retyping', 'extending', 'managing', 'deleted',
)

# States that mean "an operation is in flight". Resetting a volume into one of
# them leaves it waiting for work no service is doing.
TRANSITIONAL_STATUSES = (
    'creating', 'deleting', 'attaching', 'detaching', 'maintenance', 'restoring-backup',
    'reserved', 'awaiting-transfer', 'backing-up', 'downloading', 'uploading', 'retyping',
    'extending', 'managing',
)

ATTACH_STATUSES = ('attached', 'detached')

# migration_status values a reset may set; 'none' clears the column.
MIGRATION_STATUSES = ('none', 'error', 'success')
MIGRATION_IN_FLIGHT = ('migrating', 'starting', 'completing', 'deleting')

# Volume statuses from which retiring the row as deleted is what Cinder's
# own (force) delete would end in.
DELETABLE_STATUSES = ('error_deleting', 'deleting', 'error', 'available', 'error_restoring',
                      'error_extending', 'error_managing')

# Tables whose live rows volume_destroy soft-deletes with the volume.
VOLUME_DEPENDENT_TABLES = ('volume_metadata', 'volume_admin_metadata', 'snapshots', 'transfers',
                           'volume_glance_metadata', 'volume_attachment')


# A migration's destination volume carries ``target:<source volume id>`` until the migration ends.
MIGRATION_TARGET_PREFIX = 'target:'


def is_migrating(migration_status):
    value = migration_status or ''
    return value in MIGRATION_IN_FLIGHT or value.startswith(MIGRATION_TARGET_PREFIX)


def migrating_condition(column):
    """SQL narrowing rows to those whose ``column`` may be a migration in flight (:func:`is_migrating`).

    Parameters: :func:`migrating_condition_params`. The comparison follows the column's collation,
    so callers still check each row with :func:`is_migrating`.
    """
    return '(%s IN (%s) OR %s LIKE %%s)' % (column, placeholders(len(MIGRATION_IN_FLIGHT)), column)


def migrating_condition_params():
    return list(MIGRATION_IN_FLIGHT) + [MIGRATION_TARGET_PREFIX + '%']


def split_host(value):
    """``host@backend#pool`` as (host, backend, pool); absent parts are None."""
    rest, _sep, pool = value.partition('#')
    host, _sep, backend = rest.partition('@')
    return host, backend or None, pool or None


def host_matches(value, selector):
    """Whether a host column names ``selector`` itself or one of its ``#pool`` forms.

    Exact and case-sensitive: ``controller1`` never matches ``controller10``,
    ``Controller1`` or ``controller1@lvm``; ``_`` and ``%`` are plain characters.
    """
    return value is not None and (value == selector or value.startswith(selector + '#'))


def host_scope(column):
    """``column`` = X or starting with X#, byte for byte, as a term of a plan scope."""
    return ((column, 'bytes_equal'), (column, 'bytes_prefix'))


def host_condition(column):
    """SQL narrowing rows to ``column`` = X or starting with X#, byte for byte, without LIKE.

    Parameters: the selector, then the selector followed by ``#`` twice. Callers
    still check each row with :func:`host_matches`. The same SQL as a scope of
    :func:`host_scope`, so that rows read through it can be written by it.
    """
    return scope_condition((host_scope(column),))


def host_condition_params(selector):
    return [selector, selector + '#', selector + '#']


def live_services(session, binary, host=None, lock=False):
    """Live ``services`` rows of one binary (and ``host``), each with ``heartbeat_age`` in seconds by the
    database clock.

    ``lock``: as :meth:`Session.query`'s.
    """
    if host is None:
        rows = session.query('SELECT *, TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) AS heartbeat_age '
                             'FROM services WHERE deleted = 0 AND `binary` = BINARY %s ORDER BY id', (binary,),
                             lock=lock)
    else:
        rows = session.query('SELECT *, TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) AS heartbeat_age '
                             'FROM services WHERE deleted = 0 AND `binary` = BINARY %s AND host = BINARY %s '
                             'ORDER BY id', (binary, host), lock=lock)
    return [row for row in rows if row['binary'] == binary and (host is None or row['host'] == host)]


def service_is_up(service, down_time):
    """Cinder's rule: up while the last heartbeat is at most ``service_down_time`` seconds old."""
    age = service.get('heartbeat_age')
    return age is not None and age <= down_time


# The columns of a row that explain a refusal (evidence): who holds the volume and in what state. Whole rows
# would carry connection_info (iSCSI CHAP passwords), connector and provider_auth.
EVIDENCE_COLUMNS = {
    'volume_attachment': ('id', 'volume_id', 'instance_uuid', 'attached_host', 'mountpoint', 'attach_status',
                          'attach_mode', 'attach_time', 'deleted'),
    'snapshots': ('id', 'volume_id', 'status', 'progress', 'created_at', 'deleted', 'group_snapshot_id'),
    'volumes': ('id', 'status', 'attach_status', 'migration_status', 'host', 'deleted'),
}


def evidence(table, rows):
    """The rows as refusal evidence: the columns of EVIDENCE_COLUMNS, secrets redacted in any other table."""
    columns = EVIDENCE_COLUMNS.get(table)
    if columns is None:
        return redaction.redact_rows(rows, table)
    return [dict((column, row[column]) for column in columns if column in row) for row in rows]


def rows_by_volume(session, table, volume_ids, extra_where='', extra_params=()):
    """Live rows of ``table`` for the volumes, grouped by volume id.

    Whole rows, for planning and the journal: shown to the operator only through :func:`evidence`.
    """
    grouped = {}
    for row in session.select_in('SELECT * FROM %s WHERE deleted = 0 AND volume_id IN ({in})%s ORDER BY id'
                                 % (quote_identifier(table), extra_where), volume_ids, after=extra_params):
        grouped.setdefault(row['volume_id'], []).append(row)
    return grouped


def volume_workers(session, volume_ids):
    """Cleanup ``workers`` rows of the volumes (the SENTINEL row is never one)."""
    grouped = {}
    for row in session.select_in("SELECT * FROM workers WHERE resource_type = 'VOLUME' AND resource_id IN ({in}) "
                                 "ORDER BY id", volume_ids):
        grouped.setdefault(row['resource_id'], []).append(row)
    return grouped


def quota_decrements(volumes, type_names, snapshots_by_volume=None):
    """Usage to give back per (project, resource) when these volumes go away.

    Matches what Cinder's volume manager reserves negatively on delete:
    ``volumes`` and ``gigabytes``, and the per-type ``volumes_<type>`` and
    ``gigabytes_<type>``; snapshots it deletes give back ``snapshots`` and
    their size. Rows with ``use_quota = 0`` (temporary volumes) count nothing.
    """
    totals = {}

    def add(project, resource, amount):
        if project is None or not amount:
            return
        key = (project, resource)
        totals[key] = totals.get(key, 0) + amount

    for volume in volumes:
        if not volume.get('use_quota', 1):
            continue
        project = volume['project_id']
        size = volume.get('size') or 0
        type_name = type_names.get(volume.get('volume_type_id'))
        add(project, 'volumes', 1)
        add(project, 'gigabytes', size)
        if type_name:
            add(project, 'volumes_%s' % type_name, 1)
            add(project, 'gigabytes_%s' % type_name, size)
        for snapshot in (snapshots_by_volume or {}).get(volume['id'], []):
            if not snapshot.get('use_quota', 1):
                continue
            snap_size = snapshot.get('volume_size') or 0
            add(project, 'snapshots', 1)
            add(project, 'gigabytes', snap_size)
            if type_name:
                add(project, 'snapshots_%s' % type_name, 1)
                add(project, 'gigabytes_%s' % type_name, snap_size)
    return totals


def quota_usage_rows(session, keys):
    """Live ``quota_usages`` rows for (project, resource) pairs."""
    projects = sorted(set(project for project, _resource in keys))
    found = {}
    for row in session.select_in('SELECT * FROM quota_usages WHERE deleted = 0 AND project_id IN ({in}) ORDER BY id',
                                 projects):
        key = (row['project_id'], row['resource'])
        if key in keys:
            found.setdefault(key, []).append(row)
    return found


# ---------------------------------------------------------------- moving volumes between services
# Used by cinder_service_rehost and by the cinder_multibackend_migration role (its filters).

# An operation in flight was sent to one service's queue and never finishes once the volume has
# moved to another service. A transfer waits for a person, not a service, so it does not block a move.
REHOST_BLOCKING_STATUSES = tuple(status for status in TRANSITIONAL_STATUSES if status != 'awaiting-transfer')

# The status a volume whose operation was lost with its service is reset to, where Cinder has an
# error status for that operation. The other blocking statuses lost an operation that did not touch
# the data: the volume rests in-use while Cinder lists an attachment, else available.
LOST_OPERATION_STATUSES = {
    'creating': 'error',
    'deleting': 'error',
    'downloading': 'error',
    'extending': 'error_extending',
    'restoring-backup': 'error_restoring',
    'managing': 'error_managing',
}


def _host_error(option, value, problem):
    return InputError('%s: %r %s' % (option, value, problem))


def check_host(option, value):
    """``value`` as host, host@backend or host@backend#pool: (host, backend, pool), absent parts None."""
    host_name(value, option)
    if value.count('@') > 1 or value.count('#') > 1:
        raise _host_error(option, value, 'is not host, host@backend or host@backend#pool')
    if '@' in value and '#' in value and value.index('#') < value.index('@'):
        raise _host_error(option, value, 'has the pool (#) before the backend (@)')
    host, backend, pool = split_host(value)
    if not host or ('@' in value and not backend) or ('#' in value and not pool):
        raise _host_error(option, value, 'has an empty host, backend or pool part')
    return host, backend, pool


def check_rehost_hosts(from_host, to_host):
    """The hosts of a rehost, checked (InputError otherwise); returns the pool of ``to_host``.

    ``from_host`` is host, host@backend or host@backend#pool; ``to_host`` is host@backend#pool. Two
    pools of one service are refused: a rehost moves from one service to another, or (``from_host``
    the new service itself, without a pool) gives that service's pool-less rows their pool.
    """
    check_host('from_host', from_host)
    _host, backend, pool = check_host('to_host', to_host)
    if not backend or not pool:
        raise _host_error('to_host', to_host, 'must be host@backend#pool (a cinder-volume service is '
                          'host@backend since Ocata, and every volume lives in a pool)')
    if fills_pool(from_host, to_host) and '#' in from_host:
        raise InputError('from_host %r and to_host %r are pools of the same service %s: this module moves '
                         'resources from one service to another (or gives the pool-less rows of a service '
                         'their pool, with from_host=%s)' % (from_host, to_host, service_host(to_host),
                                                             service_host(to_host)))
    return pool


def service_host(value):
    """The service part (``host@backend``) of ``host@backend#pool``."""
    return value.split('#', 1)[0]


def fills_pool(from_host, to_host):
    """Whether a rehost from ``from_host`` to ``to_host`` stays on one service.

    Then it only gives that service's pool-less rows their pool (what ``cinder-manage volume
    update_host`` leaves), and matches ``from_host`` exactly.
    """
    return service_host(from_host) == service_host(to_host)


def rehost_matches(value, from_host, to_host):
    """Whether a host column is one a rehost from ``from_host`` to ``to_host`` moves."""
    if fills_pool(from_host, to_host):
        return value == from_host
    return host_matches(value, from_host)


def lost_operation_reset(status, migration_status, attached):
    """The reset that lets a volume left by a lost service move, or None when it needs none.

    Returns ``(status, migration_status)``: the status from :data:`LOST_OPERATION_STATUSES`, else
    in-use when ``attached`` (Cinder lists an attachment) or available; ``status`` unchanged when only
    a migration was in flight; migration_status ``error`` for a migration in flight, else ``''``.
    """
    busy = status in REHOST_BLOCKING_STATUSES
    migrating = is_migrating(migration_status)
    if not busy and not migrating:
        return None
    if busy:
        status = LOST_OPERATION_STATUSES.get(status, 'in-use' if attached else 'available')
    return status, 'error' if migrating else ''


# ---------------------------------------------------------------- detaching volumes
# Used by nova_instance_delete (the attachments of a deleted instance) and cinder_volume_state.

def volume_status_after_detach(volume, remaining):
    """(status, attach_status) Cinder's ``volume_detached`` gives a volume after detaching.

    ``remaining`` are the volume's live attachments that stay. Those in an
    ``error_*`` state do not count; of the others the first attach_status in
    alphabetical order decides (attached > attaching > detaching > reserved).
    A volume being migrated or uploaded keeps its status.
    """
    states = sorted(row['attach_status'] for row in remaining
                    if row['attach_status'] and not row['attach_status'].startswith('error_'))
    attach_status = states[0] if states else 'detached'
    status = {'attached': 'in-use', 'detached': 'available'}.get(attach_status, attach_status)
    migration = volume.get('migration_status')
    if attach_status == 'detached' and ((migration and migration not in ('success', 'error'))
                                        or (not migration and volume['status'] == 'uploading')):
        status = volume['status']
    return status, attach_status


def detach_changes(volume, attachments, stamp, detaching=None, specs=(), admin_metadata=(), set_status=True):
    """The row changes of Cinder's detach of attachment(s) of ``volume``, and the status the volume then has.

    Returns ``(changes, (status, attach_status))``; each change is a dict of
    :meth:`Plan.change`'s arguments after the database option
    (``plan.change('cinder_db', **change)``), in the order Cinder writes them.

    ``attachments`` are the volume's live ``volume_attachment`` rows (id, volume_id,
    instance_uuid, attach_status, detach_time, deleted, deleted_at); ``detaching`` the
    ids of those to detach (None: every one). As ``volume_detached`` and
    ``attachment_destroy`` do, each gets ``attach_status = detached`` and
    ``detach_time`` and is soft-deleted, its ``attachment_specs`` (of ``specs``) are
    soft-deleted, and the volume's ``attached_mode`` admin metadata (of
    ``admin_metadata``; pass none where the caller retires all of it) is
    soft-deleted, as the volume manager does after every detach. The status comes from the attachments that
    stay (:func:`volume_status_after_detach`); with ``set_status`` the ``volumes`` row
    gets it when it differs (its ``updated_at`` kept, as Cinder keeps it).
    """
    gone = [row for row in attachments if detaching is None or row['id'] in detaching]
    gone_ids = set(row['id'] for row in gone)
    changes = []
    for row in specs:
        if row['attachment_id'] in gone_ids:
            changes.append(dict(table='attachment_specs', key={'id': row['id']},
                                before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                                after=dict(deleted=1, deleted_at=stamp), expect=dict(attachment_id=row['attachment_id']),
                                note="soft-deleted with its attachment, as Cinder's attachment_destroy does"))
    for row in gone:
        changes.append(dict(table='volume_attachment', key={'id': row['id']},
                            before=dict(attach_status=row['attach_status'], detach_time=row['detach_time'],
                                        deleted=row['deleted'], deleted_at=row['deleted_at']),
                            after=dict(attach_status='detached', detach_time=stamp, deleted=1, deleted_at=stamp),
                            expect=dict(instance_uuid=row['instance_uuid'], volume_id=row['volume_id']),
                            note="Cinder's detach: the attachment is detached and soft-deleted"))
    for row in admin_metadata:
        if row['key'] == 'attached_mode' and row['volume_id'] == volume['id']:
            changes.append(dict(table='volume_admin_metadata', key={'id': row['id']},
                                before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                                after=dict(deleted=1, deleted_at=stamp),
                                expect=dict(volume_id=row['volume_id'], key='attached_mode'),
                                note='Cinder drops attached_mode when it finishes a detach'))
    remaining = [row for row in attachments if row['id'] not in gone_ids]
    status, attach_status = volume_status_after_detach(volume, remaining)
    if set_status and (status, attach_status) != (volume['status'], volume['attach_status']):
        changes.append(dict(table='volumes', key={'id': volume['id']},
                            before=dict(status=volume['status'], attach_status=volume['attach_status']),
                            after=dict(status=status, attach_status=attach_status),
                            expect=dict(migration_status=volume['migration_status'], deleted=0),
                            note='the status Cinder gives a volume from its remaining attachments (%d)'
                                 % len(remaining)))
    return changes, (status, attach_status)


# ---------------------------------------------------------------- reading volumes, attachments, services
# Used by cinder_volume_state, nova_bdm_purge and cinder_service_rehost.

def listed_volumes(session, volume_ids, columns='*', lock=False):
    """The ``volumes`` rows of ``volume_ids`` (deleted ones included), in the order listed.

    ``columns``: the SELECT list, quoted by the caller. InputError names the ids no row has.
    """
    found = {}
    for row in session.select_in('SELECT %s FROM volumes WHERE id IN ({in})' % columns, volume_ids, lock=lock):
        found[row['id'].lower()] = row
    missing = [volume_id for volume_id in volume_ids if volume_id not in found]
    if missing:
        raise InputError('volume(s) not found in the cinder database %s: %s'
                         % (session.target.display(), ', '.join(missing)), missing=missing)
    return [found[volume_id] for volume_id in volume_ids]


def volume_type_names(session, type_ids):
    """{volume type id: name} of ``type_ids``."""
    names = {}
    for row in session.select_in('SELECT id, name FROM volume_types WHERE id IN ({in})', sorted(set(type_ids))):
        names[row['id']] = row['name']
    return names


def live_pair_attachments(session, pairs):
    """Live ``volume_attachment`` rows of (volume id, instance uuid) pairs, grouped by pair (evidence columns)."""
    grouped = {}
    for row in session.select_in('SELECT id, volume_id, instance_uuid, attached_host, mountpoint, attach_status, deleted '
                                 'FROM volume_attachment WHERE deleted = 0 AND volume_id IN ({in}) ORDER BY id',
                                 sorted(set(volume for volume, _instance in pairs))):
        pair = (row['volume_id'], row['instance_uuid'])
        if pair in pairs:
            grouped.setdefault(pair, []).append(row)
    return grouped


def api_volume_services(storage):
    """{host: service} of the cinder-volume services, through Cinder's API."""
    try:
        return dict((service.host, service) for service in storage.services(binary='cinder-volume'))
    except Exception as error:
        raise translate(error, 'listing the cinder-volume services')


def api_volume(storage, volume_id, missing_ok=False):
    """A volume through Cinder's API; a missing one is None with ``missing_ok``, else InputError."""
    try:
        return storage.get_volume(volume_id)
    except Exception as error:
        if getattr(error, 'status_code', None) != 404:
            raise translate(error, 'reading volume %s' % volume_id)
        if missing_ok:
            return None
        raise InputError('volume %s not found through the Cinder API' % volume_id)


def api_live_attachments(storage, volume_id):
    """Cinder's attachments of a volume that are not detached, through its API."""
    try:
        return [attachment for attachment in storage.attachments(volume_id=volume_id, all_projects=True)
                if attachment.status != 'detached']
    except Exception as error:
        raise translate(error, 'listing the Cinder attachments of volume %s' % volume_id)


def api_volume_state(volume, attachments):
    """The state of a volume read through the API, as the database path names it."""
    attach_status = 'attached' if [a for a in attachments if a.status == 'attached'] else (
        'detached' if not attachments else attachments[0].status)
    return dict(id=volume.id, status=volume.status, attach_status=attach_status,
                migration_status=volume.migration_status)
