# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Resources whose service is missing, down or disabled: volumes of a cinder-volume service and
instances of a nova-compute service. Whether a service is up is the services layer's rule
(cinder.service_is_up, nova.service_is_up), read through detectors/reads."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import reads
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import (
    CINDER, INSTANCE_COLUMNS, VOLUME_COLUMNS, columns_sql, first_time, owner, text)


def serving(rows):
    """The rows of services that are up and enabled."""
    return [row for row in rows if row['up'] and not row['disabled']]


def cinder_service_state(rows):
    """'missing', 'down' or 'disabled' of the cinder-volume service rows of one host; None when one serves."""
    if not rows:
        return 'missing'
    if not [row for row in rows if row['up']]:
        return 'down'
    if not serving(rows):
        return 'disabled'
    return None


def compute_service_state(rows):
    """'missing', 'forced_down' or 'down' of the nova-compute service rows of one host; None when one is up."""
    if not rows:
        return 'missing'
    if not [row for row in rows if row['up']]:
        return 'forced_down' if [row for row in rows if row['forced_down']] else 'down'
    return None


def clusters_up(services):
    """Names of the active-active clusters with a member up and enabled."""
    return set(row['cluster_name'] for rows in services.values() for row in serving(rows) if row.get('cluster_name'))


def rehost_candidates(service, services, pools):
    """(live services on the machine of ``service``, the pools their volumes use when there is one such
    service). One live service whose volumes use one pool is the multi-backend rename of ``service``."""
    machine = cinder.split_host(service)[0]
    candidates = sorted(host for host, rows in services.items()
                        if host != service and cinder.split_host(host)[0] == machine and serving(rows))
    known = sorted(pools.get(candidates[0], ())) if len(candidates) == 1 else []
    return candidates, known


def unavailable_volume_hosts(groups, services, clustered_up):
    """({volume host: (state, service host, service rows)} of the volume hosts no service serves,
    {service host: set of pools its volumes use}), from ``groups`` (volume host, cluster) of live volumes."""
    pools, bad = {}, {}
    for host, cluster in groups:
        service = owner(host)
        if '#' in host:
            pools.setdefault(service, set()).add(host.partition('#')[2])
        if cluster and cluster in clustered_up:
            continue  # an active-active cluster member serves it
        rows = services.get(service, [])
        state = cinder_service_state(rows)
        if state is not None:
            bad[host] = (state, service, rows)
    return bad, pools


def missing_service_advice(spec, volume, service, services, pools):
    """(repair, hint) of a volume whose cinder-volume service is missing."""
    machine = cinder.split_host(service)[0]
    candidates, known = rehost_candidates(service, services, pools)
    if len(known) == 1:
        # The multi-backend rename: one live service on the same machine, whose volumes use one pool.
        # The volume is named, so a gate's class cap bounds the rows written, not only the findings.
        return (spec.repair('cinder_service_rehost', from_host=service, to_host='%s#%s' % (candidates[0], known[0]),
                            volumes=[volume['id']]),
                'no live cinder-volume service is %s; %s is the only live one on %s. Every finding of %s proposes '
                'the same call for its own volume: the gate merges them into one call, run once after checking '
                'that the storage behind it holds the volumes' % (service, candidates[0], machine, service))
    if len(candidates) == 1:
        return None, ('no live cinder-volume service is %s: rehost its volumes with cinder_service_rehost to %s'
                      '#<pool> (its volumes use pool(s): %s)' % (service, candidates[0], ', '.join(known) or 'none yet'))
    return None, ('no live cinder-volume service is %s: rehost its volumes with cinder_service_rehost to a live '
                  'host@backend#pool (candidates on %s: %s)'
                  % (service, machine, ', '.join(candidates) if candidates else 'none'))


def volume_service_unavailable(audit, spec):
    """Volumes whose host names a cinder-volume service that is missing, down or disabled."""
    schema = audit.schema(CINDER, 'cinder')
    schema.require('volumes', VOLUME_COLUMNS, purpose='match volumes to their cinder-volume service')
    services = reads.cinder_services(audit)
    clustered = schema.has('volumes', 'cluster_name')
    groups = audit.tuples(CINDER, 'SELECT BINARY host, %s, COUNT(*) FROM volumes WHERE deleted = 0 AND host IS NOT NULL '
                                  'GROUP BY BINARY host%s' % (('BINARY cluster_name', ', BINARY cluster_name') if clustered
                                                              else ('NULL', '')))
    bad, pools = unavailable_volume_hosts([(text(host), text(cluster)) for host, cluster, _count in groups], services,
                                          clusters_up(services))
    if not bad:
        return
    columns = VOLUME_COLUMNS + (('cluster_name',) if clustered else ())
    volumes = [row for row in audit.rows_in(
        CINDER, 'SELECT %s FROM volumes v WHERE v.deleted = 0 AND v.host IN (%%s) ORDER BY v.id' % columns_sql('v', columns),
        list(bad)) if row['host'] in bad]
    now = audit.now(CINDER)
    for volume in volumes:
        state, service, rows = bad[volume['host']]
        shown = [dict((key, value) for key, value in row.items() if key not in ('up', 'heartbeat')) for row in rows]
        fix, since = None, first_time(volume['updated_at'], volume['created_at'])
        if state == 'missing':
            severity = 'critical'
            fix, hint = missing_service_advice(spec, volume, service, services, pools)
        elif state == 'down':
            severity = 'error'
            beats = [row['heartbeat'] for row in rows if row['heartbeat'] is not None]
            since = max(beats) if beats else since
            hint = ('cinder-volume %s is down: start it; if it is gone for good, rehost its volumes with '
                    'cinder_service_rehost' % service)
        else:
            severity = 'warning'
            modified = [row.get('modified_at') for row in rows if row.get('modified_at')]
            since = max(modified) if modified else None
            hint = ('cinder-volume %s is disabled (%s): its volumes still work but nothing new is scheduled there; '
                    'enable it or rehost its volumes' % (service, '; '.join(sorted(set(
                        row.get('disabled_reason') or 'no reason given' for row in rows)))))
        yield audit.finding(
            spec, 'volume %s is on %s, whose cinder-volume service %s is %s' % (volume['id'], volume['host'], service, state),
            dict(volume=volume['id'], volume_host=volume['host'], service_host=service, service_state=state),
            [dict(volume, table='volumes')] + [dict(row, table='services') for row in shown],
            project=volume['project_id'], host=service, since=since, now=now, severity=severity,
            key='volume/%s' % volume['id'], fix=fix, hint=hint)


def instance_on_unavailable_host(audit, spec):
    """Live instances on a compute host whose nova-compute service is missing or down."""
    for cell in audit.host_cells():
        audit.nova_schema(cell).require('instances', INSTANCE_COLUMNS, purpose='find instances on dead hosts')
        hosts = set(host for host, _node, _compute_id, _count in reads.host_groups(audit, cell))
        services = reads.compute_services(audit, cell, hosts)
        bad = {}
        for host in hosts:
            state = compute_service_state(services.get(host, []))
            if state is not None:
                bad[host] = (state, services.get(host, []))
        if not bad:
            continue
        now = audit.now(cell.option)
        for instance in reads.instances_on(audit, cell, set(bad)):
            state, rows = bad[instance['host']]
            beats = [row['heartbeat'] for row in rows if row['heartbeat'] is not None]
            since = max(beats) if beats else first_time(instance['updated_at'], instance['created_at'])
            yield audit.finding(
                spec, 'instance %s is on %s, whose nova-compute service is %s'
                % (instance['uuid'], instance['host'], state.replace('_', ' ')),
                dict(instance=instance['uuid'], host=instance['host'], node=instance['node'], cell=cell.option,
                     service_state=state),
                [dict(instance, table='instances', cell=cell.option)] + [dict(row, table='services') for row in rows],
                project=instance['project_id'], host=instance['host'], since=since, now=now,
                severity='critical' if state == 'missing' else 'error', key='%s/instance/%s' % (cell.option, instance['uuid']),
                hint='if %s is really dead, fence it and evacuate its instances (openstack server evacuate, or '
                     'nova_instance_host with a target host); if it is healthy, start nova-compute there'
                     % instance['host'])
