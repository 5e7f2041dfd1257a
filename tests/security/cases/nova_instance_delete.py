"""Registry entries of nova_instance_delete (see tests/security/module_cases.py)."""

import uuid

from tests.security.module_cases import ModuleCase, Scenario

CELL_TABLES = ['instances', 'instance_extra', 'instance_info_caches', 'instance_metadata', 'instance_system_metadata',
               'instance_faults', 'block_device_mapping', 'migrations', 'virtual_interfaces', 'instance_id_mappings',
               'security_group_instance_association', 'console_auth_tokens', 'tags']
# What every run reads in each cell database (cell0 included): the instance, its child tables, the services.
CELL_READS = sorted(CELL_TABLES + ['services'])
SOFT_DELETED = ['instances', 'instance_extra', 'instance_info_caches', 'instance_metadata', 'instance_system_metadata',
                'instance_faults', 'block_device_mapping', 'migrations', 'virtual_interfaces', 'instance_id_mappings',
                'security_group_instance_association']
PLACEMENT_READS = ['allocations', 'consumers', 'resource_providers', 'resource_classes']
CINDER_TABLES = ['volumes', 'volume_attachment', 'volume_admin_metadata', 'attachment_specs']
ACTION_TABLES = ['instance_actions', 'instance_actions_events']
API_PURGED = ['instance_mappings', 'request_specs', 'instance_group_member']

TABLES = ([('nova', table) for table in CELL_TABLES + ACTION_TABLES] + [('nova_cell0', 'instances')]
          + [('nova_api', table) for table in API_PURGED] + [('placement', 'allocations'), ('placement', 'consumers')]
          + [('cinder', table) for table in CINDER_TABLES])


def _dead_compute(cloud, host):
    if not cloud.rows('nova', 'services', host=host):
        cloud.compute_host(host, up=False)
    return cloud.row('nova', 'compute_nodes', host=host)['uuid']


def _stranded(ctx, host='compute9'):
    """An instance on a dead compute with metadata, a fault, a finished migration, an action, a console token,
    a tag, its allocations and an attached volume with attachment specs."""
    cloud = ctx.cloud
    node = _dead_compute(cloud, host)
    instance = cloud.instance(host=host, task_state='deleting')
    cloud.instance_allocations(instance, node)
    stamp = cloud._timestamps({})['created_at']
    cloud.insert('nova', 'instance_metadata', cloud._timestamps({'instance_uuid': instance, 'key': 'k', 'value': 'v'}))
    cloud.insert('nova', 'instance_system_metadata', cloud._timestamps({'instance_uuid': instance, 'key': 'k',
                                                                        'value': 'v'}))
    cloud.insert('nova', 'instance_faults', cloud._timestamps({'instance_uuid': instance, 'code': 500,
                                                               'message': 'lost', 'details': '', 'host': host}))
    action = cloud.insert('nova', 'instance_actions', cloud._timestamps({
        'instance_uuid': instance, 'action': 'create', 'request_id': 'req-%s' % instance[:8], 'user_id': cloud.user_id,
        'project_id': cloud.project_id, 'start_time': stamp}))
    cloud.insert('nova', 'instance_actions_events', cloud._timestamps({
        'action_id': action, 'event': 'compute_build_and_run_instance', 'result': 'Success', 'host': host}))
    cloud.insert('nova', 'console_auth_tokens', {'created_at': stamp, 'token_hash': uuid.uuid4().hex * 2,
                                                 'console_type': 'novnc', 'host': '192.0.2.10', 'port': 5900,
                                                 'instance_uuid': instance, 'expires': 2000000000})
    cloud.insert('nova', 'tags', {'resource_id': instance, 'tag': 'stranded'})
    attached = cloud.attach_volume(instance)
    cloud.insert('cinder', 'attachment_specs', cloud._timestamps({'attachment_id': attached['attachment_id'],
                                                                  'key': 'mode', 'value': 'rw'}))
    cloud.migration(instance, host, host, status='completed', migration_type='migration')
    return instance, attached


def build_nova_instance_delete(ctx, purge=False):
    instance, attached = _stranded(ctx)

    def verify():
        rows = ctx.dbs.query('nova', 'SELECT id, deleted FROM instances WHERE uuid = %s', (instance,))
        if purge:
            assert rows == []
        else:
            assert [row['deleted'] for row in rows] == [row['id'] for row in rows] and rows
        volume = ctx.dbs.query('cinder', 'SELECT status FROM volumes WHERE id = %s', (attached['volume_id'],))
        assert [row['status'] for row in volume] == ['in-use' if purge else 'available']

    args = dict(instance=[instance], method='db')
    databases = ('nova_api', 'placement', 'cinder')
    if purge:
        args['purge'] = True
        databases = ('nova_api', 'placement')
    return Scenario(args=args, databases=databases, tables=TABLES, verify=verify)


def build_nova_instance_purge(ctx):
    return build_nova_instance_delete(ctx, purge=True)


def refuse_nova_instance_delete(ctx):
    """The instance's nova-compute is up: Nova's API must delete it."""
    cloud = ctx.cloud
    if not cloud.rows('nova', 'services', host='compute8'):
        cloud.compute_host('compute8')
    instance = cloud.instance(host='compute8')
    return Scenario(args=dict(instance=[instance], method='db'), databases=('nova_api', 'placement', 'cinder'),
                    tables=TABLES)


CASES = [
    ModuleCase(
        name='nova_instance_delete', module='nova_instance_delete',
        build=build_nova_instance_delete, refusal=refuse_nova_instance_delete,
        grants={'nova': {'SELECT': CELL_READS, 'UPDATE': SOFT_DELETED, 'DELETE': ['console_auth_tokens', 'tags']},
                'nova_api': {'SELECT': ['cell_mappings', 'instance_mappings'], 'UPDATE': ['instance_mappings']},
                'placement': {'SELECT': PLACEMENT_READS, 'DELETE': ['allocations', 'consumers']},
                'cinder': {'SELECT': CINDER_TABLES, 'UPDATE': CINDER_TABLES}},
        undo_grants={'nova': {'INSERT': ['console_auth_tokens', 'tags']},
                     'placement': {'INSERT': ['allocations', 'consumers']}},
        hostile_options={'instance': 'uuid_list', 'force_reason': 'free_text'},
        # The lab-like instance has no security group association and no virtual interface (no network).
        unexercised=(('nova', 'UPDATE', 'security_group_instance_association'),
                     ('nova', 'UPDATE', 'virtual_interfaces')),
    ),
    ModuleCase(
        name='nova_instance_delete:purge', module='nova_instance_delete',
        build=build_nova_instance_purge, refusal=refuse_nova_instance_delete,
        grants={'nova': {'SELECT': sorted(CELL_READS + ACTION_TABLES + ['share_mapping']),
                         'DELETE': sorted(CELL_TABLES + ACTION_TABLES)},
                'nova_api': {'SELECT': ['build_requests', 'cell_mappings'] + API_PURGED, 'DELETE': API_PURGED},
                'placement': {'SELECT': PLACEMENT_READS, 'DELETE': ['allocations', 'consumers']}},
        undo_grants={'nova': {'INSERT': sorted(CELL_TABLES + ACTION_TABLES)},
                     'nova_api': {'INSERT': API_PURGED},
                     'placement': {'INSERT': ['allocations', 'consumers']}},
        hostile_options={'instance': 'uuid_list'},
        # share_mapping is only read to refuse a purge that its rows would block; without the grant the
        # check is skipped and the foreign key stops the delete. No network, no group membership here.
        # build_requests is read once the instance is in no cell (the re-run), to tell a purged
        # instance from one still being built.
        unexercised=(('nova', 'SELECT', 'share_mapping'),
                     ('nova_api', 'SELECT', 'build_requests'),
                     ('nova', 'DELETE', 'security_group_instance_association'),
                     ('nova', 'DELETE', 'virtual_interfaces'),
                     ('nova_api', 'DELETE', 'instance_group_member')),
    ),
]
