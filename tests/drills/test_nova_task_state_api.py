"""nova_task_state through the real Compute API of the drill lab.

The incident: nova-compute on compute1 dies, and a stop of one of its servers
is accepted by the API, which sets task_state powering-off and casts the
request to the dead compute. The server stays ACTIVE and powering-off; every
other action is refused while the task is set. The module refuses while the
task is younger than older_than, shows os-resetState at its pinned
microversion in check mode and changes nothing, then clears the task through
the API. Proven through the API; a second run changes nothing.
"""

import time

import pytest

from tests.drills.conftest import assert_call_journal, new_server, wait_for
from tests.integration.helpers import assert_clean_failure

MODULE = 'nova_task_state'
HOST = 'compute1'

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def test_a_stop_cast_to_a_dead_compute_is_cleared_through_nova(ansible, lab_client, admin, api_args, lab_env, cleanup,
                                                               compute1_restored):
    server = new_server(admin, 'task', cleanup, availability_zone='nova:%s' % HOST)
    assert server.compute_host == HOST
    lab_client.run('kill', 'nova-compute.%s' % HOST)
    admin.compute.stop_server(server.id)
    wait_for('Nova records the stop', lambda: admin.compute.get_server(server.id).task_state == 'powering-off', wait=30)
    time.sleep(3)
    stuck = admin.compute.get_server(server.id)
    assert (stuck.status, stuck.task_state) == ('ACTIVE', 'powering-off'), 'the stop did not get stuck'

    # The task changed a moment ago: Nova may still be working on it, so the module refuses with the evidence.
    refused = ansible(MODULE, api_args(instance=[server.id], method='api'), env=lab_env)
    assert_clean_failure(refused, 'task_state powering-off')
    assert [guard['guard'] for guard in refused['guards']] == ['task_recent'], refused['guards']
    assert refused['guards'][0]['evidence'][0]['id'] == server.id

    # The operator knows compute1 is dead: no age threshold.
    args = api_args(instance=[server.id], method='api', older_than=0, timeout=60)
    checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
    assert not checked.failed and checked.changed, checked['msg']
    assert [(step['call'], step['microversion'], step['arguments']) for step in checked['plan']] == [
        ('POST /servers/%s/action os-resetState' % server.id, '2.1', {'state': 'active'})]
    assert admin.compute.get_server(server.id).task_state == 'powering-off', 'check mode reset the task'

    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied['msg']
    assert applied['method'] == 'api'
    assert_call_journal(applied)
    # Proven through the API, not through the module.
    after = admin.compute.get_server(server.id)
    assert (after.status, after.vm_state, after.task_state) == ('ACTIVE', 'active', None)
    actions = [action.action for action in admin.compute.server_actions(server.id)]
    assert 'stop' in actions

    again = ansible(MODULE, args, env=lab_env)
    assert not again.failed and not again.changed, again
    assert any('no task in progress' in note for note in again['notes']), again['notes']
