# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Nova instances and their records: tasks and migrations that never end, instances on a node that is
not a live compute node, and instances without a right instance mapping."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import reads
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import (
    INSTANCE_COLUMNS, NOVA_API, columns_sql, cutoff, first_time, seconds_between)

MIGRATION_COLUMNS = ('id', 'instance_uuid', 'migration_type', 'status', 'source_compute', 'dest_compute', 'source_node',
                     'dest_node', 'created_at', 'updated_at', 'deleted')


def task_repair(spec, instance):
    """(repair, hint) of an instance stuck in its task_state."""
    if instance['task_state'] == 'migrating':
        return (spec.repair('nova_task_state', instance=[instance['uuid']], action='abort'),
                'aborts the live migration through the Compute API (2.24; 2.65 while queued or preparing); without a '
                'cloud, or when Nova cannot abort it, the database path ends it as cancelled and gives its placement '
                'hold back')
    return (spec.repair('nova_task_state', instance=[instance['uuid']]),
            'clears task_state as os-resetState does (active stays active, any other vm_state becomes error: hard '
            'reboot those) and ends its unfinished migrations')


def instance_task_stuck(audit, spec):
    """Live instances whose task_state has not changed for longer than the threshold."""
    for cell in audit.cells():
        audit.nova_schema(cell).require('instances', INSTANCE_COLUMNS, purpose='find instances stuck in a task')
        now = audit.now(cell.option)
        rows = audit.rows(cell.option, 'SELECT %s FROM instances i WHERE i.deleted = 0 AND i.task_state IS NOT NULL '
                                       'AND COALESCE(i.updated_at, i.created_at) <= %%s ORDER BY i.id'
                          % columns_sql('i', INSTANCE_COLUMNS), (cutoff(audit, spec, cell.option),))
        for instance in rows:
            since = first_time(instance['updated_at'], instance['created_at'])
            fix, hint = task_repair(spec, instance)
            yield audit.finding(
                spec, 'instance %s has been in task_state %s for %s s'
                % (instance['uuid'], instance['task_state'], seconds_between(since, now)),
                dict(instance=instance['uuid'], task_state=instance['task_state'], vm_state=instance['vm_state'],
                     cell=cell.option),
                [dict(instance, table='instances', cell=cell.option)], project=instance['project_id'],
                host=instance['host'], since=since, now=now, key='%s/instance/%s' % (cell.option, instance['uuid']),
                fix=fix, hint=hint)


def migration_action(spec, row):
    """(repair, hint, waiting) of an unfinished migration joined to its instance (``instance_deleted``:
    None without an instance row); ``waiting``: a resize waiting for confirmation."""
    waiting = row['status'] == 'finished' and row['migration_type'] in ('resize', 'migration')
    # Migration uuids are unique across cells; ids are not.
    reference = row.get('uuid') or row['id']
    if row['instance_deleted'] != 0:  # None: no instance row; else the deleted row's id
        return None, 'the instance is gone; the migration row is a leftover (nova-manage db archive_deleted_rows)', waiting
    if waiting:
        return None, 'the resize waits for confirmation: confirm or revert it (openstack server resize confirm|revert)', waiting
    if row['migration_type'] == 'live-migration':
        return (spec.repair('nova_task_state', instance=[row['instance_uuid']], migration=[reference], action='abort'),
                'aborts it through the Compute API; the database path ends it as cancelled and gives the hold back',
                waiting)
    return (spec.repair('nova_task_state', migration=[reference]),
            'ends it as error and releases its placement hold as a rollback (instance on the source) or a confirm '
            '(instance on the destination) would; check where the instance runs first', waiting)


def migration_unfinished(audit, spec):
    """Migrations in a non-final status (nova.FINISHED_MIGRATION_STATUSES) for longer than the threshold."""
    finished = nova.FINISHED_MIGRATION_STATUSES
    for cell in audit.host_cells():
        schema = audit.nova_schema(cell)
        schema.require('migrations', MIGRATION_COLUMNS, purpose='find unfinished migrations')
        columns = tuple(column for column in MIGRATION_COLUMNS if column != 'deleted') + (
            ('uuid',) if schema.has('migrations', 'uuid') else ())
        now = audit.now(cell.option)
        rows = audit.rows(
            cell.option,
            'SELECT %s, i.project_id, i.host AS instance_host, i.vm_state, i.task_state, i.deleted AS instance_deleted '
            'FROM migrations m LEFT JOIN instances i ON i.uuid = m.instance_uuid WHERE m.deleted = 0 '
            'AND m.status NOT IN (%s) AND COALESCE(m.updated_at, m.created_at) <= %%s ORDER BY m.id'
            % (columns_sql('m', columns), placeholders(len(finished))), list(finished) + [cutoff(audit, spec, cell.option)])
        for row in rows:
            since = first_time(row['updated_at'], row['created_at'])
            fix, hint, waiting = migration_action(spec, row)
            yield audit.finding(
                spec, '%s %s of instance %s from %s to %s has been %s for %s s'
                % (row['migration_type'] or 'migration', row['id'], row['instance_uuid'], row['source_compute'],
                   row['dest_compute'], row['status'], seconds_between(since, now)),
                dict(migration=row['id'], instance=row['instance_uuid'], status=row['status'], cell=cell.option),
                [dict(row, table='migrations', cell=cell.option)], project=row['project_id'],
                host=row['source_compute'], since=since, now=now, severity='info' if waiting else None,
                key='%s/migration/%s' % (cell.option, row['id']), fix=fix, hint=hint)


def node_defects(groups, nodes, has_compute_id):
    """{(host, node, compute_id): 'node_unknown' | 'compute_id_mismatch'} of the (host, node, compute_id,
    count) groups of live instances whose node is not a live compute node of ``nodes`` ({(host,
    hypervisor_hostname): row}), or whose compute_id is not that node's id."""
    bad = {}
    for host, node, compute_id, _count in groups:
        row = nodes.get((host, node))
        if row is None:
            bad[(host, node, compute_id)] = 'node_unknown'
        elif has_compute_id and compute_id is not None and compute_id != row['id']:
            bad[(host, node, compute_id)] = 'compute_id_mismatch'
    return bad


def node_hint(reason, instance, candidates):
    """What to do for an instance of node_defects, given the live compute nodes of its host."""
    host = instance['host']
    if reason == 'compute_id_mismatch':
        return ('nova-compute on %s corrects compute_id for the instances of its nodes when its resource tracker '
                'runs; restart it if it does not' % host)
    if len(candidates) == 1:
        # nova_instance_host's guard refuses while the (same) source host is up: the operator decides.
        node = candidates[0]['hypervisor_hostname']
        return ('if the instance runs on %s, its node is %s: nova_instance_host instance=%s host=%s node=%s, with force '
                'and a force_reason, since the instance stays on a live host' % (host, node, instance['uuid'], host, node))
    return 'host %s has %s live compute node(s)%s: find the node the instance runs on' % (
        host, len(candidates), ' (%s)' % ', '.join(sorted(row['hypervisor_hostname'] for row in candidates))
        if candidates else '')


def instance_node_unknown(audit, spec):
    """Live instances whose (host, node) pair is not a live compute node, or whose compute_id is not that node's id."""
    for cell in audit.host_cells():
        schema = audit.nova_schema(cell)
        schema.require('instances', INSTANCE_COLUMNS, purpose='match instances to compute nodes')
        has_compute_id = schema.has('instances', 'compute_id')
        nodes = reads.compute_nodes(audit, cell)
        nodes_of_host = {}
        for (host, node), row in nodes.items():
            nodes_of_host.setdefault(host, []).append(row)
        bad = node_defects(reads.host_groups(audit, cell), nodes, has_compute_id)
        if not bad:
            continue
        now = audit.now(cell.option)
        extra = ('compute_id',) if has_compute_id else ()
        for instance in reads.instances_on(audit, cell, set(host for host, _node, _compute_id in bad), extra):
            reason = bad.get((instance['host'], instance['node'], instance.get('compute_id') if has_compute_id else None))
            if reason is None:
                continue
            host = instance['host']
            candidates = nodes_of_host.get(host, [])
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
                key='%s/instance/%s' % (cell.option, instance['uuid']), hint=node_hint(reason, instance, candidates))


def mapping_defects(live, mappings):
    """(uuid, cell, 'missing' | 'cell_null' | 'wrong_cell') of the live instances ({uuid: (cell, ...)})
    whose instance mapping ({uuid: cell id or None}) is absent, has no cell or names another cell."""
    flagged = []
    for uuid, entry in live.items():
        cell = entry[0]
        if uuid not in mappings:
            flagged.append((uuid, cell, 'missing'))
        elif mappings[uuid] is None:
            flagged.append((uuid, cell, 'cell_null'))
        elif cell.mapping_id is not None and mappings[uuid] != cell.mapping_id:
            flagged.append((uuid, cell, 'wrong_cell'))
    return sorted(flagged, key=lambda item: item[0])


def instance_mapping_missing(audit, spec):
    """Live instances without an instance mapping, with a NULL cell, or mapped to another cell."""
    schema = audit.schema(NOVA_API, 'nova_api')
    schema.require('instance_mappings', ('instance_uuid', 'cell_id'), purpose='check the instance mappings')
    mappings = dict((uuid, None if cell_id is None else int(cell_id)) for uuid, cell_id in audit.packed(
        NOVA_API, ('instance_uuid', 'cell_id'), 'FROM instance_mappings', 'id DIV 1000'))
    flagged = mapping_defects(reads.live_instances(audit), mappings)
    if not flagged:
        return
    rows = reads.instances_by_uuid(audit, set(uuid for uuid, _cell, _reason in flagged))
    for uuid, cell, reason in flagged:
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
