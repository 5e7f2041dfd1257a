"""nova_network_info_cache against the real Nova schemas of every release.

The cache is always written in the cell database. With the binding given by
the operator (binding_from: options) and with the binding read from Neutron
(binding_from: neutron), each runs the full cycle: check mode, apply (the cache
verified with independent SQL), re-run (changed: false), undo from the
journal. Neutron is the lab's stand-in (tests/lab/runners/neutron_stub.py),
served over loopback HTTP from this process; the module reaches it through
openstacksdk with an endpoint override, so the HTTP calls are real.
"""

import importlib.util
import json
import os
import threading
from wsgiref import simple_server

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import assert_clean_failure, db_args, run_full_cycle, snapshot
from tests.harness.builder import CloudBuilder

MODULE = 'nova_network_info_cache'
TABLES = [('nova', 'instance_info_caches'), ('nova', 'instances')]
STUB_PATH = os.path.join(os.path.dirname(__file__), '..', 'lab', 'runners', 'neutron_stub.py')
PORT = '5d1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b'
NETWORK = '0c8f1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f'
SUBNET = '1d9e2f3a-4b5c-4d6e-9f7a-8b9c0d1e2f3a'
OVS_DETAILS = {'port_filter': True, 'connectivity': 'l2', 'bridge_name': 'br-int', 'datapath_type': 'system'}


def load_stub():
    spec = importlib.util.spec_from_file_location('lab_neutron_stub', STUB_PATH)
    stub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub)
    return stub


class QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def neutron():
    """The lab's Neutron stand-in on a free loopback port; yields (stub module, cloud dict)."""
    stub = load_stub()
    server = simple_server.make_server('127.0.0.1', 0, stub.application, server_class=stub.ThreadingWSGIServer,
                                       handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = 'http://127.0.0.1:%d/' % server.server_address[1]
    cloud = dict(auth_type='none', auth=dict(endpoint=url), network_endpoint_override=url)
    yield stub, cloud
    server.shutdown()
    server.server_close()


def failed_migration_cache(port=PORT, network=True):
    """A VIF as a live migration to compute2 that failed leaves it: binding failed, profile migrating_to."""
    vif = {'network': None} if not network else {}
    return CloudBuilder.network_info(vif_type='binding_failed', profile={'migrating_to': 'compute2'}, port_id=port,
                                     **vif)


def cache_row(dbs, instance):
    return dbs.query('nova', 'SELECT * FROM instance_info_caches WHERE instance_uuid = %s', (instance,))[0]


def register_port(stub, instance, host='compute1', **fields):
    port = {'id': PORT, 'device_id': instance, 'device_owner': 'compute:nova', 'network_id': NETWORK,
            'mac_address': 'fa:16:3e:12:34:56', 'binding:host_id': host, 'binding:vif_type': 'ovs',
            'binding:vif_details': OVS_DETAILS, 'binding:profile': {}, 'status': 'ACTIVE',
            'fixed_ips': [{'subnet_id': SUBNET, 'ip_address': '10.0.0.5'}], 'tenant_id': 'p'}
    port.update(fields)
    stub.REGISTRY['ports'].clear()
    stub.REGISTRY['ports'][PORT] = stub.port_defaults(port)
    stub.REGISTRY['networks'][NETWORK] = stub.network_defaults({'id': NETWORK, 'name': 'private', 'mtu': 1442,
                                                               'subnets': [SUBNET], 'tenant_id': 'p'})
    stub.REGISTRY['subnets'][SUBNET] = stub.subnet_defaults({'id': SUBNET, 'network_id': NETWORK,
                                                             'cidr': '10.0.0.0/24', 'gateway_ip': '10.0.0.1',
                                                             'dns_nameservers': ['10.0.0.2']})


def test_db_path_with_the_binding_the_operator_confirms(ansible, dbs, cloud, journal_dir):
    cloud.nova_service('compute1')
    cloud.compute_node('compute1')
    broken = cloud.instance(host='compute1', vm_state='error', network_info=failed_migration_cache())
    healthy_cache = CloudBuilder.network_info(vif_type='ovs')
    healthy = cloud.instance(host='compute1', network_info=healthy_cache)
    original = cache_row(dbs, broken)
    args = db_args(dbs, 'nova_api', host='compute1', vif_type='ovs', binding_host='compute1',
                   vif_details=OVS_DETAILS, journal_dir=journal_dir)

    def verify():
        row = cache_row(dbs, broken)
        vifs = json.loads(row['network_info'])
        assert len(vifs) == 1 and vifs[0]['id'] == PORT
        assert vifs[0]['type'] == 'ovs' and vifs[0]['details'] == OVS_DETAILS
        assert vifs[0]['profile'] == {} and vifs[0]['active'] is True
        # Addresses and network stay as they were.
        assert vifs[0]['network'] == json.loads(original['network_info'])[0]['network']
        assert row['updated_at'] != original['updated_at'] and row['deleted'] == 0
        assert cache_row(dbs, healthy)['network_info'] == healthy_cache

    applied = run_full_cycle(ansible, dbs, MODULE, args, TABLES, verify)
    assert applied['method'] == 'db' and 'no API that writes the network info cache' in applied['method_reason']
    assert applied['binding_from'] == 'options'
    assert [entry['instance'] for entry in applied['caches']] == [broken]
    assert applied['caches'][0]['vifs'][0]['defects'] == ['binding_failed', 'migrating_to']
    assert applied['caches'][0]['vifs'][0]['after']['type'] == 'ovs'
    assert any('hard reboot' in warning and broken in warning for warning in applied['warnings'])
    label = 'instance_info_caches/%s' % original['id']
    assert applied['before']['nova:cell1'][label]['network_info'] == original['network_info']
    journal = load_journal(applied['journal'])
    assert journal['status'] == 'committed' and len(journal['entries']) == 1


def test_api_path_rebuilds_from_the_neutron_port(ansible, dbs, cloud, journal_dir, neutron):
    stub, cloud_settings = neutron
    cloud.nova_service('compute1')
    cloud.compute_node('compute1')
    # The cache that makes GET /servers/detail answer 500: a VIF without network.
    broken = cloud.instance(host='compute1', network_info=failed_migration_cache(network=False))
    register_port(stub, broken)
    args = db_args(dbs, 'nova', instance=[broken], cloud=cloud_settings, journal_dir=journal_dir)

    def verify():
        vifs = json.loads(cache_row(dbs, broken)['network_info'])
        assert vifs[0]['type'] == 'ovs' and vifs[0]['details'] == OVS_DETAILS and vifs[0]['profile'] == {}
        assert vifs[0]['ovs_interfaceid'] == PORT and vifs[0]['active'] is True
        network = vifs[0]['network']
        assert network['id'] == NETWORK and network['label'] == 'private' and network['bridge'] == 'br-int'
        assert network['meta']['mtu'] == 1442
        subnet = network['subnets'][0]
        assert subnet['cidr'] == '10.0.0.0/24' and subnet['gateway']['address'] == '10.0.0.1'
        assert [ip['address'] for ip in subnet['ips']] == ['10.0.0.5']
        assert [dns['address'] for dns in subnet['dns']] == ['10.0.0.2']

    applied = run_full_cycle(ansible, dbs, MODULE, args, TABLES, verify)
    assert applied['method'] == 'db' and applied['binding_from'] == 'neutron'
    assert 'binding from Neutron' in applied['msg']
    assert applied['caches'][0]['vifs'][0]['defects'] == ['binding_failed', 'migrating_to', 'no_network']


@pytest.mark.newest_release
def test_guards(ansible, dbs, cloud, journal_dir, neutron):
    stub, cloud_settings = neutron
    cloud.nova_service('compute1')
    cloud.compute_node('compute1')
    cloud.nova_service('compute2')
    cloud.compute_node('compute2')
    broken = cloud.instance(host='compute1', network_info=failed_migration_cache())
    api_args = db_args(dbs, 'nova_api', instance=[broken], cloud=cloud_settings, binding_from='neutron',
                       journal_dir=journal_dir)
    before = snapshot(dbs, TABLES)

    # The port is bound to the migration's destination in Neutron.
    register_port(stub, broken, host='compute2')
    refused = ansible(MODULE, api_args)
    assert_clean_failure(refused, 'bound to compute2')
    assert [guard['guard'] for guard in refused['guards']] == ['port_bound_elsewhere']
    assert refused['guards'][0]['evidence'][0]['neutron']['binding_host'] == 'compute2'

    # Neutron's binding failed too: copying it repairs nothing, not even with force.
    register_port(stub, broken, **{'binding:vif_type': 'binding_failed', 'binding:vif_details': {}})
    refused = ansible(MODULE, dict(api_args, force=True, force_reason='test'))
    assert_clean_failure(refused, 'never overridden')
    assert refused['guards'][0]['guard'] == 'neutron_binding_failed'

    # Neutron still says migrating_to: refused, and force writes the profile without it.
    register_port(stub, broken, **{'binding:profile': {'migrating_to': 'compute2'}})
    refused = ansible(MODULE, api_args)
    assert_clean_failure(refused, 'migrating_to')
    assert refused['guards'][0]['guard'] == 'port_profile_migrating'

    # The port is gone from Neutron.
    stub.REGISTRY['ports'].clear()
    refused = ansible(MODULE, api_args)
    assert_clean_failure(refused, 'not a port of that instance in Neutron')

    # The operator's binding names another host; an unfinished migration; a task in progress.
    db = db_args(dbs, 'nova_api', instance=[broken], vif_type='ovs', binding_host='compute2', journal_dir=journal_dir)
    migration = cloud.migration(broken, 'compute1', 'compute2', status='running')
    dbs.execute('nova', "UPDATE instances SET task_state = 'migrating' WHERE uuid = %s", (broken,))
    before = snapshot(dbs, TABLES)
    refused = ansible(MODULE, db)
    assert sorted(guard['guard'] for guard in refused['guards']) == [
        'instance_task_in_progress', 'migration_in_progress', 'port_bound_elsewhere']
    assert refused['guards'][0]['evidence']
    assert snapshot(dbs, TABLES) == before

    forced = ansible(MODULE, dict(db, force=True, force_reason='verified: the guest runs on compute1'))
    assert not forced.failed and forced.changed, forced['msg']
    assert len(forced['forced_guards']) == 3
    assert load_journal(forced['journal'])['force_reason'] == 'verified: the guest runs on compute1'
    assert json.loads(cache_row(dbs, broken)['network_info'])[0]['type'] == 'ovs'
    assert dbs.query('nova', 'SELECT status FROM migrations WHERE id = %s', (migration,))[0]['status'] == 'running'

    # A VIF without network cannot be rebuilt from the options.
    bare = cloud.instance(host='compute1', network_info=failed_migration_cache(network=False))
    refused = ansible(MODULE, dict(db, instance=[bare], binding_host='compute1'))
    assert_clean_failure(refused, 'only Neutron can rebuild it')

    # An unreadable cache is refused.
    garbled = cloud.instance(host='compute1', network_info='[{"id": "x", "type": "binding_fai')
    refused = ansible(MODULE, dict(db, instance=[garbled], binding_host='compute1'))
    assert_clean_failure(refused, 'is not JSON')
    assert refused['guards'][0]['guard'] == 'cache_unreadable'


@pytest.mark.newest_release
def test_bad_input(ansible, dbs, cloud, journal_dir):
    cloud.nova_service('compute1')
    instance = cloud.instance(host='compute1', network_info=failed_migration_cache())
    before = snapshot(dbs, TABLES)
    base = db_args(dbs, 'nova', journal_dir=journal_dir)
    cases = [
        (dict(instance=['not-a-uuid'], vif_type='ovs', binding_host='compute1'), 'is not a UUID'),
        (dict(instance=[instance], vif_type='binding_failed', binding_host='compute1'), 'is no binding'),
        (dict(instance=[instance], vif_details={'a': 1}), 'need vif_type and binding_host'),
        (dict(instance=[instance], binding_from='options'), 'binding_from=options takes the binding from the options'),
        (dict(instance=[instance], binding_from='neutron', vif_type='ovs', binding_host='compute1'),
         'vif_type and binding_host are for binding_from=options'),
        # The cache has no API that writes it: method keeps its common meaning, and api is refused.
        (dict(instance=[instance], method='api', vif_type='ovs', binding_host='compute1'),
         'method=api cannot express this change with stackmender.openstack.nova_network_info_cache: '
         'Nova has no API that writes the network info cache'),
        (dict(instance=['6c1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b'], vif_type='ovs', binding_host='compute1'),
         'not found in any cell'),
        (dict(instance=[instance], port=['7c1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b'], vif_type='ovs',
              binding_host='compute1'), 'are in no cache'),
        (dict(instance=[instance]), 'configure a cloud (binding_from=neutron reads it from the instances\' Neutron '
                                    'ports) or give vif_type and binding_host (binding_from=options)'),
    ]
    for extra, fragment in cases:
        assert_clean_failure(ansible(MODULE, dict(base, **extra)), fragment)
    no_db = ansible(MODULE, dict(instance=[instance], vif_type='ovs', binding_host='compute1'))
    assert_clean_failure(no_db, 'nova_db (a single cell database) or nova_api_db')
    assert snapshot(dbs, TABLES) == before
