"""Drill: a failed live migration leaves a binding_failed network info cache.

The server's port is registered with the lab's Neutron stand-in, bound to the
server's host with a real OVS binding. The cache is then written as a live
migration to the other compute leaves it when it fails half-way and the cache
is rebuilt while the binding is broken: the VIF's type is binding_failed, its
profile still says migrating_to the destination, and it has lost its network.
Nova's API reads the network label of every cached VIF, so GET /servers/detail
answers 500 (a VIF with binding_failed but a network answers 200; measured).
The module, given the lab's admin cloud and nova_api_db, rebuilds the VIF from
the port Neutron reports; the listing answers 200 again, shows the port's
address, and the cache carries the port's binding. A second run changes nothing.
"""

import json
import urllib.request
import uuid

import pytest

from tests.drills.conftest import new_server

MODULE = 'nova_network_info_cache'
CACHE_CLASSES = ('info_cache_binding_failed', 'info_cache_vif_without_network', 'info_cache_migrating_to')
OVS_DETAILS = {'port_filter': True, 'connectivity': 'l2', 'bridge_name': 'br-int', 'datapath_type': 'system'}

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def stub_request(lab, method, path, body=None):
    """The neutron stand-in's admin endpoint (tests/lab/runners/neutron_stub.py)."""
    url = lab['endpoints']['neutron'].rstrip('/') + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def server_detail_status(admin):
    return admin.compute.get('/servers/detail', params={'all_tenants': 1}, microversion='2.96').status_code


def test_failed_live_migration_cache_is_rebuilt_from_neutron(
        ansible, lab, admin, member, api_args, lab_env, lab_db, sql, cleanup):
    server = new_server(member, 'binding-failed', cleanup)
    host = sql('SELECT host FROM nova.instances WHERE uuid = %s', server.id)[0]['host']
    other = [name for name in ('compute1', 'compute2') if name != host][0]
    port_id, network_id, subnet_id = (str(uuid.uuid4()) for _number in range(3))
    port = {'id': port_id, 'device_id': server.id, 'device_owner': 'compute:nova', 'network_id': network_id,
            'project_id': server.project_id, 'mac_address': 'fa:16:3e:5a:0b:01', 'status': 'ACTIVE',
            'fixed_ips': [{'subnet_id': subnet_id, 'ip_address': '192.0.2.15'}],
            'binding:host_id': host, 'binding:vif_type': 'ovs', 'binding:vif_details': OVS_DETAILS,
            'binding:profile': {}, 'binding:vnic_type': 'normal'}
    try:
        assert stub_request(lab, 'PUT', '/_lab/networks', {'networks': [
            {'id': network_id, 'name': 'drill-net', 'mtu': 1442, 'subnets': [subnet_id],
             'project_id': server.project_id}]}) == 200
        assert stub_request(lab, 'PUT', '/_lab/subnets', {'subnets': [
            {'id': subnet_id, 'network_id': network_id, 'cidr': '192.0.2.0/24', 'gateway_ip': '192.0.2.1'}]}) == 200
        assert stub_request(lab, 'PUT', '/_lab/ports', {'ports': [port]}) == 200

        # What the failed migration left: binding_failed, migrating_to the destination, no network.
        broken = [{'id': port_id, 'address': port['mac_address'], 'network': None, 'type': 'binding_failed',
                   'details': {}, 'devname': ('tap' + port_id)[:14], 'ovs_interfaceid': None, 'qbh_params': None,
                   'qbg_params': None, 'active': False, 'vnic_type': 'normal', 'profile': {'migrating_to': other},
                   'preserve_on_delete': True, 'delegate_create': True, 'meta': {}}]
        assert sql('UPDATE nova.instance_info_caches SET network_info = %s WHERE instance_uuid = %s',
                   json.dumps(broken), server.id) == 1
        assert server_detail_status(admin) == 500

        # The audit names all three defects, and the repair of the one behind the 500 needs Neutron.
        audit = dict(nova_api_db=lab_db['nova_api'], classes=list(CACHE_CLASSES))
        found = dict((finding['class'], finding) for finding in ansible('consistency_info', audit)['findings']
                     if finding['resources']['instance'] == server.id)
        assert sorted(found) == sorted(CACHE_CLASSES), found
        repair = found['info_cache_vif_without_network']['repair']
        assert repair == {'module': 'stackmender.openstack.' + MODULE, 'args': {'instance': [server.id], 'binding_from': 'neutron'}}

        # The finding's own call, with the cloud and the database to write the cache in.
        args = api_args(nova_api_db=lab_db['nova_api'], **repair['args'])
        checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
        assert not checked.failed and checked.changed, checked.get('msg')
        assert checked['method'] == 'db' and checked['binding_from'] == 'neutron'
        assert checked['caches'][0]['vifs'][0]['defects'] == ['binding_failed', 'migrating_to', 'no_network']
        assert server_detail_status(admin) == 500, 'check mode wrote the cache'

        applied = ansible(MODULE, args, env=lab_env)
        assert not applied.failed and applied.changed, applied.get('msg')
        assert applied['journal']

        assert server_detail_status(admin) == 200
        shown = admin.compute.get_server(server.id)
        assert [entry['addr'] for entry in shown.addresses['drill-net']] == ['192.0.2.15']
        vif, = json.loads(sql('SELECT network_info FROM nova.instance_info_caches WHERE instance_uuid = %s',
                              server.id)[0]['network_info'])
        assert (vif['type'], vif['details'], vif['profile'], vif['vnic_type']) == (
            port['binding:vif_type'], port['binding:vif_details'], port['binding:profile'], port['binding:vnic_type'])
        assert vif['network']['id'] == network_id and vif['active'] is True and vif['preserve_on_delete'] is True

        again = ansible(MODULE, args, env=lab_env)
        assert not again.failed and not again.changed, again
        after = ansible('consistency_info', audit)['findings']
        assert not [finding for finding in after if finding['resources']['instance'] == server.id], after
    finally:
        # Nova's delete of the server must not find ports the stand-in cannot unbind.
        for kind in ('ports', 'subnets', 'networks'):
            stub_request(lab, 'DELETE', '/_lab/%s' % kind)
        sql("UPDATE nova.instance_info_caches SET network_info = '[]' WHERE instance_uuid = %s", server.id)
