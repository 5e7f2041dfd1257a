"""Registry entry of nova_instance_host: instances left on a dead compute host."""

import json
import uuid

from tests.integration.helpers import CINDER_TABLES, NOVA_TABLES
from tests.security.module_cases import CELL0_TABLES, ModuleCase, Scenario

PLACEMENT_TABLES = [('placement', table) for table in ('allocations', 'consumers', 'resource_providers')]
TABLES = NOVA_TABLES + CELL0_TABLES + CINDER_TABLES + PLACEMENT_TABLES + [('nova', 'instance_extra'),
                                                                          ('nova', 'migrations')]
MIGRATION_CONTEXT = json.dumps({'nova_object.name': 'MigrationContext', 'nova_object.namespace': 'nova',
                                'nova_object.version': '1.2', 'nova_object.data': {'migration_id': 1}})
NOVA_READS = ['instances', 'instance_extra', 'migrations', 'services', 'compute_nodes', 'pci_devices',
              'block_device_mapping']


# Services built "up" report once, when the scenario is built; on a loaded machine a run can come
# more than a minute later. 1800 s still counts the hour-old reports of services built down as down.
def _hosts(cloud):
    # Hosts of their own, so that the scenario can be built more than once on the same databases.
    suffix = uuid.uuid4().hex[:6]
    dead = dict(cloud.compute_host('dead-%s' % suffix, up=False), host='dead-%s' % suffix)
    return dead, dict(cloud.compute_host('spare-%s' % suffix), host='spare-%s' % suffix)


def build_nova_instance_host(ctx):
    cloud = ctx.cloud
    dead, spare = _hosts(cloud)
    instances = []
    for _number in range(2):
        instance = cloud.instance(host=dead['host'], task_state='rebuilding')
        cloud.instance_allocations(instance, dead['rp_uuid'])
        instances.append(instance)
    cloud.migration(instances[0], dead['host'], spare['host'], status='accepted', migration_type='evacuation')
    # The abandoned evacuation's migration context, which the move clears (the UPDATE of instance_extra).
    ctx.dbs.execute('nova', 'UPDATE instance_extra SET migration_context = %s WHERE instance_uuid = %s',
                    (MIGRATION_CONTEXT, instances[0]))
    cloud.attach_volume(instances[1])

    def verify():
        rows = ctx.dbs.query('nova', 'SELECT host FROM instances WHERE uuid IN (%s, %s)', instances)
        assert [row['host'] for row in rows] == [spare['host']] * 2

    return Scenario(args=dict(instance=instances, host=spare['host'], method='db', service_down_time=1800),
                    databases=('nova_api', 'placement', 'cinder'), tables=TABLES, verify=verify)


def refuse_nova_instance_host(ctx):
    """The source compute service still reports: the instance may be running there."""
    cloud = ctx.cloud
    suffix = uuid.uuid4().hex[:6]
    alive = cloud.compute_host('alive-%s' % suffix)
    cloud.compute_host('spare-%s' % suffix)
    instance = cloud.instance(host='alive-%s' % suffix)
    cloud.instance_allocations(instance, alive['rp_uuid'])
    return Scenario(args=dict(instance=[instance], host='spare-%s' % suffix, method='db', service_down_time=1800),
                    databases=('nova_api', 'placement', 'cinder'), tables=TABLES)


CASES = [
    ModuleCase(
        name='nova_instance_host', module='nova_instance_host',
        build=build_nova_instance_host, refusal=refuse_nova_instance_host,
        grants={'nova': {'SELECT': NOVA_READS, 'UPDATE': ['instances', 'instance_extra', 'migrations']},
                'nova_api': {'SELECT': ['cell_mappings', 'host_mappings']},
                'placement': {'SELECT': ['allocations', 'consumers', 'resource_providers', 'resource_classes'],
                              'UPDATE': ['allocations', 'consumers', 'resource_providers']},
                'cinder': {'SELECT': ['volume_attachment'], 'UPDATE': ['volume_attachment']}},
        undo_grants={},
        api=True,
        hostile_options={'instance': 'uuid_list', 'host': 'host', 'from_host': 'host', 'force_reason': 'free_text'},
    ),
]
