"""The MariaDB server the test harness runs against.

`get_server()` picks, in this order:

1. the server named by ``STACKMENDER_TEST_MARIADB`` (``mysql://user:pass@host:port``),
   or, when it says ``private``, a scratch server of this process's own (see
   :func:`start_private_server`; ``tools/test`` asks for it, one per test worker);
2. a server answering on 127.0.0.1:3306 as root with an empty password;
3. a private, throw-away server started in a temporary directory on a free
   port of 127.0.0.1, stopped and deleted at ``stop()`` or interpreter exit.

The choice is made once per process; every later call returns the same
handle.
"""

import atexit
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pymysql

ENV_SERVER = "STACKMENDER_TEST_MARIADB"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3306
PROBE_TIMEOUT = 2  # seconds; a local server answers in milliseconds
START_TIMEOUT = 60  # seconds for a private server to accept connections
WORKDIR_PREFIX = "stackmender-mariadb-"
OWNER_FILE = "owner.pid"  # pid of the process that started the server
# A scratch server keeps its data in memory and never syncs: test databases are thrown away, and
# each CREATE TABLE of a test's fresh databases then costs no file sync.
SCRATCH_BASE = "/dev/shm"
SCRATCH_ARGS = ("--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--innodb-flush-method=nosync")

# Debian puts mariadbd in /usr/sbin, which is not on a normal user's PATH.
_SERVER_BINARY_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/local/bin", "/usr/bin")


class MariaDBError(RuntimeError):
    """The harness could not find or start a usable MariaDB server."""


class MariaDBServer:
    """A reachable server plus the credentials of an account that may
    create and drop databases."""

    def __init__(self, host, port, user, password="", origin="external", process=None, workdir=None):
        self.host = host
        self.port = int(port)
        self.user = user
        self.password = password or ""
        # "env", "local" or "private": where the server came from (for logs).
        self.origin = origin
        self._process = process
        self._workdir = workdir
        self._version = None

    def __repr__(self):
        return f"<MariaDBServer {self.user}@{self.host}:{self.port} ({self.origin})>"

    @property
    def private(self):
        """True when this process started the server and owns it."""
        return self.origin == "private"

    @property
    def stopped(self):
        """True once a private server has been stopped (or died)."""
        return self.private and (self._process is None or self._process.poll() is not None)

    def admin_connect(self, database=None, autocommit=True, **kwargs):
        """A new PyMySQL connection with the admin account."""
        options = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
            "autocommit": autocommit,
            "connect_timeout": 10,
        }
        if database:
            options["database"] = database
        options.update(kwargs)
        return pymysql.connect(**options)

    def url(self, dbname):
        """The database URL in the form the services use in ``[database] connection``."""
        credentials = urllib.parse.quote(self.user, safe="")
        if self.password:
            credentials += ":" + urllib.parse.quote(self.password, safe="")
        return f"mysql+pymysql://{credentials}@{self.host}:{self.port}/{dbname}?charset=utf8"

    @property
    def version(self):
        """The full server version string, e.g. ``10.11.19-MariaDB-0+deb12u1``."""
        if self._version is None:
            conn = self.admin_connect()
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT VERSION()")
                    self._version = cursor.fetchone()[0]
            finally:
                conn.close()
        return self._version

    @property
    def major_minor(self):
        """``10.11`` for ``10.11.19-MariaDB...``: what the schema cache is keyed on."""
        return ".".join(self.version.split("-")[0].split(".")[:2])

    def stop(self):
        """Stop a private server and delete its directory; no-op for a server
        this process did not start."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM = clean shutdown for mariadbd
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        workdir, self._workdir = self._workdir, None
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _parse_server_url(value):
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("mysql", "mariadb", "mysql+pymysql") or not parsed.hostname:
        raise MariaDBError(f"{ENV_SERVER} must look like mysql://user:pass@host:port, got {value!r}")
    return MariaDBServer(
        host=parsed.hostname,
        port=parsed.port or DEFAULT_PORT,
        user=urllib.parse.unquote(parsed.username or "root"),
        password=urllib.parse.unquote(parsed.password or ""),
        origin="env",
    )


def _answers(server, timeout=PROBE_TIMEOUT):
    """True when we can log in and run a query."""
    try:
        conn = server.admin_connect(connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
    except pymysql.err.MySQLError:
        return False
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except pymysql.err.MySQLError:
        return False
    finally:
        conn.close()


def _find_binary(name):
    found = shutil.which(name)
    if found:
        return found
    for directory in _SERVER_BINARY_DIRS:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((DEFAULT_HOST, 0))
        return sock.getsockname()[1]


def _tail(path, lines=30):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def _terminate_with_parent():
    """In the child: ask Linux to SIGTERM it when the process that started it
    dies, so a killed test run cannot leave a private server behind.
    (Linux ties this to the starting thread: start the server from a thread
    that lives as long as the run, e.g. the main thread.)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: atexit still stops it on a normal exit


def _remove_stale_workdirs():
    """Delete the directories of private servers whose test process died
    (killed before it could clean up; its server died with it)."""
    for workdir in [path for base in (tempfile.gettempdir(), SCRATCH_BASE)
                    for path in glob.glob(os.path.join(base, WORKDIR_PREFIX + "*"))]:
        try:
            with open(os.path.join(workdir, OWNER_FILE), encoding="ascii") as handle:
                owner = int(handle.read().strip())
        except (OSError, ValueError):
            continue  # being created right now, or not ours
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(workdir, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def start_private_server(extra_args=(), scratch=False):
    """Initialise a datadir in a temporary directory and start mariadbd on
    a free port of 127.0.0.1. Returns the handle once it accepts logins.
    ``extra_args`` go to mariadbd (e.g. the wsrep options of a Galera node).
    ``scratch``: data in memory (``/dev/shm`` where it is writable), no syncs."""
    mariadbd = _find_binary("mariadbd")
    install_db = _find_binary("mariadb-install-db")
    if not mariadbd or not install_db:
        raise MariaDBError(
            "no MariaDB server available: nothing answers on 127.0.0.1:3306, "
            f"{ENV_SERVER} is not set, and mariadbd/mariadb-install-db are not installed "
            "(install the Debian package mariadb-server)"
        )
    _remove_stale_workdirs()
    as_root = os.geteuid() == 0
    in_memory = scratch and os.path.isdir(SCRATCH_BASE) and os.access(SCRATCH_BASE, os.W_OK)
    workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=SCRATCH_BASE if in_memory else None)
    if scratch:
        extra_args = SCRATCH_ARGS + tuple(extra_args)
    with open(os.path.join(workdir, OWNER_FILE), "w", encoding="ascii") as handle:
        handle.write(str(os.getpid()))
    datadir = os.path.join(workdir, "data")
    # A private temporary directory: a starting mariadbd deletes every #sql* file in its tmpdir,
    # which in a shared /tmp are the live temporary tables of the other servers on this machine.
    tmpdir = os.path.join(workdir, "tmp")
    os.mkdir(tmpdir)
    user_args = ["--user=root"] if as_root else []
    started = time.monotonic()
    init = subprocess.run(
        [install_db, "--no-defaults", f"--datadir={datadir}", f"--tmpdir={tmpdir}",
         "--auth-root-authentication-method=normal", "--skip-test-db", *user_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise MariaDBError(f"mariadb-install-db failed (rc={init.returncode}):\n{init.stdout[-3000:]}")

    error_log = os.path.join(workdir, "error.log")
    # A free port can be taken between the probe and mariadbd's bind, so retry.
    for _attempt in range(5):
        port = _free_port()
        process = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={datadir}", f"--tmpdir={tmpdir}",
             f"--socket={os.path.join(workdir, 'mariadb.sock')}",
             f"--pid-file={os.path.join(workdir, 'mariadb.pid')}",
             f"--log-error={error_log}",
             f"--port={port}", "--bind-address=127.0.0.1", "--skip-log-bin",
             "--innodb-buffer-pool-size=128M", *user_args, *extra_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal reaches pytest, which
            # then stops the server cleanly through stop().
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )
        server = MariaDBServer(DEFAULT_HOST, port, "root", "", origin="private", process=process, workdir=workdir)
        # Whatever happens to the caller, never leave the server running.
        atexit.register(server.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(server, timeout=1):
                server.start_seconds = time.monotonic() - started
                return server
            time.sleep(0.05)
        log = _tail(error_log)
        if process.poll() is None:
            # Running but never accepting logins: give up.
            server.stop()
            raise MariaDBError(f"private mariadbd did not accept logins within {START_TIMEOUT} s; "
                               f"end of its error log:\n{log}")
        server._workdir = None  # the directory is reused by the next attempt
        if "Address already in use" not in log:
            break
    shutil.rmtree(workdir, ignore_errors=True)
    raise MariaDBError(f"private mariadbd exited during start-up; end of its error log:\n{log}")


_server = None
_server_lock = threading.Lock()


def get_server():
    """The server for this process (chosen and, if needed, started once)."""
    global _server
    with _server_lock:
        if _server is not None and not _server.stopped:
            return _server
        env = os.environ.get(ENV_SERVER)
        if env == "private":
            server = start_private_server(scratch=True)
        elif env:
            server = _parse_server_url(env)
            if not _answers(server, timeout=10):
                raise MariaDBError(f"{ENV_SERVER} names {server.host}:{server.port}, which does not accept logins")
        else:
            server = MariaDBServer(DEFAULT_HOST, DEFAULT_PORT, "root", "", origin="local")
            if not _answers(server):
                server = start_private_server()
        _server = server
        return server
