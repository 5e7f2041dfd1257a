"""Run the collection's modules through real Ansible, the way operators do.

Each call is an ad-hoc ``ansible localhost -m stackmender.openstack.X`` with
the JSON callback, so arguments go through Ansible's own argument parsing,
check mode, diff mode, no_log masking and result serialisation.
"""

import json
import os
import subprocess
import sys

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
    })
    env.update(extra or {})
    return env


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
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                               env=ansible_environment(collections_path, env))
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
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                                   env=ansible_environment(collections_path, env))
    try:
        results = json.loads(completed.stdout[completed.stdout.index('{"results"'):])['results']
    except ValueError:
        raise AssertionError('ansible-playbook printed no JSON results (rc %s):\n%s\n%s'
                             % (completed.returncode, completed.stdout[-3000:], completed.stderr[-3000:]))
    return PlaybookRun(completed.returncode, results, completed.stdout, completed.stderr)
