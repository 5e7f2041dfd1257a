"""Bring the lab up, take it down, reset it, and the failure-injection hooks."""

import concurrent.futures
import contextlib
import fcntl
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import time

from . import configs, services, settings
from .infra import LabError, MariaDB, RabbitMQ, wait_for
from .processes import Supervisor, memory_of


INFRASTRUCTURE = ("mariadb", "epmd", "rabbitmq")


_lab_log = None     # log/lab.log of the lab being worked on, once it exists


def say(message):
    line = "[lab] %s\n" % message
    sys.stderr.write(line)
    sys.stderr.flush()
    if _lab_log is not None and _lab_log.parent.is_dir():
        with open(_lab_log, "a") as log:
            log.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line)


class Stopwatch:
    def __init__(self):
        self.start = time.time()
        self.marks = []

    def mark(self, what):
        self.marks.append((what, round(time.time() - self.start, 1)))
        say("%5.1f s  %s" % (time.time() - self.start, what))


class LabControl:
    def __init__(self, lab):
        self.lab = lab
        self.supervisor = Supervisor(lab)
        self.database = MariaDB(lab, self.supervisor)
        self.broker = RabbitMQ(lab, self.supervisor)
        self.layout = services.Layout(lab)
        self.baseline_marker = lab.path("mysql", "baseline-loaded")
        global _lab_log
        _lab_log = lab.log_dir / "lab.log"

    # -- helpers ---------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """One mutating command at a time per lab."""
        self.lab.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lab.run_dir / "lab.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def catalogue(self):
        return services.catalogue(self.lab, self.layout.load())

    def service(self, name):
        """A service by process name, or by compute/volume host name."""
        for service in self.catalogue():
            if name == service.name:
                return service
            if name == service.host and service.binary in (services.NOVA_COMPUTE, services.CINDER_VOLUME):
                return service
        known = ", ".join(service.name for service in self.catalogue())
        raise LabError("no lab service %r; known: %s, mariadb, rabbitmq" % (name, known))

    def _run(self, argv, log_name, env=None):
        """Run a setup command to completion, its output in log/<log_name>.log."""
        environment = dict(os.environ, **(env or {}))
        started = time.time()
        with open(self.lab.log_dir / (log_name + ".log"), "ab") as log:
            log.write(("\n==== %s\n" % " ".join(argv)).encode())
            log.flush()
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=environment, cwd=str(self.lab.root), check=False)
            log.write(("==== exit %d after %.1f s\n" % (result.returncode, time.time() - started)).encode())
        if result.returncode != 0:
            raise LabError("%s failed (exit %d); see %s" % (
                " ".join(argv[:3]), result.returncode, self.lab.log_dir / (log_name + ".log")))

    def _make_directories(self):
        for path in (self.lab.etc, self.lab.log_dir, self.lab.run_dir, self.lab.run_dir / "hold",
                     self.lab.state / "locks"):
            path.mkdir(parents=True, exist_ok=True)

    def write_configs(self):
        configs.write_shared(self.lab)
        layout = self.layout.load()
        for host in layout["computes"]:
            configs.write_compute(self.lab, host)
        for volume_host in layout["volume_hosts"]:
            configs.write_volume_service(self.lab, volume_host)

    # -- up ------------------------------------------------------------------
    def up(self, fresh=False):
        if self.lab.root.is_relative_to(self.lab.code_dir.parent.parent):
            raise LabError("the lab directory %s is inside the clone; set STACKMENDER_LAB_DIR" % self.lab.root)
        if fresh:
            self.down(wipe=True)
        watch = Stopwatch()
        with self.locked():
            self._make_directories()
            self.write_configs()
            self.broker.start()
            self.database.start()
            watch.mark("MariaDB ready (127.0.0.1:%d)" % self.lab.port("mariadb"))
            if not self.baseline_marker.exists():
                self._load_baseline(watch)
            self._start_services(self.catalogue(), watch)
            self._after_start(watch)
        self.write_info()
        return watch

    def _load_baseline(self, watch):
        baseline = self.lab.baseline_dir
        if not (baseline / ".complete").exists():
            self._build_baseline(watch)
            self.baseline_marker.write_text(baseline.name + "\n")
            return
        self.database.load(baseline / "databases.sql")
        for name in ("fernet-keys", "credential-keys"):
            target = self.lab.state / "keystone" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(baseline / "keystone" / name, target)
        shutil.rmtree(self.lab.state / "glance", ignore_errors=True)
        shutil.copytree(baseline / "glance", self.lab.state / "glance")
        self.baseline_marker.write_text(baseline.name + "\n")
        watch.mark("databases restored from the cached baseline %s" % baseline.name)

    def _build_baseline(self, watch):
        """Run the real migrations and set up identity and image, then keep a
        dump of it all in the cache so later labs start from the dump."""
        say("no cached baseline yet: running the migrations (once per venv and port base)")
        self.database.recreate_databases(settings.DATABASES)
        self._migrate()
        watch.mark("migrations and keystone bootstrap done")
        # Identity and the image need keystone and glance running; nothing
        # else is started yet, so no service row gets into the dump.
        catalogue = {service.name: service for service in self.catalogue()}
        first = [catalogue[name] for name in ("keystone", "glance")]
        for service in first:
            self._start(service)
        for service in first:
            wait_for(lambda: services.http_answers(service.port), 60, service.name)
        from . import fixtures
        fixtures.create_identity(self.lab, fixtures.connect(self.lab))
        # A new token: the first one's catalog predates the endpoints.
        fixtures.create_image(self.lab, fixtures.connect(self.lab))
        watch.mark("users, projects, catalog and image created")

        baseline = self.lab.baseline_dir
        building = baseline.with_name(baseline.name + ".building-%d" % os.getpid())
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        self.database.dump(building / "databases.sql", settings.DATABASES)
        for name in ("fernet-keys", "credential-keys"):
            shutil.copytree(self.lab.state / "keystone" / name, building / "keystone" / name)
        shutil.copytree(self.lab.state / "glance", building / "glance")
        (building / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        shutil.rmtree(baseline, ignore_errors=True)
        building.rename(baseline)
        watch.mark("baseline cached in %s" % baseline)

    def _migrate(self):
        lab = self.lab
        nova = [lab.bin("nova-manage"), "--config-file", str(lab.etc / "nova" / "nova.conf")]
        keystone = [lab.bin("keystone-manage"), "--config-file", str(lab.etc / "keystone" / "keystone.conf")]
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        admin_user, admin_password, admin_project = settings.ADMIN
        chains = {
            "nova": [
                nova + ["api_db", "sync"],
                nova + ["cell_v2", "map_cell0", "--database_connection", lab.db_url("nova_cell0")],
                nova + ["cell_v2", "create_cell", "--name", "cell1", "--database_connection", lab.db_url("nova"),
                        "--transport-url", lab.transport_url],
                nova + ["db", "sync"],
            ],
            "keystone": [
                keystone + ["db_sync"],
                keystone + ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
                keystone + ["credential_setup", "--keystone-user", user, "--keystone-group", group],
                keystone + ["bootstrap", "--bootstrap-username", admin_user,
                            "--bootstrap-password", admin_password, "--bootstrap-project-name", admin_project,
                            "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
                            "--bootstrap-region-id", settings.REGION,
                            "--bootstrap-admin-url", lab.auth_url, "--bootstrap-internal-url", lab.auth_url,
                            "--bootstrap-public-url", lab.auth_url],
            ],
            "cinder-placement-glance": [
                [lab.bin("cinder-manage"), "--config-file", str(lab.etc / "cinder" / "cinder.conf"), "db", "sync"],
                [lab.bin("placement-manage"), "--config-file", str(lab.etc / "placement" / "placement.conf"),
                 "db", "sync"],
                [str(lab.glance_venv / "bin" / "glance-manage"), "--config-file",
                 str(lab.etc / "glance" / "glance-api.conf"), "db_sync"],
            ],
        }
        (lab.state / "keystone").mkdir(parents=True, exist_ok=True)

        def run_chain(name):
            for argv in chains[name]:
                self._run(argv, "migrate-" + name)

        # The three chains do not depend on each other, and their time is
        # mostly Python start-up, so they run side by side.
        with concurrent.futures.ThreadPoolExecutor(len(chains)) as pool:
            for future in [pool.submit(run_chain, name) for name in chains]:
                future.result()

    def _start(self, service):
        env = dict(os.environ, **service.env)
        self.supervisor.start(service.name, service.argv, env=env)

    def _start_services(self, catalogue, watch, wait=True, timeout=180):
        """Start whatever of `catalogue` is not running, each once what it
        needs is ready (Service.after), then wait until each is usable."""
        since = services.utc_now()
        pending = [service for service in catalogue if not self.supervisor.running(service.name)]
        if not pending:
            watch.mark("all services already running")
            return
        by_name = {service.name: service for service in pending}
        satisfied = set()

        def ready(condition):
            if condition in satisfied:
                return True
            if condition == "rabbitmq":
                result = self.broker.answers()
            elif condition == "keystone":
                result = services.keystone_validates_tokens(self.lab)
            elif condition in by_name:          # started in this batch
                result = self._ready(by_name[condition], since)
            else:                               # already running before
                result = True
            if result:
                satisfied.add(condition)
            return result

        waiting = list(pending)
        deadline = time.time() + timeout
        while waiting:
            for service in list(waiting):
                if all(ready(condition) for condition in service.after):
                    self._start(service)
                    waiting.remove(service)
            for service in pending:
                if service not in waiting and not self.supervisor.running(service.name):
                    raise LabError("%s exited during start-up; see %s" % (
                        service.name, self.lab.log_dir / (service.name + ".log")))
            if waiting and time.time() > deadline:
                raise LabError("could not start within %d s: %s (waiting for %s)" % (
                    timeout, ", ".join(s.name for s in waiting),
                    ", ".join(sorted({c for s in waiting for c in s.after} - satisfied))))
            if waiting:
                time.sleep(0.3)
        watch.mark("started %d services" % len(pending))
        if wait:
            self.wait_ready(pending, since, watch)

    def wait_ready(self, pending, since, watch, timeout=180):
        deadline = time.time() + timeout
        remaining = list(pending)
        ready_at = []
        while remaining:
            still = []
            for service in remaining:
                if not self.supervisor.running(service.name):
                    raise LabError("%s exited during start-up; see %s" % (
                        service.name, self.lab.log_dir / (service.name + ".log")))
                if self._ready(service, since):
                    ready_at.append("%s %.0f" % (service.name, time.time() - watch.start))
                else:
                    still.append(service)
            remaining = still
            if remaining and time.time() > deadline:
                raise LabError("not ready after %d s: %s" % (timeout, ", ".join(s.name for s in remaining)))
            if remaining:
                time.sleep(0.5)
        watch.mark("all services ready (at s: %s)" % ", ".join(ready_at))

    def _ready(self, service, since):
        import pymysql
        if service.is_http:
            return services.http_answers(service.port)
        try:
            if not services.reported_since(self.database, service, since):
                return False
            if service.binary == services.NOVA_COMPUTE:
                return services.compute_usable(self.database, service.host)
            return True
        except pymysql.err.OperationalError:    # the database is busy: ask again
            return False

    def _after_start(self, watch):
        from . import fixtures
        admin = fixtures.connect(self.lab)
        fixtures.ensure_flavor(admin)
        # The scheduler learns the backends' pools from their periodic
        # reports; a volume created before that fails with "No valid backend".
        volume_hosts = self.layout.load()["volume_hosts"]
        wait_for(lambda: self._pools_known(admin, volume_hosts), 90, "cinder-scheduler to know every backend")
        watch.mark("flavor present, every volume backend known to the scheduler")

    def _pools_known(self, admin, volume_hosts):
        response = admin.block_storage.get("/scheduler-stats/get_pools")
        pools = {pool["name"].split("#")[0] for pool in response.json().get("pools", [])}
        return set(volume_hosts) <= pools

    # -- info ----------------------------------------------------------------
    def write_info(self):
        """clouds.yaml and lab.json (what `info` prints) in the lab directory."""
        self.write_clouds()
        self.lab.path("lab.json").write_text(json.dumps(self.info(), indent=2))

    def info(self):
        lab = self.lab
        return {
            "release": settings.RELEASE,
            "lab_dir": str(lab.root),
            "log_dir": str(lab.log_dir),
            "clouds_yaml": str(lab.path("clouds.yaml")),
            "clouds": ["lab-admin", "lab-member"],
            "database": {
                "host": "127.0.0.1", "port": lab.port("mariadb"),
                "user": settings.DB_USER, "password": settings.DB_PASSWORD,
                "urls": {name: lab.db_url(name) for name in settings.DATABASES},
            },
            "transport_url": lab.transport_url,
            "endpoints": {name: lab.url(name) for name in
                          ("keystone", "nova-api", "cinder-api", "placement", "glance", "neutron")},
            "flavor": settings.FLAVOR["id"],
            "image": settings.IMAGE_NAME,
            "layout": self.layout.load(),
        }

    def write_clouds(self, path=None):
        path = path or self.lab.path("clouds.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(configs.clouds_yaml(self.lab))
        return path

    # -- down ----------------------------------------------------------------
    def down(self, wipe=False):
        """Stop everything this lab started, whatever state it is in."""
        openstack = [name for name in self.supervisor.names() if name not in INFRASTRUCTURE]
        forced = self.supervisor.stop(openstack, timeout=20)
        forced += self.broker.stop()
        forced += self.database.stop()
        leftovers = self.supervisor.kill_stragglers()
        if forced:
            say("needed SIGKILL: %s" % ", ".join(forced))
        if leftovers:
            say("killed %d stray processes of this lab" % len(leftovers))
        if wipe and self.lab.root.exists():
            shutil.rmtree(self.lab.root)
            say("removed %s" % self.lab.root)
        return forced, leftovers

    # -- reset ---------------------------------------------------------------
    def reset(self):
        """Back to the freshly set-up databases and the initial layout.

        MariaDB, keystone, glance and the neutron stand-in keep running; the
        nova, cinder and placement services restart, because their service
        rows, compute nodes, node identities and placement's resource-class
        cache go with the old databases.
        RabbitMQ restarts empty, so no message of the old state is delivered
        to the new one.
        """
        watch = Stopwatch()
        with self.locked():
            if not self.supervisor.running("mariadb"):
                raise LabError("the lab is not up; run `lab up`")
            # Everything they hold is thrown away, so there is nothing to
            # shut down gracefully: SIGKILL is quicker and just as clean.
            old = [name for name in self.supervisor.names() if name not in INFRASTRUCTURE]
            old = [name for name in old if not self._is_stateless(name)]
            for name in old + [self.broker.name, self.broker.epmd_name]:
                self.supervisor.kill(name)
            watch.mark("nova and cinder services and RabbitMQ killed")
            self.broker.wipe()
            self.broker.start()
            for path in (self.lab.state / "nova", self.lab.state / "compute", self.lab.state / "cinder",
                         self.lab.state / "locks"):
                shutil.rmtree(path, ignore_errors=True)
            self._clear_holds()
            self.layout.reset()
            self._make_directories()
            self.write_configs()
            self.database.load(self.lab.baseline_dir / "databases.sql")
            watch.mark("databases restored from the baseline")
            self._start_services(self.catalogue(), watch)
            self._after_start(watch)
        self.write_info()
        return watch

    def _is_stateless(self, name):
        return any(service.name == name and service.stateless_api for service in self.catalogue())

    # -- failure injection ---------------------------------------------------
    def process_name(self, name):
        """The process name for a service name or a compute/volume host."""
        if name in INFRASTRUCTURE:
            return name
        return self.service(name).name

    def stop_services(self, names):
        """Graceful stop (SIGTERM, as systemctl stop does)."""
        with self.locked():
            processes = [self.process_name(name) for name in names]
            self.supervisor.stop(processes, timeout=30)
            return processes

    def kill_services(self, names):
        """SIGKILL, no clean-up: a crash, an OOM kill, a power cut of that host."""
        with self.locked():
            processes = [self.process_name(name) for name in names]
            return [name for name in processes if self.supervisor.kill(name)]

    def start_services(self, names, wait=True):
        with self.locked():
            wanted = []
            for name in names:
                if name == "mariadb":
                    self.database.start()
                elif name in INFRASTRUCTURE:
                    self.broker.start()
                    self.broker.wait()
                else:
                    wanted.append(self.service(name))
            self._start_services(wanted, Stopwatch(), wait=wait)

    def rehost_volume_service(self, old, new, kill=False):
        """Re-register a cinder-volume under a new host name: stop the old
        service and start one configured as NEW, as an operator does when
        switching to multi-backend. Volumes keep pointing at OLD and the old
        service row stays behind, exactly what the incident leaves."""
        try:
            configs.split_volume_host(new)
        except ValueError as error:
            raise LabError(str(error))
        with self.locked():
            layout = self.layout.load()
            old_service = self.service(old)
            if old_service.binary != services.CINDER_VOLUME:
                raise LabError("%s is not a cinder-volume service" % old)
            if new in layout["volume_hosts"]:
                raise LabError("%s is already a volume service of the lab" % new)
            if kill:
                self.supervisor.kill(old_service.name)
            else:
                self.supervisor.stop([old_service.name], timeout=30)
            layout["volume_hosts"] = [new if host == old_service.host else host for host in layout["volume_hosts"]]
            self.layout.save(layout)
            configs.write_volume_service(self.lab, new)
            new_service = next(s for s in self.catalogue() if s.host == new and s.binary == services.CINDER_VOLUME)
            self._start_services([new_service], Stopwatch())
        self.write_info()
        return old_service.host, new

    def _clear_holds(self):
        hold = self.lab.run_dir / "hold"
        if hold.is_dir():
            for path in hold.iterdir():
                path.unlink()

    # -- status --------------------------------------------------------------
    def status(self):
        """Process state and memory of every lab process, plus the service
        rows nova and cinder keep (which may still say `up` for a dead one)."""
        rows = []
        names = list(INFRASTRUCTURE) + [service.name for service in self.catalogue()]
        names += [name for name in self.supervisor.names() if name not in names]
        total_rss = total_pss = 0
        for name in names:
            pid = self.supervisor.pid(name)
            members = self.supervisor.members(name) if pid else []
            rss, pss = memory_of(members)
            total_rss += rss
            total_pss += pss
            rows.append({"name": name, "running": pid is not None, "pid": pid, "processes": len(members),
                         "rss_mb": round(rss / 1024), "pss_mb": round(pss / 1024)})
        # Processes of this lab outside the recorded groups (Erlang helpers).
        recorded = {pid for name in names for pid in self.supervisor.members(name)}
        others = [pid for pid in self.supervisor.stragglers() if pid not in recorded]
        rss, pss = memory_of(others)
        total_rss += rss
        total_pss += pss
        result = {"lab_dir": str(self.lab.root), "processes": rows,
                  "other_processes": {"count": len(others), "rss_mb": round(rss / 1024), "pss_mb": round(pss / 1024)},
                  "total_rss_mb": round(total_rss / 1024), "total_pss_mb": round(total_pss / 1024),
                  "service_rows": self._service_rows() if self.supervisor.running("mariadb") else None}
        return result

    def _service_rows(self):
        rows = []
        try:
            with self.database.connection() as connection, connection.cursor() as cursor:
                cursor.execute(
                    "SELECT 'nova', `binary`, host, disabled, forced_down, "
                    "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) FROM nova.services WHERE deleted = 0 "
                    "UNION ALL SELECT 'cinder', `binary`, host, disabled, NULL, "
                    "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP()) FROM cinder.services WHERE deleted = 0")
                for project, binary, host, disabled, forced_down, age in cursor.fetchall():
                    if age is None:
                        state = "-"      # API services register a row but never report
                    elif age <= settings.SERVICE_DOWN_TIME and not forced_down:
                        state = "up"
                    else:
                        state = "down"
                    rows.append({"project": project, "binary": binary, "host": host, "disabled": bool(disabled),
                                 "forced_down": bool(forced_down), "last_report_s": age, "state": state})
        except Exception as error:     # status must work on a half-started lab
            rows.append({"error": str(error)})
        return rows
