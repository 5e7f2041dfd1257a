"""Test-wide setup: the collection importable and runnable from this checkout.

A session directory holds ``ansible_collections/stackmender/openstack`` as a
link to the working tree, so unit tests import the module_utils and Ansible
runs the modules exactly as they are in the checkout.
"""

import sys

import pytest

from tests.ansible_run import run_module
from tests.collection_path import COLLECTIONS_PATH

pytest_plugins = ['tests.harness.fixtures']


def import_lab_client():
    """tests/lab/lab_client.py, imported the way the lab's own tests import it."""
    import os
    import sys
    lab_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lab')
    if lab_dir not in sys.path:
        sys.path.insert(0, lab_dir)
    import lab_client
    return lab_client


@pytest.fixture(scope='session')
def collections_path():
    return COLLECTIONS_PATH


@pytest.fixture
def journal_dir(tmp_path):
    path = tmp_path / 'journal'
    return str(path)


@pytest.fixture
def ansible(collections_path):
    """Call a module through real Ansible: ``ansible('cinder_volume_state', {...}, check=True)``."""
    def call(module, args, check=False, diff=False, verbosity=0, env=None):
        return run_module(collections_path, module, args, check=check, diff=diff, verbosity=verbosity, env=env)
    return call


@pytest.fixture(scope='session')
def lab():
    """The drill lab, up for the session; taken down only if this session started it.

    Tests that use it carry ``pytest.mark.xdist_group('lab')`` so that under
    pytest-xdist they all run in one worker, which owns the lab.
    """
    lab_client = import_lab_client()
    started_here = not lab_client.is_up()
    if started_here:
        if lab_client.run('up', capture=False, check=False).returncode != 0:
            # A lab a killed run left half-broken (a compute that lost its node identity, say) would fail
            # every drill: start over from the cached baseline, which takes under a minute.
            sys.stderr.write('lab: up failed, starting it fresh from the baseline\n')
            lab_client.run('down', capture=False, check=False)
            lab_client.run('up', '--fresh', capture=False)
    yield lab_client.info()
    if started_here:
        lab_client.run('down', capture=False)


# The drills' times against their budgets, printed at the end of a run that ran any (tests/drills/budgets.py).
_DRILL_TIMES = {}


def pytest_runtest_logreport(report):
    if report.when == 'call' and report.passed and report.nodeid.startswith('tests/drills/'):
        from tests.drills.budgets import drill_key
        _DRILL_TIMES[drill_key(report.nodeid)] = report.duration


def pytest_terminal_summary(terminalreporter):
    if _DRILL_TIMES:
        from tests.drills.budgets import table
        terminalreporter.section('drill times against their budgets (call phase, seconds)')
        for line in table(_DRILL_TIMES):
            terminalreporter.write_line(line)
