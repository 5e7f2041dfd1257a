"""Make the checkout importable and runnable as stackmender.openstack.

A session directory holds ``ansible_collections/stackmender/openstack`` as a
link to the working tree, so tests import the module_utils and Ansible runs
the modules exactly as they are in the checkout.
"""

import atexit
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_PATH = tempfile.mkdtemp(prefix='stackmender-collections-')
os.makedirs(os.path.join(COLLECTIONS_PATH, 'ansible_collections', 'stackmender'))
os.symlink(REPO_ROOT, os.path.join(COLLECTIONS_PATH, 'ansible_collections', 'stackmender', 'openstack'))
sys.path.insert(0, COLLECTIONS_PATH)


def _remove_link_tree():
    # Unlink the link itself first, so nothing can ever follow it into the checkout.
    link = os.path.join(COLLECTIONS_PATH, 'ansible_collections', 'stackmender', 'openstack')
    if os.path.islink(link):
        os.unlink(link)
    for root, dirs, files in os.walk(COLLECTIONS_PATH, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            path = os.path.join(root, name)
            os.unlink(path) if os.path.islink(path) else os.rmdir(path)
    os.rmdir(COLLECTIONS_PATH)


atexit.register(_remove_link_tree)

_dependency_path = []


def dependency_collections_path():
    """The collections the roles use (community.general, openstack.cloud), cached by tools/collections.sh."""
    if not _dependency_path:
        import subprocess
        script = os.path.join(REPO_ROOT, 'tools', 'collections.sh')
        completed = subprocess.run(['bash', script], capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise RuntimeError('tools/collections.sh failed:\n%s' % completed.stderr[-3000:])
        _dependency_path.append(completed.stdout.strip().splitlines()[-1])
    return _dependency_path[0]


def ansible_collections_path():
    """ANSIBLE_COLLECTIONS_PATH for runs of the checkout: the collection first, then its dependencies."""
    return os.pathsep.join([COLLECTIONS_PATH, dependency_collections_path()])
