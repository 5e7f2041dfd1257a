"""Schema snapshots built by the real OpenStack migrations.

A snapshot holds, for the five logical databases of one release (``nova_api``,
``nova`` = cell1, ``nova_cell0``, ``cinder``, ``placement``), every table's
``SHOW CREATE TABLE`` text and every row the migrations seeded, plus facts
read from the installed services (package versions, alembic heads, service
and RPC versions, placement's standard resource classes).

Building one means running ``nova-manage``/``cinder-manage``/``placement-manage``
of the release's OpenStack virtualenv against temporary databases (about 15 s),
so the result is cached as JSON under ``$STACKMENDER_CACHE/schema/``, keyed by
the virtualenv's exact package set (``pip freeze``) and the MariaDB major.minor
version. A file lock keeps concurrent processes (pytest-xdist workers) from
building the same snapshot twice.
"""

import base64
import datetime
import decimal
import fcntl
import itertools
import hashlib
import json
import logging
import os
import secrets
import subprocess
import tempfile
import threading
import time

from tests.harness import LOGICAL_DATABASES, REPO_ROOT, cache_dir

LOG = logging.getLogger("stackmender.harness.schema")

# Bump when the layout of the snapshot file changes, to invalidate caches.
SNAPSHOT_FORMAT = 3

RELEASES_FILE = os.path.join(REPO_ROOT, "tests", "releases", "releases.tsv")
TRANSPORT_URL = "rabbit://guest:guest@127.0.0.1:5672/"  # written, never contacted

# Facts the builder needs that only the installed services know. Each script
# runs in the OpenStack venv in its own process: nova and cinder register
# clashing options on the same global oslo.config object.
_NOVA_FACTS = """
import json
import os_resource_classes
from nova import context, objects
from nova.objects import service
objects.register_all()
facts = {"nova_service_version": service.SERVICE_VERSION,
         "standard_resource_classes": list(os_resource_classes.STANDARDS)}
# Serialised objects exactly as this nova writes them (instance_extra.flavor,
# instance_extra.keypairs, request_specs.spec); the builder fills in values.
flavor = objects.Flavor(id=1, name="m1.tiny", memory_mb=512, vcpus=1, root_gb=1, ephemeral_gb=0, flavorid="1",
                        swap=0, rxtx_factor=1.0, vcpu_weight=0, disabled=False, is_public=True, extra_specs={},
                        projects=[], description=None)
facts["flavor_primitive"] = flavor.obj_to_primitive()
facts["keypairs_primitive"] = objects.KeyPairList(objects=[]).obj_to_primitive()
spec = objects.RequestSpec(context=context.get_admin_context(), instance_uuid="00000000-0000-0000-0000-000000000001",
                           project_id="project", user_id="user", flavor=flavor,
                           image=objects.ImageMeta.from_dict({}), num_instances=1, availability_zone=None,
                           ignore_hosts=None, force_hosts=None, force_nodes=None, scheduler_hints={},
                           instance_group=None, numa_topology=None,
                           pci_requests=objects.InstancePCIRequests(requests=[]),
                           security_groups=objects.SecurityGroupList(objects=[]), is_bfv=False)
facts["request_spec_primitive"] = json.loads(spec._get_update_primitives()["spec"])
print(json.dumps(facts))
"""
_CINDER_FACTS = """
import json
from cinder.objects import base
from cinder.backup import rpcapi as backup
from cinder.scheduler import rpcapi as scheduler
from cinder.volume import rpcapi as volume
print(json.dumps({"cinder_object_version": base.OBJ_VERSIONS.get_current(),
                  "cinder_rpc_versions": {"cinder-scheduler": scheduler.SchedulerAPI.RPC_API_VERSION,
                                          "cinder-volume": volume.VolumeAPI.RPC_API_VERSION,
                                          "cinder-backup": backup.BackupAPI.RPC_API_VERSION}}))
"""


class SchemaBuildError(RuntimeError):
    """A migration command or the OpenStack venv failed."""


# ---------------------------------------------------------------------------
# Releases and their OpenStack virtualenvs


def known_releases():
    """The releases listed in tests/releases/releases.tsv, in file order."""
    releases = []
    with open(RELEASES_FILE, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                releases.append(line.split()[0])
    return releases


_venvs = {}
_venvs_lock = threading.Lock()


def openstack_venv(release):
    """Path of the OpenStack virtualenv of ``release``, built by tools/lib.sh
    if missing (lib.sh locks, so concurrent callers build it once). Raises
    SchemaBuildError (never skips) when it cannot be built."""
    with _venvs_lock:
        if release in _venvs:
            return _venvs[release]
        result = subprocess.run(
            ["bash", "-c", 'source tools/lib.sh && openstack_venv "$1"', "openstack_venv", release],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False,
        )
        lines = result.stdout.strip().splitlines()
        path = lines[-1] if lines else ""
        if result.returncode != 0 or not os.path.isfile(os.path.join(path, "bin", "nova-manage")):
            raise SchemaBuildError(
                f"could not build the OpenStack virtualenv of release {release} "
                f"(rc={result.returncode}); end of its output:\n{_tail(result.stderr)}"
            )
        _venvs[release] = path
        return path


# ---------------------------------------------------------------------------
# The snapshot


class SchemaSnapshot:
    """The schema and seed rows of one release, as loaded from the cache.

    ``databases[logical]["tables"]`` maps table name to
    ``{"create": SHOW CREATE TABLE text, "columns": [...], "rows": [[...], ...]}``
    (``columns``/``rows`` only for tables the migrations filled).
    """

    def __init__(self, data, path=None):
        self.data = data
        self.path = path

    release = property(lambda self: self.data["release"])
    key = property(lambda self: self.data["key"])
    packages = property(lambda self: self.data["packages"])
    alembic_heads = property(lambda self: self.data["alembic_heads"])
    facts = property(lambda self: self.data["facts"])
    mariadb_version = property(lambda self: self.data["mariadb_version"])
    build_seconds = property(lambda self: self.data["build_seconds"])

    def __repr__(self):
        return f"<SchemaSnapshot {self.release} {self.key}>"

    def tables(self, logical):
        """Table names of one logical database, sorted."""
        return sorted(self.data["databases"][logical]["tables"])

    def create_statement(self, logical, table):
        return self.data["databases"][logical]["tables"][table]["create"]

    def columns(self, logical, table):
        """Column names of a table, in table order (parsed once from the DDL)."""
        cache = self.__dict__.setdefault("_columns", {})
        if (logical, table) not in cache:
            names = []
            for line in self.create_statement(logical, table).splitlines()[1:]:
                line = line.strip()
                if line.startswith("`"):
                    names.append(line[1:line.index("`", 1)])
            cache[(logical, table)] = names
        return cache[(logical, table)]

    def has_column(self, logical, table, column):
        return table in self.data["databases"][logical]["tables"] and column in self.columns(logical, table)

    def seed_rows(self, logical, table=None):
        """``{table: list of row dicts}`` of the rows the migrations seeded
        (or the list for one table). Values are decoded back to Python."""
        result = {}
        for name, info in self.data["databases"][logical]["tables"].items():
            if info.get("rows") and (table is None or name == table):
                result[name] = [dict(zip(info["columns"], map(decode_value, row))) for row in info["rows"]]
        return result if table is None else result.get(table, [])


def encode_value(value):
    """A database value as JSON (datetimes as MariaDB literals)."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return value


def decode_value(value):
    if isinstance(value, dict) and "base64" in value:
        return base64.b64decode(value["base64"])
    return value


# ---------------------------------------------------------------------------
# Cache key and loading

_loaded = {}
_loaded_lock = threading.Lock()


_freezes = {}


def pip_freeze(venv):
    """``pip freeze --all`` of ``venv``, sorted (read once per process: a
    venv does not change under a running test session)."""
    if venv in _freezes:
        return _freezes[venv]
    result = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False,
    )
    if result.returncode != 0:
        raise SchemaBuildError(f"pip freeze failed in {venv}:\n{_tail(result.stderr)}")
    _freezes[venv] = sorted(line for line in result.stdout.splitlines() if line.strip())
    return _freezes[venv]


def _package_versions(freeze):
    wanted = {"nova": "nova", "cinder": "cinder", "openstack-placement": "placement", "keystone": "keystone"}
    versions = {}
    for line in freeze:
        name, _separator, version = line.partition("==")
        short = wanted.get(name.lower().replace("_", "-"))
        if short:
            versions[short] = version
    return versions


def load_snapshot(server, release, venv=None):
    """The snapshot of ``release`` for ``server``'s MariaDB version: from the
    cache, or built now (once, even across concurrent processes)."""
    venv = venv or openstack_venv(release)
    freeze = pip_freeze(venv)
    key_source = "\n".join([f"format {SNAPSHOT_FORMAT}", f"mariadb {server.major_minor}", *freeze])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    with _loaded_lock:
        if (release, key) in _loaded:
            return _loaded[(release, key)]
        directory = os.path.join(cache_dir(), "schema")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{release}-{key}.json")
        snapshot = _read(path)
        if snapshot is None:
            with open(path + ".lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                # Another process may have built it while we waited.
                snapshot = _read(path)
                if snapshot is None:
                    data = build_snapshot(server, release, venv, key, freeze)
                    _write_atomically(path, data)
                    snapshot = SchemaSnapshot(data, path)
                    _log_build(directory, snapshot)
        _loaded[(release, key)] = snapshot
        return snapshot


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError:
        # Cannot happen with the atomic write, but never trust a bad cache.
        LOG.warning("ignoring unreadable schema cache %s", path)
        return None
    if data.get("format") != SNAPSHOT_FORMAT:
        return None
    return SchemaSnapshot(data, path)


def _write_atomically(path, data):
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; it is a plain cache file
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def _log_build(directory, snapshot):
    message = (f"built schema snapshot {snapshot.release} ({snapshot.key}, nova {snapshot.packages.get('nova')}, "
               f"cinder {snapshot.packages.get('cinder')}, placement {snapshot.packages.get('placement')}, "
               f"MariaDB {snapshot.mariadb_version}) in {snapshot.build_seconds:.1f} s")
    LOG.warning(message)  # a warning so that it shows up in pytest's log summary
    # pytest captures logging; the cache directory keeps a plain history too.
    with open(os.path.join(directory, "build.log"), "a", encoding="utf-8") as handle:
        handle.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} {message}\n")


# ---------------------------------------------------------------------------
# Building


def _tail(text, lines=40):
    """The last lines of a command's output, without the EventletDeprecationWarning
    banner every OpenStack command prints first."""
    kept, in_banner = [], False
    for line in (text or "").splitlines():
        if "EventletDeprecationWarning" in line:
            in_banner = True
        elif in_banner and line.strip().startswith("import eventlet"):
            in_banner = False
        elif not in_banner and line.strip():
            kept.append(line)
    return "\n".join(kept[-lines:])


class _Command:
    """One manage command started in the background, its output captured."""

    _numbers = itertools.count()

    def __init__(self, description, argv, workdir):
        self.description = description
        self.argv = argv
        self._out = open(os.path.join(workdir, f"command-{next(self._numbers)}.out"), "w+", encoding="utf-8")
        self.started = time.monotonic()
        self.seconds = None
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                        stderr=subprocess.STDOUT, cwd=workdir)
        # Note when it ends even if nobody is waiting yet (for the timing log).
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self):
        self.process.wait()
        self.seconds = time.monotonic() - self.started

    def wait(self):
        """Output of the command; raises SchemaBuildError with its tail if it failed."""
        returncode = self.process.wait()
        self._watcher.join()
        self._out.seek(0)
        output = self._out.read()
        self._out.close()
        if returncode != 0:
            raise SchemaBuildError(f"{self.description} failed (rc={returncode}): {' '.join(self.argv)}\n"
                                   f"--- end of its output ---\n{_tail(output)}")
        LOG.info("%s: %.1f s", self.description, self.seconds)
        return output

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not self._out.closed:
            self._out.close()


def _write_config(path, sections):
    with open(path, "w", encoding="utf-8") as handle:
        for section, options in sections.items():
            handle.write(f"[{section}]\n")
            for option, value in options.items():
                handle.write(f"{option} = {value}\n")
            handle.write("\n")


def build_snapshot(server, release, venv, key, freeze):
    """Run the real migrations of ``venv`` against temporary databases and
    return the snapshot data (a JSON-able dict). The databases are dropped."""
    started = time.monotonic()
    prefix = f"smb_{secrets.token_hex(4)}"  # "schema build", unique per attempt
    names = {logical: f"{prefix}_{logical}" for logical in LOGICAL_DATABASES}
    urls = {logical: server.url(name) for logical, name in names.items()}
    admin = server.admin_connect()
    commands = []
    try:
        with admin.cursor() as cursor:
            for name in names.values():
                cursor.execute(f"CREATE DATABASE `{name}`")
        with tempfile.TemporaryDirectory(prefix="stackmender-schema-") as workdir:
            # Absolute paths only: oslo.config reads $name as an option reference.
            state = os.path.join(workdir, "state")
            os.makedirs(os.path.join(state, "locks"))
            common = {"transport_url": TRANSPORT_URL, "state_path": state}
            nova_conf = os.path.join(workdir, "nova.conf")
            cinder_conf = os.path.join(workdir, "cinder.conf")
            placement_conf = os.path.join(workdir, "placement.conf")
            _write_config(nova_conf, {
                "DEFAULT": common,
                "database": {"connection": urls["nova"]},
                "api_database": {"connection": urls["nova_api"]},
                "oslo_concurrency": {"lock_path": os.path.join(state, "locks")},
            })
            _write_config(cinder_conf, {
                "DEFAULT": common,
                "database": {"connection": urls["cinder"]},
                "oslo_concurrency": {"lock_path": os.path.join(state, "locks")},
            })
            _write_config(placement_conf, {"placement_database": {"connection": urls["placement"]}})
            bin_dir = os.path.join(venv, "bin")
            nova = [os.path.join(bin_dir, "nova-manage"), "--config-file", nova_conf]
            python = [os.path.join(bin_dir, "python"), "-W", "ignore", "-c"]

            # Cinder, placement and the fact probes do not depend on nova:
            # run them alongside the (sequential) nova chain.
            background = [
                _Command("cinder-manage db sync",
                         [os.path.join(bin_dir, "cinder-manage"), "--config-file", cinder_conf, "db", "sync"], workdir),
                _Command("placement-manage db sync",
                         [os.path.join(bin_dir, "placement-manage"), "--config-file", placement_conf, "db", "sync"],
                         workdir),
                _Command("reading nova facts", python + [_NOVA_FACTS], workdir),
                _Command("reading cinder facts", python + [_CINDER_FACTS], workdir),
            ]
            commands.extend(background)
            for description, argv in [
                ("nova-manage api_db sync", nova + ["api_db", "sync"]),
                ("nova-manage cell_v2 map_cell0",
                 nova + ["cell_v2", "map_cell0", "--database_connection", urls["nova_cell0"]]),
                ("nova-manage cell_v2 create_cell",
                 nova + ["cell_v2", "create_cell", "--name", "cell1", "--database_connection", urls["nova"],
                         "--transport-url", TRANSPORT_URL]),
                ("nova-manage db sync", nova + ["db", "sync"]),
            ]:
                command = _Command(description, argv, workdir)
                commands.append(command)
                command.wait()
            outputs = [command.wait() for command in background]
            facts = {}
            for output in outputs[2:]:
                facts.update(json.loads(output.strip().splitlines()[-1]))

        databases = {logical: _dump_database(admin, name) for logical, name in names.items()}
    finally:
        for command in commands:
            command.kill()
        try:
            with admin.cursor() as cursor:
                for name in names.values():
                    cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            admin.close()

    # The cell mappings name this build's throw-away databases; a database
    # set rewrites them, so store recognisable placeholders instead.
    mappings = databases["nova_api"]["tables"]["cell_mappings"]
    column = mappings["columns"].index("database_connection")
    for row in mappings["rows"]:
        for logical in ("nova_cell0", "nova"):
            if row[column] == urls[logical]:
                row[column] = f"@{logical}@"

    heads = {}
    for logical, database in databases.items():
        version = database["tables"].get("alembic_version", {})
        heads[logical] = [row[0] for row in version.get("rows", [])]
    return {
        "format": SNAPSHOT_FORMAT,
        "release": release,
        "key": key,
        "mariadb_version": server.version,
        "packages": _package_versions(freeze),
        "pip_freeze": freeze,
        "alembic_heads": heads,
        "facts": facts,
        "build_seconds": round(time.monotonic() - started, 2),
        "build_prefix": prefix,  # of the temporary databases (dropped)
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "databases": databases,
    }


def _dump_database(admin, name):
    """Every base table's DDL and rows of database ``name``."""
    tables = {}
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, table_type, table_rows FROM information_schema.tables WHERE table_schema = %s",
            (name,))
        listing = cursor.fetchall()
        others = [table for table, kind, _rows in listing if kind != "BASE TABLE"]
        if others:
            # Nothing in the migrations creates views today; refuse to
            # silently lose one if a release starts to.
            raise SchemaBuildError(f"{name} has non-table objects the snapshot does not handle: {others}")
        for (table, _kind, _rows) in listing:
            cursor.execute(f"SHOW CREATE TABLE `{name}`.`{table}`")
            entry = {"create": cursor.fetchone()[1]}
            # table_rows is an estimate for InnoDB: count every table.
            cursor.execute(f"SELECT * FROM `{name}`.`{table}`")
            rows = cursor.fetchall()
            if rows:
                entry["columns"] = [column[0] for column in cursor.description]
                entry["rows"] = [[encode_value(value) for value in row] for row in rows]
            tables[table] = entry
    return {"tables": tables}
