"""Tests of the schema harness itself, against the real MariaDB and the
real migrations of every selected release. Everything is checked through
SQL of its own, never through the code under test."""

import datetime
import json
import os
import time

import pymysql
import pytest

from tests.harness import LOGICAL_DATABASES, cache_dir, dbset, mariadb, schema

# Table counts the migrations create (measured; lab-facts.md §3).
EXPECTED_TABLE_COUNTS = {"nova": 111, "nova_cell0": 111, "nova_api": 32, "cinder": 36, "placement": 13}
KEY_TABLES = {
    "nova": ["instances", "block_device_mapping", "instance_extra", "instance_info_caches", "migrations",
             "compute_nodes", "services", "shadow_instances", "alembic_version"],
    "nova_api": ["cell_mappings", "host_mappings", "instance_mappings", "request_specs", "build_requests",
                 "flavors", "alembic_version"],
    "cinder": ["volumes", "volume_attachment", "volume_admin_metadata", "services", "workers", "snapshots",
               "quota_usages", "groups", "consistencygroups", "image_volume_cache_entries", "volume_types",
               "alembic_version"],
    "placement": ["resource_providers", "inventories", "allocations", "consumers", "projects", "users",
                  "resource_classes", "alembic_version"],
}
CELL0_UUID = "00000000-0000-0000-0000-000000000000"


def release_versions(release):
    """nova/cinder/placement versions that releases.tsv pins for ``release``."""
    with open(schema.RELEASES_FILE, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields and fields[0] == release:
                return {"nova": fields[1], "cinder": fields[2], "placement": fields[3]}
    raise LookupError(release)


def table_names(dbs, logical):
    rows = dbs.query(logical, "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = %s",
                     (dbs.name(logical),))
    return {row["name"] for row in rows}


# ---------------------------------------------------------------------------
# The server


def test_private_server_starts_and_stops():
    server = mariadb.start_private_server()
    workdir = server._workdir
    try:
        assert server.host == "127.0.0.1" and server.port != 3306
        conn = server.admin_connect()
        with conn.cursor() as cursor:
            cursor.execute("SELECT @@bind_address, @@log_bin, CURRENT_USER()")
            bind, log_bin, user = cursor.fetchone()
        conn.close()
        assert bind == "127.0.0.1"
        assert log_bin == 0
        assert user.startswith("root@")
        print(f"\nprivate MariaDB ready in {server.start_seconds:.2f} s")
    finally:
        server.stop()
    assert not os.path.exists(workdir)
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=server.port, user="root", connect_timeout=2)


def test_server_url_and_env_parsing(mariadb_server):
    url = mariadb_server.url("somedb")
    assert url.startswith("mysql+pymysql://")
    assert url.endswith(f"@{mariadb_server.host}:{mariadb_server.port}/somedb?charset=utf8")
    parsed = mariadb._parse_server_url("mysql://admin:p%40ss@127.0.0.1:3310")
    assert (parsed.user, parsed.password, parsed.host, parsed.port) == ("admin", "p@ss", "127.0.0.1", 3310)
    assert parsed.url("x") == "mysql+pymysql://admin:p%40ss@127.0.0.1:3310/x?charset=utf8"
    with pytest.raises(mariadb.MariaDBError):
        mariadb._parse_server_url("postgres://x@127.0.0.1")
    assert mariadb.get_server() is mariadb_server


# ---------------------------------------------------------------------------
# The snapshot


def test_snapshot_has_the_real_schema(schema_snapshot, release):
    snapshot = schema_snapshot
    counts = {logical: len(snapshot.tables(logical)) for logical in LOGICAL_DATABASES}
    print(f"\n{release}: tables {counts}, built in {snapshot.build_seconds:.1f} s, heads {snapshot.alembic_heads}")
    assert counts == EXPECTED_TABLE_COUNTS
    for logical, tables in KEY_TABLES.items():
        assert set(tables) <= set(snapshot.tables(logical)), logical
    assert "CREATE TABLE `instances`" in snapshot.create_statement("nova", "instances")
    assert "`uuid` varchar(36) NOT NULL" in snapshot.create_statement("nova", "instances")
    expected = release_versions(release)
    assert {name: snapshot.packages[name] for name in expected} == expected
    for logical in LOGICAL_DATABASES:
        heads = snapshot.alembic_heads[logical]
        assert len(heads) == 1 and heads[0]
        assert [row["version_num"] for row in snapshot.seed_rows(logical, "alembic_version")] == heads
    assert snapshot.alembic_heads["nova"] == snapshot.alembic_heads["nova_cell0"]


def test_snapshot_has_the_seed_rows(schema_snapshot):
    snapshot = schema_snapshot
    workers = snapshot.seed_rows("cinder", "workers")
    assert [(row["resource_type"], row["resource_id"]) for row in workers] == [("SENTINEL", "SUB-SECOND")]
    assert [row["name"] for row in snapshot.seed_rows("cinder", "volume_types")] == ["__DEFAULT__"]
    quota_classes = {row["resource"]: row["hard_limit"] for row in snapshot.seed_rows("cinder", "quota_classes")}
    assert quota_classes == {"volumes": 10, "snapshots": 10, "gigabytes": 1000, "per_volume_gigabytes": -1,
                             "groups": 10, "backups": 10, "backup_gigabytes": 1000}
    assert [row["name"] for row in snapshot.seed_rows("cinder", "group_types")] == ["default_cgsnapshot_type"]
    assert [row["key"] for row in snapshot.seed_rows("cinder", "group_type_specs")] == [
        "consistent_group_snapshot_enabled"]
    cells = {row["name"]: row for row in snapshot.seed_rows("nova_api", "cell_mappings")}
    assert set(cells) == {"cell0", "cell1"}
    assert cells["cell0"]["uuid"] == CELL0_UUID
    assert cells["cell0"]["transport_url"] == "none:///"
    # Nothing else: the nova, cell0 and placement migrations seed only their version.
    for logical in ("nova", "nova_cell0", "placement"):
        assert set(snapshot.seed_rows(logical)) == {"alembic_version"}


def test_snapshot_has_the_service_facts(schema_snapshot):
    facts = schema_snapshot.facts
    assert isinstance(facts["nova_service_version"], int) and facts["nova_service_version"] >= 66
    assert facts["cinder_object_version"].count(".") == 1
    assert set(facts["cinder_rpc_versions"]) == {"cinder-scheduler", "cinder-volume", "cinder-backup"}
    assert facts["standard_resource_classes"][:3] == ["VCPU", "MEMORY_MB", "DISK_GB"]
    assert facts["flavor_primitive"]["nova_object.name"] == "Flavor"
    assert facts["request_spec_primitive"]["nova_object.name"] == "RequestSpec"


def test_snapshot_is_cached(mariadb_server, release, openstack_venv, schema_snapshot):
    assert os.path.isfile(schema_snapshot.path)
    assert os.path.dirname(schema_snapshot.path) == os.path.join(cache_dir(), "schema")
    modified = os.path.getmtime(schema_snapshot.path)
    schema._loaded.clear()  # force a reload from the file, as a new process would
    started = time.monotonic()
    again = schema.load_snapshot(mariadb_server, release, venv=openstack_venv)
    print(f"\nloading the cached {release} snapshot: {time.monotonic() - started:.2f} s")
    assert again.path == schema_snapshot.path and again.key == schema_snapshot.key
    assert os.path.getmtime(schema_snapshot.path) == modified
    assert again.data["databases"] == schema_snapshot.data["databases"]
    leftovers = [name for name in os.listdir(os.path.dirname(again.path)) if name.startswith(".tmp-")]
    assert leftovers == []


def test_schema_build_databases_are_dropped(mariadb_server, schema_snapshot):
    prefix = schema_snapshot.data["build_prefix"]
    assert prefix.startswith("smb_")
    conn = mariadb_server.admin_connect()
    with conn.cursor() as cursor:
        cursor.execute("SHOW DATABASES LIKE %s", (prefix.replace("_", "\\_") + "%",))
        assert cursor.fetchall() == ()
    conn.close()


# ---------------------------------------------------------------------------
# Database sets


def test_set_creation_time(mariadb_server, schema_snapshot, release):
    timings = []
    for _attempt in range(3):
        database_set = dbset.create_database_set(mariadb_server, schema_snapshot, pool_size=0)
        timings.append(database_set.create_seconds)
        database_set.drop()
    # Steady state of the pool: a set was built while the test ran.
    deadline = time.monotonic() + 30
    while dbset.ready_sets(mariadb_server, schema_snapshot) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    pooled = dbset.create_database_set(mariadb_server, schema_snapshot)
    assert table_names(pooled, "cinder") == set(schema_snapshot.tables("cinder"))
    pooled.drop()
    tables = sum(len(schema_snapshot.tables(db)) for db in LOGICAL_DATABASES)
    print(f"\n{release}: one set of {tables} tables built in {', '.join(f'{s:.2f}' for s in timings)} s; "
          f"a pooled set was handed out in {pooled.wait_seconds * 1000:.1f} ms")
    # Figures only: timing bounds flake on a loaded 2-core machine. The set itself must be whole.
    assert len(timings) == 3


def test_set_is_complete_and_fresh(dbs, schema_snapshot):
    for logical in LOGICAL_DATABASES:
        assert dbs.name(logical) == f"{dbs.prefix}_{logical}"
        assert dbs.name(logical).startswith("smt_")
        assert table_names(dbs, logical) == set(schema_snapshot.tables(logical))
    assert dbs.query("cinder", "SELECT resource_type, resource_id FROM workers") == [
        {"resource_type": "SENTINEL", "resource_id": "SUB-SECOND"}]
    assert dbs.scalar("cinder", "SELECT COUNT(*) FROM volume_types WHERE name = '__DEFAULT__' AND deleted = 0") == 1
    assert dbs.scalar("cinder", "SELECT COUNT(*) FROM quota_classes WHERE class_name = 'default'") == 7
    for logical in LOGICAL_DATABASES:
        assert dbs.scalar(logical, "SELECT version_num FROM alembic_version") == \
            schema_snapshot.alembic_heads[logical][0]
    assert dbs.scalar("nova", "SELECT COUNT(*) FROM instances") == 0
    assert dbs.scalar("cinder", "SELECT COUNT(*) FROM volumes") == 0
    # The real constraints are there (loaded with FOREIGN_KEY_CHECKS=0, enforced afterwards).
    with pytest.raises(pymysql.err.IntegrityError):
        dbs.execute("nova", "INSERT INTO instance_info_caches (instance_uuid, deleted) VALUES ('no-such-instance', 0)")


def test_cell_mappings_point_at_the_sets_own_databases(dbs):
    cells = {row["name"]: row for row in dbs.query("nova_api", "SELECT * FROM cell_mappings")}
    assert cells["cell0"]["uuid"] == CELL0_UUID
    assert cells["cell0"]["database_connection"] == dbs.url("nova_cell0")
    assert cells["cell1"]["database_connection"] == dbs.url("nova")
    assert cells["cell2"]["database_connection"] == dbs.url("nova_cell2")
    for cell, logical in (("cell0", "nova_cell0"), ("cell1", "nova"), ("cell2", "nova_cell2")):
        url = cells[cell]["database_connection"]
        assert url.startswith("mysql+pymysql://") and url.endswith(f"/{dbs.name(logical)}?charset=utf8")
        database = url.rsplit("/", 1)[1].split("?")[0]
        conn = dbs.server.admin_connect(database=database)
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM instances")
            assert cursor.fetchone()[0] == 0
        conn.close()


def test_two_sets_are_independent(mariadb_server, schema_snapshot):
    first = dbset.create_database_set(mariadb_server, schema_snapshot)
    second = dbset.create_database_set(mariadb_server, schema_snapshot)
    try:
        assert first.prefix != second.prefix
        assert not set(first.names.values()) & set(second.names.values())
        first.execute("cinder", "INSERT INTO volumes (id, volume_type_id, status, deleted) VALUES (%s, %s, %s, 0)",
                      ("11111111-1111-1111-1111-111111111111", "type", "available"))
        assert first.scalar("cinder", "SELECT COUNT(*) FROM volumes") == 1
        assert second.scalar("cinder", "SELECT COUNT(*) FROM volumes") == 0
        assert first.url("nova") != second.url("nova")
    finally:
        first.drop()
        second.drop()


def test_drop_removes_the_databases(mariadb_server, schema_snapshot):
    database_set = dbset.create_database_set(mariadb_server, schema_snapshot)
    names = set(database_set.names.values())
    database_set.drop()
    conn = mariadb_server.admin_connect()
    with conn.cursor() as cursor:
        cursor.execute("SHOW DATABASES LIKE %s", (database_set.prefix.replace("_", "\\_") + "%",))
        assert not names & {row[0] for row in cursor.fetchall()}
    conn.close()


def test_background_drop_and_shutdown(mariadb_server, schema_snapshot):
    database_set = dbset.create_database_set(mariadb_server, schema_snapshot)
    database_set.drop(wait=False)
    dbset._dropper().flush()
    conn = mariadb_server.admin_connect()
    with conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE %s",
                       (database_set.prefix + "%",))
        assert cursor.fetchone()[0] == 0
    conn.close()


def test_shutdown_drops_the_pooled_sets(mariadb_server, schema_snapshot):
    dbset.prefill(mariadb_server, schema_snapshot)
    deadline = time.monotonic() + 60
    while dbset.ready_sets(mariadb_server, schema_snapshot) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    pool = dbset._pool(mariadb_server, schema_snapshot)
    prefixes = [database_set.prefix for database_set in pool.ready]
    assert prefixes
    dbset.shutdown()  # the next `dbs` starts a new pool
    conn = mariadb_server.admin_connect()
    with conn.cursor() as cursor:
        for prefix in prefixes:
            cursor.execute("SHOW DATABASES LIKE %s", (prefix + "%",))
            assert cursor.fetchall() == ()
    conn.close()
    assert dbset.ready_sets(mariadb_server, schema_snapshot) == 0


def test_query_execute_connect(dbs):
    assert dbs.execute("cinder", "UPDATE quota_classes SET hard_limit = hard_limit WHERE class_name = %s",
                       ("default",)) == 0  # unchanged rows are not "affected"
    assert dbs.execute("cinder", "UPDATE quota_classes SET hard_limit = 20 WHERE resource = %s", ("volumes",)) == 1
    rows = dbs.query("cinder", "SELECT hard_limit FROM quota_classes WHERE resource = %s", ("volumes",))
    assert rows == [{"hard_limit": 20}]
    conn = dbs.connect("cinder")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT DATABASE(), @@autocommit")
            assert cursor.fetchone() == (dbs.name("cinder"), 1)
    finally:
        conn.close()
    with pytest.raises(KeyError):
        dbs.name("keystone")


# ---------------------------------------------------------------------------
# The builder: every row checked through SQL of its own


def one(dbs, logical, sql, params=None):
    rows = dbs.query(logical, sql, params)
    assert len(rows) == 1, rows
    return rows[0]


def recent(value, seconds=120):
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return value is not None and abs((now - value).total_seconds()) < seconds


def test_cinder_services(cloud, dbs, schema_snapshot):
    up_id = cloud.cinder_service("newnode@lvm", cluster_name="cluster@lvm")
    down_id = cloud.cinder_service("oldnode@lvm", up=False, disabled=True, disabled_reason="gone")
    scheduler_id = cloud.cinder_service("ctl", binary="cinder-scheduler")
    facts = schema_snapshot.facts
    up = one(dbs, "cinder", "SELECT * FROM services WHERE id = %s", (up_id,))
    assert (up["host"], up["binary"], up["topic"], up["deleted"], up["disabled"]) == \
        ("newnode@lvm", "cinder-volume", "cinder-volume", 0, 0)
    assert up["rpc_current_version"] == facts["cinder_rpc_versions"]["cinder-volume"]
    assert up["object_current_version"] == facts["cinder_object_version"]
    assert recent(up["updated_at"], 60) and len(up["uuid"]) == 36
    assert one(dbs, "cinder", "SELECT * FROM clusters WHERE name = 'cluster@lvm'")["race_preventer"] == 0
    down = one(dbs, "cinder", "SELECT * FROM services WHERE id = %s", (down_id,))
    assert down["disabled"] == 1 and down["disabled_reason"] == "gone"
    assert not recent(down["updated_at"], 600)
    scheduler = one(dbs, "cinder", "SELECT * FROM services WHERE id = %s", (scheduler_id,))
    assert scheduler["rpc_current_version"] == facts["cinder_rpc_versions"]["cinder-scheduler"]


def test_cinder_volume_and_relatives(cloud, dbs):
    service_id = cloud.cinder_service("node1@lvm")
    service_uuid = one(dbs, "cinder", "SELECT uuid FROM services WHERE id = %s", (service_id,))["uuid"]
    fast = cloud.volume_type("fast", extra_specs={"volume_backend_name": "lvm"})
    volume_id = cloud.volume(host="node1@lvm#pool", size=3, volume_type=fast, multiattach=True)
    row = one(dbs, "cinder", "SELECT * FROM volumes WHERE id = %s", (volume_id,))
    assert (row["host"], row["status"], row["attach_status"], row["size"], row["multiattach"], row["deleted"]) == \
        ("node1@lvm#pool", "available", "detached", 3, 1, 0)
    assert row["service_uuid"] == service_uuid and row["volume_type_id"] == fast
    assert row["project_id"] == cloud.project_id and row["user_id"] == cloud.user_id
    assert one(dbs, "cinder", "SELECT value FROM volume_type_extra_specs WHERE volume_type_id = %s",
               (fast,))["value"] == "lvm"
    default = cloud.volume(host="elsewhere@x#y", service_uuid=None, migration_status="migrating")
    row = one(dbs, "cinder", "SELECT v.*, t.name AS type_name FROM volumes v JOIN volume_types t "
                             "ON t.id = v.volume_type_id WHERE v.id = %s", (default,))
    assert row["type_name"] == "__DEFAULT__" and row["service_uuid"] is None
    assert row["migration_status"] == "migrating"

    snapshot_id = cloud.snapshot(volume_id)
    row = one(dbs, "cinder", "SELECT * FROM snapshots WHERE id = %s", (snapshot_id,))
    assert (row["volume_id"], row["volume_size"], row["status"], row["volume_type_id"]) == \
        (volume_id, 3, "available", fast)
    metadata_id = cloud.volume_metadata(volume_id, "purpose", "db")
    assert one(dbs, "cinder", "SELECT * FROM volume_metadata WHERE id = %s", (metadata_id,))["value"] == "db"
    admin_id = cloud.admin_metadata(volume_id, "readonly", "False")
    assert one(dbs, "cinder", "SELECT * FROM volume_admin_metadata WHERE id = %s", (admin_id,))["key"] == "readonly"
    worker_id = cloud.worker("Volume", volume_id, "deleting", service_id)
    row = one(dbs, "cinder", "SELECT * FROM workers WHERE id = %s", (worker_id,))
    assert (row["resource_type"], row["resource_id"], row["status"], row["service_id"]) == \
        ("Volume", volume_id, "deleting", service_id)
    usage_id = cloud.quota_usage(cloud.project_id, "gigabytes", 3)
    row = one(dbs, "cinder", "SELECT * FROM quota_usages WHERE id = %s", (usage_id,))
    assert (row["in_use"], row["reserved"], row["race_preventer"]) == (3, 0, 1)
    entry_id = cloud.image_cache_entry("node1@lvm#pool", "9e2c5c3a-2d3e-4b69-9a8e-6a1d9d4f7b1e", volume_id, 3)
    row = one(dbs, "cinder", "SELECT * FROM image_volume_cache_entries WHERE id = %s", (entry_id,))
    assert (row["host"], row["volume_id"], row["size"]) == ("node1@lvm#pool", volume_id, 3)


def test_cinder_attachment(cloud, dbs):
    volume_id = cloud.volume(status="in-use", attach_status="attached")
    instance_uuid = "5d0e7d1c-8b7b-4d0a-9d2f-1f6f3c1f0a11"
    attachment_id = cloud.attachment(volume_id, instance_uuid, "compute1")
    row = one(dbs, "cinder", "SELECT * FROM volume_attachment WHERE id = %s", (attachment_id,))
    assert (row["volume_id"], row["instance_uuid"], row["attached_host"], row["attach_status"],
            row["mountpoint"], row["attach_mode"], row["deleted"]) == \
        (volume_id, instance_uuid, "compute1", "attached", "/dev/vdb", "rw", 0)
    assert json.loads(row["connector"])["host"] == "compute1"
    assert json.loads(row["connection_info"])["data"]["volume_id"] == volume_id
    assert one(dbs, "cinder", "SELECT value FROM volume_admin_metadata WHERE volume_id = %s "
                              "AND `key` = 'attached_mode'", (volume_id,))["value"] == "rw"
    # A second (multiattach) attachment does not duplicate attached_mode.
    cloud.attachment(volume_id, "6d0e7d1c-8b7b-4d0a-9d2f-1f6f3c1f0a12", "compute2")
    assert dbs.scalar("cinder", "SELECT COUNT(*) FROM volume_admin_metadata WHERE volume_id = %s", (volume_id,)) == 1
    assert dbs.scalar("cinder", "SELECT status FROM volumes WHERE id = %s", (volume_id,)) == "in-use"


def test_cinder_groups(cloud, dbs):
    group_id = cloud.group(host="node1@lvm#pool")
    row = one(dbs, "cinder", "SELECT g.*, t.name AS type_name FROM `groups` g JOIN group_types t "
                             "ON t.id = g.group_type_id WHERE g.id = %s", (group_id,))
    assert (row["host"], row["status"], row["type_name"]) == ("node1@lvm#pool", "available",
                                                              "default_cgsnapshot_type")
    assert dbs.scalar("cinder", "SELECT COUNT(*) FROM group_volume_type_mapping WHERE group_id = %s",
                      (group_id,)) == 1
    cg_id = cloud.consistencygroup(host="node1@lvm#pool")
    row = one(dbs, "cinder", "SELECT * FROM consistencygroups WHERE id = %s", (cg_id,))
    assert row["host"] == "node1@lvm#pool" and row["volume_type_id"].startswith(cloud.default_volume_type_id)


def test_soft_delete_conventions(cloud, dbs):
    volume_id = cloud.volume(deleted=True, status="deleted")
    row = one(dbs, "cinder", "SELECT deleted, deleted_at FROM volumes WHERE id = %s", (volume_id,))
    assert row["deleted"] == 1 and row["deleted_at"] is not None
    usage_id = cloud.quota_usage(cloud.project_id, "volumes", 0, deleted=True)
    assert one(dbs, "cinder", "SELECT race_preventer FROM quota_usages WHERE id = %s",
               (usage_id,))["race_preventer"] is None
    first = cloud.nova_service("gone", deleted=True)
    second = cloud.nova_service("gone")  # allowed by the unique key because deleted = id
    rows = dbs.query("nova", "SELECT id, deleted FROM services WHERE host = 'gone' ORDER BY id")
    assert rows == [{"id": first, "deleted": first}, {"id": second, "deleted": 0}]


def test_nova_services_and_compute_nodes(cloud, dbs, schema_snapshot):
    service_id = cloud.nova_service("compute1")
    row = one(dbs, "nova", "SELECT * FROM services WHERE id = %s", (service_id,))
    assert (row["host"], row["binary"], row["topic"], row["disabled"], row["forced_down"], row["deleted"]) == \
        ("compute1", "nova-compute", "compute", 0, 0, 0)
    assert row["version"] == schema_snapshot.facts["nova_service_version"]
    assert recent(row["last_seen_up"], 60)
    down_id = cloud.nova_service("compute2", up=False, forced_down=True, disabled=True)
    row = one(dbs, "nova", "SELECT * FROM services WHERE id = %s", (down_id,))
    assert row["forced_down"] == 1 and not recent(row["last_seen_up"], 600)
    conductor_id = cloud.nova_service("ctl", binary="nova-conductor", cell="cell0")
    assert one(dbs, "nova_cell0", "SELECT topic FROM services WHERE id = %s", (conductor_id,))["topic"] == \
        "conductor"

    node_id = cloud.compute_node("compute1", hypervisor_hostname="compute1.example.org")
    row = one(dbs, "nova", "SELECT * FROM compute_nodes WHERE id = %s", (node_id,))
    assert (row["host"], row["hypervisor_hostname"], row["service_id"], row["deleted"]) == \
        ("compute1", "compute1.example.org", service_id, 0)
    assert len(row["uuid"]) == 36 and json.loads(row["cpu_info"])["arch"] == "x86_64"
    mapping_id = cloud.host_mapping("compute1")
    row = one(dbs, "nova_api", "SELECT h.host, c.name FROM host_mappings h JOIN cell_mappings c "
                               "ON c.id = h.cell_id WHERE h.id = %s", (mapping_id,))
    assert row == {"host": "compute1", "name": "cell1"}


def test_nova_instance(cloud, dbs, schema_snapshot):
    compute = cloud.compute_host("compute1")
    instance_uuid = cloud.instance("compute1", task_state="deleting")
    row = one(dbs, "nova", "SELECT * FROM instances WHERE uuid = %s", (instance_uuid,))
    assert (row["host"], row["node"], row["vm_state"], row["task_state"], row["power_state"], row["deleted"]) == \
        ("compute1", "compute1", "active", "deleting", 1, 0)
    assert (row["project_id"], row["user_id"]) == (cloud.project_id, cloud.user_id)
    if schema_snapshot.has_column("nova", "instances", "compute_id"):
        assert row["compute_id"] == compute["compute_node_id"]
    extra = one(dbs, "nova", "SELECT * FROM instance_extra WHERE instance_uuid = %s", (instance_uuid,))
    flavor = json.loads(extra["flavor"])
    assert flavor["cur"]["nova_object.name"] == "Flavor" and flavor["old"] is None
    assert flavor["cur"]["nova_object.data"]["memory_mb"] == row["memory_mb"]
    assert json.loads(extra["keypairs"])["nova_object.name"] == "KeyPairList"
    assert one(dbs, "nova", "SELECT network_info FROM instance_info_caches WHERE instance_uuid = %s",
               (instance_uuid,))["network_info"] == "[]"
    assert dbs.scalar("nova", "SELECT COUNT(*) FROM instance_id_mappings WHERE uuid = %s", (instance_uuid,)) == 1
    root = one(dbs, "nova", "SELECT * FROM block_device_mapping WHERE instance_uuid = %s", (instance_uuid,))
    assert (root["source_type"], root["destination_type"], root["boot_index"], root["image_id"]) == \
        ("image", "local", 0, row["image_ref"])
    mapping = one(dbs, "nova_api", "SELECT m.*, c.name AS cell FROM instance_mappings m JOIN cell_mappings c "
                                   "ON c.id = m.cell_id WHERE m.instance_uuid = %s", (instance_uuid,))
    assert (mapping["cell"], mapping["project_id"], mapping["queued_for_delete"]) == ("cell1", cloud.project_id, 0)
    spec = json.loads(one(dbs, "nova_api", "SELECT spec FROM request_specs WHERE instance_uuid = %s",
                          (instance_uuid,))["spec"])
    assert spec["nova_object.name"] == "RequestSpec"
    assert spec["nova_object.data"]["instance_uuid"] == instance_uuid
    assert spec["nova_object.data"]["flavor"]["nova_object.data"]["flavorid"] == \
        flavor["cur"]["nova_object.data"]["flavorid"]

    # An instance that never got scheduled lives in cell0, without a host.
    cell0_uuid = cloud.instance(None, vm_state="error", power_state=0, cell="cell0", root_bdm=False)
    row = one(dbs, "nova_cell0", "SELECT host, node, vm_state FROM instances WHERE uuid = %s", (cell0_uuid,))
    assert row == {"host": None, "node": None, "vm_state": "error"}
    assert one(dbs, "nova_api", "SELECT c.name FROM instance_mappings m JOIN cell_mappings c ON c.id = m.cell_id "
                                "WHERE m.instance_uuid = %s", (cell0_uuid,))["name"] == "cell0"
    assert dbs.scalar("nova", "SELECT COUNT(*) FROM instances WHERE uuid = %s", (cell0_uuid,)) == 0


def test_nova_bdm_and_migration(cloud, dbs, schema_snapshot):
    cloud.compute_host("compute1")
    target = cloud.compute_host("compute2")
    instance_uuid = cloud.instance("compute1")
    volume_id = cloud.volume(status="in-use", attach_status="attached", size=2)
    attachment_id = cloud.attachment(volume_id, instance_uuid, "compute1")
    bdm_id = cloud.bdm(instance_uuid, volume_id, attachment_id=attachment_id)
    row = one(dbs, "nova", "SELECT * FROM block_device_mapping WHERE id = %s", (bdm_id,))
    assert (row["volume_id"], row["attachment_id"], row["device_name"], row["source_type"],
            row["destination_type"], row["boot_index"], row["volume_size"], row["deleted"]) == \
        (volume_id, attachment_id, "/dev/vdb", "volume", "volume", None, 2, 0)
    assert json.loads(row["connection_info"])["serial"] == volume_id

    migration_id = cloud.migration(instance_uuid, "compute1", "compute2", status="running",
                                   migration_type="live-migration")
    row = one(dbs, "nova", "SELECT * FROM migrations WHERE id = %s", (migration_id,))
    assert (row["instance_uuid"], row["source_compute"], row["dest_compute"], row["status"],
            row["migration_type"], row["source_node"], row["dest_node"]) == \
        (instance_uuid, "compute1", "compute2", "running", "live-migration", "compute1", "compute2")
    if schema_snapshot.has_column("nova", "migrations", "dest_compute_id"):
        assert row["dest_compute_id"] == target["compute_node_id"]


def test_attach_volume_is_consistent_across_services(cloud, dbs):
    cloud.compute_host("compute1")
    instance_uuid = cloud.instance("compute1")
    ids = cloud.attach_volume(instance_uuid)
    row = one(dbs, "nova", "SELECT b.attachment_id, b.volume_id FROM block_device_mapping b "
                           "WHERE b.id = %s AND b.deleted = 0", (ids["bdm_id"],))
    assert row == {"attachment_id": ids["attachment_id"], "volume_id": ids["volume_id"]}
    row = one(dbs, "cinder", "SELECT v.status, v.attach_status, a.instance_uuid, a.attached_host "
                             "FROM volumes v JOIN volume_attachment a ON a.volume_id = v.id "
                             "WHERE a.id = %s AND a.deleted = 0", (ids["attachment_id"],))
    assert row == {"status": "in-use", "attach_status": "attached", "instance_uuid": instance_uuid,
                   "attached_host": "compute1"}


def test_placement(cloud, dbs, schema_snapshot):
    rp_uuid = cloud.resource_provider(name="compute1")
    inventory_id = cloud.inventory(rp_uuid, "VCPU", 16, allocation_ratio=4.0)
    cloud.inventory(rp_uuid, "MEMORY_MB", 32768)
    cloud.inventory(rp_uuid, "CUSTOM_GOLD", 2)
    consumer_uuid = cloud.consumer(project="p1", user="u1")
    allocation_id = cloud.allocation(consumer_uuid, rp_uuid, "VCPU", 2)
    cloud.allocation(consumer_uuid, rp_uuid, "MEMORY_MB", 2048)

    provider = one(dbs, "placement", "SELECT * FROM resource_providers WHERE uuid = %s", (rp_uuid,))
    assert provider["name"] == "compute1" and provider["root_provider_id"] == provider["id"]
    assert provider["generation"] == 5  # three inventories + two allocations
    standards = schema_snapshot.facts["standard_resource_classes"]
    classes = {row["name"]: row["id"] for row in dbs.query("placement", "SELECT id, name FROM resource_classes")}
    assert {name: classes[name] for name in standards} == {name: index for index, name in enumerate(standards)}
    assert classes["VCPU"] == 0 and classes["CUSTOM_GOLD"] >= 10000
    row = one(dbs, "placement", "SELECT i.total, i.allocation_ratio, c.name FROM inventories i "
                                "JOIN resource_classes c ON c.id = i.resource_class_id WHERE i.id = %s",
              (inventory_id,))
    assert (row["total"], row["allocation_ratio"], row["name"]) == (16, 4.0, "VCPU")
    row = one(dbs, "placement", "SELECT a.used, c.name, r.uuid, p.external_id AS project, u.external_id AS user, "
                                "k.generation FROM allocations a "
                                "JOIN resource_classes c ON c.id = a.resource_class_id "
                                "JOIN resource_providers r ON r.id = a.resource_provider_id "
                                "JOIN consumers k ON k.uuid = a.consumer_id "
                                "JOIN projects p ON p.id = k.project_id JOIN users u ON u.id = k.user_id "
                                "WHERE a.id = %s", (allocation_id,))
    assert row == {"used": 2, "name": "VCPU", "uuid": rp_uuid, "project": "p1", "user": "u1", "generation": 2}
    child = cloud.resource_provider(name="compute1_gpu", parent=rp_uuid)
    row = one(dbs, "placement", "SELECT parent_provider_id, root_provider_id FROM resource_providers "
                                "WHERE uuid = %s", (child,))
    assert row == {"parent_provider_id": provider["id"], "root_provider_id": provider["id"]}


def test_compute_host_and_instance_allocations(cloud, dbs):
    compute = cloud.compute_host("compute1")
    node = one(dbs, "nova", "SELECT uuid, hypervisor_hostname FROM compute_nodes WHERE id = %s",
               (compute["compute_node_id"],))
    assert node["uuid"] == compute["rp_uuid"]
    assert one(dbs, "placement", "SELECT name FROM resource_providers WHERE uuid = %s",
               (compute["rp_uuid"],))["name"] == node["hypervisor_hostname"]
    instance_uuid = cloud.instance("compute1")
    cloud.instance_allocations(instance_uuid, compute["rp_uuid"])
    used = {row["name"]: row["used"] for row in dbs.query(
        "placement", "SELECT c.name, a.used FROM allocations a JOIN resource_classes c ON c.id = a.resource_class_id "
                     "WHERE a.consumer_id = %s", (instance_uuid,))}
    instance = one(dbs, "nova", "SELECT vcpus, memory_mb, root_gb FROM instances WHERE uuid = %s", (instance_uuid,))
    assert used == {"VCPU": instance["vcpus"], "MEMORY_MB": instance["memory_mb"], "DISK_GB": instance["root_gb"]}
    assert one(dbs, "placement", "SELECT t.name FROM consumers c JOIN consumer_types t "
                                 "ON t.id = c.consumer_type_id WHERE c.uuid = %s", (instance_uuid,))["name"] == \
        "INSTANCE"


def test_builder_rejects_unknown_columns(cloud):
    with pytest.raises(KeyError, match="no_such_column"):
        cloud.volume(no_such_column=1)
