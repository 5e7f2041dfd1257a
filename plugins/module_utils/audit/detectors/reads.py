# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The reads several detector families share, each done once per run and cached on the Audit.

Key sets (live instances, volume BDMs, in-use volumes, live attachments) are read compactly
(Audit.packed) and joined in Python; rows shown as evidence are read by key afterwards
(Session.select_in, through Audit.rows_in). Whether a service is up is the services layer's
rule: nova.compute_services / nova.service_is_up and cinder.live_services / cinder.service_is_up.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import quote_identifier
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import (
    ATTACHMENT_COLUMNS, CINDER, COMPUTE_SERVICE_COLUMNS, INSTANCE_COLUMNS, SERVICE_COLUMNS, VOLUME_COLUMNS,
    columns_sql, text)


def live_instances(audit):
    """{uuid: (cell, host, node, task_state)} of every live instance in every cell read."""
    def read():
        found = {}
        for cell in audit.cells():
            for uuid, host, node, task_state in audit.packed(
                    cell.option, ('uuid', 'host', 'node', 'task_state'), 'FROM instances WHERE deleted = 0',
                    'id DIV 1000'):
                found[uuid] = (cell, host, node, task_state)
        return found
    return audit.cached('live_instances', read)


def volume_bdms(audit):
    """(cell, instance_uuid, volume_id, attachment_id) of every live volume BDM of a live instance."""
    def read():
        found = []
        live = live_instances(audit)
        for cell in audit.cells():
            audit.nova_schema(cell).require('block_device_mapping', ('instance_uuid', 'volume_id', 'attachment_id',
                                                                     'destination_type', 'deleted'),
                                            purpose='read the volume block device mappings')
            # Joined to the live instances in memory: they are read once for several classes.
            for instance_uuid, volume_id, attachment_id in audit.packed(
                    cell.option, ('b.instance_uuid', 'b.volume_id', 'b.attachment_id'),
                    "FROM block_device_mapping b WHERE b.deleted = 0 AND b.destination_type = 'volume' "
                    "AND b.volume_id IS NOT NULL", 'b.id DIV 1000'):
                instance = live.get(instance_uuid)
                if instance is not None and instance[0] is cell:
                    found.append((cell, instance_uuid, volume_id, attachment_id))
        return found
    return audit.cached('volume_bdms', read)


def mapped_volumes(audit):
    """Ids of the volumes a live BDM of a live instance references (in any cell, cell0 included)."""
    return set(volume_id for _cell, _instance, volume_id, _attachment in volume_bdms(audit))


def instances_by_uuid(audit, uuids):
    """{uuid: row} of the instances with these uuids in any cell, live or deleted (the live row wins);
    each row's ``cell`` is its cell's option. The read is nova.instance_rows."""
    found = {}
    if not uuids:
        return found
    select = ', '.join(quote_identifier(column) for column in INSTANCE_COLUMNS)
    for rows in nova.instance_rows(audit.cells(), select, uuids=sorted(set(uuids))).values():
        for row in rows:
            row['cell'] = row['cell'].option
            if row['uuid'] not in found or row['deleted'] == 0:
                found[row['uuid']] = row
    return found


def host_groups(audit, cell):
    """(host, node, compute_id, count) of a cell's live instances that have a host, exact (BINARY) values."""
    def read():
        has_compute_id = audit.nova_schema(cell).has('instances', 'compute_id')
        return [(text(host), text(node), compute_id, count) for host, node, compute_id, count in audit.tuples(
            cell.option, 'SELECT BINARY host, BINARY node, %s, COUNT(*) FROM instances WHERE deleted = 0 '
                         'AND host IS NOT NULL GROUP BY BINARY host, BINARY node%s'
            % (('compute_id', ', compute_id') if has_compute_id else ('NULL', '')))]
    return audit.cached(('host_groups', cell.option), read)


def instances_on(audit, cell, hosts, extra=()):
    """Live instance rows of a cell on exactly these hosts."""
    sql = 'SELECT %s FROM instances i WHERE i.deleted = 0 AND i.host IN (%%s) ORDER BY i.id' % columns_sql(
        'i', INSTANCE_COLUMNS + tuple(extra))
    return [row for row in audit.rows_in(cell.option, sql, hosts) if row['host'] in hosts]


def inuse_volumes(audit):
    """{id: (status, attach_status, migration_status)} of live volumes Cinder counts as attached."""
    def read():
        return dict((row[0], row[1:]) for row in audit.packed(
            CINDER, ('id', 'status', 'attach_status', 'migration_status'),
            "FROM volumes WHERE deleted = 0 AND (status = 'in-use' OR attach_status = 'attached')", 'LEFT(id, 2)'))
    return audit.cached('inuse_volumes', read)


def live_attachments(audit):
    """{id: (volume_id, instance_uuid, attach_status)} of every live volume_attachment row."""
    def read():
        return dict((row[0], row[1:]) for row in audit.packed(
            CINDER, ('id', 'volume_id', 'instance_uuid', 'attach_status'),
            'FROM volume_attachment WHERE deleted = 0', 'LEFT(id, 2)'))
    return audit.cached('live_attachments', read)


def volume_rows(audit, ids):
    sql = 'SELECT %s FROM volumes v WHERE v.id IN (%%s)' % columns_sql('v', VOLUME_COLUMNS)
    return dict((row['id'], row) for row in audit.rows_in(CINDER, sql, ids))


def attachment_rows(audit, ids=None, volume_ids=None, live_only=True):
    column, values = ('id', ids) if ids is not None else ('volume_id', volume_ids)
    sql = 'SELECT %s FROM volume_attachment a WHERE %sa.%s IN (%%s) ORDER BY a.created_at, a.id' % (
        columns_sql('a', ATTACHMENT_COLUMNS), 'a.deleted = 0 AND ' if live_only else '', column)
    return audit.rows_in(CINDER, sql, values)


def cinder_services(audit):
    """Live cinder-volume services by exact host, each with ``up`` (cinder.service_is_up) and ``heartbeat``."""
    def read():
        audit.schema(CINDER, 'cinder').require('services', ('host', 'binary', 'disabled', 'updated_at', 'deleted'),
                                               purpose='tell whether cinder-volume services are up')
        by_host = {}
        for service in cinder.live_services(audit.session(CINDER), 'cinder-volume'):
            row = dict((column, service[column]) for column in SERVICE_COLUMNS if column in service)
            row['up'] = cinder.service_is_up(service, audit.options.service_down_time)
            row['heartbeat'] = service['updated_at']
            by_host.setdefault(row['host'], []).append(row)
        return by_host
    return audit.cached('cinder_services', read)


def compute_services(audit, cell, hosts):
    """Live nova-compute services of ``hosts`` in a cell, by exact host: the evidence columns, ``up``
    (nova.compute_services, by nova.service_is_up) and ``heartbeat`` (nova.last_report)."""
    audit.nova_schema(cell).require('services', nova.COMPUTE_SERVICE_COLUMNS,
                                    purpose='tell whether nova-compute services are up')
    by_host = {}
    for service in nova.compute_services(cell, sorted(hosts), audit.options.service_down_time):
        row = dict((column, service[column]) for column in COMPUTE_SERVICE_COLUMNS)
        row['up'] = service['up']
        row['heartbeat'] = nova.last_report(service)
        by_host.setdefault(row['host'], []).append(row)
    return by_host


def compute_nodes(audit, cell):
    """{(host, hypervisor_hostname): row} of a cell's live compute nodes."""
    def read():
        audit.nova_schema(cell).require('compute_nodes', ('id', 'uuid', 'host', 'hypervisor_hostname', 'deleted'),
                                        purpose='match instances to compute nodes')
        return dict(((row['host'], row['hypervisor_hostname']), row) for row in audit.rows(
            cell.option, 'SELECT id, uuid, host, hypervisor_hostname FROM compute_nodes WHERE deleted = 0 ORDER BY id'))
    return audit.cached(('compute_nodes', cell.option), read)


def migrating_instances(audit, cell):
    """Uuids of instances with a migration in progress in a cell (any status but nova's finished ones)."""
    def read():
        finished = nova.FINISHED_MIGRATION_STATUSES
        return set(row[0] for row in audit.tuples(
            cell.option, 'SELECT DISTINCT instance_uuid FROM migrations WHERE deleted = 0 AND status NOT IN (%s)'
                         % placeholders(len(finished)), finished))
    return audit.cached(('migrating_instances', cell.option), read)
