"""Command line of the drill lab; run through the `lab` wrapper next to this package."""

import argparse
import json
import os
import sys
from pathlib import Path

from . import settings
from .infra import LabError


def _control():
    from .control import LabControl
    return LabControl(settings.Lab.from_environment())


def command_up(args):
    watch = _control().up(fresh=args.fresh)
    print("lab up in %.1f s; clouds.yaml: %s" % (watch.marks[-1][1] if watch.marks else 0.0,
                                                 settings.Lab.from_environment().path("clouds.yaml")))


def command_down(args):
    _control().down(wipe=args.wipe)
    print("lab down")


def command_reset(args):
    watch = _control().reset()
    print("lab reset in %.1f s" % watch.marks[-1][1])


def command_status(args):
    control = _control()
    status = control.status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return
    print("lab directory: %s" % status["lab_dir"])
    line = "%-34s %-8s %8s %5s %8s %8s"
    print(line % ("process", "state", "pid", "procs", "RSS MB", "PSS MB"))
    for row in status["processes"]:
        state = "running" if row["running"] else "stopped"
        print(line % (row["name"], state, row["pid"] or "-", row["processes"], row["rss_mb"], row["pss_mb"]))
    other = status["other_processes"]
    print(line % ("(helpers outside the groups)", "", "", other["count"], other["rss_mb"], other["pss_mb"]))
    print("total: RSS %d MB, PSS %d MB" % (status["total_rss_mb"], status["total_pss_mb"]))
    if status["service_rows"]:
        print("\nservice rows (as the APIs judge them):")
        for row in status["service_rows"]:
            if "error" in row:
                print("  %s" % row["error"])
                continue
            flags = [flag for flag in ("disabled", "forced_down") if row[flag]]
            last = "never reported" if row["last_report_s"] is None else "last report %ss ago" % row["last_report_s"]
            print("  %-7s %-18s %-30s %-5s %s %s" % (
                row["project"], row["binary"], row["host"], row["state"], last, " ".join(flags)))
    if args.strict and not all(row["running"] for row in status["processes"]):
        sys.exit(3)


def command_info(args):
    print(json.dumps(_control().info(), indent=2))


def command_clouds(args):
    output = Path(args.output).resolve() if args.output else None
    path = _control().write_clouds(output)
    print(path)
    print("export OS_CLIENT_CONFIG_FILE=%s OS_CLOUD=lab-admin   # or lab-member" % path, file=sys.stderr)


def command_logs(args):
    lab = settings.Lab.from_environment()
    if not args.service:
        for path in sorted(lab.log_dir.glob("*.log")):
            print("%9d  %s" % (path.stat().st_size, path))
        return
    name = args.service
    if not (lab.log_dir / (name + ".log")).exists():
        name = _control().process_name(name)
    path = lab.log_dir / (name + ".log")
    tail = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + [str(path)]
    os.execvp("tail", tail)


def command_stop(args):
    print("stopped: %s" % ", ".join(_control().stop_services(args.services)))


def command_kill(args):
    killed = _control().kill_services(args.services)
    print("killed: %s" % (", ".join(killed) or "nothing was running"))


def command_start(args):
    _control().start_services(args.services, wait=not args.no_wait)
    print("started: %s" % ", ".join(args.services))


def command_restart(args):
    control = _control()
    control.stop_services(args.services)
    control.start_services(args.services)
    print("restarted: %s" % ", ".join(args.services))


def command_rehost(args):
    old, new = _control().rehost_volume_service(args.old, args.new, kill=args.kill)
    print("cinder-volume %s replaced by %s; volumes and the old service row still name %s" % (old, new, old))


def command_break_detach(args):
    from .breakage import break_detach
    result = break_detach(_control(), wait_for_nova=not args.no_wait, restart_service=not args.leave_dead)
    print(json.dumps(result, indent=2))


def command_sql(args):
    lab = settings.Lab.from_environment()
    argv = ["mariadb", "--no-defaults", "--user=root", "--socket=%s" % (lab.run_dir / "mysql.sock")]
    if args.database:
        argv.append(args.database)
    if args.execute:
        argv += ["--table", "-e", args.execute]
    os.execvp("mariadb", argv)


def command_env(args):
    lab = settings.Lab.from_environment()
    print("export OS_CLIENT_CONFIG_FILE=%s" % lab.path("clouds.yaml"))
    print("export OS_CLOUD=%s" % args.cloud)


def parser():
    top = argparse.ArgumentParser(prog="lab", description=(
        "The stackmender drill lab: a real OpenStack control plane on 127.0.0.1. "
        "Lab directory: $STACKMENDER_LAB_DIR (default $STACKMENDER_CACHE/lab)."))
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, function, help_text):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(function=function)
        return command

    add("up", command_up, "start the lab (idempotent: starts only what is not running)").add_argument(
        "--fresh", action="store_true", help="wipe the lab directory first")
    add("down", command_down, "stop every process of the lab, also after a failed up").add_argument(
        "--wipe", action="store_true", help="also delete the lab directory (databases, logs)")
    add("reset", command_reset, "restore the freshly set-up databases and the initial services")
    status = add("status", command_status, "processes, memory and the service rows nova and cinder keep")
    status.add_argument("--json", action="store_true")
    status.add_argument("--strict", action="store_true", help="exit 3 unless every process runs")
    add("info", command_info, "ports, database URLs and paths, as JSON")
    add("clouds", command_clouds, "write clouds.yaml (clouds lab-admin and lab-member) and print its path").add_argument(
        "-o", "--output", help="where to write it (default: <lab>/clouds.yaml)")
    logs = add("logs", command_logs, "list the log files, or show one service's log")
    logs.add_argument("service", nargs="?")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    for name, function, help_text in (
            ("stop", command_stop, "stop services gracefully (SIGTERM)"),
            ("kill", command_kill, "kill services (SIGKILL to the whole process group)"),
            ("restart", command_restart, "stop then start services")):
        add(name, function, help_text).add_argument("services", nargs="+", metavar="SERVICE")
    start = add("start", command_start, "start stopped services and wait until they report")
    start.add_argument("services", nargs="+", metavar="SERVICE")
    start.add_argument("--no-wait", action="store_true")
    rehost = add("rehost-volume-service", command_rehost,
                 "replace cinder-volume OLD by one registered as NEW (HOST@BACKEND)")
    rehost.add_argument("old")
    rehost.add_argument("new")
    rehost.add_argument("--kill", action="store_true", help="kill OLD instead of stopping it")
    broken = add("break-detach", command_break_detach,
                 "leave a volume 'detaching' because its cinder-volume died mid-detach (see labctl/breakage.py)")
    broken.add_argument("--no-wait", action="store_true",
                        help="return right after the kill, while nova still retries")
    broken.add_argument("--leave-dead", action="store_true",
                        help="do not start the killed cinder-volume again")
    sql = add("sql", command_sql, "open the mariadb client on the lab's server (as root)")
    sql.add_argument("database", nargs="?")
    sql.add_argument("-e", "--execute")
    add("env", command_env, "print shell exports for the openstack client").add_argument(
        "--cloud", default="lab-admin")
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.function(args)
    except LabError as error:
        sys.stderr.write("[lab] error: %s\n" % error)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("[lab] interrupted; `lab down` stops what was started\n")
        sys.exit(130)
    except BrokenPipeError:     # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
