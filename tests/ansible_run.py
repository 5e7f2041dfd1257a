"""Run the collection's modules through real Ansible, the way operators do.

Each call is an ad-hoc ``ansible localhost -m stackmender.openstack.X`` with
the JSON callback, so arguments go through Ansible's own argument parsing,
check mode, diff mode, no_log masking and result serialisation.
"""

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading

FQCN_PREFIX = 'stackmender.openstack.'
CALLBACK_PLUGINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'callback_plugins')


class ModuleResult(dict):
    """The result dict of one module call, plus the raw text Ansible printed."""

    stdout = ''
    stderr = ''

    @property
    def failed(self):
        return bool(self.get('failed'))

    @property
    def changed(self):
        return bool(self.get('changed'))


def ansible_environment(collections_path, extra=None):
    env = dict(os.environ)
    from tests.collection_path import dependency_collections_path
    env.update({
        # The collection, then the collections its roles use (community.general, openstack.cloud).
        'ANSIBLE_COLLECTIONS_PATH': os.pathsep.join([collections_path, dependency_collections_path()]),
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'ANSIBLE_LOAD_CALLBACK_PLUGINS': 'true',
        'ANSIBLE_STDOUT_CALLBACK': 'module_results',
        'ANSIBLE_CALLBACK_PLUGINS': CALLBACK_PLUGINS,
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_HOME': os.path.join(collections_path, '.ansible-home'),
        # Tests must not fill the machine's syslog; a value holding a NUL byte could not be logged anyway.
        'ANSIBLE_NO_TARGET_SYSLOG': 'true',
    })
    env.update(extra or {})
    return env


class WarmController(object):
    """A :mod:`tests.warm_ansible` server for one environment (see there)."""

    def __init__(self, env):
        self.env = env
        self.lock = threading.Lock()
        self.process = subprocess.Popen([sys.executable, '-m', 'tests.warm_ansible'], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        atexit.register(self.stop)

    def run(self, argv, timeout, extra_env):
        """The run's CompletedProcess, or None when the controller is busy with another thread's run."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            return self._run(argv, timeout, extra_env)
        finally:
            self.lock.release()

    def _run(self, argv, timeout, extra_env):
        with tempfile.TemporaryDirectory(prefix='warm-ansible-') as scratch:
            out, err = os.path.join(scratch, 'stdout'), os.path.join(scratch, 'stderr')
            self.process.stdin.write(json.dumps({'argv': argv, 'stdout': out, 'stderr': err, 'cwd': os.getcwd(),
                                                 'timeout': timeout, 'env': extra_env}) + '\n')
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
            if not answer:
                raise AssertionError('the warm Ansible controller exited (rc %s)' % self.process.poll())
            answer = json.loads(answer)
            if answer['timed_out']:
                raise subprocess.TimeoutExpired(argv, timeout)
            with open(out, encoding='utf-8', errors='replace') as handle_out, \
                    open(err, encoding='utf-8', errors='replace') as handle_err:
                return subprocess.CompletedProcess(argv, answer['rc'], handle_out.read(), handle_err.read())

    def stop(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


_controllers = {}


def run_ansible(argv, env, timeout):
    """Run ``ansible``/``ansible-playbook`` ``argv`` with ``env``; returns returncode, stdout, stderr.

    Ansible reads ANSIBLE_* settings when it is imported: a call whose ANSIBLE_* settings match a warm
    controller's runs there (other variables, such as OS_CLIENT_CONFIG_FILE for the modules, are set
    in the forked child); any other runs as a plain process, as does a run started while another
    thread's run holds the warm controller (a test that runs two modules at once gets two real
    concurrent runs). STACKMENDER_COLD_ANSIBLE=1 turns warm controllers off.
    """
    if os.environ.get('STACKMENDER_COLD_ANSIBLE') == '1':
        return _cold(argv, env, timeout)
    settings = tuple(sorted((key, value) for key, value in env.items() if key.startswith('ANSIBLE_')))
    controller = _controllers.get(settings)
    if controller is None:
        base = dict((key, value) for key, value in os.environ.items() if not key.startswith('ANSIBLE_'))
        base.update(settings)
        controller = _controllers[settings] = WarmController(base)
    extra = dict((key, value) for key, value in env.items() if controller.env.get(key) != value)
    completed = controller.run(argv, timeout, extra)
    return completed if completed is not None else _cold(argv, env, timeout)


def _cold(argv, env, timeout):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)


def run_module(collections_path, module, args, check=False, diff=False, verbosity=0, env=None):
    """Run one module on localhost; returns its :class:`ModuleResult`."""
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible'), 'localhost',
               '-m', FQCN_PREFIX + module, '-a', json.dumps(args)]
    if check:
        command.append('--check')
    if diff:
        command.append('--diff')
    if verbosity:
        command.append('-' + 'v' * verbosity)
    completed = run_ansible(command, ansible_environment(collections_path, env), timeout=300)
    try:
        document = json.loads(completed.stdout[completed.stdout.index('{"results"'):])
        result = ModuleResult(document['results'][0]['result'])
    except (ValueError, KeyError, IndexError):
        raise AssertionError('ansible printed no JSON result (rc %s):\n%s\n%s'
                             % (completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:]))
    result.stdout = completed.stdout
    result.stderr = completed.stderr
    return result


class PlaybookRun(object):
    """One ansible-playbook run: its return code, every task result, and the raw text."""

    def __init__(self, returncode, results, stdout, stderr):
        self.returncode = returncode
        self.results = results
        self.stdout = stdout
        self.stderr = stderr

    def tasks(self, name_part):
        """Results of the tasks whose name contains ``name_part``."""
        return [entry['result'] for entry in self.results if name_part in entry['task']]

    @property
    def changed(self):
        return [entry['task'] for entry in self.results if entry['result'].get('changed')]

    @property
    def failed(self):
        return [entry for entry in self.results if entry['result'].get('failed')
                and not entry['result'].get('ignore_errors')]


def run_playbook(collections_path, playbook, extra_vars=None, check=False, diff=False, env=None, inventory=None,
                 tags=None, timeout=1800):
    """Run a playbook with the test callback; returns a :class:`PlaybookRun`."""
    import tempfile
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), playbook]
    with tempfile.NamedTemporaryFile('w', suffix='.json', prefix='extravars-') as handle:
        json.dump(extra_vars or {}, handle)
        handle.flush()
        command += ['-e', '@' + handle.name]
        if inventory:
            command += ['-i', inventory]
        if check:
            command.append('--check')
        if diff:
            command.append('--diff')
        if tags:
            command += ['--tags', tags]
        completed = run_ansible(command, ansible_environment(collections_path, env), timeout=timeout)
    try:
        results = json.loads(completed.stdout[completed.stdout.index('{"results"'):])['results']
    except ValueError:
        raise AssertionError('ansible-playbook printed no JSON results (rc %s):\n%s\n%s'
                             % (completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:]))
    return PlaybookRun(completed.returncode, results, completed.stdout, completed.stderr)
