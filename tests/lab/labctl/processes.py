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


def _pgid_of(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _members(record):
    """Live processes of the group a pid record started, and only those.

    The group id is the leader's pid and outlives the leader while any
    member lives. A member started no earlier than the leader; if the
    leader's pid now belongs to another process, the group is someone
    else's and nothing in it is ours.
    """
    pgid, leader_ticks = record["pid"], record["ticks"]
    if leader_ticks is None:
        return []
    current = _start_ticks(pgid)
    if current is not None and current != leader_ticks:
        return []
    members = []
    for pid in _all_pids():
        ticks = _start_ticks(pid)
        if ticks is not None and ticks >= leader_ticks and _pgid_of(pid) == pgid:
            members.append(pid)
    return members


def _kill_all(pids, signum):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


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

    def members(self, name):
        record = self.record(name)
        return _members(record) if record else []

    def signal(self, name, signum):
        """Send signum to every process of a service's group; True if any lived."""
        members = self.members(name)
        _kill_all(members, signum)
        return bool(members)

    def stop(self, names, timeout=20.0):
        """SIGTERM the groups, wait, then SIGKILL what is left."""
        names = [name for name in names if self.record(name)]
        for name in names:
            self.signal(name, signal.SIGTERM)
        deadline = time.time() + timeout
        pending = set(names)
        while pending and time.time() < deadline:
            pending = {name for name in pending if self.members(name)}
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

    def _kill_group(self, name):
        deadline = time.time() + 5
        members = self.members(name)
        while members and time.time() < deadline:
            _kill_all(members, signal.SIGKILL)
            time.sleep(0.05)
            members = self.members(name)

    def stragglers(self):
        """Pids of every live process of this lab: those carrying its marker,
        and the members of its recorded process groups. (The marker alone
        misses processes that set their title with setproctitle, as
        oslo.service workers do: that overwrites /proc/<pid>/environ.)"""
        needle = ("%s=%s" % (MARKER_VARIABLE, self.marker)).encode()
        found = {pid for name in self.names() for pid in self.members(name)}
        for pid in _all_pids():
            if pid == os.getpid() or pid in found or _start_ticks(pid) is None:
                continue
            try:
                environ = Path("/proc/%d/environ" % pid).read_bytes()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if needle in environ.split(b"\0"):
                found.add(pid)
        found.discard(os.getpid())
        return sorted(found)

    def kill_stragglers(self):
        pids = self.stragglers()
        _kill_all(pids, signal.SIGKILL)
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
