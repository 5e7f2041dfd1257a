"""nova_task_state aborts and force-completes a running live migration through the real Compute API.

The incident: a live migration that makes no progress keeps its server in
task_state migrating, and Nova refuses every other action on it. The lab's
virt driver (tests/lab/drivers/stackmender_lab_compute_driver.py) holds the
live migration of a server carrying its metadata marker `running` until Nova
asks the source compute to abort or to force it (at most two minutes), the
state a stalled hypervisor copy leaves. The module refuses while the
migration has just started, shows the call at its pinned microversion in
check mode and changes nothing, then aborts it (DELETE at 2.24: the
migration ends cancelled, the server stays on the source) or forces it to
complete (force_complete at 2.22: the server ends on the destination).
Proven through the API; a second run changes nothing.
"""

import pytest

from tests.drills.conftest import assert_call_journal, new_server, wait_for
from tests.integration.helpers import assert_clean_failure

MODULE = 'nova_task_state'
SOURCE, DEST = 'compute1', 'compute2'
# The metadata key the lab's compute driver holds a live migration for.
HOLD_KEY = 'stackmender_hold_live_migration'
FINISHED = ('completed', 'cancelled', 'error', 'failed', 'done')

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def live_migration(admin, server_id):
    found = list(admin.compute.migrations(server_id=server_id, migration_type='live-migration'))
    assert len(found) == 1, [(migration.id, migration.status) for migration in found]
    return found[0]


@pytest.fixture
def held(admin, cleanup):
    """A server on compute1 whose live migration to compute2 Nova shows running: (server, migration id)."""
    server = new_server(admin, 'held', cleanup, availability_zone='nova:%s' % SOURCE, metadata={HOLD_KEY: 'drill'})
    assert server.compute_host == SOURCE
    # The fake driver reports shared storage, so a plain (not block) live migration.
    admin.compute.live_migrate_server(server, host=DEST, block_migration=False)

    def running():
        statuses = [migration.status for migration in
                    admin.compute.migrations(server_id=server.id, migration_type='live-migration')]
        assert not set(statuses) & set(FINISHED), 'the live migration ended %s instead of being held' % statuses
        return statuses == ['running']
    wait_for('Nova shows the live migration running', running, wait=60)
    migration = live_migration(admin, server.id)
    stuck = admin.compute.get_server(server.id)
    assert (stuck.status, stuck.task_state, stuck.compute_host) == ('MIGRATING', 'migrating', SOURCE)
    yield server, migration.id
    # A failed drill leaves no migration held for the next one: abort it before the server is deleted.
    if live_migration(admin, server.id).status == 'running':
        admin.compute.abort_server_migration(migration.id, server.id)
        wait_for('the left-over live migration ends', lambda: live_migration(admin, server.id).status in FINISHED)


def assert_still_held(admin, server_id):
    assert live_migration(admin, server_id).status == 'running', 'check mode ended the live migration'
    assert admin.compute.get_server(server_id).task_state == 'migrating', 'check mode changed the server'


def _check_apply_and_rerun(ansible, admin, lab_env, args, server_id, call, ended, host, action):
    """Check mode plans ``call`` (path, microversion) and leaves the migration running; the apply ends
    it as ``ended`` with the server ACTIVE on ``host`` and ``action`` recorded, proven through the API;
    a re-run changes nothing."""
    checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
    assert not checked.failed and checked.changed, checked['msg']
    assert [(step['call'], step['microversion']) for step in checked['plan']] == [call]
    assert_still_held(admin, server_id)

    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied['msg']
    assert applied['method'] == 'api' and not applied.get('warnings'), applied
    assert_call_journal(applied)
    assert [migration['ended_status'] for migration in applied['instances'][0]['migrations']] == [ended]
    # Proven through the API, not through the module.
    assert live_migration(admin, server_id).status == ended
    after = admin.compute.get_server(server_id)
    assert (after.status, after.vm_state, after.task_state, after.compute_host) == ('ACTIVE', 'active', None, host)
    actions = [entry.action for entry in admin.compute.server_actions(server_id)]
    assert action in actions, actions

    again = ansible(MODULE, args, env=lab_env)
    assert not again.failed and not again.changed, again
    assert any('no task in progress' in note for note in again['notes']), again['notes']


def test_a_running_live_migration_is_aborted_through_nova(ansible, admin, api_args, lab_env, held):
    server, migration_id = held

    # The migration started a moment ago: Nova may still be copying, so the module refuses with the evidence.
    refused = ansible(MODULE, api_args(instance=[server.id], migration=[str(migration_id)], action='abort',
                                       method='api'), env=lab_env)
    assert_clean_failure(refused, 'task_state migrating')
    assert set(guard['guard'] for guard in refused['guards']) == {'task_recent'}, refused['guards']
    assert_still_held(admin, server.id)

    # The operator has seen it make no progress: no age threshold.
    args = api_args(instance=[server.id], migration=[str(migration_id)], action='abort', method='api',
                    older_than=0, timeout=60)
    # Rolled back on the source.
    _check_apply_and_rerun(ansible, admin, lab_env, args, server.id,
                           call=('DELETE /servers/%s/migrations/%s' % (server.id, migration_id), '2.24'),
                           ended='cancelled', host=SOURCE, action='live_migration_cancel')


def test_a_running_live_migration_is_forced_to_complete_through_nova(ansible, admin, api_args, lab_env, held):
    server, migration_id = held
    args = api_args(instance=[server.id], migration=[str(migration_id)], action='force_complete', method='api',
                    older_than=0, timeout=60)

    # The guest finished its move to the destination.
    _check_apply_and_rerun(ansible, admin, lab_env, args, server.id,
                           call=('POST /servers/%s/migrations/%s/action force_complete' % (server.id, migration_id),
                                 '2.22'),
                           ended='completed', host=DEST, action='live_migration_force_complete')
