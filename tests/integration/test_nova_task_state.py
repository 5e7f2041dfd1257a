"""nova_task_state (database path) against the real Nova/Placement schemas of every release.

The incident: computes restarted in the middle of moves; instances stay in a
task and their migrations stay unfinished, with placement holding resources
for them. Every full case is verified with independent SQL.
"""

import datetime
import json
import os

import pytest
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import (
    allocations,
    assert_clean_failure,
    db_args,
    generation,
    one,
    run_full_cycle,
    snapshot,
)

MODULE = 'nova_task_state'
NOVA_TABLES = [('nova', table) for table in ('instances', 'instance_extra', 'migrations')]
CELL0_TABLES = [('nova_cell0', 'instances')]
PLACEMENT_TABLES = [('placement', table) for table in ('allocations', 'consumers', 'resource_providers')]
ALL_TABLES = NOVA_TABLES + CELL0_TABLES + PLACEMENT_TABLES
FLAVOR = (('VCPU', 1), ('MEMORY_MB', 512), ('DISK_GB', 1))
AN_HOUR_AGO = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0) - \
    datetime.timedelta(hours=1)


def context(migration_id):
    return json.dumps({'nova_object.name': 'MigrationContext', 'nova_object.namespace': 'nova',
                       'nova_object.version': '1.2', 'nova_object.data': {'migration_id': migration_id}})


def stuck_move(cloud, dbs, source, dest, instance_host, task_state='migrating', status='running',
               migration_type='live-migration', vm_state='active', when=AN_HOUR_AGO):
    """An instance on ``instance_host`` stuck in a move: the migration holds the source, the instance the destination
    (or, once on the destination, the migration still holds the source). Returns (instance, migration id, uuid)."""
    instance = cloud.instance(host=instance_host, task_state=task_state, vm_state=vm_state, updated_at=when)
    migration = cloud.migration(instance, source[0], dest[0], status=status, migration_type=migration_type,
                                updated_at=when)
    migration_uuid = one(dbs, 'nova', 'SELECT uuid FROM migrations WHERE id = %s', migration)['uuid']
    dbs.execute('nova', 'UPDATE instance_extra SET migration_context = %s WHERE instance_uuid = %s',
                (context(migration), instance))
    cloud.consumer(migration_uuid, consumer_type='MIGRATION')
    for name, used in FLAVOR:
        cloud.allocation(migration_uuid, source[1]['rp_uuid'], name, used)
    cloud.instance_allocations(instance, dest[1]['rp_uuid'])
    return instance, migration, migration_uuid


def dead_hosts(cloud):
    return [(name, cloud.compute_host(name, up=False)) for name in ('compute1', 'compute3')]


def test_full_cycle_reverts_an_abandoned_live_migration(ansible, dbs, cloud, journal_dir):
    """compute1 restarted mid live-migration to compute3: the instance stays on compute1 and takes its hold back."""
    source, dest = dead_hosts(cloud)
    instance, migration, migration_uuid = stuck_move(cloud, dbs, source, dest, 'compute1')
    finished = cloud.migration(instance, 'compute3', 'compute1', status='completed', migration_type='migration')
    bystander = cloud.instance(host='compute1', task_state='migrating', updated_at=AN_HOUR_AGO)
    consumer_generation = generation(dbs, 'consumers', instance)
    providers = [generation(dbs, 'resource_providers', host[1]['rp_uuid']) for host in (source, dest)]
    args = db_args(dbs, 'nova_api', 'placement', instance=instance, method='db', journal_dir=journal_dir)

    def verify():
        row = one(dbs, 'nova', 'SELECT task_state, vm_state, host FROM instances WHERE uuid = %s', instance)
        assert (row['task_state'], row['vm_state'], row['host']) == (None, 'active', 'compute1')
        statuses = dict((row['id'], row['status']) for row in dbs.query('nova', 'SELECT id, status FROM migrations'))
        assert statuses == {migration: 'error', finished: 'completed'}
        assert one(dbs, 'nova', 'SELECT migration_context FROM instance_extra WHERE instance_uuid = %s',
                   instance)['migration_context'] is None
        assert allocations(dbs, instance) == dict(((source[1]['rp_uuid'], name), used) for name, used in FLAVOR)
        assert allocations(dbs, migration_uuid) == {}
        assert not dbs.query('placement', 'SELECT id FROM consumers WHERE uuid = %s', (migration_uuid,))
        assert generation(dbs, 'consumers', instance) == consumer_generation + 1
        assert [generation(dbs, 'resource_providers', host[1]['rp_uuid']) for host in (source, dest)] == \
            [value + 1 for value in providers]
        assert one(dbs, 'nova', 'SELECT task_state FROM instances WHERE uuid = %s', bystander)['task_state'] == 'migrating'

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert applied['method'] == 'db' and applied['method_reason'] == 'requested'
    assert applied['instances'] == [dict(
        instance=instance, cell='nova:cell1', task_state='migrating', vm_state='active', new_vm_state='active',
        migrations=[dict(id=migration, uuid=migration_uuid, type='live-migration', status='running',
                         new_status='error', side='source')])]
    steps = [(step['database'], step['table'], step['action'], step['rows']) for step in applied['plan']]
    assert steps[:3] == [('nova:cell1', 'migrations', 'update', 1), ('nova:cell1', 'instances', 'update', 1),
                         ('nova:cell1', 'instance_extra', 'update', 1)]
    # The instance's three allocations on compute3 go, the migration's three on compute1 become the instance's.
    assert ('placement_db', 'allocations', 'delete', 3) in steps and ('placement_db', 'allocations', 'update', 3) in steps
    assert ('placement_db', 'consumers', 'delete', 1) in steps
    assert any('compute1 only' in warning for warning in applied['warnings'])
    journal = load_journal(applied['journal'])
    assert set(journal['commits']) == {'nova:cell1', 'placement_db'}


def test_abort_by_migration_uuid_on_the_destination_drops_the_hold(ansible, dbs, cloud, journal_dir):
    """A resize reached compute3 before the restart: the instance stays there, the migration's hold on compute1 goes."""
    source, dest = dead_hosts(cloud)
    instance, migration, migration_uuid = stuck_move(cloud, dbs, source, dest, 'compute3', task_state='resize_finish',
                                                     status='post-migrating', migration_type='resize')
    other = cloud.migration(instance, 'compute1', 'compute3', status='accepted', migration_type='migration')
    args = db_args(dbs, 'nova', 'placement', migration=[migration_uuid], action='abort', state='error',
                   journal_dir=journal_dir)
    checked = ansible(MODULE, args, check=True)
    assert not checked.failed and checked.changed and checked['method'] == 'db', checked['msg']
    assert 'no cloud is configured' in checked['method_reason']
    applied = ansible(MODULE, args)
    assert not applied.failed and applied.changed, applied['msg']
    assert applied['instances'][0]['migrations'][0]['side'] == 'dest'
    row = one(dbs, 'nova', 'SELECT task_state, vm_state FROM instances WHERE uuid = %s', instance)
    assert (row['task_state'], row['vm_state']) == (None, 'error')
    statuses = dict((row['id'], row['status']) for row in dbs.query('nova', 'SELECT id, status FROM migrations'))
    assert statuses == {migration: 'cancelled', other: 'accepted'}
    # Listed by migration: the other unfinished migration stays; the context named the ended one and goes.
    assert one(dbs, 'nova', 'SELECT migration_context FROM instance_extra WHERE instance_uuid = %s',
               instance)['migration_context'] is None
    assert allocations(dbs, instance) == dict(((dest[1]['rp_uuid'], name), used) for name, used in FLAVOR)
    assert allocations(dbs, migration_uuid) == {}
    assert any('hard reboot' in warning for warning in applied['warnings'])
    again = ansible(MODULE, args)
    assert not again.failed and not again.changed, again
    assert again['notes'][:2] == [
        'migration %s is already cancelled' % migration,
        'instance %s has no task in progress and no unfinished migration to end' % instance]


@pytest.mark.newest_release
def test_guards_refuse_with_evidence_and_force_applies(ansible, dbs, cloud, journal_dir):
    source = ('compute1', cloud.compute_host('compute1'))
    dest = ('compute3', cloud.compute_host('compute3', up=False))
    recent = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    instance, migration, _uuid = stuck_move(cloud, dbs, source, dest, 'compute1', when=recent)
    resized = cloud.instance(host='compute3', vm_state='resized', updated_at=AN_HOUR_AGO)
    waiting = cloud.migration(resized, 'compute1', 'compute3', status='finished', migration_type='resize',
                              updated_at=AN_HOUR_AGO)
    # compute1 reported just now, compute3 an hour ago: up and down however slow the machine is.
    args = db_args(dbs, 'nova_api', instance=[instance, resized], service_down_time=1800, journal_dir=journal_dir)
    before = snapshot(dbs, ALL_TABLES)
    refused = ansible(MODULE, args)
    assert_clean_failure(refused, 'Nova may still be working on it')
    guards = dict(((guard['guard'], guard['message'].split()[1]), guard) for guard in refused['guards'])
    assert set(guards) == {('task_recent', instance), ('task_recent', str(migration)),
                           ('migration_host_up', str(migration)), ('migration_host_up', str(waiting)),
                           ('resize_awaiting_confirmation', str(waiting))}
    evidence = guards[('task_recent', instance)]['evidence'][0]
    assert evidence['uuid'] == instance and evidence['seconds_since_change'] < 1800 and evidence['older_than_minutes'] == 30
    host_up = guards[('migration_host_up', str(migration))]['evidence']
    assert (host_up[0]['host'], host_up[0]['up'], host_up[-1]['id']) == ('compute1', True, migration)
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)

    reason = 'INC-7001: the libvirt job on compute1 is gone'
    forced = ansible(MODULE, dict(args, instance=[instance], older_than=0, force=True, force_reason=reason))
    assert not forced.failed and forced.changed, forced['msg']
    assert [guard['guard'] for guard in forced['forced_guards']] == ['migration_host_up']
    assert load_journal(forced['journal'])['force_reason'] == reason
    assert one(dbs, 'nova', 'SELECT status FROM migrations WHERE id = %s', migration)['status'] == 'error'


@pytest.mark.newest_release
def test_cell0_and_deleted_instances_are_never_written(ansible, dbs, cloud, journal_dir):
    in_cell0 = cloud.instance(host=None, vm_state='error', task_state='scheduling', power_state=0, cell='cell0')
    gone = cloud.instance(host='compute1', task_state='deleting', updated_at=AN_HOUR_AGO)
    cloud.destroy_instance(gone)
    before = snapshot(dbs, ALL_TABLES)
    for uuid, name, fragment in ((in_cell0, 'cell0', 'is in cell0'), (gone, 'instance_deleted', 'is deleted')):
        refused = ansible(MODULE, db_args(dbs, 'nova_api', instance=uuid, journal_dir=journal_dir, force=True,
                                          force_reason='not overridable'))
        assert_clean_failure(refused, fragment)
        assert 'never overridden' in refused['msg']
        assert refused['guards'][0]['guard'] == name and refused['guards'][0]['evidence'][0]['uuid'] == uuid
    assert snapshot(dbs, ALL_TABLES) == before


@pytest.mark.newest_release
def test_bad_input_fails_clearly_and_writes_nothing(ansible, dbs, cloud, journal_dir):
    source, dest = dead_hosts(cloud)
    instance, migration, _uuid = stuck_move(cloud, dbs, source, dest, 'compute1')
    before = snapshot(dbs, ALL_TABLES)
    cases = [
        (dict(instance='not-a-uuid'), "instance: 'not-a-uuid' is not a UUID"),
        (dict(migration=['12x']), "migration: '12x' is not a UUID"),
        (dict(migration=['0']), 'migration: 0 is not a migration id'),
        (dict(migration=[str(migration + 1000)]), 'migration(s) not found in any cell: %d' % (migration + 1000)),
        (dict(instance='0b7f7a2c-1111-4d5e-9f00-000000000001'), 'not found in any cell'),
        (dict(), 'one of the following is required: instance, migration'),
        (dict(instance=instance, older_than=-1), 'older_than must be 0 or more minutes'),
        # The refusal of the module's declared method policy for force_complete (api_only).
        (dict(instance=instance, action='force_complete', method='db'),
         'method=db cannot express this change with stackmender.openstack.nova_task_state: force_complete asks the '
         'source compute to finish a live migration, which only the Compute API can do; use method=api'),
        (dict(instance=instance, action='rollback'), 'value of action must be one of'),
        (dict(instance=instance, force=True), 'force_reason'),
    ]
    for extra, fragment in cases:
        assert_clean_failure(ansible(MODULE, db_args(dbs, 'nova', journal_dir=journal_dir, **extra)), fragment)
    nothing = ansible(MODULE, db_args(dbs, 'placement', instance=instance, journal_dir=journal_dir))
    assert_clean_failure(nothing, 'nothing to work with')
    assert snapshot(dbs, ALL_TABLES) == before
    assert not os.path.exists(journal_dir) or not os.listdir(journal_dir)


def test_a_revert_gives_the_hold_back_to_an_instance_without_a_placement_consumer(ansible, dbs, cloud, journal_dir):
    """Nova's rollback moves the migration's allocations to the instance (move_allocations), and placement creates
    the instance's consumer when it has none: the repair does the same instead of leaving the hold and warning."""
    source, dest = dead_hosts(cloud)
    instance = cloud.instance(host='compute1', task_state='migrating', updated_at=AN_HOUR_AGO)
    migration = cloud.migration(instance, 'compute1', 'compute3', status='running', migration_type='live-migration',
                                updated_at=AN_HOUR_AGO)
    migration_uuid = one(dbs, 'nova', 'SELECT uuid FROM migrations WHERE id = %s', migration)['uuid']
    dbs.execute('nova', 'UPDATE instance_extra SET migration_context = %s WHERE instance_uuid = %s',
                (context(migration), instance))
    cloud.consumer(migration_uuid, consumer_type='MIGRATION')
    for name, used in FLAVOR:
        cloud.allocation(migration_uuid, source[1]['rp_uuid'], name, used)
    held_by = one(dbs, 'placement', 'SELECT project_id, user_id FROM consumers WHERE uuid = %s', migration_uuid)
    assert not dbs.query('placement', 'SELECT id FROM consumers WHERE uuid = %s', (instance,))
    source_generation = generation(dbs, 'resource_providers', source[1]['rp_uuid'])
    args = db_args(dbs, 'nova_api', 'placement', instance=instance, method='db', journal_dir=journal_dir)

    def verify():
        assert allocations(dbs, instance) == dict(((source[1]['rp_uuid'], name), used) for name, used in FLAVOR)
        assert allocations(dbs, migration_uuid) == {}
        assert not dbs.query('placement', 'SELECT id FROM consumers WHERE uuid = %s', (migration_uuid,))
        # The consumer placement creates for the move: the migration consumer's project and user, written once.
        consumer = one(dbs, 'placement', 'SELECT project_id, user_id, generation FROM consumers WHERE uuid = %s',
                       instance)
        assert (consumer['project_id'], consumer['user_id'], consumer['generation']) == (
            held_by['project_id'], held_by['user_id'], 1)
        # Moved, not copied: the source provider holds the flavor once.
        used = dbs.query('placement', 'SELECT SUM(a.used) AS used FROM allocations a JOIN resource_providers p ON '
                         'p.id = a.resource_provider_id WHERE p.uuid = %s', (source[1]['rp_uuid'],))[0]['used']
        assert int(used) == sum(value for _name, value in FLAVOR)
        assert generation(dbs, 'resource_providers', source[1]['rp_uuid']) == source_generation + 1
        row = one(dbs, 'nova', 'SELECT task_state, host FROM instances WHERE uuid = %s', instance)
        assert (row['task_state'], row['host']) == (None, 'compute1')

    applied = run_full_cycle(ansible, dbs, MODULE, args, ALL_TABLES, verify)
    assert not [warning for warning in applied.get('warnings', []) if 'heal_allocations' in warning]
    steps = [(step['database'], step['table'], step['action'], step['rows']) for step in applied['plan']]
    assert ('placement_db', 'consumers', 'insert', 1) in steps
    assert ('placement_db', 'allocations', 'update', 3) in steps
    assert ('placement_db', 'consumers', 'delete', 1) in steps
    assert steps.index(('placement_db', 'consumers', 'insert', 1)) < steps.index(('placement_db', 'allocations',
                                                                                  'update', 3))
