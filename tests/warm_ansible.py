"""A warm Ansible controller: the real ``ansible`` and ``ansible-playbook``, without their start-up cost.

Importing Ansible's controller takes most of the second an ad-hoc module call
costs here, and the test suite makes thousands of them. This process imports
the controller once, then forks a child per request; the child runs the
real CLI (``AdHocCLI``/``PlaybookCLI`` with the request's argv) from that
pristine state, so each call is exactly an ``ansible``/``ansible-playbook``
run: same argument parsing, AnsiballZ payload, module subprocess, callback
and exit code.

Ansible reads its configuration from the environment when it is imported, so
one server serves one environment (:mod:`tests.ansible_run` keeps a server per
environment and runs a plain subprocess for any other). Requests and answers
are JSON lines on stdin and stdout::

    {"argv": [...], "stdout": path, "stderr": path, "cwd": dir, "timeout": s}
    {"rc": 0}        or {"rc": null, "timed_out": true}
"""

import importlib
import json
import os
import signal
import sys
import time

# The expensive imports, done once before any fork.
PRELOADED = ('ansible.cli.adhoc', 'ansible.cli.playbook', 'ansible.executor.module_common',
             'ansible.executor.task_queue_manager', 'ansible.inventory.manager', 'ansible.parsing.dataloader',
             'ansible.playbook.play', 'ansible.plugins.loader', 'ansible.template', 'ansible.vars.manager')
for _name in PRELOADED:
    importlib.import_module(_name)

CLIS = {'ansible': ('ansible.cli.adhoc', 'AdHocCLI'), 'ansible-playbook': ('ansible.cli.playbook', 'PlaybookCLI')}


def _child(request, answers_fd):
    """Run one CLI in this (forked) process and exit with its code; never returns."""
    code = 250
    try:
        os.close(answers_fd)
        os.setsid()  # its own group: a timeout kills it and every process it started
        os.chdir(request['cwd'])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, request['stdout']), (2, request['stderr'])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(handle, fd)
            os.close(handle)
        os.environ.update(request.get('env') or {})
        module, name = CLIS[os.path.basename(request['argv'][0])]
        cli = getattr(sys.modules[module], name)
        sys.argv = list(request['argv'])
        try:
            cli.cli_executor(sys.argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    except BaseException as error:  # the child must never fall back into the server loop
        try:
            sys.stderr.write('warm_ansible child: %r\n' % (error,))
        except Exception:
            pass
        code = 251
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _wait(pid, timeout):
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def serve():
    answers = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)  # anything Ansible prints at import goes to stderr, never into the answers
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        answers.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, answers.fileno())
        rc = _wait(pid, request['timeout'])
        answers.write(json.dumps({'rc': rc, 'timed_out': rc is None}) + '\n')
        answers.flush()


if __name__ == '__main__':
    serve()
