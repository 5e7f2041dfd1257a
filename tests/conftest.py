"""Test-wide setup: the collection importable and runnable from this checkout.

A session directory holds ``ansible_collections/stackmender/openstack`` as a
link to the working tree, so unit tests import the module_utils and Ansible
runs the modules exactly as they are in the checkout.
"""

import pytest

from tests.ansible_run import run_module
from tests.collection_path import COLLECTIONS_PATH

pytest_plugins = ['tests.harness.fixtures']


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
