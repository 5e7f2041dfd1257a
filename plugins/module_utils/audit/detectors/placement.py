# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Placement allocations of an instance on a provider outside its compute node's tree."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import reads
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import PLACEMENT, first_time

# Placement trait of providers whose inventory is shared with compute nodes through aggregates.
SHARING_TRAIT = 'MISC_SHARES_VIA_AGGREGATE'


def wrong_providers(instance, provider_ids, providers, provider_by_uuid, sharing, nodes, migrating):
    """The providers among ``provider_ids`` an instance should have no allocation on, or None when
    it is not judged.

    ``instance``: (cell, host, node, task_state); ``providers``: {id: (uuid, name, root id)};
    ``provider_by_uuid``: {uuid: id}; ``sharing``: ids of sharing providers; ``nodes``: the live
    compute nodes of its cell, {(host, node): row}; ``migrating``: uuids of its cell's instances with
    a migration in progress, the instance's own uuid among them when it has one. Allocations move
    during operations and migrations, so those are not judged; nor is an instance whose node is
    unknown (instance_node_unknown reports it: the right provider is unknown). Nested providers of
    the right node are fine.
    """
    cell, host, node, task_state = instance[:4]
    if cell.is_cell0 or task_state is not None or migrating:
        return None
    expected = nodes.get((host, node)) if host else None
    if host and expected is None:
        return None
    expected_root = None
    if expected is not None and expected['uuid'] in provider_by_uuid:
        expected_root = providers[provider_by_uuid[expected['uuid']]][2]
    return [provider_id for provider_id in provider_ids
            if provider_id not in sharing and (expected_root is None or providers[provider_id][2] != expected_root)]


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
    live = reads.live_instances(audit)
    cells = audit.host_cells()
    migrating = dict((cell.option, reads.migrating_instances(audit, cell)) for cell in cells)
    nodes = dict((cell.option, reads.compute_nodes(audit, cell)) for cell in cells)
    flagged = []
    for consumer, provider_ids in by_consumer.items():
        instance = live.get(consumer)
        if instance is None or instance[0].is_cell0:
            continue
        cell, host, node, _task_state = instance
        wrong = wrong_providers(instance, provider_ids, providers, provider_by_uuid, sharing, nodes[cell.option],
                                consumer in migrating[cell.option])
        if wrong:
            flagged.append((consumer, cell, host, node, nodes[cell.option].get((host, node)) if host else None, wrong))
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
    instances = reads.instances_by_uuid(audit, [item[0] for item in flagged])
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
