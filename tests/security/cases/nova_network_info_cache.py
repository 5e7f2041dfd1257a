"""Registry entries of nova_network_info_cache (see tests/security/module_cases.py).

The scenario: live migrations of two instances from compute1 to compute2
failed half-way; each cache keeps a VIF whose binding failed and whose profile
still says migrating_to compute2. The repair writes the binding the operator
confirms (ovs on compute1) into both caches.
"""

import json

from tests.harness.builder import CloudBuilder
from tests.security.module_cases import CELLS, ModuleCase, Scenario

TABLES = [('nova', 'instance_info_caches'), ('nova', 'instances'), ('nova_cell0', 'instances')]
DETAILS = {'port_filter': True, 'connectivity': 'l2', 'bridge_name': 'br-int', 'datapath_type': 'system'}


def _compute(ctx, host):
    if not ctx.cloud.rows('nova', 'services', host=host):
        ctx.cloud.nova_service(host)


def _broken_instance(ctx, **columns):
    _compute(ctx, 'compute1')
    cache = CloudBuilder.network_info(vif_type='binding_failed', profile={'migrating_to': 'compute2'})
    return ctx.cloud.instance(host='compute1', network_info=cache, **columns)


def build_nova_network_info_cache(ctx):
    instances = [_broken_instance(ctx) for _number in range(2)]

    def verify():
        rows = ctx.dbs.query('nova', 'SELECT network_info FROM instance_info_caches WHERE instance_uuid IN (%s, %s)',
                             instances)
        assert [json.loads(row['network_info'])[0]['type'] for row in rows] == ['ovs', 'ovs']

    return Scenario(args=dict(instance=instances, binding_from='options', vif_type='ovs', binding_host='compute1',
                              vif_details=DETAILS),
                    databases=('nova_api',), tables=TABLES, verify=verify)


def refuse_nova_network_info_cache(ctx):
    """Nova is still working on the instance (task_state set): its cache may be rewritten right now."""
    instance = _broken_instance(ctx, task_state='migrating')
    return Scenario(args=dict(instance=[instance], binding_from='options', vif_type='ovs', binding_host='compute1'),
                    databases=('nova_api',), tables=TABLES)


CASES = [
    ModuleCase(
        name='nova_network_info_cache', module='nova_network_info_cache',
        build=build_nova_network_info_cache, refusal=refuse_nova_network_info_cache,
        grants={'nova': {'SELECT': ['instances', 'instance_info_caches', 'migrations', 'services'],
                         'UPDATE': ['instance_info_caches']},
                **CELLS},
        undo_grants={},
        api=True,
        # The cache has no API that writes it: the API is where the binding is read from (Neutron's ports).
        api_args=lambda args: dict(dict((key, value) for key, value in args.items()
                                        if key not in ('vif_type', 'binding_host', 'vif_details')),
                                   binding_from='neutron'),
        hostile_options={'instance': 'uuid_list', 'port': 'uuid_list', 'binding_host': 'host',
                         'force_reason': 'free_text'},
    ),
]
