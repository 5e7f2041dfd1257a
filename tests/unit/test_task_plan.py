"""nova_task_state's plan functions (services/tasks.py) on plain rows: no database and no cloud."""

import datetime

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import ApiUnsuitable
from ansible_collections.stackmender.openstack.plugins.module_utils.services import tasks

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0)
AN_HOUR_AGO = NOW - datetime.timedelta(hours=1)
STAMP = NOW
SHOWN_STAMP = '2026-12-01 12:00:00'  # as the plan keeps it
UUID = '2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e'
OTHER = '3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6f'
MIGRATION_UUID = '8b1f0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e'


class Cell(object):
    def __init__(self, name, is_cell0=False):
        self.name = name
        self.is_cell0 = is_cell0


CELL1, CELL2, CELL0 = Cell('nova:cell1'), Cell('nova:cell2'), Cell('nova:cell0', is_cell0=True)


def instance(uuid=UUID, cell=CELL1, host='compute1', task_state='migrating', vm_state='active', deleted=0,
             updated_at=AN_HOUR_AGO):
    return dict(id=41, uuid=uuid, host=host, node=host, vm_state=vm_state, task_state=task_state, power_state=1,
                deleted=deleted, created_at=AN_HOUR_AGO, updated_at=updated_at, cell=cell)


def migration(mid=12, uuid=MIGRATION_UUID, status='running', migration_type='live-migration', source='compute1',
              dest='compute3', deleted=0, updated_at=AN_HOUR_AGO, instance_uuid=UUID):
    return dict(id=mid, uuid=uuid, instance_uuid=instance_uuid, migration_type=migration_type, status=status,
                source_compute=source, source_node=source, dest_compute=dest, dest_node=dest, deleted=deleted,
                created_at=AN_HOUR_AGO, updated_at=updated_at)


def service(host, up):
    return dict(id=3, host=host, binary='nova-compute', up=up, seconds_since_report=4)


def facts(services=(), contexts=()):
    return dict(reference=NOW, services=list(services), contexts=list(contexts))


def selected(row, ending, unfinished=None):
    return dict(cell=row['cell'], instance=row, listed=[], by_instance=True, ending=ending,
                unfinished=ending if unfinished is None else unfinished)


def context(migration_id):
    return '{"nova_object.data": {"migration_id": %d}}' % migration_id


# ------------------------------------------------------------------ selection

def test_a_listed_migration_id_in_two_cells_is_refused_and_the_uuid_is_asked_for():
    found = [(CELL1, migration()), (CELL2, migration(uuid=OTHER))]
    with pytest.raises(InputError, match='migration id 12 exists in cells nova:cell1, nova:cell2; give the uuid'):
        tasks.resolve_listed([12], [], found)


def test_migrations_not_found_are_named():
    with pytest.raises(InputError, match='not found in any cell: 13, %s' % OTHER):
        tasks.resolve_listed([12, 13], [OTHER], [(CELL1, migration())])


def test_listed_migrations_are_grouped_by_their_instance():
    listed = tasks.resolve_listed([12], [OTHER], [(CELL1, migration()), (CELL1, migration(mid=14, uuid=OTHER))])
    assert [(cell.name, row['id']) for cell, row in listed[UUID]] == [('nova:cell1', 12), ('nova:cell1', 14)]


def test_deleted_cell0_and_duplicated_instances_are_refused_for_good():
    plan = Plan()
    gone = 'aaaaaaaa-0f1d-4e65-9f5d-1e2a3b4c5d6e'
    unscheduled = 'bbbbbbbb-0f1d-4e65-9f5d-1e2a3b4c5d6e'
    by_uuid = {UUID: [instance(cell=CELL1), instance(cell=CELL2)], gone: [instance(uuid=gone, deleted=41)],
               unscheduled: [instance(uuid=unscheduled, cell=CELL0, host=None)]}
    chosen = tasks.select_targets(plan, [UUID, gone, unscheduled], {}, by_uuid)
    assert chosen == []
    assert [guard.name for guard in plan.never_guards] == ['instance_in_several_cells', 'instance_deleted', 'cell0']
    assert 'nova:cell1, nova:cell2' in plan.never_guards[0].message
    assert plan.never_guards[1].evidence[0]['uuid'] == gone and plan.never_guards[2].evidence[0]['cell'] == 'nova:cell0'


def test_instances_of_listed_migrations_follow_the_instances_given_and_a_migration_in_another_cell_is_refused():
    plan = Plan()
    listed = {OTHER: [(CELL2, migration(instance_uuid=OTHER))]}
    by_uuid = {UUID: [instance()], OTHER: [instance(uuid=OTHER)]}
    chosen = tasks.select_targets(plan, [UUID], listed, by_uuid)
    assert [(entry['instance']['uuid'], entry['by_instance']) for entry in chosen] == [(UUID, True), (OTHER, False)]
    assert [guard.name for guard in plan.never_guards] == ['migration_in_other_cell']
    assert plan.never_guards[0].message == 'migration 12 is in nova:cell2, its instance %s in nova:cell1' % OTHER


def test_by_migration_only_the_listed_unfinished_ones_end_and_the_others_are_noted():
    plan = Plan()
    done, gone, running = migration(mid=1, status='completed'), migration(mid=2, deleted=2), migration(mid=3)
    entry = dict(instance=instance(), listed=[done, gone, running], by_instance=False)
    other = migration(mid=4, status='accepted')
    tasks.choose_ending(plan, entry, [running, other])
    assert [row['id'] for row in entry['ending']] == [3]
    assert [row['id'] for row in entry['unfinished']] == [3, 4]
    assert plan.notes == ['migration 1 is already completed', 'migration 2 is deleted; left alone']


def test_by_instance_every_unfinished_migration_ends():
    plan = Plan()
    entry = dict(instance=instance(), listed=[], by_instance=True)
    tasks.choose_ending(plan, entry, [migration(mid=3), migration(mid=4)])
    assert [row['id'] for row in entry['ending']] == [3, 4] and not plan.notes


# ------------------------------------------------------------ database plan

def test_an_abandoned_live_migration_is_ended_with_its_task_and_context():
    plan = Plan()
    row, moving = instance(), migration()
    extra = dict(id=7, instance_uuid=UUID, migration_context=context(12), deleted=0, updated_at=AN_HOUR_AGO)
    report, holds = tasks.plan_instance(plan, selected(row, [moving]), facts([service('compute1', False)], [extra]),
                                        STAMP, tasks.RESET, 'auto', 30)
    assert not plan.guards
    assert [(change.table, change.key, change.after) for change in plan.changes] == [
        ('migrations', {'id': 12}, dict(status='error', updated_at=SHOWN_STAMP)),
        ('instances', {'id': 41}, dict(task_state=None, vm_state='active', updated_at=SHOWN_STAMP)),
        ('instance_extra', {'id': 7}, dict(migration_context=None, updated_at=SHOWN_STAMP))]
    assert report == dict(instance=UUID, cell='nova:cell1', task_state='migrating', vm_state='active',
                          new_vm_state='active', migrations=[dict(id=12, uuid=MIGRATION_UUID, type='live-migration',
                                                                  status='running', new_status='error', side='source')])
    assert [(hold['side'], hold['migration']['id']) for hold in holds] == [('source', 12)]
    assert any('runs on compute1 only' in warning for warning in plan.warnings)


def test_abort_cancels_and_auto_sets_error_for_an_instance_that_is_not_active():
    plan = Plan()
    row = instance(host='compute3', task_state='resize_finish', vm_state='stopped')
    report, holds = tasks.plan_instance(plan, selected(row, [migration(status='post-migrating', migration_type='resize')]),
                                        facts(), STAMP, tasks.ABORT, 'auto', 30)
    assert report['new_vm_state'] == 'error' and report['migrations'][0]['new_status'] == 'cancelled'
    assert holds[0]['side'] == 'dest'
    assert any('hard reboot' in warning for warning in plan.warnings)


def test_migrations_alone_end_and_the_vm_state_stays_with_state_auto():
    plan = Plan()
    row = instance(task_state=None, vm_state='stopped')
    report, _holds = tasks.plan_instance(plan, selected(row, [migration()]), facts(), STAMP, tasks.RESET, 'auto', 30)
    assert report['new_vm_state'] == 'stopped'
    assert [change.table for change in plan.changes] == ['migrations']


def test_guards_refuse_a_recent_task_a_host_up_and_a_resize_awaiting_confirmation():
    plan = Plan()
    recent = NOW - datetime.timedelta(minutes=5)
    row = instance(vm_state='resized', updated_at=recent)
    waiting = migration(status='finished', migration_type='resize', updated_at=recent)
    tasks.plan_instance(plan, selected(row, [waiting]), facts([service('compute1', True), service('compute3', False)]),
                        STAMP, tasks.RESET, 'auto', 30)
    assert [guard.name for guard in plan.guards] == ['task_recent', 'task_recent', 'resize_awaiting_confirmation',
                                                     'migration_host_up']
    assert plan.guards[0].evidence[0]['seconds_since_change'] == 300
    assert plan.guards[0].evidence[0]['older_than_minutes'] == 30
    assert 'nova-compute on compute1 is up' in plan.guards[3].message
    assert [row['host'] for row in plan.guards[3].evidence[:-1]] == ['compute1']


def test_older_than_zero_turns_the_age_guard_off():
    plan = Plan()
    row = instance(updated_at=NOW)
    tasks.plan_instance(plan, selected(row, []), facts(), STAMP, tasks.RESET, 'auto', 0)
    assert not plan.guards


def test_a_context_of_a_migration_that_stays_unfinished_is_kept():
    plan = Plan()
    staying = migration(mid=13, status='accepted')
    extra = dict(id=7, instance_uuid=UUID, migration_context=context(13), deleted=0, updated_at=AN_HOUR_AGO)
    tasks.plan_instance(plan, selected(instance(), [migration()], [migration(), staying]), facts([], [extra]), STAMP,
                        tasks.RESET, 'auto', 30)
    assert 'instance_extra' not in [change.table for change in plan.changes]
    assert plan.notes == ['the migration context of instance %s refers to migration 13, which stays unfinished; kept'
                          % UUID]


def test_an_instance_on_neither_host_keeps_its_hold_and_is_warned_about():
    plan = Plan()
    _report, holds = tasks.plan_instance(plan, selected(instance(host='compute9'), [migration()]), facts(), STAMP,
                                         tasks.RESET, 'auto', 30)
    assert holds[0]['side'] is None
    assert any('neither the source' in warning for warning in plan.warnings)


def test_nothing_stuck_is_noted():
    plan = Plan()
    assert tasks.nothing_stuck(plan, UUID, None, [])
    assert not tasks.nothing_stuck(plan, UUID, 'migrating', [])
    assert plan.notes == ['instance %s has no task in progress and no unfinished migration to end' % UUID]


# ------------------------------------------------------------------ API path

class Compute(object):
    """A Compute API of plain dicts; records the calls made."""

    def __init__(self, server, migrations=(), state='up'):
        self.servers = {server['id']: server}
        self.listed = {server['id']: list(migrations)}
        self.state = state
        self.done = []

    def server(self, instance_id):
        return dict(self.servers[instance_id])

    def migrations(self, instance_id):
        return [dict(row) for row in self.listed[instance_id]]

    def compute_state(self, host):
        return self.state

    def post(self, path, body, microversion):
        self.done.append(('POST', path, body, microversion))

    def delete(self, path, microversion):
        self.done.append(('DELETE', path, microversion))


def server(task_state='migrating', vm_state='active', updated='2026-12-01T11:00:00Z'):
    return dict(id=UUID, status='ACTIVE', vm_state=vm_state, task_state=task_state, host='compute1', updated=updated)


def api_migration(status='running', migration_type='live-migration', updated_at='2026-12-01T11:00:00.000000'):
    return dict(id=12, uuid=MIGRATION_UUID, instance_uuid=UUID, migration_type=migration_type, status=status,
                source_compute='compute1', dest_compute='compute3', updated_at=updated_at)


def plan_api(compute, action, migrations=(), state='auto', older_than=30, instances=(UUID,)):
    plan = Plan()
    ids, uuids = tasks.migration_references(list(migrations) or None)
    entries = tasks.plan_api(plan, compute, list(instances), ids, uuids, action, state, older_than, NOW)
    return plan, entries


def test_a_task_without_migration_is_reset_with_os_reset_state():
    compute = Compute(server(task_state='powering-off'))
    plan, entries = plan_api(compute, tasks.RESET)
    assert [(call.call, call.microversion, call.arguments) for call in plan.calls] == [
        ('POST /servers/%s/action os-resetState' % UUID, '2.1', {'state': 'active'})]
    plan.calls[0].execute()
    assert compute.done == [('POST', '/servers/%s/action' % UUID, {'os-resetState': {'state': 'active'}}, '2.1')]
    assert entries == [dict(instance=UUID, task_state='powering-off', vm_state='active', new_vm_state='active',
                            migrations=[])]


def test_reset_leaves_an_unfinished_migration_to_the_database_path():
    with pytest.raises(ApiUnsuitable, match='leaves migration.s. 12 .running. unfinished'):
        plan_api(Compute(server(), [api_migration()]), tasks.RESET)


def test_abort_picks_the_microversion_of_the_status_and_is_refused_while_recent():
    compute = Compute(server(), [api_migration(status='queued')])
    plan, entries = plan_api(compute, tasks.ABORT, ['12'], older_than=0)
    assert [(call.call, call.microversion) for call in plan.calls] == [
        ('DELETE /servers/%s/migrations/12' % UUID, '2.65')]
    plan.calls[0].execute()
    assert compute.done == [('DELETE', '/servers/%s/migrations/12' % UUID, '2.65')]
    assert entries[0]['migrations'] == [dict(id=12, uuid=MIGRATION_UUID, type='live-migration', status='queued',
                                             new_status='cancelled')]
    recent, _entries = plan_api(Compute(server(updated='2026-12-01T11:55:00Z'),
                                        [api_migration(updated_at='2026-12-01T11:59:00.000000')]), tasks.ABORT)
    assert [(guard.name, guard.evidence[0]['seconds_since_change']) for guard in recent.guards] == [
        ('task_recent', 300), ('task_recent', 60)]
    # An hour-old migration of a task that changed 5 minutes ago: only the task is too recent.
    recent, _entries = plan_api(Compute(server(updated='2026-12-01T11:55:00Z'), [api_migration()]), tasks.ABORT)
    assert [guard.message.split(' (')[0] for guard in recent.guards] == ['instance %s' % UUID]


def test_abort_of_a_resize_or_with_the_source_down_falls_back_and_force_complete_fails():
    with pytest.raises(ApiUnsuitable, match='is a resize; Nova can abort only live migrations'):
        plan_api(Compute(server(), [api_migration(migration_type='resize')]), tasks.ABORT)
    with pytest.raises(ApiUnsuitable, match='nova-compute on compute1, the source of live migration 12, is down'):
        plan_api(Compute(server(), [api_migration()], state='down'), tasks.ABORT)
    with pytest.raises(InputError, match='is down; Nova asks it to force-complete'):
        plan_api(Compute(server(), [api_migration()], state='down'), tasks.FORCE_COMPLETE)
    with pytest.raises(InputError, match='the API path cannot force this migration to complete: the Compute API finds'):
        plan_api(Compute(server(), [api_migration()]), tasks.FORCE_COMPLETE, ['12'], instances=())


def test_force_complete_posts_the_action_for_a_running_live_migration_of_an_active_instance():
    compute = Compute(server(), [api_migration()])
    plan, entries = plan_api(compute, tasks.FORCE_COMPLETE, older_than=0)
    assert [(call.call, call.microversion) for call in plan.calls] == [
        ('POST /servers/%s/migrations/12/action force_complete' % UUID, '2.22')]
    plan.calls[0].execute()
    assert compute.done == [('POST', '/servers/%s/migrations/12/action' % UUID, {'force_complete': None}, '2.22')]
    assert entries[0]['migrations'][0]['new_status'] == 'completed'
    with pytest.raises(InputError, match='Nova forces only a running live migration of an active instance'):
        plan_api(Compute(server(vm_state='paused'), [api_migration()]), tasks.FORCE_COMPLETE, older_than=0)


def test_a_migration_not_of_the_instances_given_is_unsuitable():
    with pytest.raises(ApiUnsuitable, match='migration.s. 99 are not migrations of the instance'):
        plan_api(Compute(server(task_state='powering-off'), [api_migration(status='completed')]), tasks.RESET, ['99'],
                 older_than=0)


# ------------------------------------------------------------------- the wait

def test_the_wait_shows_what_is_pending_then_records_how_it_ended():
    compute = Compute(server(), [api_migration()])
    plan, entries = plan_api(compute, tasks.ABORT, older_than=0)
    plan.results['instances'] = entries
    assert tasks.api_pending(plan, compute) == {UUID: 'task_state migrating; migration 12 running'}
    compute.servers[UUID].update(task_state=None)
    compute.listed[UUID] = [api_migration(status='error')]
    assert tasks.api_pending(plan, compute) == {}
    assert entries[0]['ended_vm_state'] == 'active' and entries[0]['migrations'][0]['ended_status'] == 'error'
    assert plan.warnings == ['migration 12 of instance %s ended error, not cancelled' % UUID]
    # Done instances are not read again.
    compute.servers[UUID].update(task_state='migrating')
    assert tasks.api_pending(plan, compute) == {}


def test_a_reset_instance_is_done_when_its_task_is_gone():
    plan = Plan()
    entry = dict(instance=UUID, migrations=[])
    assert tasks.wait_state(plan, entry, server(task_state='powering-off'), {}) == 'task_state powering-off'
    assert tasks.wait_state(plan, entry, server(task_state=None, vm_state='error'), {}) is None
    assert entry['ended_vm_state'] == 'error' and not plan.warnings


@pytest.mark.parametrize('text, expected', [
    ('2026-11-22T03:04:05Z', datetime.datetime(2026, 11, 22, 3, 4, 5)),
    ('2026-11-22T03:04:05.123456', datetime.datetime(2026, 11, 22, 3, 4, 5, 123456)),
    ('2026-11-22 03:04:05+00:00', datetime.datetime(2026, 11, 22, 3, 4, 5)),
    ('', None), ('yesterday', None)])
def test_api_timestamps_are_read_as_naive_utc(text, expected):
    assert tasks.api_time(text) == expected
