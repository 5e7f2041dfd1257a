"""The cinder_multibackend_migration role's plan on the real Cinder and Nova schemas, without the lab.

The role's validate and plan steps run through ansible-playbook; the two API reads of its preflight
are replaced by the same lists built from the database (the filters the preflight applies to them
are the ones used here). The plan then runs consistency_info and cinder_service_rehost in check mode
on the real databases, and its filters sort the refusals by the guards the module really returns.
"""

import os

import pytest
import yaml

from tests.ansible_run import run_playbook

pytestmark = pytest.mark.newest_release

OLD, NEW = 'controller1', 'controller1@lvm#lvm'
ROLE = 'stackmender.openstack.cinder_multibackend_migration'


def api_lists(dbs):
    """What openstack.cloud.volume_service_info and volume_info would return, read from the database."""
    services = [dict(host=row['host'], state='up' if row['age'] <= 60 else 'down',
                     status='disabled' if row['disabled'] else 'enabled', updated_at=str(row['updated_at']),
                     disabled_reason=row['disabled_reason'])
                for row in dbs.query('cinder', "SELECT host, disabled, disabled_reason, updated_at, "
                                               "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) AS age FROM services "
                                               "WHERE deleted = 0 AND `binary` = 'cinder-volume'")]
    attachments = {}
    for row in dbs.query('cinder', 'SELECT volume_id, instance_uuid FROM volume_attachment WHERE deleted = 0'):
        attachments.setdefault(row['volume_id'], []).append(dict(server_id=row['instance_uuid']))
    volumes = [dict(id=row['id'], name=row['display_name'], host=row['host'], status=row['status'],
                    migration_status=row['migration_status'], attachments=attachments.get(row['id'], []))
               for row in dbs.query('cinder', 'SELECT * FROM volumes WHERE deleted = 0')]
    return services, volumes


def write_playbook(tmp_path):
    playbook = tmp_path / 'plan.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'The runbook up to its plan', 'hosts': 'localhost', 'gather_facts': False,
        'tasks': [
            {'name': 'Validate', 'ansible.builtin.include_role': {'name': ROLE, 'tasks_from': 'validate'}},
            # The preflight's tasks after its two API reads.
            {'name': 'Keep the lists', 'ansible.builtin.set_fact': {
                'cinder_multibackend_migration__services':
                    '{{ api_services | stackmender.openstack.multibackend_services }}',
                'cinder_multibackend_migration__volumes':
                    '{{ api_volumes | stackmender.openstack.multibackend_volumes }}'}},
            {'name': 'Match', 'ansible.builtin.set_fact': {
                'cinder_multibackend_migration__moves':
                    '{{ cinder_multibackend_migration__moves | stackmender.openstack.multibackend_match('
                    'cinder_multibackend_migration__volumes, cinder_multibackend_migration__services) }}'}},
            {'name': 'Plan', 'ansible.builtin.include_role': {'name': ROLE, 'tasks_from': 'plan'}},
        ]}]))
    return str(playbook)


def run_plan(collections_path, dbs, tmp_path, **extra):
    services, volumes = api_lists(dbs)
    variables = dict(cinder_multibackend_migration_hosts={OLD: NEW},
                     cinder_multibackend_migration_cinder_db=dbs.url('cinder'),
                     cinder_multibackend_migration_nova_api_db=dbs.url('nova_api'),
                     cinder_multibackend_migration_state_dir=str(tmp_path / 'state'),
                     api_services=services, api_volumes=volumes)
    variables.update(extra)
    return run_playbook(collections_path, write_playbook(tmp_path), variables)


def facts(run, task):
    return run.tasks(task)[0]['ansible_facts']


def test_transitional_volumes_are_reset_first_and_their_rehost_waits(collections_path, dbs, cloud, tmp_path):
    cloud.cinder_service(OLD, up=False)
    cloud.cinder_service('controller1@lvm')
    deleting = cloud.volume(host=OLD + '#DEFAULT', status='deleting')
    extending = cloud.volume(host=OLD, status='extending')
    migrating = cloud.volume(host=OLD, migration_status='migrating')
    target = cloud.volume(host=OLD, migration_status='target:%s' % migrating)
    transfer = cloud.volume(host=OLD, status='awaiting-transfer')
    plain = cloud.volume(host=OLD)
    elsewhere = cloud.volume(host='controller10', status='deleting')
    before = dbs.query('cinder', 'SELECT id, host, status, migration_status FROM volumes ORDER BY id')

    run = run_plan(collections_path, dbs, tmp_path)
    assert run.returncode == 0, run.stdout[-6000:]
    moves = facts(run, 'Match')['cinder_multibackend_migration__moves']
    assert sorted(moves[0]['volumes']) == sorted([deleting, extending, migrating, target, transfer, plain])
    assert elsewhere not in moves[0]['volumes']
    resets = dict((reset['id'], (reset['from_status'], reset['status'], reset['migration_status']))
                  for reset in facts(run, 'Work out the resets of the volumes')['cinder_multibackend_migration__resets'])
    assert resets == {deleting: ('deleting', 'error', ''), extending: ('extending', 'error_extending', ''),
                      migrating: ('available', 'available', 'error'), target: ('available', 'available', 'error')}
    groups = facts(run, 'Group the resets')['cinder_multibackend_migration__reset_groups']
    assert [(group['status'], group['migration_status'], sorted(group['volumes'])) for group in groups] == [
        ('available', 'error', sorted([migrating, target])), ('error', '', [deleting]),
        ('error_extending', '', [extending])]

    # The module refused exactly the volumes the role resets, under the guard the role reads.
    gate, = run.tasks('Plan each rehost against its guards')[0]['results']
    assert 'plan' not in gate
    assert [guard['guard'] for guard in gate['guards']] == ['volume_transitional']
    assert sorted(row['id'] for row in gate['guards'][0]['evidence']) == sorted(resets)
    assert facts(run, 'Sort the refusals')['cinder_multibackend_migration__waiting'] == [OLD]
    assert dbs.query('cinder', 'SELECT id, host, status, migration_status FROM volumes ORDER BY id') == before
    assert not os.path.exists(str(tmp_path / 'state'))


def test_a_refusal_no_step_fixes_stops_the_run(collections_path, dbs, cloud, tmp_path):
    cloud.cinder_service(OLD, up=False)
    cloud.cinder_service('controller1@lvm', up=False)   # the new service is down: no step of the runbook fixes it
    cloud.volume(host=OLD, status='deleting')
    run = run_plan(collections_path, dbs, tmp_path)
    assert run.returncode != 0
    gate, = run.tasks('Plan each rehost against its guards')[0]['results']
    assert sorted(guard['guard'] for guard in gate['guards']) == ['new_service_down', 'volume_transitional']
    assert facts(run, 'Sort the refusals')['cinder_multibackend_migration__waiting'] == []
    refused = run.tasks('Refuse what no step of the runbook can fix')[0]
    assert refused.get('failed') and refused['msg'].startswith(OLD + ': refused')


def test_resets_not_allowed_are_refused_before_any_module_runs(collections_path, dbs, cloud, tmp_path):
    cloud.cinder_service(OLD, up=False)
    cloud.cinder_service('controller1@lvm')
    busy = cloud.volume(host=OLD + '#DEFAULT', status='detaching')
    run = run_plan(collections_path, dbs, tmp_path, cinder_multibackend_migration_reset_transitional=False)
    assert run.returncode != 0
    refused = run.tasks('Refuse transitional volumes when their reset is not allowed')[0]
    assert '%s detaching' % busy in refused['msg']
    assert run.tasks('Plan each rehost against its guards') == []


def test_invalid_moves_are_refused_with_the_module_reason(collections_path, dbs, cloud, tmp_path):
    run = run_plan(collections_path, dbs, tmp_path, cinder_multibackend_migration_hosts={
        'a#p@x': 'a@lvm#lvm', 'b@lvm#one': 'b@lvm#two'})
    assert run.returncode != 0
    message = run.tasks('Refuse a move whose hosts are not')[0]['msg']
    assert 'pool (#) before the backend (@)' in message and 'pools of the same service' in message
