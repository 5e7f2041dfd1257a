# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every detector family and the audit engine share: the database options, the columns
evidence shows, and small helpers on plain values. No service rule lives here: those are in
module_utils/services."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import quote_identifier

# The database options of consistency_info, as the sessions and the cells name them.
CINDER = 'cinder_db'
NOVA_DB = nova_cells.NOVA_DB
NOVA_API = nova_cells.NOVA_API_DB
PLACEMENT = 'placement_db'

# Volume and snapshot statuses the audit reports as stuck after stuck_after: the operations in flight
# (cinder.TRANSITIONAL_STATUSES) that volume_stuck knows a reset for, a delete that failed half-way
# (error_deleting) and a migration. Volumes in one are volume_stuck's, not the attachment classes'.
STUCK_STATUSES = ('attaching', 'detaching', 'creating', 'deleting', 'reserved', 'error_deleting', 'migrating')

# Ids listed per table in findings that aggregate rows; the count is always exact.
SHOWN_IDS = 50

INSTANCE_COLUMNS = ('uuid', 'host', 'node', 'vm_state', 'task_state', 'power_state', 'project_id', 'deleted',
                    'deleted_at', 'updated_at', 'created_at')
VOLUME_COLUMNS = ('id', 'status', 'attach_status', 'migration_status', 'host', 'project_id', 'multiattach',
                  'deleted', 'deleted_at', 'updated_at', 'created_at')
# What evidence shows of a cinder service row.
SERVICE_COLUMNS = ('id', 'uuid', 'host', 'binary', 'cluster_name', 'disabled', 'disabled_reason', 'modified_at',
                   'created_at', 'updated_at', 'heartbeat_age')
# What evidence shows of a nova-compute service row.
COMPUTE_SERVICE_COLUMNS = ('id', 'host', 'disabled', 'forced_down', 'last_seen_up', 'created_at')
# What evidence shows of an attachment: never connection_info or connector.
ATTACHMENT_COLUMNS = ('id', 'volume_id', 'instance_uuid', 'attached_host', 'attach_status', 'attach_time',
                      'deleted', 'deleted_at', 'updated_at', 'created_at')


def text(value):
    """A str from a column read with BINARY (bytes) or as text."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8', 'replace')
    return value


def owner(volume_host):
    """The cinder-volume service host (``h@b``) owning a volume host (``h@b#pool``), None for none."""
    return cinder.service_host(volume_host) if volume_host else None


def host_keys(host):
    """The exact names a ``hosts`` filter matches: ``h@b#pool``, ``h@b`` and ``h``."""
    if not host:
        return set()
    return set([host, cinder.service_host(host), cinder.split_host(host)[0]])


def columns_sql(alias, columns):
    return ', '.join('%s.%s' % (alias, quote_identifier(column)) for column in columns)


def seconds_between(earlier, later):
    if earlier is None or later is None:
        return None
    return max(0, int((later - earlier).total_seconds()))


def first_time(*values):
    for value in values:
        if value is not None:
            return value
    return None


def cutoff(audit, spec, option):
    """The time before which a row of a thresholded class is stuck: the database clock less stuck_after."""
    return audit.now(option) - datetime.timedelta(seconds=audit.options.stuck_after[spec.name])


def group(rows, key):
    """{row[key]: [rows]} in the order given."""
    grouped = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    return grouped
