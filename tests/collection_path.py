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
