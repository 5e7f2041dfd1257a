# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Nova's network info caches: failed bindings, VIFs without a network, leftover migrating_to, and
missing or empty caches. What is a defect of a cached VIF is network_info.vif_defects's call, the
rule nova_network_info_cache repairs by."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import network_info
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import reads
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import first_time

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
        live = reads.live_instances(audit)
        cached = set(instance for _id, instance, flag in flags if flag != 'deleted')
        look = [int(cache_id) for cache_id, instance, flag in flags if flag == 'look' and instance in live]
        missing = [uuid for uuid, entry in live.items() if entry[0] is cell and uuid not in cached]
        caches = dict((row['instance_uuid'], row) for row in audit.rows_in(
            cell.option, 'SELECT id, instance_uuid, created_at, updated_at, network_info FROM instance_info_caches '
                         'WHERE id IN (%s)', look))
        instances = reads.instances_by_uuid(audit, list(caches) + missing)
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
            fix=spec.repair('nova_network_info_cache', instance=[row['instance_uuid']]),
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
            fix=spec.repair('nova_network_info_cache', instance=[row['instance_uuid']], binding_from='neutron'),
            hint='only Neutron can rebuild the network of a VIF: run the repair with a cloud (binding_from=neutron)')


def info_cache_migrating_to(audit, spec):
    """Info caches whose VIF profiles keep migrating_to while no migration runs."""
    for cell, now, row, vifs, stale in _cache_defects_of(audit, spec):
        if row['instance_uuid'] in reads.migrating_instances(audit, cell) or row['task_state'] == 'migrating':
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
            fix=spec.repair('nova_network_info_cache', instance=[row['instance_uuid']]),
            hint='remove migrating_to from the ports\' binding profile in Neutron, then rewrite the cache from the '
                 'ports (nova_network_info_cache)')


def cache_emptiness(row):
    """(state, severity) of an instance's cache row (``id`` None: no cache row) when it is missing,
    NULL, empty or an empty list, else None. An instance still building has none yet."""
    if row['vm_state'] == 'building':
        return None
    if row['id'] is None:
        return 'missing', 'warning'
    if row['network_info'] is None:
        return 'null', 'warning'
    if not row['network_info'].strip():
        return 'empty', 'warning'
    if row['network_info'].strip() == '[]':
        return 'empty_list', 'info'
    return None


def info_cache_empty(audit, spec):
    """Live instances whose info cache is missing, NULL, empty or an empty list."""
    for cell in audit.host_cells():
        now = audit.now(cell.option)
        for row in _info_cache_rows(audit, cell):
            emptiness = cache_emptiness(row)
            if emptiness is None:
                continue
            state, severity = emptiness
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
