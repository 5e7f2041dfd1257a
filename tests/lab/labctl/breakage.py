"""Break the lab the way incidents do, and record the state that results.

break_detach: a volume's cinder-volume dies in the middle of a detach.

  1. The member user boots a server and attaches a new volume.
  2. The lab arms a hold in the volume's backend driver
     (drivers/stackmender_lab_volume_driver.py) and asks nova to detach.
  3. nova-api marks the volume `detaching` (cinder begin_detaching) and casts
     to nova-compute, which detaches it from the guest and asks cinder-api
     to delete the attachment; cinder-api calls that volume's cinder-volume
     over RPC, which enters the driver's terminate_connection and holds.
  4. The lab SIGKILLs that cinder-volume's process group.
  5. cinder-api gets no reply (rpc_response_timeout, 10 s in the lab) and
     answers 500; nova retries the attachment delete five times, then gives
     up: the detach_volume action ends in Error and nothing rolls back.

What is left (and verified before returning):
  * cinder: volume status `detaching`, attach_status `attached`, its
    attachment row live (attach_status `attached`, deleted 0), volumes.host
    still the dead service's host;
  * nova: the block device mapping of the volume still live (deleted 0); the
    guest no longer has the disk (the fake driver detached it);
  * the instance action `detach_volume` with its event
    `compute_detach_volume` finished as `Error`.
By default the killed cinder-volume is started again afterwards, as a
supervisor would; that heals nothing (cinder does not revisit `detaching`
volumes at start-up), so the cloud is healthy and only the volume is stuck.
"""

import json
import time

from . import fixtures, settings
from .infra import LabError, wait_for

HOLD_POINT = "terminate_connection"
NOVA_GIVES_UP_AFTER = 5 * (settings.CINDER_API_RPC_TIMEOUT + 5) + 60


def _wait_status(proxy, resource, status, timeout=120):
    return proxy.wait_for_status(resource, status=status, failures=["error"], interval=0.5, wait=timeout)


def _detach_action(admin, server_id):
    """The server's detach_volume action with its events (microversion 2.84
    shows events and their details to the admin)."""
    actions = admin.compute.get("/servers/%s/os-instance-actions" % server_id,
                                microversion="2.84").json()["instanceActions"]
    detach = [action for action in actions if action["action"] == "detach_volume"]
    if not detach:
        return None
    request_id = detach[0]["request_id"]
    action = admin.compute.get("/servers/%s/os-instance-actions/%s" % (server_id, request_id),
                               microversion="2.84").json()["instanceAction"]
    for event in action.get("events") or []:
        event.pop("traceback", None)    # long, and nova-compute's log has it
    return action


def _detach_failed(admin, server_id):
    action = _detach_action(admin, server_id)
    events = (action or {}).get("events") or []
    return any(event["event"] == "compute_detach_volume" and event.get("finish_time") and
               event.get("result") == "Error" for event in events)


def collect_evidence(control, admin, server_id, volume_id):
    """The volume's and server's state as the APIs and the databases show it."""
    volume = admin.block_storage.get_volume(volume_id)
    attachments = admin.block_storage.get(
        "/attachments/detail?all_tenants=1&volume_id=%s" % volume_id,
        microversion="3.27").json()["attachments"]
    server_attachments = admin.compute.get(
        "/servers/%s/os-volume_attachments" % server_id, microversion="2.89").json()["volumeAttachments"]
    evidence = {
        "api": {
            "volume": {"status": volume.status, "host": volume.host,
                       "attachments": [{"attachment_id": a.get("attachment_id"), "server_id": a.get("server_id")}
                                       for a in volume.attachments or []]},
            "cinder_attachments": [{"id": a["id"], "status": a["status"], "instance": a["instance"],
                                    "attached_at": a.get("attached_at")} for a in attachments],
            "nova_volume_attachments": [{"volumeId": a["volumeId"], "attachment_id": a.get("attachment_id"),
                                         "device": a.get("device")} for a in server_attachments],
            "detach_action": _detach_action(admin, server_id),
        },
        "database": {},
    }
    queries = {
        "cinder.volumes": ("SELECT id, status, attach_status, host, service_uuid, deleted FROM cinder.volumes "
                           "WHERE id = %s", volume_id),
        "cinder.volume_attachment": ("SELECT id, instance_uuid, attached_host, attach_status, attach_mode, "
                                     "deleted FROM cinder.volume_attachment WHERE volume_id = %s", volume_id),
        "nova.block_device_mapping": ("SELECT id, instance_uuid, volume_id, attachment_id, device_name, deleted "
                                      "FROM nova.block_device_mapping WHERE volume_id = %s", volume_id),
    }
    with control.database.connection() as connection, connection.cursor() as cursor:
        for name, (sql, parameter) in queries.items():
            cursor.execute(sql, (parameter,))
            columns = [column[0] for column in cursor.description]
            evidence["database"][name] = [dict(zip(columns, row)) for row in cursor.fetchall()]
    return evidence


def break_detach(control, wait_for_nova=True, restart_service=True):
    lab = control.lab
    hold_dir = lab.run_dir / "hold"
    hold_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    timeline = {}

    def mark(what):
        timeline[what] = round(time.time() - started, 1)

    admin = fixtures.connect(lab)
    member = fixtures.connect(lab, settings.MEMBER)
    stamp = time.strftime("%H%M%S")
    image = member.image.find_image(settings.IMAGE_NAME, ignore_missing=False)
    volume = member.block_storage.create_volume(name="drill-detach-%s" % stamp, size=1)
    server = member.compute.create_server(name="drill-detach-%s" % stamp, flavor_id=settings.FLAVOR["id"],
                                          image_id=image.id, networks="none")
    volume = _wait_status(member.block_storage, volume, "available")
    server = member.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=0.5, wait=120)
    member.compute.create_volume_attachment(server, volume_id=volume.id)
    _wait_status(member.block_storage, volume, "in-use")
    mark("attached")

    volume_host = admin.block_storage.get_volume(volume.id).host.split("#")[0]
    service = control.service(volume_host)
    request = hold_dir / HOLD_POINT
    reached = hold_dir / (HOLD_POINT + ".reached")
    reached.unlink(missing_ok=True)
    request.write_text(volume.id)
    try:
        member.compute.delete_volume_attachment(server, volume.id)
        mark("detach requested")
        wait_for(reached.exists, 60, "the detach to reach %s's driver" % service.name)
        mark("cinder-volume inside terminate_connection")
        control.kill_services([service.name])
        mark("cinder-volume killed")
    finally:
        request.unlink(missing_ok=True)
        reached.unlink(missing_ok=True)

    result = {
        "scenario": "cinder-volume killed mid-detach",
        "server_id": server.id,
        "server_host": admin.compute.get_server(server.id).compute_host,
        "volume_id": volume.id,
        "volume_host": volume_host,
        "killed_service": service.name,
        "service_restarted": False,
    }
    if wait_for_nova:
        # nova retries the attachment delete five times before it gives up.
        wait_for(lambda: _detach_failed(admin, server.id), NOVA_GIVES_UP_AFTER,
                 "nova to give up the detach", interval=2)
        mark("nova gave up the detach")
        if restart_service:
            control.start_services([service.name])
            result["service_restarted"] = True
            mark("cinder-volume started again")
    result["timeline_s"] = timeline
    result.update(collect_evidence(control, admin, server.id, volume.id))
    if wait_for_nova:
        _verify_broken(result)
    record = lab.path("drills", "break-detach-%s.json" % stamp)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(result, indent=2, default=str))
    result["record"] = str(record)
    return result


def _verify_broken(result):
    """Refuse to report success unless the promised broken state is there."""
    volume_rows = result["database"]["cinder.volumes"]
    live_attachments = [row for row in result["database"]["cinder.volume_attachment"] if not row["deleted"]]
    live_bdms = [row for row in result["database"]["nova.block_device_mapping"] if not row["deleted"]]
    problems = []
    if result["api"]["volume"]["status"] != "detaching":
        problems.append("volume status is %r, not 'detaching'" % result["api"]["volume"]["status"])
    if not volume_rows or volume_rows[0]["attach_status"] != "attached":
        problems.append("volumes.attach_status is not 'attached'")
    if len(live_attachments) != 1:
        problems.append("%d live attachment rows, expected 1" % len(live_attachments))
    if len(live_bdms) != 1:
        problems.append("%d live block device mappings, expected 1" % len(live_bdms))
    if problems:
        raise LabError("break-detach did not leave the expected state: " + "; ".join(problems))
