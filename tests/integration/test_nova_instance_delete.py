"""nova_instance_delete (database path) against the real Nova/Placement/Cinder schemas of every release.

The incident: compute1 died with instances on it, and they must go. Each full
case runs check mode, apply (verified with independent SQL), a re-run
(changed: false) and the undo from the journal.
"""

import uuid as uuid_module

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import assert_clean_failure, db_args, one, run_full_cycle, snapshot

MODULE = 'nova_instance_delete'
CELL_TABLES = ('instances', 'instance_extra', 'instance_info_caches', 'instance_metadata', 'instance_system_metadata',
               'instance_faults', 'block_device_mapping', 'migrations', 'virtual_interfaces', 'instance_id_mappings',
               'security_group_instance_association', 'console_auth_tokens', 'instance_actions',
               'instance_actions_events')
NOVA_TABLES = [('nova', table) for table in CELL_TABLES]
API_TABLES = [('nova_api', table) for table in ('instance_mappings', 'request_specs', 'instance_group_member')]
PLACEMENT_TABLES = [('placement', table) for table in ('allocations', 'consumers', 'resource_providers')]
CINDER_TABLES = [('cinder', table) for table in ('volumes', 'volume_attachment', 'volume_admin_metadata',
                                                 'attachment_specs')]
ALL_TABLES = NOVA_TABLES + [('nova_cell0', 'instances')] + API_TABLES + PLACEMENT_TABLES + CINDER_TABLES


def count(dbs, logical, sql, *params):
    return len(dbs.query(logical, sql, params))


def stranded(cloud, host='compute1', **columns):
    """An instance on the dead compute1 with the rows a real one has: metadata, a fault, an action, a console
    token, its allocations there and an attached volume."""
    instance = cloud.instance(host=host, **columns)
    node = one(cloud.db, 'nova', 'SELECT uuid FROM compute_nodes WHERE host = %s AND deleted = 0', host)['uuid']
    cloud.instance_allocations(instance, node)
    cloud.insert('nova', 'instance_metadata', cloud._timestamps({'instance_uuid': instance, 'key': 'role',
                                                                 'value': 'db'}))
    cloud.insert('nova', 'instance_system_metadata', cloud._timestamps({'instance_uuid': instance,
                                                                        'key': 'image_os', 'value': 'linux'}))
    cloud.insert('nova', 'instance_faults', cloud._timestamps({'instance_uuid': instance, 'code': 500,
                                                               'message': 'host lost', 'details': '', 'host': host}))
    action = cloud.insert('nova', 'instance_actions', cloud._timestamps({
        'instance_uuid': instance, 'action': 'create', 'request_id': 'req-1', 'user_id': cloud.user_id,
        'project_id': cloud.project_id, 'start_time': cloud._timestamps({})['created_at']}))
    cloud.insert('nova', 'instance_actions_events', cloud._timestamps({
        'action_id': action, 'event': 'compute_build_and_run_instance', 'result': 'Success', 'host': host}))
    cloud.insert('nova', 'console_auth_tokens', {
        'created_at': cloud._timestamps({})['created_at'], 'token_hash': uuid_module.uuid4().hex * 2,
        'console_type': 'novnc',
        'host': '192.0.2.10', 'port': 5900, 'instance_uuid': instance, 'expires': 2000000000})
    for tag in ('prod', 'db-tier'):
        cloud.db.execute('nova', 'INSERT INTO tags (resource_id, tag) VALUES (%s, %s)', (instance, tag))
    return instance


def tags(dbs, *uuids):
    """{(instance, tag)} of the instances (the tags table has no id: a snapshot cannot order it)."""
    rows = dbs.query('nova', 'SELECT resource_id, tag FROM tags WHERE resource_id IN (%s)'
                     % ', '.join(['%s'] * len(uuids)), uuids)
    return set((row['resource_id'], row['tag']) for row in rows)


def deleted_at(dbs, table, column, uuid):
    return [(row['deleted'] == row['id'], row['deleted_at'] is not None)
            for row in dbs.query('nova', 'SELECT id, deleted, deleted_at FROM `%s` WHERE `%s` = %%s' % (table, column),
                                 (uuid,))]


def test_full_cycle_soft_deletes_the_instance_like_nova_with_placement_and_cinder(ansible, dbs, cloud, journal_dir):
    hosts = cloud.compute_host('compute1', up=False), cloud.compute_host('compute2')
    instance = stranded(cloud, task_state='deleting', vm_state='active')
    attached = cloud.attach_volume(instance)
    cloud.insert('cinder', 'attachment_specs', cloud._timestamps({'attachment_id': attached['attachment_id'],
                                                                  'key': 'mode', 'value': 'rw'}))
    # A multiattach volume the bystander keeps using stays in-use.
    bystander = stranded(cloud, host='compute2')
    shared = cloud.attach_volume(bystander, multiattach=True)
    shared_attachment = cloud.attachment(shared['volume_id'], instance, 'compute1', attached_mode=None)
    cloud.bdm(instance, shared['volume_id'], attachment_id=shared_attachment, device_name='/dev/vdc',
              delete_on_termination=True)
    old_bdm = cloud.bdm(instance, None, source_type='blank', destination_type='local', device_name='/dev/vdd',
                        deleted=True, deleted_at='2026-01-01 00:00:00')
    finished = cloud.migration(instance, 'compute2', 'compute1', status='completed', migration_type='migration')
    args = db_args(dbs, 'nova_api', 'placement', 'cinder', instance=[instance], method='db', journal_dir=journal_dir)
    tagged = tags(dbs, instance, bystander)
    assert len(tagged) == 4

    def verify():
        # instance_destroy deletes the tags of the instance; the bystander keeps its own.
        assert tags(dbs, instance, bystander) == set((uuid, tag) for uuid, tag in tagged if uuid == bystander)
        row = one(dbs, 'nova', 'SELECT * FROM instances WHERE uuid = %s', instance)
        assert (row['deleted'], row['vm_state'], row['task_state'], row['progress']) == (row['id'], 'deleted', None, 0)
        assert row['deleted_at'] is not None and row['terminated_at'] is not None
        for table, column in (('instance_extra', 'instance_uuid'), ('instance_info_caches', 'instance_uuid'),
                              ('instance_metadata', 'instance_uuid'), ('instance_system_metadata', 'instance_uuid'),
                              ('instance_faults', 'instance_uuid'), ('block_device_mapping', 'instance_uuid'),
                              ('migrations', 'instance_uuid'), ('instance_id_mappings', 'uuid')):
            marks = deleted_at(dbs, table, column, instance)
            assert marks and all(mark == (True, True) for mark in marks), (table, marks)
        assert str(one(dbs, 'nova', 'SELECT deleted_at FROM block_device_mapping WHERE id = %s',
                       old_bdm)['deleted_at']) == '2026-01-01 00:00:00', 'an already deleted row was rewritten'
        assert one(dbs, 'nova', 'SELECT deleted FROM migrations WHERE id = %s', finished)['deleted'] == finished
        # Kept by Nova on purpose; tokens are deleted.
        assert count(dbs, 'nova', 'SELECT id FROM instance_actions WHERE instance_uuid = %s AND deleted = 0',
                     instance) == 1
        assert count(dbs, 'nova', 'SELECT id FROM console_auth_tokens WHERE instance_uuid = %s', instance) == 0
        assert one(dbs, 'nova_api', 'SELECT queued_for_delete FROM instance_mappings WHERE instance_uuid = %s',
                   instance)['queued_for_delete'] == 1
        assert count(dbs, 'nova_api', 'SELECT id FROM request_specs WHERE instance_uuid = %s', instance) == 1
        assert count(dbs, 'placement', 'SELECT id FROM allocations WHERE consumer_id = %s', instance) == 0
        assert count(dbs, 'placement', 'SELECT id FROM consumers WHERE uuid = %s', instance) == 0
        assert count(dbs, 'placement', 'SELECT id FROM allocations WHERE consumer_id = %s', bystander) == 3
        attachment = one(dbs, 'cinder', 'SELECT * FROM volume_attachment WHERE id = %s', attached['attachment_id'])
        assert (attachment['deleted'], attachment['attach_status']) == (1, 'detached')
        assert attachment['detach_time'] is not None
        assert one(dbs, 'cinder', 'SELECT deleted FROM attachment_specs WHERE attachment_id = %s',
                   attached['attachment_id'])['deleted'] == 1
        volume = one(dbs, 'cinder', 'SELECT status, attach_status FROM volumes WHERE id = %s', attached['volume_id'])
        assert (volume['status'], volume['attach_status']) == ('available', 'detached')
        assert count(dbs, 'cinder', "SELECT id FROM volume_admin_metadata WHERE volume_id = %s AND `key` = "
                                    "'attached_mode' AND deleted = 0", attached['volume_id']) == 0
        volume = one(dbs, 'cinder', 'SELECT status, attach_status FROM volumes WHERE id = %s', shared['volume_id'])
        assert (volume['status'], volume['attach_status']) == ('in-use', 'attached')
        assert one(dbs, 'cinder', 'SELECT deleted FROM volume_attachment WHERE id = %s',
                   shared['attachment_id'])['deleted'] == 0
        assert one(dbs, 'nova', 'SELECT deleted FROM instances WHERE uuid = %s', bystander)['deleted'] == 0

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert applied['method'] == 'db' and applied['method_reason'] == 'requested'
    assert applied['instances'] == [dict(instance=instance, cell='nova:cell1', host='compute1', vm_state='active',
                                         task_state='deleting', action='soft-delete')]
    steps = [(step['database'], step['table'], step['action']) for step in applied['plan']]
    assert steps[0] == ('nova:cell1', 'instances', 'update')
    assert ('nova:cell1', 'console_auth_tokens', 'delete') in steps
    assert ('nova:cell1', 'tags', 'delete') in steps
    tag_step = [step for step in applied['plan'] if step['table'] == 'tags'][0]
    assert tag_step['rows'] == 2 and 'instance_destroy' in tag_step['why']
    # The undo of run_full_cycle put them back.
    assert tags(dbs, instance, bystander) == tagged
    journal = load_journal(applied['journal'])
    journaled = [entry['key']['tag'] for entry in journal['entries'] if entry['table'] == 'tags']
    assert sorted(journaled) == ['db-tier', 'prod']
    assert ('nova_api_db', 'instance_mappings', 'update') in steps
    assert steps.index(('placement_db', 'allocations', 'delete')) < steps.index(('placement_db', 'consumers', 'delete'))
    assert not [step for step in steps if step[1] in ('instance_actions', 'request_specs', 'resource_providers')]
    warnings = ' '.join(applied['warnings'])
    assert 'delete_on_termination' in warnings and shared['volume_id'] in warnings and 'Neutron ports' in warnings
    journal = load_journal(applied['journal'])
    assert set(journal['commits']) == {'nova:cell1', 'nova_api_db', 'placement_db', 'cinder_db'}
    assert 'connection_info' not in open(applied['journal']).read()
    assert hosts[0]['rp_uuid']


def test_full_cycle_purge_deletes_every_row_of_the_instance(ansible, dbs, cloud, journal_dir):
    cloud.compute_host('compute1', up=False)
    instance = stranded(cloud, vm_state='error')
    already = stranded(cloud)
    cloud.destroy_instance(already)
    bystander = stranded(cloud)
    args = db_args(dbs, 'nova_api', 'placement', instance=[instance, already], purge=True, journal_dir=journal_dir)
    tagged = tags(dbs, instance, already, bystander)

    def verify():
        assert tags(dbs, instance, already, bystander) == set(pair for pair in tagged if pair[0] == bystander)
        for table in CELL_TABLES:
            column = {'instance_id_mappings': 'uuid', 'instances': 'uuid'}.get(table, 'instance_uuid')
            if table == 'instance_actions_events':
                continue
            for uuid in (instance, already):
                assert count(dbs, 'nova', 'SELECT * FROM `%s` WHERE `%s` = %%s' % (table, column), uuid) == 0, table
            if table not in ('migrations', 'virtual_interfaces', 'security_group_instance_association'):
                assert count(dbs, 'nova', 'SELECT * FROM `%s` WHERE `%s` = %%s' % (table, column), bystander), table
        assert count(dbs, 'nova', 'SELECT * FROM instance_actions_events') == 1
        for table in ('instance_mappings', 'request_specs'):
            assert [row['instance_uuid'] for row in dbs.query('nova_api', 'SELECT instance_uuid FROM `%s`' % table)] \
                == [bystander], table
        assert count(dbs, 'placement', 'SELECT id FROM consumers WHERE uuid IN (%s, %s)', instance, already) == 0

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert applied['method'] == 'db' and 'purge' in applied['method_reason']
    assert [(entry['instance'], entry['action']) for entry in applied['instances']] == [
        (instance, 'purge'), (already, 'purge')]
    steps = [(step['table'], step['action']) for step in applied['plan'] if step['database'] == 'nova:cell1']
    assert steps[0] == ('instance_actions_events', 'delete') and steps[-1] == ('instances', 'delete')
    assert ('tags', 'delete') in steps and tags(dbs, instance, already, bystander) == tagged
    assert set(action for _table, action in steps) == {'delete'}


@pytest.mark.newest_release
def test_guards_refuse_with_evidence_and_force_overrides(ansible, dbs, cloud, journal_dir):
    cloud.compute_host('compute1')
    cloud.compute_host('compute2', up=False)
    running = stranded(cloud)
    busy = stranded(cloud, host='compute2', task_state='rebuilding')
    migrating = stranded(cloud, host='compute2')
    cloud.migration(migrating, 'compute2', 'compute1', status='running')
    protected = stranded(cloud, host='compute2', disable_terminate=True)
    original = snapshot(dbs, ALL_TABLES)
    # One batch, every guard at once, each with its evidence.
    # compute1 reported when it was built; a long service_down_time keeps it up however slow this run is.
    refused = ansible(MODULE, db_args(dbs, 'nova_api', instance=[running, busy, migrating, protected], method='db',
                                      service_down_time=1800, journal_dir=journal_dir))
    assert_clean_failure(refused, 'delete instance %s through the API (method=api)' % running)
    for fragment in ('task_state rebuilding', 'unfinished migration', 'disable_terminate', 'Nothing was changed'):
        assert fragment in refused['msg']
    assert [entry['guard'] for entry in refused['guards']] == [
        'compute_service_up', 'task_in_progress', 'migration_in_progress', 'termination_disabled']
    service, instance = refused['guards'][0]['evidence']
    assert (service['host'], service['up'], instance['uuid']) == ('compute1', True, running)
    assert refused['guards'][2]['evidence'][0]['status'] == 'running'
    assert snapshot(dbs, ALL_TABLES) == original

    forced = ansible(MODULE, db_args(dbs, 'nova_api', instance=[busy], method='db', force=True,
                                     force_reason='rebuild abandoned with its host', journal_dir=journal_dir))
    assert not forced.failed and forced.changed, forced['msg']
    assert [entry['guard'] for entry in forced['forced_guards']] == ['task_in_progress']
    assert load_journal(forced['journal'])['force_reason'] == 'rebuild abandoned with its host'
    assert one(dbs, 'nova', 'SELECT vm_state FROM instances WHERE uuid = %s', busy)['vm_state'] == 'deleted'


@pytest.mark.newest_release
def test_cell0_and_build_requests_are_never_written_even_with_force(ansible, dbs, cloud, journal_dir):
    failed_build = cloud.instance(host=None, cell='cell0', vm_state='error', root_bdm=False)
    scheduling = cloud.instance(host=None, root_bdm=False)
    dbs.execute('nova', 'DELETE FROM instance_extra WHERE instance_uuid = %s', (scheduling,))
    dbs.execute('nova', 'DELETE FROM instance_info_caches WHERE instance_uuid = %s', (scheduling,))
    dbs.execute('nova', 'DELETE FROM instance_id_mappings WHERE uuid = %s', (scheduling,))
    dbs.execute('nova', 'DELETE FROM instances WHERE uuid = %s', (scheduling,))
    dbs.execute('nova_api', 'UPDATE instance_mappings SET cell_id = NULL WHERE instance_uuid = %s', (scheduling,))
    original = snapshot(dbs, ALL_TABLES)
    for uuid, guard, fragment in ((failed_build, 'cell0', 'delete it through the API (method=api)'),
                                  (scheduling, 'build_request', 'still a build request')):
        refused = ansible(MODULE, db_args(dbs, 'nova_api', instance=[uuid], method='db', force=True,
                                          force_reason='test', journal_dir=journal_dir))
        assert_clean_failure(refused, fragment)
        assert 'never overridden' in refused['msg']
        assert [entry['guard'] for entry in refused['guards']] == [guard]
    assert snapshot(dbs, ALL_TABLES) == original


@pytest.mark.newest_release
def test_bad_input_fails_clearly_and_writes_nothing(ansible, dbs, cloud, journal_dir):
    cloud.compute_host('compute1', up=False)
    instance = stranded(cloud)
    unknown = '0d1e2f30-4152-4637-8899-aabbccddeeff'
    original = snapshot(dbs, ALL_TABLES)
    cases = (
        (dict(instance=['not-a-uuid'], method='db'), "instance: 'not-a-uuid' is not a UUID"),
        (dict(instance=[instance, unknown], method='db'),
         'nothing to delete: instance %s is in no cell and nova_api has no mapping' % unknown),
        (dict(instance=[instance], method='api', purge=True), 'purge deletes database rows'),
        (dict(instance=[instance], method='db', timeout=0), 'timeout must be a positive number'),
    )
    for extra, fragment in cases:
        result = ansible(MODULE, db_args(dbs, 'nova_api', journal_dir=journal_dir, **extra))
        assert_clean_failure(result, fragment)
    no_database = ansible(MODULE, dict(instance=[instance], method='db'))
    assert_clean_failure(no_database, 'needs nova_db')
    assert snapshot(dbs, ALL_TABLES) == original
    # A single cell without nova_api: the result says what is left to do.
    single = ansible(MODULE, db_args(dbs, 'nova', instance=[instance], journal_dir=journal_dir))
    assert not single.failed and single.changed and single['method'] == 'db'
    warnings = ' '.join(single['warnings'])
    assert 'placement was not given' in warnings and 'queued_for_delete' in warnings
