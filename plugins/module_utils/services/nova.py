# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reads of Nova state that several modules need (guards and audits)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.cloud import translate
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import chunks, placeholders


def instance_rows(cells, columns, uuids=(), host=None, optional=(), has_column=None):
    """Instance rows across cells: {uuid: [row, ...]}, each row naming its ``cell``.

    By ``uuids`` every row is read, deleted ones included, so a caller can tell
    a deleted instance from an unknown one and see an instance live in two
    cells. By ``host``, the live rows on that host (cell0 is skipped: its
    instances were never on a host). ``columns`` is the SELECT list; each of
    ``optional`` is added where ``has_column(cell, name)`` says the cell's
    schema has it (columns differ between releases).
    The dict keeps the order in which uuids were first met: cell by cell, by id.
    """
    by_uuid = {}
    for cell in cells:
        select = columns + ''.join(', %s' % name for name in optional if has_column(cell, name))
        if host is not None:
            if cell.is_cell0:
                continue
            rows = cell.session.query('SELECT %s FROM instances WHERE host = %%s AND deleted = 0 ORDER BY id'
                                      % select, (host,))
        else:
            rows = cell.session.select_in('SELECT %s FROM instances WHERE uuid IN ({in}) ORDER BY id' % select, uuids)
        for row in rows:
            row['cell'] = cell
            by_uuid.setdefault(row['uuid'], []).append(row)
    return by_uuid


def require_instances(uuids, by_uuid):
    """Fail, naming them, when instances asked for are in no cell at all."""
    missing = [uuid for uuid in uuids if uuid not in by_uuid]
    if missing:
        raise InputError('instance(s) not found in any cell: %s' % ', '.join(missing))


def live_volume_bdms(cells, volume_ids):
    """Live BDMs of live instances that reference any of ``volume_ids``.

    Nova marks live rows ``deleted = 0`` (a deleted row holds its own id).
    Each row names the cell it came from.
    """
    found = []
    for cell in cells:
        for row in cell.session.select_in(
                'SELECT b.id AS bdm_id, b.volume_id, b.instance_uuid, b.device_name, b.attachment_id, '
                'b.boot_index, i.host AS instance_host, i.vm_state, i.task_state '
                'FROM block_device_mapping b JOIN instances i ON i.uuid = b.instance_uuid '
                'WHERE b.deleted = 0 AND i.deleted = 0 AND b.volume_id IN ({in}) ORDER BY b.id', volume_ids):
            row['cell'] = cell.name
            found.append(row)
    return found


# Statuses after which a migration is over; any other status is in progress
# (nova's migration_get_in_progress_by_host_and_node).
FINISHED_MIGRATION_STATUSES = ('confirmed', 'reverted', 'error', 'failed', 'completed', 'cancelled', 'done')

# Nova's [DEFAULT] service_down_time.
SERVICE_DOWN_TIME = 60


# The columns of ``services`` that compute_services reads unless told otherwise.
COMPUTE_SERVICE_COLUMNS = ('id', 'host', 'binary', 'disabled', 'forced_down', 'last_seen_up', 'created_at', 'deleted')


def last_report(service):
    """When the service last reported, as Nova's servicegroup DB driver reads it: ``last_seen_up``,
    else ``created_at`` (a service that never reported). Nova stopped reading ``updated_at`` in Mitaka."""
    return service.get('last_seen_up') or service.get('created_at')


def service_is_up(service, now, service_down_time=SERVICE_DOWN_TIME):
    """Nova's own rule (servicegroup DB driver): not forced down, and the last
    report (:func:`last_report`) at most ``service_down_time`` seconds from
    ``now``, in either direction."""
    if service.get('forced_down'):
        return False
    last = last_report(service)
    if last is None:
        return False
    return abs((now - last).total_seconds()) <= service_down_time


def compute_services(cell, hosts, service_down_time=SERVICE_DOWN_TIME, columns=COMPUTE_SERVICE_COLUMNS):
    """The live nova-compute ``services`` rows of ``hosts`` in ``cell``, in id order.

    Each row also tells ``up`` (:func:`service_is_up` against the clock of the
    cell's database server), ``seconds_since_report``, ``service_down_time``
    and ``cell`` (its name). ``columns`` must include those of Nova's rule.
    """
    hosts = [host for host in hosts if host]
    if not hosts:
        return []
    rows = cell.session.select_in('SELECT %s FROM services WHERE host IN ({in}) AND `binary` = %%s AND deleted = 0 '
                                  'ORDER BY id' % ', '.join('`%s`' % column for column in columns),
                                  hosts, after=('nova-compute',))
    if not rows:
        return rows
    reference = cell.session.utc_now()
    for row in rows:
        last = last_report(row)
        row['up'] = service_is_up(row, reference, service_down_time)
        row['seconds_since_report'] = int((reference - last).total_seconds()) if last else None
        row['service_down_time'] = service_down_time
        row['cell'] = cell.name
    return rows


# ---------------------------------------------------------------- volume BDMs and attachments
# Used by cinder_volume_state and nova_bdm_purge.

def live_bdms_by_volume(cells, volume_ids):
    """:func:`live_volume_bdms` grouped by volume id."""
    grouped = {}
    for row in live_volume_bdms(cells, volume_ids) if volume_ids else ():
        grouped.setdefault(row['volume_id'], []).append(row)
    return grouped


def _bdm_selection(instance_ids, volume_ids):
    """WHERE clauses and parameters of the selectors, in chunks of bounded length."""
    for instances in list(chunks(instance_ids)) or [None]:
        for volumes in list(chunks(volume_ids)) or [None]:
            where, params = [], []
            if instances:
                where.append('b.instance_uuid IN (%s)' % placeholders(len(instances)))
                params.extend(instances)
            if volumes:
                where.append('b.volume_id IN (%s)' % placeholders(len(volumes)))
                params.extend(volumes)
            yield ' AND '.join(where), params


def selected_volume_bdms(cell, instance_ids, volume_ids):
    """Live volume BDMs of one cell on ``instance_ids`` and/or of ``volume_ids``, with their instance's state.

    Each row names its cell's database option (``cell``).
    """
    found = []
    for where, params in _bdm_selection(instance_ids, volume_ids):
        rows = cell.session.query(
            "SELECT b.*, i.host AS instance_host, i.vm_state AS instance_vm_state, i.deleted AS instance_deleted "
            "FROM block_device_mapping b LEFT JOIN instances i ON i.uuid = b.instance_uuid "
            "WHERE b.deleted = 0 AND b.destination_type = 'volume' AND %s ORDER BY b.id" % where, params)
        for row in rows:
            row['cell'] = cell.name
            found.append(row)
    return found


def api_server(compute, server_id):
    """A server through Nova's API, or None when Nova's API does not know it."""
    try:
        return compute.get_server(server_id)
    except Exception as error:
        if getattr(error, 'status_code', None) != 404:
            raise translate(error, 'reading server %s' % server_id)
        return None


def api_server_volumes(compute, server_id, missing_ok=False):
    """The volume attachments Nova's API lists for a server; with ``missing_ok`` none for a server it does not know."""
    try:
        return list(compute.volume_attachments(server_id))
    except Exception as error:
        if missing_ok and getattr(error, 'status_code', None) == 404:
            return []
        raise translate(error, 'listing the volume attachments of server %s' % server_id)


def api_volume_users(compute, volume_id, instances):
    """Of ``instances``, those whose attachments in Nova's API still list the volume."""
    users = []
    for instance in sorted(set(instance for instance in instances if instance)):
        for attached in api_server_volumes(compute, instance, missing_ok=True):
            if attached.volume_id == volume_id:
                users.append(dict(instance_uuid=instance, device=attached.device, source='nova api'))
    return users


def api_compute_up(compute, host):
    """Whether a nova-compute of ``host`` is up through Nova's API (a disabled one still counts as up)."""
    if not host:
        return False
    try:
        services = list(compute.services(host=host, binary='nova-compute'))
    except Exception as error:
        raise translate(error, 'reading the nova-compute service of host %s' % host)
    return any(service.state == 'up' for service in services)
