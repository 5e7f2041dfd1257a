"""Start, stop and find the lab's processes.

Each service runs in a session (and process group) of its own, so a signal
to the group reaches the forked workers too. Its pid and kernel start time
are recorded under run/, which lets later commands tell our process from an
unrelated one that reused the pid. Every process also carries the
environment variable MARKER_VARIABLE=<lab dir>, so `down` can find anything
of this lab that left its group (Erlang's helpers start sessions of their
own), even after a failed `up`.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

MARKER_VARIABLE = "STACKMENDER_LAB_MARKER"


def _start_ticks(pid):
    """Kernel start time of a process (clock ticks since boot), or None."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] == "Z":        # a zombie has finished; it only waits to be reaped
        return None
    return int(fields[19])


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(_pgid_of(pid) == pgid and _start_ticks(pid) is not None for pid in _all_pids())


def _pgid_of(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


class Supervisor:
    """The lab's process table: one pid file per named process."""

    def __init__(self, lab):
        self.lab = lab
        self.pid_dir = lab.run_dir / "pids"
        self.marker = str(lab.root)

    def _pid_file(self, name):
        return self.pid_dir / (name + ".json")

    def start(self, name, argv, env=None, log_name=None, cwd=None):
        """Start argv detached from us; output goes to log/<log_name>.log."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.lab.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.lab.log_dir / ((log_name or name) + ".log")
        environment = dict(os.environ if env is None else env)
        environment[MARKER_VARIABLE] = self.marker
        with open(log_path, "ab") as log:
            log.write(("\n==== %s start %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), " ".join(argv))).encode())
            log.flush()
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=environment, cwd=str(cwd or self.lab.root), start_new_session=True)
        record = {"pid": process.pid, "ticks": _start_ticks(process.pid), "argv": argv,
                  "log": str(log_path), "started": time.time()}
        self._pid_file(name).write_text(json.dumps(record))
        return process

    def record(self, name):
        try:
            return json.loads(self._pid_file(name).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def pid(self, name):
        """Pid of a running process of ours by that name, else None."""
        record = self.record(name)
        if not record:
            return None
        ticks = _start_ticks(record["pid"])
        if ticks is None or ticks != record["ticks"]:
            return None
        return record["pid"]

    def running(self, name):
        return self.pid(name) is not None

    def names(self):
        if not self.pid_dir.is_dir():
            return []
        return sorted(path.stem for path in self.pid_dir.glob("*.json"))

    def signal(self, name, signum):
        """Send signum to the process group of a service; True if it was alive."""
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def stop(self, names, timeout=20.0):
        """SIGTERM the groups, wait, then SIGKILL what is left."""
        names = [name for name in names if self.record(name)]
        for name in names:
            self.signal(name, signal.SIGTERM)
        deadline = time.time() + timeout
        pending = set(names)
        while pending and time.time() < deadline:
            pending = {name for name in pending if self._alive_group(name)}
            if pending:
                time.sleep(0.2)
        for name in pending:
            self._kill_group(name)
        for name in names:
            self._pid_file(name).unlink(missing_ok=True)
        return sorted(pending)     # the ones that needed SIGKILL

    def kill(self, name):
        """SIGKILL the whole group at once: what a crash or an OOM kill does."""
        alive = self.running(name)
        self._kill_group(name)
        self._pid_file(name).unlink(missing_ok=True)
        return alive

    def _alive_group(self, name):
        record = self.record(name)
        return bool(record) and _group_alive(record["pid"])

    def _kill_group(self, name):
        record = self.record(name)
        if not record:
            return
        # The group id is the leader's pid; it stays valid while any member
        # lives, even after the leader itself has exited.
        try:
            os.killpg(record["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.time() + 5
        while _group_alive(record["pid"]) and time.time() < deadline:
            time.sleep(0.05)

    def stragglers(self):
        """Pids of every live process of this lab: those carrying its marker,
        and the members of its recorded process groups. (The marker alone
        misses processes that set their title with setproctitle, as
        oslo.service workers do: that overwrites /proc/<pid>/environ.)"""
        needle = ("%s=%s" % (MARKER_VARIABLE, self.marker)).encode()
        groups = {record["pid"] for record in map(self.record, self.names()) if record}
        found = []
        for pid in _all_pids():
            if pid == os.getpid() or _start_ticks(pid) is None:
                continue
            if _pgid_of(pid) in groups:
                found.append(pid)
                continue
            try:
                environ = Path("/proc/%d/environ" % pid).read_bytes()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if needle in environ.split(b"\0"):
                found.append(pid)
        return found

    def kill_stragglers(self):
        pids = self.stragglers()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while time.time() < deadline and any(_start_ticks(pid) is not None for pid in pids):
            time.sleep(0.05)
        return pids


def memory_of(pids):
    """(rss_kb, pss_kb) summed over the given pids and their group members."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path("/proc/%d/smaps_rollup" % pid).read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def group_members(pgid):
    return [pid for pid in _all_pids() if _pgid_of(pid) == pgid and _start_ticks(pid) is not None]
