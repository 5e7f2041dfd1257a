"""CloudBuilder: realistic Nova, Cinder and Placement rows, written with
plain parameterized SQL into a database set holding the real schemas.

Rows look like the ones the services write themselves: their timestamps
(naive UTC, as oslo.db stores them), soft-delete conventions, the service,
RPC and object versions of the installed release, and nova's serialised
objects (flavor, keypairs, request spec) produced by that release's own nova
when the schema snapshot was built.

Every method has sensible defaults, returns the id (integer primary key) or
uuid it created, and takes ``**columns`` to set or override any column of
its main row (``deleted=True`` soft-deletes the row with the service's own
convention: nova ``deleted = id``, cinder ``deleted = 1``).

Columns that only exist in some releases (``instances.compute_id``,
``migrations.dest_compute_id``, cinder ``use_quota``, BDM encryption fields,
...) are found by probing information_schema, so the same calls work on
every supported release.

Objects are made consistent where one service writes several rows in one
go (an instance comes with its instance_extra, info cache, EC2 id mapping,
root BDM, API instance mapping and request spec); relations between
services (a volume attached through Cinder *and* Nova) are explicit calls,
so a test can build exactly the inconsistency it needs. ``compute_host`` and
``attach_volume`` build the consistent versions in one call.
"""

import copy
import datetime
import json
import uuid as uuidlib

from tests.harness.dbset import run_batch


NOVA_CELLS = {"cell1": "nova", "cell0": "nova_cell0", "cell2": "nova_cell2"}
NOVA_TOPICS = {"nova-compute": "compute", "nova-conductor": "conductor", "nova-scheduler": "scheduler"}
# Used when the snapshot could not read them from the installed cinder.
CINDER_FALLBACK_VERSIONS = {"objects": "1.39", "cinder-scheduler": "3.12", "cinder-volume": "3.20",
                            "cinder-backup": "2.4"}
DOWN_FOR = datetime.timedelta(hours=1)  # heartbeat age of a service built with up=False
CUSTOM_RESOURCE_CLASS_MIN_ID = 10000  # placement's first id for CUSTOM_* classes
DEFAULT_DEVICE_NAME = "/dev/vdb"
_AUTO = object()  # "derive it" (None is a meaningful explicit value)


def utcnow():
    """Naive UTC without microseconds, as oslo.db writes DATETIME columns."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def new_uuid():
    return str(uuidlib.uuid4())


class CloudBuilder:
    """Writes rows into ``dbset`` (a tests.harness.dbset.DatabaseSet)."""

    def __init__(self, dbset, project_id=None, user_id=None):
        self.db = dbset
        self.schema = dbset.snapshot  # the SchemaSnapshot (not to be confused with snapshot())
        self.facts = dbset.snapshot.facts
        # Hex ids: cinder-api only routes project ids matching [0-9a-f-]+.
        self.project_id = project_id or uuidlib.uuid4().hex
        self.user_id = user_id or uuidlib.uuid4().hex
        self._columns = None
        self._default_flavor = None
        self._standard_classes_synced = False

    # ------------------------------------------------------------------
    # Generic helpers

    def columns(self, logical, table):
        """Column names of a table in this set, read from information_schema."""
        if self._columns is None:
            by_schema = {self.db.name(name): name for name in self.db.names}
            self._columns = {}
            rows = self.db.query(
                "nova_api",
                "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                "WHERE table_schema IN (" + ", ".join(["%s"] * len(by_schema)) + ") ORDER BY ordinal_position",
                list(by_schema))
            for row in rows:
                key = (by_schema[row["table_schema"]], row["table_name"])
                self._columns.setdefault(key, []).append(row["column_name"])
        return self._columns.get((logical, table), [])

    def has_column(self, logical, table, column):
        return column in self.columns(logical, table)

    def insert(self, logical, table, values, optional=()):
        """INSERT one row (parameterized) and return its lastrowid.

        Keys listed in ``optional`` are dropped when this release's table has
        no such column; any other unknown key is an error, so a typo never
        passes silently. ``deleted=True`` soft-deletes the new row the way
        its service does."""
        existing = set(self.columns(logical, table))
        if not existing:
            raise KeyError(f"{logical}.{table} does not exist in this schema")
        values = {key: value for key, value in values.items() if key in existing or key not in optional}
        unknown = [key for key in values if key not in existing]
        if unknown:
            raise KeyError(f"{logical}.{table} has no column(s) {unknown} in release {self.schema.release}")
        soft_delete = values.get("deleted") is True
        if soft_delete:
            values["deleted"] = 0
            if "deleted_at" in existing and values.get("deleted_at") is None:
                values["deleted_at"] = utcnow()
        row_id = self.db.insert(logical, table, values)
        if soft_delete:
            self._soft_delete(logical, table, values, row_id)
        return row_id

    def _soft_delete(self, logical, table, values, row_id):
        if logical.startswith("nova") and logical != "nova_api":
            # oslo.db soft_delete(): deleted = id, so unique keys that
            # include `deleted` allow a new live row.
            self.db.execute(logical, f"UPDATE `{table}` SET deleted = id WHERE id = %s", (row_id,))
            return
        key = values.get("id") or row_id  # uuid primary key, or the auto-increment id
        extra = ""
        if table == "quota_usages":
            extra = ", race_preventer = NULL"  # cinder's QuotaUsage.delete_values()
        elif table == "clusters":
            extra = ", race_preventer = id"
        self.db.execute(logical, f"UPDATE `{table}` SET deleted = 1{extra} WHERE id = %s", (key,))

    def row(self, logical, table, **where):
        """The single row matching ``where`` (a dict), or None."""
        rows = self.rows(logical, table, **where)
        if len(rows) > 1:
            raise LookupError(f"{len(rows)} rows of {logical}.{table} match {where}")
        return rows[0] if rows else None

    def rows(self, logical, table, **where):
        """Rows of a table matching ``where``, ordered by primary key."""
        clause = " AND ".join(f"`{column}` = %s" for column in where) or "1"
        order = "id" if self.has_column(logical, table, "id") else "1"
        return self.db.query(logical, f"SELECT * FROM `{table}` WHERE {clause} ORDER BY {order}",
                             list(where.values()))

    @staticmethod
    def _timestamps(columns):
        now = utcnow()
        values = {"created_at": now, "updated_at": None, "deleted_at": None, "deleted": 0}
        values.update(columns)
        return values

    # ------------------------------------------------------------------
    # Cinder

    @property
    def default_volume_type_id(self):
        """Id of cinder's ``__DEFAULT__`` volume type (seeded by the migrations)."""
        return self.db.scalar("cinder", "SELECT id FROM volume_types WHERE name = '__DEFAULT__' AND deleted = 0")

    def volume_type(self, name, is_public=True, description=None, extra_specs=None, **columns):
        """A volume type (+ its extra specs, e.g. ``{"volume_backend_name": "lvm"}``); returns its id."""
        type_id = columns.pop("id", None) or new_uuid()
        self.insert("cinder", "volume_types", self._timestamps({
            "id": type_id, "name": name, "qos_specs_id": None, "is_public": is_public,
            "description": description, **columns}))
        for key, value in (extra_specs or {}).items():
            self.insert("cinder", "volume_type_extra_specs", self._timestamps({
                "volume_type_id": type_id, "key": key, "value": value}))
        return type_id

    def cinder_service(self, host, binary="cinder-volume", up=True, disabled=False, cluster_name=None,
                       availability_zone="nova", disabled_reason=None, **columns):
        """A cinder service row (``host`` is ``host@backend`` for cinder-volume);
        returns its id. ``up=False`` gives it a heartbeat an hour old.
        A ``cluster_name`` also creates the cluster row if missing."""
        now = utcnow()
        heartbeat = now if up else now - DOWN_FOR
        versions = self._cinder_versions()
        if cluster_name:
            self._cinder_cluster(cluster_name, binary)
        values = {
            "created_at": heartbeat - datetime.timedelta(days=1), "updated_at": heartbeat,
            "deleted_at": None, "deleted": False,
            "host": host, "binary": binary, "topic": binary, "report_count": 100,
            "disabled": disabled, "disabled_reason": disabled_reason, "availability_zone": availability_zone,
            "modified_at": None,
            "rpc_current_version": versions.get(binary, versions["cinder-volume"]),
            "object_current_version": versions["objects"],
            "replication_status": "not-capable", "frozen": False, "active_backend_id": None,
            "cluster_name": cluster_name, "uuid": new_uuid(),
        }
        values.update(columns)
        return self.insert("cinder", "services", values)

    def _cinder_versions(self):
        versions = dict(CINDER_FALLBACK_VERSIONS)
        versions.update(self.facts.get("cinder_rpc_versions") or {})
        if self.facts.get("cinder_object_version"):
            versions["objects"] = self.facts["cinder_object_version"]
        return versions

    def _cinder_cluster(self, name, binary):
        existing = self.db.scalar("cinder", "SELECT id FROM clusters WHERE name = %s AND `binary` = %s AND deleted = 0",
                                  (name, binary))
        if existing:
            return existing
        # race_preventer is 0 while the cluster lives (set to id on delete).
        return self.insert("cinder", "clusters", self._timestamps({
            "name": name, "binary": binary, "disabled": False, "disabled_reason": None, "race_preventer": 0,
            "replication_status": "not-capable", "active_backend_id": None, "frozen": False}))

    def _service_uuid_for(self, volume_host):
        """The uuid of the live cinder-volume service that owns ``host@backend[#pool]``."""
        if not volume_host:
            return None
        return self.db.scalar(
            "cinder", "SELECT uuid FROM services WHERE `binary` = 'cinder-volume' AND host = %s AND deleted = 0 "
                      "ORDER BY id DESC LIMIT 1", (volume_host.split("#")[0],))

    def volume(self, host="cinder@lvm#lvm", status="available", attach_status="detached", size=1,
               project_id=None, user_id=None, volume_type=None, service_uuid=_AUTO, migration_status=None,
               multiattach=False, display_name=None, bootable=False, **columns):
        """A cinder volume; returns its id. ``volume_type`` defaults to
        ``__DEFAULT__``; ``service_uuid`` defaults to the live cinder-volume
        service of ``host`` (without the pool), as cinder records it."""
        volume_id = columns.pop("id", None) or new_uuid()
        now = utcnow()
        if service_uuid is _AUTO:
            service_uuid = self._service_uuid_for(host)
        values = {
            "created_at": now, "updated_at": now, "deleted_at": None, "deleted": False,
            "id": volume_id, "user_id": user_id or self.user_id, "project_id": project_id or self.project_id,
            "host": host, "size": size, "availability_zone": "nova", "status": status,
            "attach_status": attach_status, "scheduled_at": now, "launched_at": now if host else None,
            "display_name": display_name if display_name is not None else f"volume-{volume_id[:8]}",
            "display_description": None, "provider_location": None,
            "volume_type_id": volume_type or self.default_volume_type_id,
            "bootable": bootable, "migration_status": migration_status, "replication_status": None,
            "multiattach": multiattach, "previous_status": None, "cluster_name": None,
            "service_uuid": service_uuid, "shared_targets": True, "use_quota": True,
        }
        values.update(columns)
        self.insert("cinder", "volumes", values, optional=("use_quota", "shared_targets", "service_uuid"))
        return volume_id

    def destroy_volume(self, volume_id, deleted_at=None):
        """Soft-delete a volume as cinder's volume_destroy does: the volume
        (status ``deleted``, ``deleted = 1``, migration_status NULL) and its
        dependent rows; attachments also become ``detached``."""
        stamp = deleted_at or utcnow()
        self.db.execute("cinder", "UPDATE volumes SET status = 'deleted', deleted = 1, deleted_at = %s, "
                                  "migration_status = NULL WHERE id = %s", (stamp, volume_id))
        for table in ("volume_metadata", "volume_admin_metadata", "snapshots", "transfers", "volume_glance_metadata"):
            self.db.execute("cinder", f"UPDATE `{table}` SET deleted = 1, deleted_at = %s "
                                      f"WHERE volume_id = %s AND deleted = 0", (stamp, volume_id))
        self.db.execute("cinder", "UPDATE volume_attachment SET deleted = 1, deleted_at = %s, attach_status = "
                                  "'detached', detach_time = %s WHERE volume_id = %s AND deleted = 0",
                        (stamp, stamp, volume_id))
        return volume_id

    def attachment(self, volume_id, instance_uuid, attached_host, attach_status="attached",
                   mountpoint=DEFAULT_DEVICE_NAME, attach_mode="rw", connector=_AUTO, connection_info=_AUTO,
                   attached_mode=_AUTO, **columns):
        """A volume_attachment row; returns its id.

        The volume row itself is not touched (build it with the status you
        want). As cinder does when an attachment completes, the volume gets
        the ``attached_mode`` admin metadata for an ``attached`` attachment
        (pass ``attached_mode=None`` to leave it out)."""
        attachment_id = columns.pop("id", None) or new_uuid()
        now = utcnow()
        if connector is _AUTO:
            connector = self.connector(attached_host, mountpoint)
        if connection_info is _AUTO:
            connection_info = self.cinder_connection_info(volume_id, attachment_id, attach_mode)
        values = {
            "created_at": now, "updated_at": now, "deleted_at": None, "deleted": False,
            "id": attachment_id, "volume_id": volume_id, "attached_host": attached_host,
            "instance_uuid": instance_uuid, "mountpoint": mountpoint,
            "attach_time": now if attach_status == "attached" else None, "detach_time": None,
            "attach_mode": attach_mode, "attach_status": attach_status,
            "connection_info": _json(connection_info), "connector": _json(connector),
        }
        values.update(columns)
        self.insert("cinder", "volume_attachment", values)
        if attached_mode is _AUTO:
            attached_mode = attach_mode if attach_status == "attached" else None
        if attached_mode and not self.db.scalar(
                "cinder", "SELECT id FROM volume_admin_metadata WHERE volume_id = %s AND `key` = 'attached_mode' "
                          "AND deleted = 0", (volume_id,)):
            self.admin_metadata(volume_id, "attached_mode", attached_mode)
        return attachment_id

    @staticmethod
    def connector(host, mountpoint=DEFAULT_DEVICE_NAME):
        """An os-brick connector dict, as nova-compute sends it to cinder."""
        return {"platform": "x86_64", "os_type": "linux", "ip": "192.0.2.10", "host": host,
                "multipath": False, "do_local_attach": False, "mountpoint": mountpoint,
                "initiator": f"iqn.2004-10.com.ubuntu:01:{uuidlib.uuid5(uuidlib.NAMESPACE_DNS, host).hex[:12]}"}

    @staticmethod
    def cinder_connection_info(volume_id, attachment_id=None, access_mode="rw"):
        """iSCSI connection info as an LVM backend returns it."""
        info = {"driver_volume_type": "iscsi",
                "data": {"target_discovered": False, "target_iqn": f"iqn.2010-10.org.openstack:volume-{volume_id}",
                         "target_portal": "192.0.2.20:3260", "target_lun": 0, "volume_id": volume_id,
                         "auth_method": "CHAP", "auth_username": "cinder", "auth_password": "not-a-secret",
                         "encrypted": False, "qos_specs": None, "access_mode": access_mode, "cacheable": False}}
        if attachment_id:
            info["attachment_id"] = attachment_id
        return info

    def admin_metadata(self, volume_id, key, value, **columns):
        """A volume_admin_metadata row; returns its id."""
        return self.insert("cinder", "volume_admin_metadata", self._timestamps({
            "volume_id": volume_id, "key": key, "value": value, **columns}))

    def volume_metadata(self, volume_id, key, value, **columns):
        """A (user) volume_metadata row; returns its id."""
        return self.insert("cinder", "volume_metadata", self._timestamps({
            "volume_id": volume_id, "key": key, "value": value, **columns}))

    def worker(self, resource_type, resource_id, status, service_id=None, **columns):
        """A cinder workers row (cleanup tracking of an in-flight operation;
        ``resource_type`` is the object name, e.g. ``Volume``); returns its id."""
        now = utcnow()
        values = {"created_at": now, "updated_at": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None),
                  "deleted_at": None, "deleted": False, "resource_type": resource_type,
                  "resource_id": resource_id, "status": status, "service_id": service_id, "race_preventer": 0}
        values.update(columns)
        return self.insert("cinder", "workers", values)

    def snapshot(self, volume_id, status="available", project_id=None, user_id=None, **columns):
        """A cinder snapshot of ``volume_id`` (size and type copied from it); returns its id."""
        volume = self.row("cinder", "volumes", id=volume_id)
        if volume is None:
            raise LookupError(f"no cinder volume {volume_id}")
        snapshot_id = columns.pop("id", None) or new_uuid()
        now = utcnow()
        values = {
            "created_at": now, "updated_at": now, "deleted_at": None, "deleted": False,
            "id": snapshot_id, "volume_id": volume_id, "user_id": user_id or volume["user_id"],
            "project_id": project_id or volume["project_id"], "status": status,
            "progress": "100%" if status == "available" else "0%", "volume_size": volume["size"],
            "scheduled_at": now, "display_name": f"snapshot-{snapshot_id[:8]}", "display_description": None,
            "provider_location": None, "encryption_key_id": None, "volume_type_id": volume["volume_type_id"],
            "cgsnapshot_id": None, "provider_id": None, "provider_auth": None, "group_snapshot_id": None,
            "use_quota": True,
        }
        values.update(columns)
        self.insert("cinder", "snapshots", values, optional=("use_quota",))
        return snapshot_id

    def quota_usage(self, project_id, resource, in_use, reserved=0, **columns):
        """A cinder quota_usages row (``resource`` e.g. ``volumes``, ``gigabytes``,
        ``volumes___DEFAULT__``); returns its id."""
        values = self._timestamps({"project_id": project_id, "resource": resource, "in_use": in_use,
                                   "reserved": reserved, "until_refresh": None,
                                   # True while live, NULL once deleted (part of a unique key).
                                   "race_preventer": True})
        values.update(columns)
        return self.insert("cinder", "quota_usages", values)

    @property
    def default_group_type_id(self):
        """Id of the ``default_cgsnapshot_type`` group type seeded by the migrations."""
        return self.db.scalar("cinder", "SELECT id FROM group_types WHERE name = 'default_cgsnapshot_type' "
                                        "AND deleted = 0")

    def group(self, host="cinder@lvm#lvm", status="available", volume_types=None, group_type_id=None,
              project_id=None, user_id=None, cluster_name=None, **columns):
        """A generic volume group (+ its volume-type mappings); returns its id."""
        group_id = columns.pop("id", None) or new_uuid()
        values = self._timestamps({
            "id": group_id, "user_id": user_id or self.user_id, "project_id": project_id or self.project_id,
            "cluster_name": cluster_name, "host": host, "availability_zone": "nova",
            "name": f"group-{group_id[:8]}", "description": None,
            "group_type_id": group_type_id or self.default_group_type_id, "status": status,
            "group_snapshot_id": None, "source_group_id": None, "replication_status": None})
        values.update(columns)
        self.insert("cinder", "groups", values)
        for type_id in volume_types or [self.default_volume_type_id]:
            self.insert("cinder", "group_volume_type_mapping", self._timestamps({
                "volume_type_id": type_id, "group_id": group_id}))
        return group_id

    def consistencygroup(self, host="cinder@lvm#lvm", status="available", volume_types=None, project_id=None,
                         user_id=None, cluster_name=None, **columns):
        """A legacy consistency group; returns its id. Its volume types are a
        comma-separated list of ids, as cinder stored them."""
        group_id = columns.pop("id", None) or new_uuid()
        values = self._timestamps({
            "id": group_id, "user_id": user_id or self.user_id, "project_id": project_id or self.project_id,
            "host": host, "availability_zone": "nova", "name": f"cg-{group_id[:8]}", "description": None,
            "volume_type_id": ",".join(volume_types or [self.default_volume_type_id]) + ",",
            "status": status, "cgsnapshot_id": None, "source_cgid": None, "cluster_name": cluster_name})
        values.update(columns)
        self.insert("cinder", "consistencygroups", values)
        return group_id

    def image_cache_entry(self, host, image_id, volume_id, size=1, cluster_name=None, **columns):
        """An image_volume_cache_entries row (no soft delete in this table); returns its id."""
        now = utcnow()
        values = {"image_updated_at": now - datetime.timedelta(days=1), "host": host, "image_id": image_id,
                  "volume_id": volume_id, "size": size, "last_used": now, "cluster_name": cluster_name}
        values.update(columns)
        return self.insert("cinder", "image_volume_cache_entries", values)

    # ------------------------------------------------------------------
    # Nova

    def _cell_database(self, cell):
        if cell in getattr(self, "extra_cells", {}):
            return self.extra_cells[cell]
        try:
            return NOVA_CELLS[cell]
        except KeyError:
            raise ValueError(f"cell must be one of {sorted(NOVA_CELLS)}, not {cell!r}") from None

    def add_cell(self, name):
        """A further cell: its own database with the nova schema of this
        release (dropped with the set), and its cell_mappings row. Use the
        ``cell=name`` argument of the Nova methods, and ``nova_<name>`` as
        the logical name in ``dbs.query``. Returns the cell uuid. Every cloud
        has cell2 already: adding it returns its uuid."""
        if name in NOVA_CELLS:
            return self.db.scalar("nova_api", "SELECT uuid FROM cell_mappings WHERE name = %s", (name,))
        logical = f"nova_{name}"
        database = f"{self.db.prefix}_{logical}"
        statements = ["SET SESSION foreign_key_checks = 0", f"CREATE DATABASE `{database}`", f"USE `{database}`"]
        statements.extend(self.schema.create_statement("nova", table) for table in self.schema.tables("nova"))
        run_batch(self.db.server, statements)
        self.db.names[logical] = database  # so dbs.url/query reach it and dbs.drop() drops it
        self._columns = None
        self.extra_cells = dict(getattr(self, "extra_cells", {}), **{name: logical})
        cell_uuid = new_uuid()
        self.insert("nova_api", "cell_mappings", {
            "created_at": utcnow(), "updated_at": None, "uuid": cell_uuid, "name": name,
            "transport_url": "rabbit://nova:secret@127.0.0.1:5672/", "database_connection": self.db.url(logical),
            "disabled": False}, optional=("disabled",))
        return cell_uuid

    def cell_id(self, cell="cell1"):
        """Id of a cell in nova_api.cell_mappings."""
        self._cell_database(cell)
        return self.db.scalar("nova_api", "SELECT id FROM cell_mappings WHERE name = %s", (cell,))

    def nova_service(self, host, binary="nova-compute", up=True, disabled=False, forced_down=False, version=None,
                     disabled_reason=None, cell="cell1", **columns):
        """A nova services row in a cell database; returns its id.
        ``version`` defaults to this release's SERVICE_VERSION; ``up=False``
        gives it a heartbeat an hour old."""
        now = utcnow()
        heartbeat = now if up else now - DOWN_FOR
        values = {
            "created_at": heartbeat - datetime.timedelta(days=1), "updated_at": heartbeat, "deleted_at": None,
            "deleted": 0, "host": host, "binary": binary, "topic": NOVA_TOPICS.get(binary),
            "report_count": 100, "disabled": disabled, "disabled_reason": disabled_reason,
            "last_seen_up": heartbeat, "forced_down": forced_down,
            "version": version if version is not None else self.facts["nova_service_version"],
            "uuid": new_uuid(),
        }
        values.update(columns)
        return self.insert(self._cell_database(cell), "services", values)

    def compute_node(self, host, hypervisor_hostname=None, service_id=_AUTO, uuid=None, vcpus=8, memory_mb=16384,
                     local_gb=100, cell="cell1", **columns):
        """A compute_nodes row; returns its id. ``service_id`` defaults to the
        nova-compute service of ``host`` (if any)."""
        database = self._cell_database(cell)
        if service_id is _AUTO:
            service_id = self.db.scalar(database, "SELECT id FROM services WHERE host = %s AND `binary` = "
                                                  "'nova-compute' AND deleted = 0", (host,))
        now = utcnow()
        values = {
            "created_at": now, "updated_at": now, "deleted_at": None, "deleted": 0,
            "service_id": service_id, "host": host, "hypervisor_hostname": hypervisor_hostname or host,
            "uuid": uuid or new_uuid(), "vcpus": vcpus, "memory_mb": memory_mb, "local_gb": local_gb,
            "vcpus_used": 0, "memory_mb_used": 512, "local_gb_used": 0, "free_ram_mb": memory_mb - 512,
            "free_disk_gb": local_gb, "current_workload": 0, "running_vms": 0, "disk_available_least": local_gb,
            "hypervisor_type": "QEMU", "hypervisor_version": 8002000,
            "cpu_info": json.dumps({"arch": "x86_64", "model": "EPYC", "vendor": "AMD",
                                    "topology": {"cells": 1, "sockets": 1, "cores": vcpus, "threads": 1},
                                    "features": []}),
            "host_ip": "192.0.2.10", "supported_instances": json.dumps([["x86_64", "kvm", "hvm"]]),
            "pci_stats": None, "metrics": "[]", "extra_resources": None, "stats": "{}", "numa_topology": None,
            "ram_allocation_ratio": 1.0, "cpu_allocation_ratio": 4.0, "disk_allocation_ratio": 1.0,
            # 1 = discovered by `nova-manage cell_v2 discover_hosts`.
            "mapped": 1,
        }
        values.update(columns)
        return self.insert(database, "compute_nodes", values)

    def host_mapping(self, host, cell="cell1", **columns):
        """A nova_api.host_mappings row; returns its id."""
        return self.insert("nova_api", "host_mappings", {
            "created_at": utcnow(), "updated_at": None, "host": host, "cell_id": self.cell_id(cell), **columns})

    def flavor(self, name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1, ephemeral_gb=0, swap=0, flavorid=None,
               **columns):
        """A nova_api.flavors row; returns its id."""
        values = {"created_at": utcnow(), "updated_at": None, "name": name, "vcpus": vcpus,
                  "memory_mb": memory_mb, "root_gb": root_gb, "ephemeral_gb": ephemeral_gb, "swap": swap,
                  "flavorid": flavorid or new_uuid(), "vcpu_weight": 0, "rxtx_factor": 1.0, "disabled": False,
                  "is_public": True, "description": None}
        values.update(columns)
        return self.insert("nova_api", "flavors", values)

    def _flavor_primitive(self, flavor_id):
        """The Flavor object of ``flavor_id`` serialised like this release's nova."""
        flavor = self.row("nova_api", "flavors", id=flavor_id)
        if flavor is None:
            raise LookupError(f"no nova flavor {flavor_id}")
        primitive = copy.deepcopy(self.facts["flavor_primitive"])
        data = primitive["nova_object.data"]
        for field in ("id", "name", "memory_mb", "vcpus", "root_gb", "ephemeral_gb", "flavorid", "swap",
                      "vcpu_weight", "description"):
            data[field] = flavor[field]
        data["rxtx_factor"] = float(flavor["rxtx_factor"])
        data["disabled"] = bool(flavor["disabled"])
        data["is_public"] = bool(flavor["is_public"])
        data["extra_specs"] = {}
        data["projects"] = []
        return primitive, flavor

    def _compute_node_of(self, database, host, node=None):
        where, params = "host = %s AND deleted = 0", [host]
        if node:
            where += " AND hypervisor_hostname = %s"
            params.append(node)
        rows = self.db.query(database, f"SELECT id, hypervisor_hostname FROM compute_nodes WHERE {where} ORDER BY id",
                             params)
        return rows[0] if rows else None

    def instance(self, host, node=None, vm_state="active", task_state=None, power_state=1, project_id=None,
                 user_id=None, cell="cell1", flavor_id=None, availability_zone="nova", network_info="[]",
                 root_bdm=True, request_spec=True, compute_id=_AUTO, **columns):
        """An instance as nova-api + nova-compute leave it; returns its uuid.

        Writes the instances row (``node``/``compute_id`` default to the
        compute node of ``host``), instance_extra (flavor and keypairs as
        nova serialises them), instance_info_caches (``network_info``),
        instance_id_mappings, the image root BDM (``root_bdm``), and in
        nova_api the instance_mappings row and the request spec."""
        database = self._cell_database(cell)
        instance_uuid = columns.pop("uuid", None) or new_uuid()
        project_id = project_id or self.project_id
        user_id = user_id or self.user_id
        if flavor_id is None:
            if self._default_flavor is None:
                self._default_flavor = self.flavor()
            flavor_id = self._default_flavor
        flavor_primitive, flavor = self._flavor_primitive(flavor_id)
        compute = self._compute_node_of(database, host, node) if host else None
        if node is None and host:
            node = compute["hypervisor_hostname"] if compute else host
        if compute_id is _AUTO:
            compute_id = compute["id"] if compute else None
        image_ref = columns.pop("image_ref", None) or new_uuid()
        now = utcnow()
        launched = vm_state not in ("building", "error")
        values = {
            "created_at": now, "updated_at": now, "deleted_at": None, "deleted": 0,
            "uuid": instance_uuid, "user_id": user_id, "project_id": project_id, "image_ref": image_ref,
            "kernel_id": "", "ramdisk_id": "", "launch_index": 0, "key_name": None, "key_data": None,
            "power_state": power_state, "vm_state": vm_state, "task_state": task_state,
            "memory_mb": flavor["memory_mb"], "vcpus": flavor["vcpus"], "root_gb": flavor["root_gb"],
            "ephemeral_gb": flavor["ephemeral_gb"], "instance_type_id": flavor["id"],
            "hostname": f"vm-{instance_uuid[:8]}", "display_name": f"vm-{instance_uuid[:8]}",
            "display_description": f"vm-{instance_uuid[:8]}", "host": host, "node": node,
            "launched_on": host, "launched_at": now if launched else None, "terminated_at": None,
            "reservation_id": f"r-{uuidlib.uuid4().hex[:8]}", "availability_zone": availability_zone,
            "locked": False, "locked_by": None, "os_type": None, "architecture": None, "vm_mode": None,
            "root_device_name": "/dev/vda", "default_ephemeral_device": None, "default_swap_device": None,
            "config_drive": "", "access_ip_v4": None, "access_ip_v6": None, "progress": 0,
            "auto_disk_config": False, "shutdown_terminate": False, "disable_terminate": False,
            "cell_name": None, "cleaned": 0, "ephemeral_key_uuid": None, "hidden": False,
            "compute_id": compute_id,
        }
        values.update(columns)
        self.insert(database, "instances", values, optional=("compute_id", "hidden"))
        self.insert(database, "instance_extra", {
            "created_at": now, "updated_at": None, "deleted_at": None, "deleted": 0,
            "instance_uuid": instance_uuid, "numa_topology": None, "pci_requests": "[]",
            "flavor": json.dumps({"cur": flavor_primitive, "old": None, "new": None}),
            "vcpu_model": None, "migration_context": None,
            "keypairs": json.dumps(self.facts["keypairs_primitive"]),
            "device_metadata": None, "trusted_certs": None, "vpmems": None, "resources": None,
        }, optional=("vpmems", "resources", "trusted_certs", "device_metadata", "keypairs"))
        self.insert(database, "instance_info_caches", {
            "created_at": now, "updated_at": None, "deleted_at": None, "deleted": 0,
            "instance_uuid": instance_uuid, "network_info": network_info})
        # The EC2 id mapping nova's instance_create() writes.
        self.insert(database, "instance_id_mappings", {
            "created_at": now, "updated_at": None, "deleted_at": None, "deleted": 0, "uuid": instance_uuid})
        if root_bdm:
            self.bdm(instance_uuid, volume_id=None, source_type="image", destination_type="local",
                     boot_index=0, device_name="/dev/vda", image_id=image_ref, delete_on_termination=True,
                     connection_info=None, volume_size=None, cell=cell)
        self.insert("nova_api", "instance_mappings", {
            "created_at": now, "updated_at": None, "instance_uuid": instance_uuid, "cell_id": self.cell_id(cell),
            "project_id": project_id, "user_id": user_id, "queued_for_delete": False},
            optional=("user_id", "queued_for_delete"))
        if request_spec:
            spec = copy.deepcopy(self.facts["request_spec_primitive"])
            data = spec["nova_object.data"]
            data.update({"instance_uuid": instance_uuid, "project_id": project_id, "user_id": user_id,
                         "flavor": flavor_primitive, "availability_zone": availability_zone})
            self.insert("nova_api", "request_specs", {
                "created_at": now, "updated_at": None, "instance_uuid": instance_uuid, "spec": json.dumps(spec)})
        return instance_uuid

    @staticmethod
    def network_info(vif_type="ovs", profile=None, port_id=None, **vif):
        """instance_info_caches.network_info JSON with one VIF as nova caches
        it (``vif_type`` is binding:vif_type, e.g. ``binding_failed``)."""
        subnet = {"cidr": "10.0.0.0/24", "dns": [], "routes": [], "version": 4, "meta": {"dhcp_server": "10.0.0.2"},
                  "ips": [{"address": "10.0.0.5", "type": "fixed", "version": 4, "meta": {}, "floating_ips": []}],
                  "gateway": {"address": "10.0.0.1", "type": "gateway", "version": 4, "meta": {}}}
        entry = {"id": port_id or new_uuid(), "address": "fa:16:3e:12:34:56", "type": vif_type,
                 "devname": "tap12345678-9a", "ovs_interfaceid": None, "qbh_params": None, "qbg_params": None,
                 "active": vif_type != "binding_failed", "vnic_type": "normal", "meta": {}, "preserve_on_delete": False,
                 "delegate_create": True, "profile": profile if profile is not None else {},
                 "details": {"port_filter": True, "connectivity": "l2", "bridge_name": "br-int",
                             "datapath_type": "system"} if vif_type == "ovs" else {},
                 "network": {"id": new_uuid(), "bridge": "br-int", "label": "private", "subnets": [subnet],
                             "meta": {"injected": False, "tenant_id": "x", "mtu": 1450, "physical_network": None,
                                      "tunneled": True}}}
        entry.update(vif)
        return json.dumps([entry])

    def destroy_instance(self, instance_uuid, cell="cell1", deleted_at=None):
        """Soft-delete an instance as nova's instance_destroy does: the
        instance (vm_state ``deleted``) and its child rows, each with
        ``deleted = id`` and ``deleted_at``; tags are hard-deleted."""
        database = self._cell_database(cell)
        stamp = deleted_at or utcnow()
        self.db.execute(database, "UPDATE instances SET deleted = id, deleted_at = %s, vm_state = 'deleted', "
                                  "task_state = NULL, terminated_at = %s WHERE uuid = %s",
                        (stamp, stamp, instance_uuid))
        for table in ("security_group_instance_association", "instance_info_caches", "instance_metadata",
                      "instance_faults", "instance_extra", "instance_system_metadata", "block_device_mapping",
                      "migrations", "virtual_interfaces"):
            self.db.execute(database, f"UPDATE `{table}` SET deleted = id, deleted_at = %s "
                                      f"WHERE instance_uuid = %s AND deleted = 0", (stamp, instance_uuid))
        self.db.execute(database, "UPDATE instance_id_mappings SET deleted = id, deleted_at = %s "
                                  "WHERE uuid = %s AND deleted = 0", (stamp, instance_uuid))
        self.db.execute(database, "DELETE FROM tags WHERE resource_id = %s", (instance_uuid,))
        return instance_uuid

    def nova_connection_info(self, volume_id, attachment_id=None):
        """connection_info as nova stores it in a volume BDM."""
        info = self.cinder_connection_info(volume_id, attachment_id)
        info["serial"] = volume_id
        info["data"]["device_path"] = (f"/dev/disk/by-path/ip-192.0.2.20:3260-iscsi-"
                                       f"iqn.2010-10.org.openstack:volume-{volume_id}-lun-0")
        return info

    def bdm(self, instance_uuid, volume_id, attachment_id=None, boot_index=None, device_name=DEFAULT_DEVICE_NAME,
            source_type="volume", destination_type="volume", connection_info=_AUTO, volume_size=_AUTO,
            delete_on_termination=False, cell="cell1", **columns):
        """A block_device_mapping row; returns its id. For a volume BDM,
        ``connection_info`` defaults to an iSCSI one and ``volume_size`` to
        the cinder volume's size when that volume exists."""
        database = self._cell_database(cell)
        if connection_info is _AUTO:
            connection_info = self.nova_connection_info(volume_id, attachment_id) if volume_id else None
        if volume_size is _AUTO:
            volume_size = (self.db.scalar("cinder", "SELECT size FROM volumes WHERE id = %s", (volume_id,))
                           if volume_id else None)
        values = {
            "created_at": utcnow(), "updated_at": None, "deleted_at": None, "deleted": 0,
            "instance_uuid": instance_uuid, "volume_id": volume_id, "attachment_id": attachment_id,
            "boot_index": boot_index, "device_name": device_name, "source_type": source_type,
            "destination_type": destination_type, "device_type": "disk", "disk_bus": "virtio",
            "delete_on_termination": delete_on_termination, "snapshot_id": None, "volume_size": volume_size,
            "no_device": False, "guest_format": None, "image_id": None, "tag": None, "uuid": new_uuid(),
            "volume_type": None, "connection_info": _json(connection_info),
            "encrypted": False, "encryption_secret_uuid": None, "encryption_format": None,
            "encryption_options": None,
        }
        values.update(columns)
        return self.insert(database, "block_device_mapping", values,
                           optional=("uuid", "volume_type", "encrypted", "encryption_secret_uuid",
                                     "encryption_format", "encryption_options", "attachment_id"))

    def migration(self, instance_uuid, source_compute, dest_compute, status="migrating",
                  migration_type="live-migration", source_node=None, dest_node=None, cell="cell1", **columns):
        """A migrations row; returns its id. Nodes and ``dest_compute_id``
        default to the compute nodes of the hosts."""
        database = self._cell_database(cell)
        source = self._compute_node_of(database, source_compute, source_node)
        dest = self._compute_node_of(database, dest_compute, dest_node)
        instance = self.row(database, "instances", uuid=instance_uuid)
        now = utcnow()
        values = {
            "created_at": now, "updated_at": now, "deleted_at": None, "deleted": 0,
            "source_compute": source_compute, "dest_compute": dest_compute, "dest_host": "192.0.2.11",
            "source_node": source_node or (source["hypervisor_hostname"] if source else source_compute),
            "dest_node": dest_node or (dest["hypervisor_hostname"] if dest else dest_compute),
            "status": status, "instance_uuid": instance_uuid, "migration_type": migration_type,
            "old_instance_type_id": instance["instance_type_id"] if instance else None,
            "new_instance_type_id": instance["instance_type_id"] if instance else None,
            "hidden": False, "uuid": new_uuid(), "cross_cell_move": False,
            "user_id": instance["user_id"] if instance else self.user_id,
            "project_id": instance["project_id"] if instance else self.project_id,
            "dest_compute_id": dest["id"] if dest else None,
        }
        values.update(columns)
        return self.insert(database, "migrations", values,
                           optional=("dest_compute_id", "user_id", "project_id", "cross_cell_move", "uuid",
                                     "hidden"))

    # ------------------------------------------------------------------
    # Placement

    def _sync_standard_resource_classes(self):
        """Write the standard resource classes as placement-api does when it
        starts (ids = position in os-resource-classes; VCPU is id 0)."""
        if self._standard_classes_synced:
            return
        existing = {row["name"] for row in self.db.query("placement", "SELECT name FROM resource_classes")}
        missing = [(index, name) for index, name in enumerate(self.facts["standard_resource_classes"])
                   if name not in existing]
        if missing:
            conn = self.db.connect("placement")
            try:
                with conn.cursor() as cursor:
                    # Without it MariaDB turns the literal id 0 into a new auto-increment value.
                    cursor.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
                    cursor.executemany("INSERT INTO resource_classes (id, name, created_at) VALUES (%s, %s, %s)",
                                       [(index, name, utcnow()) for index, name in missing])
            finally:
                conn.close()
        self._standard_classes_synced = True

    def resource_class_id(self, name):
        """The placement id of a resource class; a CUSTOM_* class is created
        on first use (ids from 10000, like placement)."""
        self._sync_standard_resource_classes()
        found = self.db.scalar("placement", "SELECT id FROM resource_classes WHERE name = %s", (name,))
        if found is not None:
            return found
        if not name.startswith("CUSTOM_"):
            raise ValueError(f"{name} is neither a standard resource class of this release nor CUSTOM_*")
        next_id = max(CUSTOM_RESOURCE_CLASS_MIN_ID,
                      (self.db.scalar("placement", "SELECT MAX(id) FROM resource_classes") or 0) + 1)
        return self.insert("placement", "resource_classes", {"id": next_id, "name": name, "created_at": utcnow()})

    def _provider_id(self, rp):
        """Internal id of a resource provider given by uuid (or id)."""
        if isinstance(rp, int):
            return rp
        found = self.db.scalar("placement", "SELECT id FROM resource_providers WHERE uuid = %s", (rp,))
        if found is None:
            raise LookupError(f"no resource provider {rp}")
        return found

    def _bump_generation(self, table, row_id):
        self.db.execute("placement", f"UPDATE `{table}` SET generation = generation + 1, updated_at = %s "
                                     f"WHERE id = %s", (utcnow(), row_id))

    def resource_provider(self, uuid=None, name=None, parent=None, **columns):
        """A resource provider (root, or child of ``parent``); returns its uuid."""
        rp_uuid = uuid or new_uuid()
        parent_id = self._provider_id(parent) if parent else None
        root_id = (self.db.scalar("placement", "SELECT root_provider_id FROM resource_providers WHERE id = %s",
                                  (parent_id,)) if parent_id else None)
        values = {"created_at": utcnow(), "updated_at": None, "uuid": rp_uuid, "name": name or rp_uuid,
                  "generation": 0, "parent_provider_id": parent_id, "root_provider_id": root_id}
        values.update(columns)
        row_id = self.insert("placement", "resource_providers", values)
        if root_id is None and "root_provider_id" not in columns:
            # A root provider is its own root.
            self.db.execute("placement", "UPDATE resource_providers SET root_provider_id = id WHERE id = %s",
                            (row_id,))
        return rp_uuid

    def inventory(self, rp, resource_class, total, reserved=0, min_unit=1, max_unit=None, step_size=1,
                  allocation_ratio=1.0, **columns):
        """An inventory of ``rp`` (uuid); bumps the provider generation like
        placement does. Returns the inventory id."""
        provider_id = self._provider_id(rp)
        values = {"created_at": utcnow(), "updated_at": None, "resource_provider_id": provider_id,
                  "resource_class_id": self.resource_class_id(resource_class), "total": total,
                  "reserved": reserved, "min_unit": min_unit, "max_unit": max_unit if max_unit else total,
                  "step_size": step_size, "allocation_ratio": allocation_ratio}
        values.update(columns)
        inventory_id = self.insert("placement", "inventories", values)
        self._bump_generation("resource_providers", provider_id)
        return inventory_id

    def _external_id(self, table, external_id):
        found = self.db.scalar("placement", f"SELECT id FROM `{table}` WHERE external_id = %s", (external_id,))
        if found is not None:
            return found
        return self.insert("placement", table, {"created_at": utcnow(), "updated_at": None,
                                                "external_id": external_id})

    def consumer(self, uuid=None, project=None, user=None, consumer_type="INSTANCE", **columns):
        """A placement consumer (+ its projects/users rows); returns its uuid.
        ``consumer_type`` (nova sends INSTANCE or MIGRATION) may be None."""
        consumer_uuid = uuid or new_uuid()
        type_id = None
        if consumer_type and self.columns("placement", "consumer_types"):
            type_id = self.db.scalar("placement", "SELECT id FROM consumer_types WHERE name = %s", (consumer_type,))
            if type_id is None:
                type_id = self.insert("placement", "consumer_types", {"created_at": utcnow(), "name": consumer_type})
        values = {"created_at": utcnow(), "updated_at": None, "uuid": consumer_uuid,
                  "project_id": self._external_id("projects", project or self.project_id),
                  "user_id": self._external_id("users", user or self.user_id),
                  "generation": 0, "consumer_type_id": type_id}
        values.update(columns)
        self.insert("placement", "consumers", values, optional=("consumer_type_id",))
        return consumer_uuid

    def allocation(self, consumer_uuid, rp, resource_class, used, **columns):
        """An allocation of ``consumer_uuid`` (created if missing) against
        ``rp`` (uuid); bumps provider and consumer generations. Returns its id."""
        consumer_id = self.db.scalar("placement", "SELECT id FROM consumers WHERE uuid = %s", (consumer_uuid,))
        if consumer_id is None:
            self.consumer(consumer_uuid)
            consumer_id = self.db.scalar("placement", "SELECT id FROM consumers WHERE uuid = %s", (consumer_uuid,))
        provider_id = self._provider_id(rp)
        values = {"created_at": utcnow(), "updated_at": None, "resource_provider_id": provider_id,
                  "consumer_id": consumer_uuid, "resource_class_id": self.resource_class_id(resource_class),
                  "used": used}
        values.update(columns)
        allocation_id = self.insert("placement", "allocations", values)
        self._bump_generation("resource_providers", provider_id)
        self._bump_generation("consumers", consumer_id)
        return allocation_id

    def provider_trait(self, rp, name):
        """Give provider ``rp`` (uuid) the trait ``name`` (created if missing,
        e.g. MISC_SHARES_VIA_AGGREGATE); bumps its generation. Returns the trait id."""
        trait_id = self.db.scalar("placement", "SELECT id FROM traits WHERE name = %s", (name,))
        if trait_id is None:
            trait_id = self.insert("placement", "traits", {"created_at": utcnow(), "updated_at": None, "name": name})
        provider_id = self._provider_id(rp)
        self.db.execute("placement", "INSERT INTO resource_provider_traits (created_at, trait_id, resource_provider_id) "
                                     "VALUES (%s, %s, %s)", (utcnow(), trait_id, provider_id))
        self._bump_generation("resource_providers", provider_id)
        return trait_id

    # ------------------------------------------------------------------
    # Consistent compositions

    def compute_host(self, host, cell="cell1", up=True, vcpus=8, memory_mb=16384, local_gb=100, **service_columns):
        """A working compute host: nova-compute service, compute node, host
        mapping, and its resource provider with VCPU/MEMORY_MB/DISK_GB
        inventory. Returns a dict of the ids (service_id, compute_node_id,
        compute_node_uuid, host_mapping_id, rp_uuid)."""
        service_id = self.nova_service(host, up=up, cell=cell, **service_columns)
        node_uuid = new_uuid()
        node_id = self.compute_node(host, service_id=service_id, uuid=node_uuid, vcpus=vcpus, memory_mb=memory_mb,
                                    local_gb=local_gb, cell=cell)
        mapping_id = self.host_mapping(host, cell=cell)
        rp_uuid = self.resource_provider(uuid=node_uuid, name=host)
        self.inventory(rp_uuid, "VCPU", vcpus, allocation_ratio=4.0)
        self.inventory(rp_uuid, "MEMORY_MB", memory_mb, reserved=512)
        self.inventory(rp_uuid, "DISK_GB", local_gb)
        return {"service_id": service_id, "compute_node_id": node_id, "compute_node_uuid": node_uuid,
                "host_mapping_id": mapping_id, "rp_uuid": rp_uuid}

    def instance_allocations(self, instance_uuid, rp_uuid, cell="cell1"):
        """Placement allocations of an instance's flavor against ``rp_uuid``
        (consumer = instance uuid). Returns the consumer uuid."""
        instance = self.row(self._cell_database(cell), "instances", uuid=instance_uuid)
        if instance is None:
            raise LookupError(f"no instance {instance_uuid} in {cell}")
        self.consumer(instance_uuid, project=instance["project_id"], user=instance["user_id"])
        self.allocation(instance_uuid, rp_uuid, "VCPU", instance["vcpus"])
        self.allocation(instance_uuid, rp_uuid, "MEMORY_MB", instance["memory_mb"])
        if instance["root_gb"]:
            self.allocation(instance_uuid, rp_uuid, "DISK_GB", instance["root_gb"])
        return instance_uuid

    def attach_volume(self, instance_uuid, volume_id=None, device_name=DEFAULT_DEVICE_NAME, cell="cell1",
                      **volume_columns):
        """A volume attached the consistent, modern way (Cinder attachment API):
        volume ``in-use``/``attached``, its attachment and ``attached_mode``
        admin metadata, and the nova BDM carrying the attachment id and
        connection info. Creates the volume when ``volume_id`` is None.
        Returns a dict (volume_id, attachment_id, bdm_id)."""
        instance = self.row(self._cell_database(cell), "instances", uuid=instance_uuid)
        if instance is None:
            raise LookupError(f"no instance {instance_uuid} in {cell}")
        if volume_id is None:
            volume_id = self.volume(status="in-use", attach_status="attached", project_id=instance["project_id"],
                                    user_id=instance["user_id"], **volume_columns)
        else:
            self.db.execute("cinder", "UPDATE volumes SET status = 'in-use', attach_status = 'attached', "
                                      "updated_at = %s WHERE id = %s", (utcnow(), volume_id))
        attachment_id = self.attachment(volume_id, instance_uuid, instance["host"], mountpoint=device_name)
        bdm_id = self.bdm(instance_uuid, volume_id, attachment_id=attachment_id, device_name=device_name, cell=cell)
        return {"volume_id": volume_id, "attachment_id": attachment_id, "bdm_id": bdm_id}


def _json(value):
    """JSON text for dict/list values; strings and None pass through."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)
