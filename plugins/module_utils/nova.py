# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reads of Nova state that several modules need (guards and audits)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.validation import chunks, placeholders


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
            rows = []
            for chunk in chunks(list(uuids)):
                rows.extend(cell.session.query('SELECT %s FROM instances WHERE uuid IN (%s) ORDER BY id'
                                               % (select, placeholders(len(chunk))), chunk))
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
        for chunk in chunks(list(volume_ids)):
            rows = cell.session.query(
                'SELECT b.id AS bdm_id, b.volume_id, b.instance_uuid, b.device_name, b.attachment_id, '
                'b.boot_index, i.host AS instance_host, i.vm_state, i.task_state '
                'FROM block_device_mapping b JOIN instances i ON i.uuid = b.instance_uuid '
                'WHERE b.deleted = 0 AND i.deleted = 0 AND b.volume_id IN (%s) ORDER BY b.id' % placeholders(len(chunk)),
                chunk)
            for row in rows:
                row['cell'] = cell.name
                found.append(row)
    return found


# Statuses after which a migration is over; any other status is in progress
# (nova's migration_get_in_progress_by_host_and_node).
FINISHED_MIGRATION_STATUSES = ('confirmed', 'reverted', 'error', 'failed', 'completed', 'cancelled', 'done')

# Nova's [DEFAULT] service_down_time.
SERVICE_DOWN_TIME = 60


def service_is_up(service, now, service_down_time=SERVICE_DOWN_TIME):
    """Nova's own rule (servicegroup DB driver): not forced down, and the last
    report (``last_seen_up``, else ``created_at``) at most ``service_down_time``
    seconds from ``now``, in either direction."""
    if service.get('forced_down'):
        return False
    last = service.get('last_seen_up') or service.get('created_at')
    if last is None:
        return False
    return abs((now - last).total_seconds()) <= service_down_time
