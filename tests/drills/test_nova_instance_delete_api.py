"""nova_instance_delete through the real Compute API of the drill lab.

The incident: nova-compute on compute1 dies with a server (and its volume) on
it. Deleted by hand at once, while Nova still counts the service up, Nova
hands the delete to the dead compute and the server stays ACTIVE with
task_state deleting; repeating the delete changes nothing. The module refuses
while that is so, then, once Nova counts compute1 down, deletes the server:
Nova deletes it without its compute (local delete), releases the volume and
the placement allocations. Proven through the APIs and the placement
database; a second run changes nothing. compute1 then comes back.
"""

import contextlib
import threading
import time

import pytest

from tests.drills.conftest import assert_call_journal, attach, compute_service, new_server, new_volume, wait_for, wait_status
from tests.integration.helpers import assert_clean_failure

MODULE = 'nova_instance_delete'
HOST = 'compute1'

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


@contextlib.contextmanager
def heartbeat_kept(lab_client, lab, host):
    stop = threading.Event()
    connection = lab_client.connect_database(lab)

    def beat():
        while True:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE nova.services SET last_seen_up = UTC_TIMESTAMP() WHERE host = %s AND "
                               "`binary` = 'nova-compute' AND deleted = 0", (host,))
            if stop.wait(2):
                return
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        connection.close()


def test_server_on_a_dead_compute_is_deleted_through_nova(ansible, lab, lab_client, admin, api_args, lab_env, sql,
                                                          cleanup, compute1_restored):
    server = new_server(admin, 'delete', cleanup, availability_zone='nova:%s' % HOST)
    volume = new_volume(admin, admin, 'delete', cleanup)
    attach(admin, admin, server, volume)
    assert server.compute_host == HOST
    assert sql('SELECT consumer_id FROM placement.allocations WHERE consumer_id = %s', server.id)
    args = api_args(instance=[server.id], method='api', timeout=90)

    lab_client.run('kill', 'nova-compute.%s' % HOST)
    # By hand, a moment after the host died: Nova still counts compute1 up and casts the delete to it.
    admin.compute.delete_server(server.id)
    wait_for('Nova records the delete', lambda: admin.compute.get_server(server.id).task_state == 'deleting', wait=30)
    admin.compute.delete_server(server.id)  # repeated: Nova ignores it
    time.sleep(3)
    stuck = admin.compute.get_server(server.id)
    assert (stuck.status, stuck.task_state) == ('ACTIVE', 'deleting'), 'the hand delete did not get stuck'

    # The window before Nova counts compute1 down is service_down_time (30 s in the lab); under load it can pass
    # before the module reads the service. Keep writing the heartbeat the dying compute last left until the
    # module has answered, so Nova counts it up as in the incident's first minute.
    with heartbeat_kept(lab_client, lab, HOST):
        refused = ansible(MODULE, args, env=lab_env)
    assert_clean_failure(refused, 'Nova ignores another delete until that compute finishes it')
    assert refused['guards'][0]['guard'] == 'delete_already_cast'
    shown_server, shown_service = refused['guards'][0]['evidence']
    assert (shown_server['task_state'], shown_service['host'], shown_service['state']) == ('deleting', HOST, 'up')

    wait_for('Nova counts compute1 down', lambda: compute_service(admin, HOST).state == 'down')
    checked = ansible(MODULE, args, check=True, diff=True, env=lab_env)
    assert not checked.failed and checked.changed, checked['msg']
    assert [(step['call'], step['microversion']) for step in checked['plan']] == [
        ('DELETE /servers/%s' % server.id, '2.1')]
    assert checked['instances'][0]['compute_service'] == 'down'
    assert admin.compute.get_server(server.id).task_state == 'deleting', 'check mode deleted'

    applied = ansible(MODULE, args, env=lab_env)
    assert not applied.failed and applied.changed, applied['msg']
    assert applied['method'] == 'api'
    assert_call_journal(applied)

    # Proven through the APIs and placement's own rows, not through the module.
    assert admin.compute.find_server(server.id, ignore_missing=True, all_projects=True) is None
    assert wait_status(admin, volume.id, 'available').attachments == []
    assert not sql('SELECT id FROM placement.allocations WHERE consumer_id = %s', server.id)
    assert not sql('SELECT id FROM placement.consumers WHERE uuid = %s', server.id)
    mapping = sql('SELECT queued_for_delete FROM nova_api.instance_mappings WHERE instance_uuid = %s', server.id)
    assert [row['queued_for_delete'] for row in mapping] == [1]

    again = ansible(MODULE, args, env=lab_env)
    assert not again.failed and not again.changed, again
    assert again['notes'] == ['instance %s is already deleted' % server.id]
