"""The plan of nova_instance_delete on plain rows: which rows of an instance change, and how Cinder detaches."""

import datetime

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import plan as planning
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services import instance_records
from ansible_collections.stackmender.openstack.plugins.modules.nova_instance_delete import NovaInstanceDelete

STAMP = datetime.datetime(2026, 11, 22, 3, 4, 5)
EARLIER = datetime.datetime(2026, 11, 1, 1, 2, 3)
SHOWN = '2026-11-22 03:04:05'  # how a plan holds STAMP
UUID = '2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e'
OTHER = '3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e'
CELL1 = nova_cells.Cell('nova:cell1', uuid='8a6b1f0e-1111-4c3d-9e8f-000000000001', cell_name='cell1')
CELL2 = nova_cells.Cell('nova:cell2', uuid='8a6b1f0e-2222-4c3d-9e8f-000000000002', cell_name='cell2')
CELL0 = nova_cells.Cell('nova:cell0', uuid=nova_cells.CELL0_UUID, cell_name='cell0')


def instance(uuid=UUID, row_id=41, cell=CELL1, deleted=0, task_state='deleting', host='compute7', **extra):
    row = dict(id=row_id, uuid=uuid, host=host, node=host, vm_state='active', task_state=task_state, power_state=1,
               progress=None, terminated_at=None, locked=0, disable_terminate=0, updated_at=EARLIER, deleted=deleted,
               deleted_at=None, cell=cell)
    row.update(extra)
    return row


def empty_cell(**found):
    rows = dict(children=[], hard=[], tags=[], blocking=[], actions=[], events=[])
    rows.update(found)
    return rows


def changes_of(plan, table):
    return [change for change in plan.changes if change.table == table]


# ------------------------------------------------------------------------------- finding the instance

def test_the_live_row_is_picked_else_the_newest_deleted_one():
    plan = planning.Plan()
    by_uuid = {UUID: [instance(row_id=3, deleted=3), instance(row_id=41)],
               OTHER: [instance(OTHER, row_id=5, deleted=5), instance(OTHER, row_id=9, deleted=9)]}
    found, missing = instance_records.pick_instances(plan, [UUID, OTHER, 'absent'], by_uuid)
    assert found[UUID]['id'] == 41 and found[OTHER]['id'] == 9
    assert missing == ['absent'] and not plan.never_guards


def test_an_instance_live_in_two_cells_or_in_cell0_is_refused_for_ever():
    plan = planning.Plan()
    by_uuid = {UUID: [instance(cell=CELL1), instance(row_id=7, cell=CELL2)], OTHER: [instance(OTHER, cell=CELL0)]}
    found, missing = instance_records.pick_instances(plan, [UUID, OTHER], by_uuid)
    assert found == {} and missing == []
    assert [guard.name for guard in plan.never_guards] == ['instance_in_several_cells', 'cell0']
    assert 'nova:cell1, nova:cell2' in plan.never_guards[0].message
    assert plan.never_guards[0].evidence[1]['cell'] == 'nova:cell2'


def test_an_absent_instance_is_purged_only_when_nova_has_no_trace_of_it():
    absent = {UUID: nova_cells.Absence(UUID, 'gone'), OTHER: nova_cells.Absence(OTHER, 'mapped', [{'cell_id': 3}])}
    plan = planning.Plan()
    assert instance_records.gone_instances(plan, [UUID, OTHER], absent, purge=True) == [UUID]
    assert [guard.name for guard in plan.never_guards] == ['instance_not_in_cells_read']
    with pytest.raises(InputError, match='nothing to delete: instance %s is in no cell' % UUID):
        instance_records.gone_instances(planning.Plan(), [UUID], absent, purge=False)
    building = planning.Plan()
    instance_records.gone_instances(building, [UUID], {UUID: nova_cells.Absence(UUID, 'building')}, purge=True)
    assert [guard.name for guard in building.never_guards] == ['build_request']
    assert '(method=api)' in building.never_guards[0].message


# ------------------------------------------------------------------------------------------- guards

def test_the_guards_of_a_live_instance():
    plan = planning.Plan()
    up = dict(id=3, host='compute7', up=True, seconds_since_report=4)
    live = [instance(task_state='rebuilding', disable_terminate=1)]
    migrations = [dict(id=1, instance_uuid=UUID, status='running'), dict(id=2, instance_uuid=UUID, status='completed'),
                  dict(id=3, instance_uuid=OTHER, status='running')]
    instance_records.guard_live(plan, live, {'compute7': up}, migrations, 60)
    assert [guard.name for guard in plan.guards] == ['compute_service_up', 'task_in_progress',
                                                     'migration_in_progress', 'termination_disabled']
    assert 'service_down_time 60' in plan.guards[0].message and 'method=api' in plan.guards[0].message
    assert plan.guards[2].evidence == [migrations[0]]
    calm = planning.Plan()
    instance_records.guard_live(calm, [instance()], {'compute7': dict(up, up=False)}, [], 60)
    assert calm.guards == []


# ------------------------------------------------------------------------------------- cell rows

def test_a_soft_delete_retires_the_instance_first_and_soft_deletes_its_live_children():
    plan = planning.Plan()
    found = empty_cell(children=[('instance_metadata', 'instance_uuid',
                                  [dict(id=5, instance_uuid=UUID, deleted=0, deleted_at=None)]),
                                 ('instance_id_mappings', 'uuid', [dict(id=6, uuid=UUID, deleted=0, deleted_at=None)])],
                       hard=[('console_auth_tokens', 'instance_uuid', [dict(id=8, instance_uuid=UUID)])],
                       tags=[dict(resource_id=UUID, tag='stranded')])
    changed = instance_records.plan_cell(plan, 'nova:cell1', [instance()], found, STAMP, purge=False)
    assert changed == {UUID}
    assert [change.table for change in plan.changes] == ['instances', 'instance_metadata', 'instance_id_mappings',
                                                         'console_auth_tokens', 'tags']
    retired = plan.changes[0]
    assert retired.after['vm_state'] == 'deleted' and retired.after['deleted'] == 41 and retired.after['progress'] == 0
    assert retired.after['task_state'] is None and retired.expect == dict(uuid=UUID, host='compute7')
    assert plan.changes[1].after == dict(deleted=5, deleted_at=SHOWN)
    assert plan.changes[2].expect == dict(uuid=UUID)
    assert plan.changes[3].action == planning.DELETE and plan.changes[4].key == dict(resource_id=UUID, tag='stranded')


def test_an_already_deleted_instance_gets_only_its_leftovers_cleaned_up():
    plan = planning.Plan()
    leftover = [('block_device_mapping', 'instance_uuid', [dict(id=9, instance_uuid=UUID, deleted=0, deleted_at=None)])]
    row = instance(deleted=41)
    changed = instance_records.plan_cell(plan, 'nova:cell1', [row], empty_cell(children=leftover), STAMP, purge=False)
    assert changed == {UUID} and [change.table for change in plan.changes] == ['block_device_mapping']
    found = {UUID: row, OTHER: instance(OTHER, row_id=9, deleted=9)}
    entries = instance_records.delete_report(plan, [UUID, OTHER, 'absent'], found, changed, purge=False)
    assert entries == [dict(instance=UUID, cell='nova:cell1', host='compute7', vm_state='active',
                            task_state='deleting', action='cleanup')]
    assert plan.notes == ['instance %s is already deleted' % OTHER,
                          'instance absent is in no cell: nothing of it is left to purge']
    nothing = planning.Plan()
    assert instance_records.plan_cell(nothing, 'nova:cell1', [row], empty_cell(), STAMP, purge=False) == set()


def test_a_purge_deletes_events_actions_children_and_the_instance_last():
    plan = planning.Plan()
    found = empty_cell(children=[('instance_faults', 'instance_uuid',
                                  [dict(id=4, instance_uuid=UUID, deleted=4, deleted_at=EARLIER)])],
                       actions=[dict(id=2, instance_uuid=UUID, action='create', deleted=0)],
                       events=[dict(id=3, action_id=2, event='compute_build', deleted=0)])
    changed = instance_records.plan_cell(plan, 'nova:cell1', [instance()], found, STAMP, purge=True)
    assert changed == {UUID}
    assert [(change.table, change.action) for change in plan.changes] == [
        ('instance_actions_events', planning.DELETE), ('instance_actions', planning.DELETE),
        ('instance_faults', planning.DELETE), ('instances', planning.DELETE)]
    assert plan.changes[-1].before == dict(id=41, uuid=UUID, deleted=0)


def test_a_purge_meeting_share_mapping_rows_is_refused_for_ever():
    plan = planning.Plan()
    blocking = [('share_mapping', 'instance_uuid', [dict(id=1, instance_uuid=UUID, share_id='s')])]
    instance_records.plan_cell(plan, 'nova:cell1', [instance()], empty_cell(blocking=blocking), STAMP, purge=True)
    assert [guard.name for guard in plan.never_guards] == ['purge_blocked']
    assert plan.never_guards[0].evidence == [dict(id=1, instance_uuid=UUID, share_id='s', table='share_mapping')]


# ------------------------------------------------------------------------- nova_api and placement

def test_mappings_are_queued_for_delete_once():
    plan = planning.Plan()
    mappings = {UUID: dict(id=1, instance_uuid=UUID, queued_for_delete=0, updated_at=EARLIER),
                OTHER: dict(id=2, instance_uuid=OTHER, queued_for_delete=1, updated_at=EARLIER)}
    assert instance_records.plan_mappings(plan, 'nova_api_db', mappings, STAMP) == {UUID}
    queued = [(change.key, change.after) for change in plan.changes]
    assert queued == [({'id': 1}, dict(queued_for_delete=1, updated_at=SHOWN))]


def test_a_purge_deletes_the_api_records_and_the_allocations():
    plan = planning.Plan()
    changed = instance_records.plan_api_purge(plan, 'nova_api_db', {
        'request_specs': [dict(id=4, instance_uuid=UUID)], 'instance_mappings': [dict(id=5, instance_uuid=UUID)]})
    assert changed == {UUID}
    assert [change.table for change in plan.changes] == ['request_specs', 'instance_mappings']
    allocation = dict(id=7, resource_provider_id=1, consumer_id=UUID, resource_class_id=0, used=2, updated_at=None)
    consumer = dict(id=3, uuid=UUID, generation=1, updated_at=None)
    placed = planning.Plan()
    assert instance_records.plan_allocations(placed, 'placement_db', [allocation], {UUID: consumer},
                                             ('id', 'consumer_id', 'used')) == {UUID}
    assert [(change.table, change.before) for change in placed.changes] == [
        ('allocations', dict(id=7, consumer_id=UUID, used=2)), ('consumers', dict(uuid=UUID, generation=1,
                                                                                  updated_at=None))]


def test_followups_name_what_the_databases_given_leave_undone():
    bdms = [dict(volume_id='v1', delete_on_termination=1), dict(volume_id='v2', delete_on_termination=0)]
    warnings = ' | '.join(instance_records.followup_warnings(bdms, {UUID}, {'nova_db': None}))
    assert 'volume(s) v1 were to be deleted' in warnings and 'attachments of volume(s) v1, v2 remain' in warnings
    assert 'placement was not given' in warnings and 'queued_for_delete' in warnings and 'Neutron ports' in warnings
    given = dict.fromkeys(('nova_api_db', 'placement_db', 'cinder_db'))
    assert len(instance_records.followup_warnings([], {UUID}, given)) == 1


# -------------------------------------------------------------------------------------- Cinder

def attachment(row_id, instance_uuid=UUID, volume_id='vol', attach_status='attached'):
    return dict(id=row_id, volume_id=volume_id, instance_uuid=instance_uuid, attach_status=attach_status,
                detach_time=None, deleted=0, deleted_at=None)


def volume(status='in-use', migration_status=None):
    return dict(id='vol', status=status, attach_status='attached', migration_status=migration_status, deleted=0)


def test_detaching_the_only_attachment_makes_the_volume_available():
    specs = [dict(id=1, attachment_id='a1', deleted=0, deleted_at=None),
             dict(id=2, attachment_id='other', deleted=0, deleted_at=None)]
    metadata = [dict(id=3, volume_id='vol', key='attached_mode', deleted=0, deleted_at=None),
                dict(id=4, volume_id='vol', key='readonly', deleted=0, deleted_at=None)]
    changes, status = cinder.detach_changes(volume(), [attachment('a1')], STAMP, detaching={'a1'}, specs=specs,
                                            admin_metadata=metadata)
    assert status == ('available', 'detached')
    assert [(change['table'], change['key']) for change in changes] == [
        ('attachment_specs', {'id': 1}), ('volume_attachment', {'id': 'a1'}), ('volume_admin_metadata', {'id': 3}),
        ('volumes', {'id': 'vol'})]
    assert changes[1]['after'] == dict(attach_status='detached', detach_time=STAMP, deleted=1, deleted_at=STAMP)
    assert changes[3]['after'] == dict(status='available', attach_status='detached')
    plan = planning.Plan()
    for change in changes:
        plan.change('cinder_db', **change)
    assert len(plan.changes) == 4


def test_a_volume_attached_elsewhere_stays_in_use_and_a_migrating_one_keeps_its_status():
    attachments = [attachment('a1'), attachment('a2', instance_uuid=OTHER)]
    changes, status = cinder.detach_changes(volume(), attachments, STAMP, detaching={'a1'})
    assert status == ('in-use', 'attached') and [change['table'] for change in changes] == ['volume_attachment']
    _changes, status = cinder.detach_changes(volume(migration_status='migrating'), [attachment('a1')], STAMP)
    assert status == ('in-use', 'detached')
    errored = [attachment('a1'), attachment('a2', attach_status='error_attaching')]
    assert cinder.detach_changes(volume(), errored, STAMP, detaching={'a1'})[1] == ('available', 'detached')
    _changes, status = cinder.detach_changes(volume(), attachments, STAMP, set_status=False)
    assert status == ('available', 'detached') and 'volumes' not in [change['table'] for change in _changes]
    untouched, status = cinder.detach_changes(volume(), [attachment('a1')], STAMP, detaching=set())
    assert untouched == [] and status == ('in-use', 'attached')
    # A reset to detached (cinder_volume_state) with no attachment row left still drops attached_mode.
    mode = dict(id=3, volume_id='vol', key='attached_mode', deleted=0, deleted_at=None)
    reset, status = cinder.detach_changes(dict(volume(), attach_status='detached', status='available'), [], STAMP,
                                          admin_metadata=[mode, dict(mode, id=4, volume_id='vol2')])
    assert [change['key'] for change in reset] == [{'id': 3}] and status == ('available', 'detached')


def test_plan_detach_detaches_each_volume_of_the_instances():
    found = dict(detaching=[attachment('a1'), attachment('b1', volume_id='vol2')],
                 attachments=[attachment('a1'), attachment('b1', volume_id='vol2'),
                              attachment('b2', instance_uuid=OTHER, volume_id='vol2')],
                 specs=[], admin_metadata=[],
                 volumes=[volume(), dict(volume(), id='vol2')])
    plan = planning.Plan()
    assert instance_records.plan_detach(plan, 'cinder_db', found, STAMP) == {UUID}
    assert [(change.table, change.key_value) for change in plan.changes] == [
        ('volume_attachment', 'a1'), ('volumes', 'vol'), ('volume_attachment', 'b1')]
    assert instance_records.plan_detach(planning.Plan(), 'cinder_db', None, STAMP) == set()


# ------------------------------------------------------------------------------- the API path's wait

class Server:
    def __init__(self, vm_state, task_state, status='ACTIVE'):
        self.id, self.status, self.vm_state, self.task_state, self.compute_host = UUID, status, vm_state, task_state, 'c7'


class NotFound(Exception):
    status_code = 404


class Compute:
    def __init__(self, servers):
        self.servers = servers

    def get_server(self, uuid):
        if uuid not in self.servers:
            raise NotFound(uuid)
        return self.servers[uuid]


def pending(servers):
    module = NovaInstanceDelete.__new__(NovaInstanceDelete)
    module._conn = type('Conn', (), {'compute': Compute(servers)})()
    plan = planning.Plan()
    plan.results['instances'] = [dict(instance=UUID), dict(instance=OTHER)]
    return module.api_pending(plan)


def test_the_wait_ends_when_nova_no_longer_shows_the_instances_and_fails_at_once_on_a_failed_delete():
    assert pending({}) == {}
    assert pending({UUID: Server('active', 'deleting')}) == {UUID: 'ACTIVE (vm_state active, task_state deleting)'}
    with pytest.raises(ApiError, match='the delete of instance %s failed' % UUID):
        pending({UUID: Server('error', None, status='ERROR')})
