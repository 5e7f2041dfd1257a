"""Registry entries of nova_task_state (see tests/security/module_cases.py).

The scenario: live migrations abandoned when compute1 and compute3 went
down; each instance stays on compute1 in task_state migrating, its migration
holds compute1 in placement and the instance holds compute3. The repair
ends the migrations and gives the holds back to the instances.
"""

import datetime
import json

from tests.security.module_cases import CELLS, ModuleCase, Scenario

NOVA_TABLES = [('nova', table) for table in ('instances', 'instance_extra', 'migrations')]
CELL0_TABLES = [('nova_cell0', 'instances')]
PLACEMENT_TABLES = [('placement', table) for table in ('allocations', 'consumers', 'resource_providers')]
TABLES = NOVA_TABLES + CELL0_TABLES + PLACEMENT_TABLES
FLAVOR = (('VCPU', 1), ('MEMORY_MB', 512), ('DISK_GB', 1))


def _an_hour_ago():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0) - datetime.timedelta(hours=1)


def _host(ctx, name, up):
    """The resource provider uuid of a compute host, created on first use."""
    cloud = ctx.cloud
    if not cloud.rows('nova', 'services', host=name):
        return cloud.compute_host(name, up=up)['rp_uuid']
    return ctx.dbs.query('nova', 'SELECT uuid FROM compute_nodes WHERE host = %s AND deleted = 0', (name,))[0]['uuid']


def _stuck(ctx):
    cloud, dbs = ctx.cloud, ctx.dbs
    source = _host(ctx, 'compute1', False)
    dest = _host(ctx, 'compute3', False)
    when = _an_hour_ago()
    instance = cloud.instance(host='compute1', task_state='migrating', updated_at=when)
    migration = cloud.migration(instance, 'compute1', 'compute3', status='running', updated_at=when)
    migration_uuid = dbs.query('nova', 'SELECT uuid FROM migrations WHERE id = %s', (migration,))[0]['uuid']
    dbs.execute('nova', 'UPDATE instance_extra SET migration_context = %s WHERE instance_uuid = %s',
                (json.dumps({'nova_object.name': 'MigrationContext', 'nova_object.data': {'migration_id': migration}}),
                 instance))
    cloud.consumer(migration_uuid, consumer_type='MIGRATION')
    for name, used in FLAVOR:
        cloud.allocation(migration_uuid, source, name, used)
    cloud.instance_allocations(instance, dest)
    return instance, migration


def build_nova_task_state(ctx, count=2):
    stuck = [_stuck(ctx) for _number in range(count)]
    instances = [instance for instance, _migration in stuck]
    migrations = [migration for _instance, migration in stuck]

    def verify():
        rows = ctx.dbs.query('nova', 'SELECT status FROM migrations WHERE id IN (%s)' % ', '.join(['%s'] * count),
                             migrations)
        assert [row['status'] for row in rows] == ['error'] * count
        rows = ctx.dbs.query('nova', 'SELECT task_state FROM instances WHERE uuid IN (%s)'
                             % ', '.join(['%s'] * count), instances)
        assert [row['task_state'] for row in rows] == [None] * count

    return Scenario(args=dict(instance=instances, method='db'), databases=('nova_api', 'placement'), tables=TABLES,
                    verify=verify)


def refuse_nova_task_state(ctx):
    """A finished resize waiting for the user to confirm it: nothing is stuck."""
    cloud = ctx.cloud
    _host(ctx, 'compute1', False)
    _host(ctx, 'compute3', False)
    when = _an_hour_ago()
    instance = cloud.instance(host='compute3', vm_state='resized', updated_at=when)
    cloud.migration(instance, 'compute1', 'compute3', status='finished', migration_type='resize', updated_at=when)
    return Scenario(args=dict(instance=[instance], method='db'), databases=('nova_api', 'placement'), tables=TABLES)


NOVA_READ = ['instances', 'migrations', 'instance_extra', 'services', 'compute_nodes']
NOVA_WRITTEN = ['instances', 'migrations', 'instance_extra']
PLACEMENT_READ = ['allocations', 'consumers', 'resource_providers', 'resource_classes']

CASES = [
    ModuleCase(
        name='nova_task_state', module='nova_task_state',
        build=build_nova_task_state, refusal=refuse_nova_task_state,
        grants={'nova': {'SELECT': NOVA_READ, 'UPDATE': NOVA_WRITTEN},
                'placement': {'SELECT': PLACEMENT_READ, 'UPDATE': ['allocations', 'consumers', 'resource_providers'],
                              'DELETE': ['allocations', 'consumers']},
                **CELLS},
        # journal_undo re-inserts the deleted allocations and consumers.
        undo_grants={'placement': {'INSERT': ['allocations', 'consumers']}},
        hostile_options={'instance': 'uuid_list', 'migration': 'uuid_list', 'force_reason': 'free_text'},
    ),
]
