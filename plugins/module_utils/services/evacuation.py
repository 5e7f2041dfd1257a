# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Moving instances off a dead compute host: the reads and the plan of nova_instance_host.

The readers take sessions (or the openstacksdk connection) and return plain
rows. The plan functions are pure: instance, service, node, migration and
allocation rows as dicts in; guard findings (:func:`finding`), planned row
changes (dicts of :meth:`Plan.change`'s arguments), warnings and notes out.
An instance row names its cell by option (``cell``) and says whether that is
cell0 (``cell0``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import ApiUnsuitable
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement

PLACEMENT = 'placement_db'
CINDER = 'cinder_db'

# Evacuation microversions: 2.68 keeps the instance's state (and drops "force"); 2.95 stops it at the target.
MICROVERSION_KEEP = '2.68'
MICROVERSION_STOPPED = '2.95'
MICROVERSION_SERVICE_UPDATE = '2.53'
POWER_STATES = {0: 'pending', 1: 'running', 3: 'paused', 4: 'shutdown', 6: 'crashed', 7: 'suspended'}
EVACUABLE_VM_STATES = ('active', 'stopped', 'error')

SERVICE_COLUMNS = ('id', 'uuid', 'host', 'binary', 'disabled', 'disabled_reason', 'forced_down', 'last_seen_up',
                   'created_at', 'updated_at', 'deleted')
INSTANCE_COLUMNS = 'id, uuid, host, node, task_state, vm_state, power_state, deleted, updated_at'
NODE_COLUMNS = 'id, uuid, host, hypervisor_hostname, service_id, deleted'
SHOWN_INSTANCE_COLUMNS = ('id', 'uuid', 'host', 'node', 'compute_id', 'vm_state', 'task_state', 'power_state',
                          'deleted')


def finding(guard, message, evidence, never=False):
    """A guard that found a problem, as :meth:`Plan.refuse` takes it."""
    return dict(guard=guard, message=message, evidence=list(evidence), never=never)


def refuse_all(plan, findings):
    for found in findings:
        plan.refuse(found['guard'], found['message'], found['evidence'], never=found['never'])


def change(database, table, key, before, after, expect, note, action='update'):
    """A planned row change, as :meth:`Plan.change` takes it."""
    return dict(database=database, table=table, key=key, action=action, before=before, after=after, expect=expect,
                note=note)


def add_changes(plan, changes):
    for planned in changes:
        plan.change(planned['database'], planned['table'], planned['key'], action=planned.get('action', 'update'),
                    before=planned['before'], after=planned.get('after'), expect=planned.get('expect'),
                    note=planned['note'])


def shown_instance(row):
    shown = dict((column, row.get(column)) for column in SHOWN_INSTANCE_COLUMNS if column in row)
    shown['cell'] = row['cell']
    return shown


# ============================================================ database path: reads


def require_nova_schema(schema):
    purpose = 'move instances between compute hosts'
    schema.require('instances', ('id', 'uuid', 'host', 'node', 'task_state', 'vm_state', 'deleted', 'updated_at'),
                   purpose=purpose)
    schema.require('services', SERVICE_COLUMNS, purpose='check the compute services')
    schema.require('compute_nodes', ('id', 'uuid', 'host', 'hypervisor_hostname', 'service_id', 'deleted'),
                   purpose=purpose)
    schema.require('migrations', ('id', 'uuid', 'instance_uuid', 'status', 'source_compute', 'source_node',
                                  'dest_compute', 'dest_node', 'deleted', 'updated_at'), purpose='end unfinished migrations')
    schema.require('instance_extra', ('id', 'instance_uuid', 'migration_context', 'numa_topology', 'deleted',
                                      'updated_at'), purpose='clear the migration context')


def require_pci_devices(schema):
    # Required, not probed: an account without SELECT on it would otherwise skip the guard silently.
    schema.require('pci_devices', ('instance_uuid', 'deleted'), purpose='refuse instances bound to their host by PCI devices')


def read_instances(cells, uuids, from_host, has_column):
    """nova.instance_rows of the instances asked for, each row naming its cell by option; fails on unknown uuids."""
    # compute_id exists from 2023.1 on; older cells are read without it.
    by_uuid = nova.instance_rows(cells, INSTANCE_COLUMNS, uuids=uuids, host=from_host or None,
                                 optional=('compute_id',), has_column=has_column)
    nova.require_instances(uuids, by_uuid)
    for rows in by_uuid.values():
        for row in rows:
            row['cell0'] = row['cell'].is_cell0
            row['cell'] = row['cell'].name
    return by_uuid


def read_target(cell, cells, host, node, service_down_time, api_session=None):
    """What the guards of the target in ``cell`` look at: its services, host mapping and compute nodes.

    ``services`` live in ``cell``; when there are none, ``elsewhere`` (live in other cells) or
    ``deleted`` (its deleted service rows). ``mapping``: its host_mappings rows (None without
    nova_api_db). ``nodes``: its live compute nodes (named ``node`` if given); when there are
    none, ``others``: every compute node row of the host.
    """
    facts = dict(services=nova.compute_services(cell, [host], service_down_time, SERVICE_COLUMNS), elsewhere=[],
                 deleted=[], mapping=None, nodes=[], others=[])
    if not facts['services']:
        for other in cells:
            if other.name != cell.name and not other.is_cell0:
                facts['elsewhere'].extend(nova.compute_services(other, [host], service_down_time, SERVICE_COLUMNS))
        if not facts['elsewhere']:
            facts['deleted'] = [dict(row, cell=cell.name) for row in cell.session.query(
                'SELECT %s FROM services WHERE host = %%s AND deleted != 0 ORDER BY id'
                % ', '.join('`%s`' % column for column in SERVICE_COLUMNS), (host,))]
        return facts
    if api_session is not None:
        facts['mapping'] = api_session.query(
            'SELECT h.id, h.host, h.cell_id, c.uuid AS cell_uuid, c.name AS cell_name FROM host_mappings h '
            'LEFT JOIN cell_mappings c ON c.id = h.cell_id WHERE h.host = %s', (host,))
    where, params = 'host = %s AND deleted = 0', [host]
    if node:
        where += ' AND hypervisor_hostname = %s'
        params.append(node)
    facts['nodes'] = [dict(row, cell=cell.name) for row in cell.session.query(
        'SELECT %s FROM compute_nodes WHERE %s ORDER BY id' % (NODE_COLUMNS, where), params)]
    if not facts['nodes']:
        facts['others'] = [dict(row, cell=cell.name) for row in cell.session.query(
            'SELECT %s FROM compute_nodes WHERE host = %%s ORDER BY id' % NODE_COLUMNS, (host,))]
    return facts


def read_cell(cell, uuids):
    """The live instance_extra rows, unfinished migrations and PCI devices of ``uuids`` in ``cell``."""
    finished = list(nova.FINISHED_MIGRATION_STATUSES)
    return dict(
        extras=cell.session.select_in('SELECT id, instance_uuid, migration_context, numa_topology, deleted, updated_at '
                                      'FROM instance_extra WHERE instance_uuid IN ({in}) AND deleted = 0 ORDER BY id',
                                      uuids),
        migrations=cell.session.select_in(
            'SELECT id, uuid, instance_uuid, status, migration_type, source_compute, source_node, dest_compute, '
            'dest_node, deleted, updated_at FROM migrations WHERE instance_uuid IN ({in}) AND deleted = 0 '
            'AND status NOT IN (%s) ORDER BY id' % placeholders(len(finished)), uuids, after=finished),
        devices=cell.session.select_in('SELECT id, compute_node_id, address, dev_type, status, instance_uuid '
                                       'FROM pci_devices WHERE instance_uuid IN ({in}) AND deleted = 0 ORDER BY id',
                                       uuids))


def read_nodes(cell, hosts):
    """Every compute node row (deleted ones too) of ``hosts`` in ``cell``, live rows last."""
    return cell.session.select_in('SELECT id, uuid, host, hypervisor_hostname, deleted FROM compute_nodes '
                                  'WHERE host IN ({in}) ORDER BY deleted = 0, id', sorted(hosts))


def read_volume_bdms(cell, uuids):
    return cell.session.select_in("SELECT instance_uuid, volume_id FROM block_device_mapping WHERE instance_uuid IN "
                                  "({in}) AND deleted = 0 AND destination_type = 'volume' ORDER BY id", uuids)


def read_attachments(session, uuids):
    return session.select_in('SELECT id, volume_id, instance_uuid, attached_host, attach_status, deleted, updated_at '
                             'FROM volume_attachment WHERE instance_uuid IN ({in}) AND deleted = 0 ORDER BY id',
                             sorted(uuids))


# ============================================================ database path: plan


def select_instances(by_uuid):
    """The live instance rows that can move, in id order, and the findings (never lifted) of the others."""
    selected, findings = [], []
    for uuid in sorted(by_uuid, key=lambda item: by_uuid[item][0]['id']):
        rows = by_uuid[uuid]
        live = [row for row in rows if not row['deleted']]
        if not live:
            findings.append(finding('instance_deleted', 'instance %s is deleted' % uuid,
                                    [shown_instance(row) for row in rows], never=True))
        elif len(live) > 1:
            findings.append(finding('instance_in_several_cells', 'instance %s has live rows in several cells (%s)'
                                    % (uuid, ', '.join(row['cell'] for row in live)),
                                    [shown_instance(row) for row in rows], never=True))
        elif live[0]['cell0']:
            findings.append(finding('cell0', 'instance %s is in cell0, which holds instances that were never '
                                    'scheduled and is never written' % uuid, [shown_instance(live[0])], never=True))
        elif not live[0]['host']:
            findings.append(finding('instance_without_host', 'instance %s has no host: it was never built on a compute '
                                    'host; rebuild or delete it instead' % uuid, [shown_instance(live[0])], never=True))
        else:
            selected.append(live[0])
    return selected, findings


def check_target(facts, rows, host, node, cell_name, cell_uuid, service_down_time):
    """The target of ``rows`` (instances of one cell) from :func:`read_target`'s facts, after its guards.

    Returns (target or None, findings, blind): target is {service, node}; blind is a message when
    nothing shows the target's host mapping (``mapping`` None: no nova_api_db), else None.
    """
    findings = []
    instances = ', '.join(row['uuid'] for row in rows)
    if not facts['services']:
        if facts['elsewhere']:
            findings.append(finding('target_in_other_cell', 'target host %s is in cell %s, instance(s) %s in %s; Nova '
                                    'cannot move an instance between cells this way'
                                    % (host, facts['elsewhere'][0]['cell'], instances, cell_name),
                                    facts['elsewhere'] + [shown_instance(row) for row in rows], never=True))
        else:
            findings.append(finding('target_service_missing', 'no live nova-compute service for target host %s in %s'
                                    % (host, cell_name), facts['deleted'] or [
                                        dict(host=host, binary='nova-compute', cell=cell_name, live_service_rows=0)],
                                    never=True))
        return None, findings, None
    service = facts['services'][0]
    blind = None
    if facts['mapping'] is None:
        blind = ('nothing shows that target host %s has a host_mappings row (without one Nova cannot schedule or '
                 'evacuate to it, nor find its cell)' % host)
    elif facts['mapping'] and facts['mapping'][0]['cell_uuid'] != cell_uuid:
        mapping = facts['mapping'][0]
        findings.append(finding('target_in_other_cell', 'target host %s is mapped to cell %s, but its instance(s) are '
                                'in %s' % (host, mapping['cell_name'] or mapping['cell_uuid'], cell_name),
                                facts['mapping'] + [service], never=True))
        return None, findings, blind
    elif not facts['mapping']:
        findings.append(finding('target_not_mapped', 'target host %s has no host_mappings row (run nova-manage cell_v2 '
                                'discover_hosts); Nova cannot schedule or evacuate to it' % host, [service]))
    if not facts['nodes']:
        findings.append(finding('target_compute_node_missing', 'target host %s has no live compute node%s in %s'
                                % (host, ' named %s' % node if node else '', cell_name),
                                facts['others'] or [service], never=True))
        return None, findings, blind
    if len(facts['nodes']) > 1:
        findings.append(finding('target_node_ambiguous', 'target host %s has %d compute nodes; give node'
                                % (host, len(facts['nodes'])), facts['nodes'], never=True))
        return None, findings, blind
    if service['disabled']:
        findings.append(finding('target_service_disabled', 'the nova-compute service of target host %s is disabled (%s)'
                                % (host, service['disabled_reason'] or 'no reason given'), [service]))
    if not service['up']:
        findings.append(finding('target_service_down', 'the nova-compute service of target host %s is %s' % (
            host, 'forced down' if service['forced_down'] else 'down (last report %s s ago, service_down_time %s)'
            % (service['seconds_since_report'], service_down_time)), [service]))
    return dict(service=service, node=facts['nodes'][0]), findings, blind


def check_sources(services, hosts, cell_name, service_down_time):
    """Findings on the source hosts whose nova-compute is up, and notes on those with no live service.

    ``services`` are :func:`nova.compute_services` rows (telling ``up``) of ``hosts`` in ``cell_name``.
    """
    findings, notes = [], []
    for host in sorted(set(hosts)):
        mine = [service for service in services if service['host'] == host]
        if not mine:
            notes.append('source host %s has no live nova-compute service in %s' % (host, cell_name))
        elif mine[0]['up']:
            findings.append(finding('source_service_up', 'the nova-compute service of source host %s is up (last '
                                    'report %s s ago, service_down_time %s): make sure the host is dead and fenced, '
                                    'or force it down first' % (host, mine[0]['seconds_since_report'], service_down_time),
                                    [mine[0]]))
    return findings, notes


def host_bound_findings(cell_name, devices, extras):
    """Findings on the instances bound to their source host by PCI devices or a NUMA topology."""
    evidence = [dict(device, kind='pci_device', cell=cell_name) for device in devices]
    evidence.extend(dict(kind='numa_topology', instance_uuid=extra['instance_uuid'], cell=cell_name,
                         instance_extra_id=extra['id']) for extra in extras if extra['numa_topology'] is not None)
    return [finding('host_bound_resources', 'instance %s uses resources bound to its source host (PCI devices or NUMA '
                    'pinning); moving its record does not move them' % uuid,
                    [row for row in evidence if row['instance_uuid'] == uuid])
            for uuid in sorted(set(row['instance_uuid'] for row in evidence))]


def cell_changes(rows, extras, migrations, target_host, has_compute_id, stamp):
    """The cell's row changes: each instance on its target node with no task, migration contexts cleared,
    unfinished migrations set to error. Rows carry ``target`` ({service, node}). Returns (changes, warnings)."""
    changes, warnings = [], []
    for row in rows:
        node = row['target']['node']
        before = dict(host=row['host'], node=row['node'], task_state=row['task_state'], updated_at=row['updated_at'])
        after = dict(host=target_host, node=node['hypervisor_hostname'], task_state=None, updated_at=stamp)
        if has_compute_id:
            before['compute_id'] = row['compute_id']
            after['compute_id'] = node['id']
        changes.append(change(row['cell'], 'instances', {'id': row['id']}, before, after,
                              dict(uuid=row['uuid'], deleted=0, vm_state=row['vm_state']),
                              'the instance now lives on the target compute node; no task is in progress'))
        if row['task_state']:
            warnings.append('instance %s was in task_state %s, now cleared' % (row['uuid'], row['task_state']))
    cell_name = rows[0]['cell'] if rows else None
    for extra in extras:
        if extra['migration_context'] is not None:
            changes.append(change(cell_name, 'instance_extra', {'id': extra['id']},
                                  dict(migration_context=extra['migration_context'], updated_at=extra['updated_at']),
                                  dict(migration_context=None, updated_at=stamp),
                                  dict(instance_uuid=extra['instance_uuid'], deleted=0),
                                  'the migration context of an abandoned move'))
    for migration in migrations:
        changes.append(change(cell_name, 'migrations', {'id': migration['id']},
                              dict(status=migration['status'], updated_at=migration['updated_at']),
                              dict(status='error', updated_at=stamp),
                              dict(instance_uuid=migration['instance_uuid'], deleted=0),
                              'an unfinished migration of a moved instance is abandoned'))
    return changes, warnings


def node_hosts(rows, migrations):
    """The hosts whose compute nodes the placement move needs: the instances' and their abandoned migrations'."""
    hosts = set(row['host'] for row in rows)
    for migration in migrations:
        hosts.update(host for host in (migration['source_compute'], migration['dest_compute']) if host)
    return hosts


def attach_nodes(rows, migrations, nodes):
    """Set each row's ``abandoned`` migrations, its ``source_node`` and its ``abandoned_nodes`` (those of the
    migrations' ends) from ``nodes`` (:func:`read_nodes`: for a host/node, the live row wins, else the newest)."""
    by_key = {}
    for node in nodes:
        by_key[(node['host'], node['hypervisor_hostname'])] = node
    for row in rows:
        row['abandoned'] = [migration for migration in migrations if migration['instance_uuid'] == row['uuid']]
        row['source_node'] = by_key.get((row['host'], row['node']))
        row['abandoned_nodes'] = [by_key[key] for migration in row['abandoned']
                                  for key in ((migration['source_compute'], migration['source_node']),
                                              (migration['dest_compute'], migration['dest_node'])) if by_key.get(key)]


def provider_uuids(rows):
    """The compute node uuids whose resource providers the placement move reads."""
    uuids = set()
    for row in rows:
        uuids.add(row['target']['node']['uuid'])
        if row['source_node']:
            uuids.add(row['source_node']['uuid'])
        uuids.update(node['uuid'] for node in row['abandoned_nodes'])
    return uuids


def migration_consumers(rows):
    """{instance uuid: set of the uuids of its abandoned migrations} (each a placement consumer)."""
    return dict((row['uuid'], set(migration['uuid'] for migration in row['abandoned'] if migration['uuid']))
                for row in rows)


def plan_allocation_moves(rows, providers, allocations, consumers, mover):
    """Plan, through ``mover`` (placement.AllocationMove), each instance's allocations from its source compute
    node's provider to the target's. ``providers``: {uuid: provider row}; ``allocations``: those of the
    instances and their migrations; ``consumers``: {uuid: consumer row} of the instances.
    Returns (findings, warnings)."""
    findings, warnings = [], []
    migration_uuids = migration_consumers(rows)
    heal = 'run nova-manage placement heal_allocations --force --instance %s'
    for row in rows:
        target_node = row['target']['node']
        target = providers.get(target_node['uuid'])
        if target is None:
            findings.append(finding('target_provider_missing', 'the target compute node %s (%s) has no resource '
                                    'provider in placement: its nova-compute never registered it'
                                    % (target_node['hypervisor_hostname'], target_node['uuid']),
                                    [dict(target_node, cell=row['cell'])], never=True))
            continue
        own = set([row['uuid']]) | migration_uuids[row['uuid']]
        mine = [allocation for allocation in allocations if allocation['consumer_id'] in own]
        source = providers.get(row['source_node']['uuid']) if row['source_node'] else None
        if source is None:
            source = dict(id=None)
            warnings.append('the source compute node of instance %s (%s/%s) has no resource provider: %s after the '
                            'move' % (row['uuid'], row['host'], row['node'], heal % row['uuid']))
        nested = [allocation for allocation in mine if allocation['consumer_id'] == row['uuid']
                  and source['id'] is not None and allocation['root_provider_id'] == source['id']
                  and allocation['resource_provider_id'] != source['id']]
        if nested:
            findings.append(finding('host_bound_resources', 'instance %s has allocations on nested resource providers '
                                    'of its source compute node (devices of that host); they are left there'
                                    % row['uuid'], [placement.shown_allocation(allocation) for allocation in nested]))
        abandoned = set(providers[node['uuid']]['id'] for node in row['abandoned_nodes'] if node['uuid'] in providers)
        abandoned.discard(source['id'])
        moved, _dropped, kept = mover.move(row['uuid'], source, target, mine, migration_uuids[row['uuid']], abandoned,
                                           instance_consumer_exists=row['uuid'] in consumers)
        if kept:
            warnings.append('instance %s has no placement consumer, so the hold of its abandoned migration on the '
                            'source was left; %s' % (row['uuid'], heal % row['uuid']))
        if not moved and not [allocation for allocation in mine if allocation['consumer_id'] == row['uuid']
                              and allocation['resource_provider_id'] == target['id']]:
            warnings.append('instance %s holds no allocation on its source compute node provider to move: %s'
                            % (row['uuid'], heal % row['uuid']))
    return findings, warnings


def attachment_changes(attachments, source_of, target_host, stamp):
    """The attachments whose ``attached_host`` names their instance's source host (``source_of``: {uuid: host})
    now name the target. Returns (changes, notes on those naming another host)."""
    changes, notes = [], []
    for attachment in attachments:
        if attachment['attached_host'] != source_of[attachment['instance_uuid']]:
            if attachment['attached_host'] != target_host:
                notes.append('attachment %s of instance %s names host %s, not the source; left alone'
                             % (attachment['id'], attachment['instance_uuid'], attachment['attached_host']))
            continue
        changes.append(change(CINDER, 'volume_attachment', {'id': attachment['id']},
                              dict(attached_host=attachment['attached_host'], updated_at=attachment['updated_at']),
                              dict(attached_host=target_host, updated_at=stamp),
                              dict(instance_uuid=attachment['instance_uuid'], volume_id=attachment['volume_id'],
                                   deleted=0), 'the attachment now serves the target host'))
    return changes, notes


def followup_warnings(rows, target_host, bdms, cinder_given):
    """What the operator still owes the moved instances (``bdms``: their volume block device mappings)."""
    moved = ', '.join(row['uuid'] for row in rows)
    sources = ', '.join(sorted(set(row['host'] for row in rows)))
    warnings = [
        'hard reboot (or start) the moved instance(s) %s: their guests are created on %s only then, from disks on '
        'shared storage or volumes' % (moved, target_host),
        'bind the Neutron ports of %s to %s (openstack port set --host %s PORT); Nova does not heal binding:host_id by '
        'default' % (moved, target_host, target_host),
        'keep nova-compute on %s from starting the old guests: no evacuation record tells it to destroy them, and two '
        'hosts could run one disk. Force the service down and disable it' % sources]
    if bdms:
        warnings.append('refresh the volume connections on the target: nova-manage volume_attachment refresh for %s'
                        % ', '.join('%s %s' % (bdm['instance_uuid'], bdm['volume_id']) for bdm in bdms))
        if not cinder_given:
            warnings.append("Cinder was not given (cinder_db): the attachments' attached_host still names %s" % sources)
    return warnings


def moved_instances(rows, target_host):
    """The result's ``instances``."""
    return [dict(instance=row['uuid'], cell=row['cell'], from_host=row['host'], from_node=row['node'],
                 to_host=target_host, to_node=row['target']['node']['hypervisor_hostname'],
                 compute_id=row['target']['node']['id']) for row in rows]


# ================================================================ API path


def shown_service(service):
    """What a result shows of an openstacksdk compute service."""
    return dict(id=service.id, host=service.host, binary=service.binary, status=service.status, state=service.state,
                forced_down=service.is_forced_down, disabled_reason=service.disabled_reason, updated_at=service.updated_at)


def shown_server(server):
    """An openstacksdk server as a plain row."""
    return dict(id=server.id, status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                power_state=server.power_state, host=server.compute_host, node=server.hypervisor_hostname)


def api_service(conn, host):
    """The nova-compute service of ``host`` as :func:`shown_service` shows it, or None."""
    for service in conn.compute.services(binary='nova-compute', host=host):
        if service.host == host:
            return shown_service(service)
    return None


def api_known_services(conn):
    return [dict(host=service.host, status=service.status, state=service.state)
            for service in conn.compute.services(binary='nova-compute')]


def api_servers(conn, from_host, instance_ids):
    """The servers of ``from_host``, or those of ``instance_ids``, as plain rows."""
    compute = conn.compute
    if from_host:
        return [shown_server(server) for server in compute.servers(details=True, all_projects=True,
                                                                   compute_host=from_host)]
    return [api_server(conn, instance_id) for instance_id in instance_ids]


def api_server(conn, instance_id):
    """One server as a plain row with its ``fault`` message; InputError when the API does not know it."""
    try:
        server = conn.compute.get_server(instance_id)
    except Exception as error:
        if getattr(error, 'status_code', None) == 404:
            raise InputError('instance %s not found through the Compute API (deleted?)' % instance_id)
        raise api.translate(error, 'reading instance %s' % instance_id)
    return dict(shown_server(server), fault=(getattr(server, 'fault', None) or {}).get('message'))


def api_host_cells(api_session, hosts):
    """{host: host_mappings row with its cell's name} of ``hosts``."""
    return dict((row['host'], row) for row in api_session.select_in(
        'SELECT h.host, h.cell_id, c.name AS cell_name FROM host_mappings h LEFT JOIN cell_mappings c '
        'ON c.id = h.cell_id WHERE h.host IN ({in})', sorted(hosts)))


def put_service(conn, service_id, host, body):
    """Fence the source in Nova, then read it back: the update must show, or nothing is evacuated."""
    response = conn.compute.put('/os-services/%s' % service_id, json=body, microversion=MICROVERSION_SERVICE_UPDATE)
    api.openstack.exceptions.raise_from_response(response)
    service = api_service(conn, host)
    if service is None or not service['forced_down'] or service['status'] != 'disabled':
        raise ApiError('the nova-compute service of %s is not forced down and disabled after the update; nothing was '
                       'evacuated: check the Compute API' % host, service=service)


def post_evacuate(conn, server_id, body, microversion):
    response = conn.compute.post('/servers/%s/action' % server_id, json=body, microversion=microversion)
    api.openstack.exceptions.raise_from_response(response)


def target_service_findings(service, host, known=()):
    """Findings on the target's nova-compute as the API shows it (``known``: every one, when it is missing)."""
    if service is None:
        return [finding('target_service_missing', 'the Compute API knows no nova-compute service on target host %s'
                        % host, list(known) or [dict(host=host, services_found=0)], never=True)]
    findings = []
    if service['status'] == 'disabled':
        findings.append(finding('target_service_disabled', 'the nova-compute service of target host %s is disabled (%s)'
                                % (host, service['disabled_reason'] or 'no reason given'), [service]))
    if service['state'] != 'up' or service['forced_down']:
        findings.append(finding('target_service_down', 'the nova-compute service of target host %s is %s'
                                % (host, 'forced down' if service['forced_down'] else 'down'), [service]))
    return findings


def sort_servers(servers, target_host):
    """The servers to evacuate by source host, with findings and notes on the others.

    Raises ApiUnsuitable for a server Nova does not evacuate (a task in progress, a state it refuses).
    """
    by_source, findings, notes = {}, [], []
    for server in servers:
        if not server['host']:
            findings.append(finding('instance_without_host', 'instance %s has no host: it was never scheduled (cell0) '
                                    'or never built; rebuild or delete it instead' % server['id'],
                                    [dict((key, value) for key, value in server.items() if key != 'fault')], never=True))
        elif server['host'] == target_host:
            notes.append('instance %s is already on host %s' % (server['id'], target_host))
        elif server['task_state']:
            raise ApiUnsuitable('instance %s has task_state %s; Nova evacuates only instances with no task in progress'
                                % (server['id'], server['task_state']))
        elif server['vm_state'] not in EVACUABLE_VM_STATES:
            raise ApiUnsuitable('instance %s is %s; Nova evacuates only active, stopped or error instances'
                                % (server['id'], server['vm_state']))
        else:
            by_source.setdefault(server['host'], []).append(server)
    return by_source, findings, notes


def cell_findings(source_hosts, target_host, mappings):
    """Findings (never lifted) on sources mapped to another cell than the target (``mappings``: api_host_cells)."""
    target = mappings.get(target_host)
    findings = []
    for source_host in sorted(source_hosts):
        source = mappings.get(source_host)
        if target and source and source['cell_id'] != target['cell_id']:
            findings.append(finding('target_in_other_cell', 'source host %s is in cell %s, target host %s in %s; Nova '
                                    'cannot evacuate between cells' % (source_host, source['cell_name'], target_host,
                                                                       target['cell_name']), [source, target],
                                    never=True))
    return findings


def source_service_findings(service, source_host):
    if service['state'] == 'up' and not service['forced_down']:
        return [finding('source_service_up', 'the nova-compute service of source host %s is up: make sure the host is '
                        'dead and fenced before evacuating from it' % source_host, [service])]
    return []


def needs_fencing(service):
    return not service['forced_down'] or service['status'] != 'disabled'


def expected_end(server, microversion):
    """(status, power state) the evacuation leaves ``server`` in at ``microversion``."""
    if microversion == MICROVERSION_STOPPED or server['vm_state'] == 'stopped':
        return 'SHUTOFF', 4
    return 'ACTIVE', 1


def evacuation_entry(server, source_host, target_host, microversion):
    """The result's ``evacuations`` entry of one planned evacuation."""
    status, power_state = expected_end(server, microversion)
    return dict(instance=server['id'], from_host=source_host, to_host=target_host, microversion=microversion,
                expected_status=status, expected_power_state=power_state)


def pending_evacuations(entries, read_server, target_host):
    """After the calls: ({instance: state shown} of the evacuations not finished, warnings).

    ``read_server(uuid)`` returns the server as :func:`api_server` does. A finished entry gets the
    ``status``, ``power_state``, ``power_state_name``, ``host`` and ``node`` it ended with and is not
    read again; an instance in ERROR with no task raises ApiError (that evacuation failed).
    """
    pending, warnings = {}, []
    for entry in entries:
        if 'status' in entry:
            continue
        server = read_server(entry['instance'])
        if server['status'] == 'ERROR' and not server['task_state']:
            raise ApiError('the evacuation of instance %s to %s failed: the instance is in ERROR%s'
                           % (entry['instance'], target_host, ' (%s)' % server['fault'] if server.get('fault') else ''),
                           server=server, evacuations=entries)
        if server['task_state'] is None and server['host'] == target_host and server['status'] in ('ACTIVE', 'SHUTOFF'):
            entry.update(status=server['status'], power_state=server['power_state'],
                         power_state_name=POWER_STATES.get(server['power_state'], 'unknown'), host=server['host'],
                         node=server['node'])
            if entry['status'] != entry['expected_status']:
                warnings.append('instance %s ended %s on %s, not %s as microversion %s implies'
                                % (entry['instance'], entry['status'], target_host, entry['expected_status'],
                                   entry['microversion']))
        else:
            pending[entry['instance']] = 'status %s, task_state %s, host %s' % (
                server['status'], server['task_state'], server['host'])
    return pending, warnings
