"""Smoke test of the drill lab: a volume and a server through their whole life.

Every step goes through openstacksdk as the member user and is then checked
twice: through the API (admin view) and in the services' own database rows.
The `lab` fixture (tests/conftest.py, session-wide, shared with the drills)
brings the lab up when it is not running and takes it down at the end only
if this session brought it up.
"""

import time
import uuid

import pytest

import lab_client

WAIT = 120

pytestmark = [
    pytest.mark.lab,
    # One lab per machine: under pytest-xdist (--dist loadgroup) every test
    # that uses it runs in the same worker, so no worker takes it down while
    # another still uses it.
    pytest.mark.xdist_group("lab"),
    # openstacksdk announces its own future API changes on almost every call.
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning"),
]


@pytest.fixture(scope="module")
def admin(lab):
    return lab_client.connect_cloud(lab, "lab-admin")


@pytest.fixture(scope="module")
def member(lab):
    return lab_client.connect_cloud(lab, "lab-member")


@pytest.fixture
def sql(lab):
    connection = lab_client.connect_database(lab)

    def query(statement, *parameters):
        with connection.cursor() as cursor:
            cursor.execute(statement, parameters)
            columns = [column[0] for column in cursor.description]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]
    yield query
    connection.close()


def gone(find, timeout=30):
    """True once ``find()`` returns None, polling for up to ``timeout`` seconds."""
    deadline = time.time() + timeout
    while find() is not None:
        if time.time() > deadline:
            return False
        time.sleep(0.5)
    return True


def one(rows):
    assert len(rows) == 1, rows
    return rows[0]


def test_every_lab_process_runs_and_reports(lab, sql):
    assert lab_client.is_up()
    hosts = {(row["binary"], row["host"]) for row in sql(
        "SELECT `binary`, host FROM nova.services WHERE deleted = 0 "
        "AND updated_at > UTC_TIMESTAMP() - INTERVAL 60 SECOND")}
    for host in lab["layout"]["computes"]:
        assert ("nova-compute", host) in hosts
    assert {("nova-conductor", "controller"), ("nova-scheduler", "controller")} <= hosts
    volume_hosts = {row["host"] for row in sql(
        "SELECT host FROM cinder.services WHERE deleted = 0 AND `binary` = 'cinder-volume' "
        "AND updated_at > UTC_TIMESTAMP() - INTERVAL 60 SECOND")}
    assert set(lab["layout"]["volume_hosts"]) <= volume_hosts


def test_volume_and_server_lifecycle(lab, admin, member, sql):
    name = "smoke-%s" % uuid.uuid4().hex[:8]
    project_id = member.current_project_id
    image = member.image.find_image(lab["image"], ignore_missing=False)
    volume = server = None
    timings = {}
    started = time.time()
    try:
        # 1. create a volume
        volume = member.block_storage.create_volume(name=name, size=1)
        volume = member.block_storage.wait_for_status(volume, "available", failures=["error"],
                                                      interval=0.5, wait=WAIT)
        timings["volume available"] = time.time() - started
        seen = admin.block_storage.get_volume(volume.id)
        assert (seen.status, seen.size, seen.project_id) == ("available", 1, project_id)
        backend_host = seen.host.split("#")[0]
        assert backend_host in lab["layout"]["volume_hosts"]
        row = one(sql("SELECT status, attach_status, host, project_id FROM cinder.volumes "
                      "WHERE id = %s AND deleted = 0", volume.id))
        assert row == {"status": "available", "attach_status": "detached", "host": seen.host,
                       "project_id": project_id}

        # 2. boot a server
        server = member.compute.create_server(name=name, flavor_id=lab["flavor"], image_id=image.id,
                                              networks="none")
        server = member.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"],
                                                interval=0.5, wait=WAIT)
        timings["server active"] = time.time() - started
        compute_host = admin.compute.get_server(server.id).compute_host
        assert compute_host in lab["layout"]["computes"]
        row = one(sql("SELECT vm_state, power_state, host, node, project_id FROM nova.instances "
                      "WHERE uuid = %s AND deleted = 0", server.id))
        assert row == {"vm_state": "active", "power_state": 1, "host": compute_host, "node": compute_host,
                       "project_id": project_id}
        one(sql("SELECT m.id FROM nova_api.instance_mappings m JOIN nova_api.cell_mappings c "
                "ON c.id = m.cell_id WHERE m.instance_uuid = %s AND c.name = 'cell1'", server.id))
        providers = {row["name"] for row in sql(
            "SELECT DISTINCT rp.name FROM placement.allocations a JOIN placement.resource_providers rp "
            "ON rp.id = a.resource_provider_id WHERE a.consumer_id = %s", server.id)}
        assert providers == {compute_host}

        # 3. attach the volume
        attachment = member.compute.create_volume_attachment(server, volume_id=volume.id)
        member.block_storage.wait_for_status(volume, "in-use", failures=["error"], interval=0.5, wait=WAIT)
        timings["attached"] = time.time() - started
        seen = admin.block_storage.get_volume(volume.id)
        assert [a["server_id"] for a in seen.attachments] == [server.id]
        assert [a.volume_id for a in member.compute.volume_attachments(server)] == [volume.id]
        row = one(sql("SELECT status, attach_status FROM cinder.volumes WHERE id = %s", volume.id))
        assert row == {"status": "in-use", "attach_status": "attached"}
        cinder_attachment = one(sql(
            "SELECT id, instance_uuid, attached_host, attach_status FROM cinder.volume_attachment "
            "WHERE volume_id = %s AND deleted = 0", volume.id))
        assert cinder_attachment["instance_uuid"] == server.id
        assert cinder_attachment["attach_status"] == "attached"
        # The attachment records the nova compute host, taken from its connector.
        assert cinder_attachment["attached_host"] == compute_host
        bdm = one(sql("SELECT attachment_id, device_name FROM nova.block_device_mapping "
                      "WHERE instance_uuid = %s AND volume_id = %s AND deleted = 0", server.id, volume.id))
        assert bdm["attachment_id"] == cinder_attachment["id"]
        assert bdm["device_name"] == attachment.device

        # 4. detach it
        member.compute.delete_volume_attachment(server, volume.id)
        member.block_storage.wait_for_status(volume, "available", failures=["error"], interval=0.5, wait=WAIT)
        timings["detached"] = time.time() - started
        assert admin.block_storage.get_volume(volume.id).attachments == []
        assert list(member.compute.volume_attachments(server)) == []
        row = one(sql("SELECT status, attach_status FROM cinder.volumes WHERE id = %s", volume.id))
        assert row == {"status": "available", "attach_status": "detached"}
        row = one(sql("SELECT attach_status, deleted FROM cinder.volume_attachment WHERE id = %s",
                      cinder_attachment["id"]))
        assert row == {"attach_status": "detached", "deleted": 1}
        assert sql("SELECT id FROM nova.block_device_mapping WHERE instance_uuid = %s AND volume_id = %s "
                   "AND deleted = 0", server.id, volume.id) == []

        # 5. delete the server
        member.compute.delete_server(server)
        member.compute.wait_for_delete(server, interval=0.5, wait=WAIT)
        timings["server deleted"] = time.time() - started
        # The member's view can lose the server a moment before the admin's: poll, bounded.
        assert gone(lambda: admin.compute.find_server(server.id, ignore_missing=True, all_projects=True))
        row = one(sql("SELECT id, deleted, vm_state FROM nova.instances WHERE uuid = %s", server.id))
        assert row["deleted"] == row["id"] and row["vm_state"] == "deleted"   # nova soft-deletes with deleted = id
        assert sql("SELECT id FROM placement.allocations WHERE consumer_id = %s", server.id) == []
        server = None

        # 6. delete the volume
        member.block_storage.delete_volume(volume)
        member.block_storage.wait_for_delete(volume, interval=0.5, wait=WAIT)
        timings["volume deleted"] = time.time() - started
        assert gone(lambda: admin.block_storage.find_volume(volume.id, ignore_missing=True, all_projects=True))
        row = one(sql("SELECT status, deleted FROM cinder.volumes WHERE id = %s", volume.id))
        assert row == {"status": "deleted", "deleted": 1}      # cinder soft-deletes with deleted = 1
        volume = None
    finally:
        print("smoke timings (s): " + ", ".join("%s %.1f" % item for item in timings.items()))
        if server is not None:
            member.compute.delete_server(server, ignore_missing=True)
            member.compute.wait_for_delete(server, interval=0.5, wait=WAIT)
        if volume is not None:
            admin.block_storage.delete_volume(volume, ignore_missing=True, force=True)
