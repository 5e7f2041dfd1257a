"""The audit_run role's task and migration repairs, through ansible-playbook on the real Nova schema.

No lab: the role's database path. An instance stuck in a task is reset; a live
migration whose hosts are both up is refused by nova_task_state's own guard,
and the role goes on with the other repair, then fails naming what stayed.
"""

import os

import pytest

from tests.ansible_run import run_playbook
from tests.collection_path import REPO_ROOT

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'audit_run.yml')
HOURS = 7200

pytestmark = pytest.mark.newest_release


def aged(dbs, table, column, key):
    dbs.execute('nova', 'UPDATE `%s` SET updated_at = UTC_TIMESTAMP() - INTERVAL %%s SECOND WHERE `%s` = %%s'
                % (table, column), (HOURS, key))


def outcome_of(run):
    return run.tasks('Put the outcome together')[0]['ansible_facts']['audit_run__outcome']


def test_stuck_task_is_reset_and_a_refused_migration_is_named(collections_path, dbs, cloud, tmp_path):
    first, second = cloud.compute_host('compute1'), cloud.compute_host('compute2')
    stuck = cloud.instance('compute1', task_state='rebooting')
    cloud.instance_allocations(stuck, first['rp_uuid'])
    aged(dbs, 'instances', 'uuid', stuck)
    moving = cloud.instance('compute1', task_state='migrating')
    cloud.instance_allocations(moving, second['rp_uuid'])
    migration = cloud.migration(moving, 'compute1', 'compute2', status='running')
    aged(dbs, 'migrations', 'id', migration)
    aged(dbs, 'instances', 'uuid', moving)
    healthy = cloud.instance('compute2')
    cloud.instance_allocations(healthy, second['rp_uuid'])

    state_dir = str(tmp_path / 'state')
    variables = dict(audit_run_nova_api_db=dbs.url('nova_api'), audit_run_placement_db=dbs.url('placement'),
                     audit_run_cinder_db='', audit_run_state_dir=state_dir, audit_run_remediate=True,
                     audit_run_classes=['instance_task_stuck', 'migration_unfinished'],
                     audit_run_repair_classes=['instance_task_stuck', 'migration_unfinished'],
                     audit_run_min_sightings=1, audit_run_authorities=['instances'], audit_run_method='db',
                     # The hosts were built up now; a loaded machine must not let them age into down.
                     audit_run_service_down_time=HOURS)

    checked = run_playbook(collections_path, PLAYBOOK, variables, check=True)
    assert checked.returncode == 0, checked.stdout[-6000:]
    assert not os.path.exists(state_dir)
    assert dbs.query('nova', 'SELECT task_state FROM instances WHERE uuid = %s', (stuck,)) == [
        {'task_state': 'rebooting'}]

    applied = run_playbook(collections_path, PLAYBOOK, variables)
    assert applied.returncode != 0, 'a refused repair must fail the run'
    calls = applied.tasks('End the stuck tasks and unfinished migrations the gate approved')[0]['results']
    # Two findings name the migrating instance (its task and its migration): both calls are refused.
    assert sorted((call['item'].get('instance'), call['changed']) for call in calls) == sorted(
        [([stuck], True), ([moving], False), ([moving], False)])
    outcome = outcome_of(applied)
    assert outcome['repair_calls'] == 3 and outcome['changed_calls'] == 1
    assert len(outcome['failed_calls']) == 2
    assert all(message.startswith('refused: migration %s of instance %s is running' % (migration, moving))
               and 'nova-compute on compute1, compute2 is up' in message for message in outcome['failed_calls'])
    assert sorted(outcome['still_there']) == sorted(['migration_unfinished:nova:cell1/migration/%s' % migration,
                                                     'instance_task_stuck:nova:cell1/instance/%s' % moving])
    assert dbs.query('nova', 'SELECT task_state, vm_state FROM instances WHERE uuid = %s', (stuck,)) == [
        {'task_state': None, 'vm_state': 'active'}]
    assert dbs.query('nova', 'SELECT status FROM migrations WHERE id = %s', (migration,)) == [{'status': 'running'}]
    assert len(outcome['journals']) == 1 and os.path.isfile(outcome['journals'][0])
