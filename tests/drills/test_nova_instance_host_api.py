"""nova_instance_host through the real Compute API of the drill lab.

The incident: nova-compute on compute1 dies with a server on it. The module
refuses while Nova still counts the service up, then fences it (forced down,
disabled) and evacuates the server to compute2. The server is proven ACTIVE
on compute2 through the API; a second run changes nothing. compute1 then
comes back, destroys its stale guest as Nova's evacuation record tells it,
and is enabled again.
"""


import pytest

from tests.drills.conftest import assert_call_journal, compute_service, new_server, wait_for
from tests.integration.helpers import assert_clean_failure

MODULE = 'nova_instance_host'
SOURCE, TARGET = 'compute1', 'compute2'

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def test_dead_compute_is_fenced_and_its_server_evacuated(ansible, lab_client, admin, api_args, lab_env, cleanup,
                                                         compute1_restored):
    server = new_server(admin, 'evacuate', cleanup, availability_zone='nova:%s' % SOURCE)
    assert server.compute_host == SOURCE
    args = api_args(instance=server.id, host=TARGET, method='api', timeout=90)

    lab_client.run('kill', 'nova-compute.%s' % SOURCE)
    # Killed a moment ago, the service still counts as up in Nova: evacuating now could run the guest twice.
    refused = ansible(MODULE, args, env=lab_env)
    assert_clean_failure(refused, 'the nova-compute service of source host %s is up' % SOURCE)
    evidence = refused['guards'][0]['evidence'][0]
    assert refused['guards'][0]['guard'] == 'source_service_up'
    assert (evidence['host'], evidence['state'], evidence['forced_down']) == (SOURCE, 'up', False)
    assert not compute_service(admin, SOURCE).is_forced_down

    wait_for('Nova counts compute1 down', lambda: compute_service(admin, SOURCE).state == 'down')
    checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
    assert not checked.failed and checked.changed, checked['msg']
    service = compute_service(admin, SOURCE)
    assert [(step['call'], step['microversion']) for step in checked['plan']] == [
        ('PUT /os-services/%s' % service.id, '2.53'), ('POST /servers/%s/action evacuate' % server.id, '2.68')]
    assert checked['plan'][0]['arguments']['forced_down'] is True
    assert checked['plan'][0]['arguments']['status'] == 'disabled'
    assert checked['evacuations'] == [dict(instance=server.id, from_host=SOURCE, to_host=TARGET, microversion='2.68',
                                           expected_status='ACTIVE', expected_power_state=1)]
    assert checked['diff']['after']['compute']['servers/%s' % server.id]['host'] == TARGET
    assert admin.compute.get_server(server.id).compute_host == SOURCE, 'check mode evacuated'
    assert not service.is_forced_down, 'check mode forced the service down'

    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied['msg']
    assert applied['method'] == 'api'
    assert_call_journal(applied)
    evacuation = applied['evacuations'][0]
    assert (evacuation['microversion'], evacuation['status'], evacuation['power_state'],
            evacuation['power_state_name'], evacuation['host']) == ('2.68', 'ACTIVE', 1, 'running', TARGET)

    # Proven through the API, not through the module.
    moved = admin.compute.get_server(server.id)
    assert (moved.status, moved.compute_host, moved.power_state, moved.task_state) == ('ACTIVE', TARGET, 1, None)
    service = compute_service(admin, SOURCE)
    assert service.is_forced_down and service.status == 'disabled'
    assert 'evacuated to %s' % TARGET in service.disabled_reason
    evacuations = [migration for migration in admin.compute.migrations(server_id=server.id)
                   if migration.migration_type == 'evacuation']
    assert [(migration.source_compute, migration.dest_compute) for migration in evacuations] == [(SOURCE, TARGET)]

    again = ansible(MODULE, args, env=lab_env)
    assert not again.failed and not again.changed, again
    assert again['notes'] == ['instance %s is already on host %s' % (server.id, TARGET)]
    emptied = ansible(MODULE, api_args(from_host=SOURCE, host=TARGET, method='api'), env=lab_env)
    assert not emptied.failed and not emptied.changed and emptied['notes'] == ['no instance on host %s' % SOURCE]
