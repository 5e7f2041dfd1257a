# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Nova's network info cache (``instance_info_caches.network_info``), as plain data.

The cache is a JSON list of VIFs, each the model ``nova.network.model.VIF``
serialises: ``id`` (the Neutron port), ``address``, ``network`` (with its
subnets and addresses), ``type`` (the port's ``binding:vif_type``),
``details`` (``binding:vif_details``), ``profile`` (``binding:profile``),
``vnic_type``, ``active`` and a few more. Nova rebuilds it from Neutron; when
a move fails half-way it can keep a VIF whose binding failed, whose profile
still says ``migrating_to`` another host, or that has no network at all. The
last one breaks the API: listing servers reads ``vif['network']['label']``
for every VIF, and a VIF without a network answers 500.

The rules take and return plain dicts, so the module, the audit and their
tests share them. The readers at the end (the cache row, the instance's
unfinished migrations, its Neutron ports) read what the repair needs; nothing
here writes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import json

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders
from ansible_collections.stackmender.openstack.plugins.module_utils.services.nova import FINISHED_MIGRATION_STATUSES

# binding:vif_type values that are no binding at all (nova.network.model).
FAILED_VIF_TYPES = ('binding_failed', 'unbound')
MIGRATING_TO = 'migrating_to'
VIF_DETAILS_BRIDGE_NAME = 'bridge_name'
OVS_LIKE_VIF_TYPES = ('ovs', 'agilio_ovs')

# Defects, in the order they are reported.
DEFECT_BINDING_FAILED = 'binding_failed'
DEFECT_UNBOUND = 'unbound'
DEFECT_MIGRATING_TO = 'migrating_to'
DEFECT_NO_NETWORK = 'no_network'


class CacheUnreadable(ValueError):
    """The cache is not a JSON list of VIF objects; nothing can be repaired in it safely."""


def parse_cache(text):
    """The VIFs of a cache, or CacheUnreadable."""
    if text is None:
        raise CacheUnreadable('the cache is NULL')
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CacheUnreadable('the cache is not JSON (%s)' % error)
    if not isinstance(value, list):
        raise CacheUnreadable('the cache is JSON but not a list of VIFs')
    for position, vif in enumerate(value):
        if not isinstance(vif, dict) or not vif.get('id'):
            raise CacheUnreadable('entry %d of the cache is not a VIF with a port id' % position)
    return value


def dump_cache(vifs):
    """The cache text, serialised as Nova's jsonutils.dumps does (json.dumps defaults)."""
    return json.dumps(vifs)


def vif_defects(vif):
    """What is wrong with one cached VIF, as a list of DEFECT_* names (empty when nothing is)."""
    defects = []
    if vif.get('type') == 'binding_failed':
        defects.append(DEFECT_BINDING_FAILED)
    elif vif.get('type') == 'unbound':
        defects.append(DEFECT_UNBOUND)
    profile = vif.get('profile')
    if isinstance(profile, dict) and MIGRATING_TO in profile:
        defects.append(DEFECT_MIGRATING_TO)
    network = vif.get('network')
    if not isinstance(network, dict) or not network:
        defects.append(DEFECT_NO_NETWORK)
    return defects


def summary(vif):
    """The binding fields of a VIF shown in results (no addresses)."""
    profile = vif.get('profile')
    network = vif.get('network')
    return dict(port=vif.get('id'), type=vif.get('type'), vnic_type=vif.get('vnic_type'), active=vif.get('active'),
                profile=profile, details=vif.get('details'),
                network=network.get('id') if isinstance(network, dict) else None)


def binding_from_port(port):
    """The binding a Neutron port reports, in the cache's terms (as nova's _build_vif_model reads it)."""
    profile = port.get('binding:profile') or {}
    if not isinstance(profile, dict):
        try:
            profile = json.loads(profile)
        except (TypeError, ValueError):
            profile = {}
    return dict(host=port.get('binding:host_id') or None,
                vif_type=port.get('binding:vif_type'),
                vif_details=port.get('binding:vif_details') or {},
                profile=profile,
                vnic_type=port.get('binding:vnic_type') or 'normal',
                active=port.get('admin_state_up') is False or port.get('status') == 'ACTIVE')


def without_migrating_to(profile):
    profile = dict(profile or {})
    profile.pop(MIGRATING_TO, None)
    return profile


def repaired_vif(vif, binding, network=None):
    """A copy of ``vif`` carrying ``binding``; ``network`` replaces a missing network.

    Keys keep their order, so the cache text changes only where the binding does.
    """
    fixed = copy.deepcopy(vif)
    fixed['type'] = binding['vif_type']
    fixed['details'] = copy.deepcopy(binding['vif_details'])
    fixed['profile'] = copy.deepcopy(binding['profile'])
    fixed['vnic_type'] = binding['vnic_type']
    fixed['active'] = bool(binding['active'])
    if binding['vif_type'] in OVS_LIKE_VIF_TYPES:
        fixed['ovs_interfaceid'] = vif.get('id')
    if network is not None:
        fixed['network'] = network
    return fixed


def _address(address, kind, version):
    return dict(address=address, type=kind, version=version, meta={})


def network_model(port, network, subnets, vif_type, vif_details):
    """The ``network`` of a VIF as nova builds it from the port, its network and its subnets.

    Floating IPs are left out; Nova adds them at its next refresh of the cache.
    """
    network = network or {}
    fixed_ips = port.get('fixed_ips') or []
    by_subnet = dict((subnet['id'], subnet) for subnet in subnets if subnet.get('id'))
    built = []
    for subnet_id in [entry.get('subnet_id') for entry in fixed_ips]:
        subnet = by_subnet.get(subnet_id)
        if subnet is None or any(item['cidr'] == subnet.get('cidr') for item in built):
            continue
        version = subnet.get('ip_version') or 4
        ips = [dict(_address(entry.get('ip_address'), 'fixed', version), floating_ips=[])
               for entry in fixed_ips if entry.get('subnet_id') == subnet_id]
        routes = [dict(cidr=route.get('destination'), gateway=_address(route.get('nexthop'), 'gateway', version),
                       interface=None, meta={}) for route in subnet.get('host_routes') or []]
        built.append(dict(cidr=subnet.get('cidr'),
                          dns=[_address(server, 'dns', version) for server in subnet.get('dns_nameservers') or []],
                          gateway=_address(subnet.get('gateway_ip'), 'gateway', version),
                          ips=ips, routes=routes, version=version, meta={}))
    bridge = None
    if vif_type in OVS_LIKE_VIF_TYPES:
        bridge = (vif_details or {}).get(VIF_DETAILS_BRIDGE_NAME, 'br-int')
    physical = network.get('provider:physical_network')
    return dict(id=port.get('network_id'), bridge=bridge, label=network.get('name'), subnets=built,
                meta=dict(injected=False, tenant_id=network.get('tenant_id') or network.get('project_id')
                          or port.get('tenant_id') or port.get('project_id'),
                          mtu=network.get('mtu'), physical_network=physical,
                          tunneled=network.get('provider:network_type') in ('vxlan', 'geneve', 'gre')))


# ------------------------------------------------------------------ readers

def info_cache_rows(session, instance_uuid):
    """The live ``instance_info_caches`` rows of an instance (Nova keeps one), oldest first."""
    return session.query('SELECT id, instance_uuid, network_info, deleted, updated_at FROM instance_info_caches '
                         'WHERE instance_uuid = %s AND deleted = 0 ORDER BY id', (instance_uuid,))


def unfinished_migrations_of(cell, uuids):
    """The migrations of a cell's instances ``uuids`` whose status is not a finished one, by id."""
    finished = list(FINISHED_MIGRATION_STATUSES)
    return cell.session.select_in(
        'SELECT id, instance_uuid, status, migration_type, source_compute, dest_compute FROM migrations '
        'WHERE instance_uuid IN ({in}) AND deleted = 0 AND status NOT IN (%s) ORDER BY id' % placeholders(len(finished)),
        uuids, after=finished)


def compute_host_known(cells, host):
    """Whether a live nova-compute service of some cell (cell0 aside) is named exactly ``host``."""
    for cell in cells:
        if cell.is_cell0:
            continue
        if cell.session.query("SELECT id FROM services WHERE host = %s AND `binary` = 'nova-compute' "
                              "AND deleted = 0 LIMIT 1", (host,)):
            return True
    return False


def _neutron_get(conn, path, params):
    try:
        response = conn.network.get(path, params=params)
        api.openstack.exceptions.raise_from_response(response)
    except Exception as error:
        if api.HAS_OPENSTACKSDK and isinstance(error, api.openstack.exceptions.SDKException):
            raise api.translate(error, 'reading %s from Neutron' % path)
        raise
    return response.json()


def instance_ports(conn, instance_uuid):
    """{port id: port} of the Neutron ports whose device is the instance (GET /v2.0/ports?device_id=)."""
    ports = _neutron_get(conn, '/ports', {'device_id': instance_uuid}).get('ports') or []
    return dict((port.get('id'), port) for port in ports)


def port_network(conn, port, binding):
    """The ``network`` of a VIF rebuilt from the port, its network and subnets as Neutron reports them."""
    network = {}
    if port.get('network_id'):
        network = _neutron_get(conn, '/networks/%s' % port['network_id'], None).get('network') or {}
    subnet_ids = sorted(set(entry.get('subnet_id') for entry in port.get('fixed_ips') or [] if entry.get('subnet_id')))
    subnets = []
    if subnet_ids:
        subnets = _neutron_get(conn, '/subnets', {'id': subnet_ids}).get('subnets') or []
    return network_model(port, network, subnets, binding['vif_type'], binding['vif_details'])
