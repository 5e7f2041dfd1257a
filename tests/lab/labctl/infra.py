"""The lab's private MariaDB and RabbitMQ.

Both run from the Debian packages' binaries but with no system
configuration, their data inside the lab directory and their listeners on
the lab's own loopback ports, so they never meet a system instance.
"""

import os
import shutil
import socket
import subprocess
import time

from . import settings


class LabError(RuntimeError):
    pass


def wait_for(check, timeout, what, interval=0.2):
    deadline = time.time() + timeout
    last_error = None
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception as error:     # the service is still coming up
            last_error = error
        time.sleep(interval)
    raise LabError("timed out after %.0f s waiting for %s%s" % (
        timeout, what, " (last error: %s)" % last_error if last_error else ""))


def _run_as_root():
    return os.geteuid() == 0


class MariaDB:
    name = "mariadb"

    def __init__(self, lab, supervisor):
        self.lab = lab
        self.supervisor = supervisor
        self.datadir = lab.path("mysql", "data")
        # Its own: a starting mariadbd deletes every #sql* file in its tmpdir, so in a shared /tmp
        # each private server a test starts would delete the lab's live temporary tables.
        self.tmpdir = lab.path("mysql", "tmp")
        self.socket = lab.run_dir / "mysql.sock"

    def _server_options(self):
        options = [
            "--no-defaults",
            "--datadir=%s" % self.datadir,
            "--tmpdir=%s" % self.tmpdir,
            "--socket=%s" % self.socket,
            "--pid-file=%s" % (self.lab.run_dir / "mysql.pid"),
            "--port=%d" % self.lab.port("mariadb"),
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--max-connections=500",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=32M",
            # A lab loses nothing worth an fsync per commit.
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-doublewrite=0",
        ]
        if _run_as_root():
            options.append("--user=root")
        return options

    def initialize(self):
        if (self.datadir / "mysql").is_dir():
            return False
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir.mkdir(parents=True)
        command = ["mariadb-install-db", "--no-defaults", "--datadir=%s" % self.datadir, "--tmpdir=%s" % self.tmpdir,
                   "--auth-root-authentication-method=normal", "--skip-test-db",
                   "--innodb-log-file-size=32M"]
        if _run_as_root():
            command.append("--user=root")
        with open(self.lab.log_dir / "mariadb-install.log", "ab") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return True

    def start(self):
        self.lab.run_dir.mkdir(parents=True, exist_ok=True)
        if self.supervisor.running(self.name):
            return False
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        fresh = self.initialize()
        self.supervisor.start(self.name, ["mariadbd"] + self._server_options())
        wait_for(lambda: self.root_connection().close() or True, 60, "MariaDB")
        if fresh:
            self._create_account()
        return True

    def root_connection(self, database=None):
        import pymysql      # only in the OpenStack venv; `down` runs without it
        return pymysql.connect(unix_socket=str(self.socket), user="root", password="",
                               database=database, autocommit=True)

    def connection(self, database=None):
        """The account the services use, over TCP as they connect."""
        import pymysql
        return pymysql.connect(host="127.0.0.1", port=self.lab.port("mariadb"), user=settings.DB_USER,
                               password=settings.DB_PASSWORD, database=database, autocommit=True)

    def _create_account(self):
        with self.root_connection() as connection, connection.cursor() as cursor:
            for host in ("127.0.0.1", "localhost"):
                cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                               (settings.DB_USER, host, settings.DB_PASSWORD))
                cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION",
                               (settings.DB_USER, host))

    def recreate_databases(self, names):
        with self.root_connection() as connection, connection.cursor() as cursor:
            for name in names:
                cursor.execute("DROP DATABASE IF EXISTS `%s`" % name)
                cursor.execute("CREATE DATABASE `%s`" % name)

    def dump(self, path, databases):
        command = ["mariadb-dump", "--no-defaults", "--user=root", "--socket=%s" % self.socket,
                   "--single-transaction", "--skip-dump-date", "--add-drop-database",
                   "--databases"] + list(databases)
        temporary = path.with_suffix(".partial")
        with open(temporary, "wb") as out:
            subprocess.run(command, check=True, stdout=out, stdin=subprocess.DEVNULL)
        temporary.rename(path)

    def load(self, path):
        command = ["mariadb", "--no-defaults", "--user=root", "--socket=%s" % self.socket]
        with open(path, "rb") as source:
            subprocess.run(command, check=True, stdin=source)

    def stop(self):
        return self.supervisor.stop([self.name], timeout=30)


class RabbitMQ:
    """RabbitMQ with its own epmd, node name, cookie and data directory."""

    name = "rabbitmq"
    epmd_name = "epmd"
    node = "stackmender-lab@localhost"

    def __init__(self, lab, supervisor):
        self.lab = lab
        self.supervisor = supervisor
        self.base = lab.path("rabbitmq")

    def environment(self):
        etc = self.base / "etc"
        environment = dict(os.environ)
        environment.update({
            "HOME": str(self.base / "home"),        # the Erlang cookie lives here
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.lab.port("rabbitmq")),
            "RABBITMQ_DIST_PORT": str(self.lab.port("rabbitmq-dist")),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.lab.port("epmd")),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.lab.log_dir),
            "RABBITMQ_LOGS": "-",                   # to stdout, which is the lab's log file
            "RABBITMQ_PID_FILE": str(self.lab.run_dir / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(etc / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(etc / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(etc / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(etc / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return environment

    def _write_config(self):
        etc = self.base / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (self.base / "home").mkdir(parents=True, exist_ok=True)
        (etc / "rabbitmq.conf").write_text("\n".join([
            "listeners.tcp.default = 127.0.0.1:%d" % self.lab.port("rabbitmq"),
            "loopback_users.guest = true",
            "disk_free_limit.absolute = 50MB",
            "",
        ]))
        (etc / "advanced.config").write_text("[].\n")
        (etc / "enabled_plugins").write_text("[].\n")
        (etc / "rabbitmq-env.conf").write_text("")

    def start(self):
        started = False
        self._write_config()
        if not self.supervisor.running(self.epmd_name):
            self.supervisor.start(self.epmd_name, [
                "epmd", "-address", "127.0.0.1", "-port", str(self.lab.port("epmd"))],
                env=self.environment())
            started = True
        if not self.supervisor.running(self.name):
            wait_for(lambda: _port_open(self.lab.port("epmd")), 20, "epmd")
            self.supervisor.start(self.name, ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=self.environment())
            started = True
        return started

    def answers(self):
        try:
            return _amqp_answers(self.lab.port("rabbitmq"))
        except OSError:
            return False

    def wait(self):
        wait_for(self.answers, 90, "RabbitMQ", interval=0.3)

    def stop(self):
        return self.supervisor.stop([self.name, self.epmd_name], timeout=30)

    def wipe(self):
        """Forget every queue and message: only with the broker stopped."""
        shutil.rmtree(self.base / "mnesia", ignore_errors=True)


def _port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _amqp_answers(port):
    """True once the broker accepts AMQP: it answers the protocol header
    with a Connection.Start frame (frame type 1 on channel 0)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(b"AMQP\x00\x00\x09\x01")
        return connection.recv(3) == b"\x01\x00\x00"
