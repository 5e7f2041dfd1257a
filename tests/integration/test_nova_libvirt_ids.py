"""The nova_libvirt_ids role through real ansible-playbook runs.

The apply test creates throwaway users and groups (``smtest-*``, with free ids
found at run time) on this machine and files owned by them, changes their ids
with the role, and checks the result with getent and stat; the users and
groups are removed afterwards whatever happens. The comparison between hosts
is run on two inventory hosts whose users and groups are given as data, since
this machine has one passwd database.
"""

import grp
import os
import pwd
import subprocess
import sys

import pytest
import yaml

from tests.ansible_run import run_playbook
from tests.collection_path import REPO_ROOT

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'nova_libvirt_ids.yml')
USER, GROUP, KVM = 'smtest-nova', 'smtest-nova', 'smtest-kvm'


def free_ids(count, start=47000):
    """``count`` ids that are neither a uid nor a gid here, consecutive from the first free one."""
    taken = set(entry.pw_uid for entry in pwd.getpwall()) | set(entry.gr_gid for entry in grp.getgrall())
    first = start
    while any(first + offset in taken for offset in range(count)):
        first += count
    return list(range(first, first + count))


def getent(database, name):
    """The id of a user or group, read with getent(1), not through Ansible."""
    completed = subprocess.run(['getent', database, name], capture_output=True, text=True, check=False)
    return int(completed.stdout.split(':')[2]) if completed.returncode == 0 else None


@pytest.fixture
def throwaway_accounts(tmp_path):
    old_user, old_group, old_kvm, new_user, new_group, new_kvm = free_ids(6)
    subprocess.run(['groupadd', '-g', str(old_group), GROUP], check=True)
    subprocess.run(['groupadd', '-g', str(old_kvm), KVM], check=True)
    try:
        subprocess.run(['useradd', '-M', '-N', '-u', str(old_user), '-g', GROUP, '-d', '/nonexistent',
                        '-s', '/usr/sbin/nologin', USER], check=True)
        tree = tmp_path / 'lib' / 'nova'
        os.makedirs(tree / 'instances')
        files = dict(owned=tree / 'instances' / 'disk', kvm=tree / 'instances' / 'console.log', other=tree / 'root-only')
        for path in files.values():
            path.write_text('x')
        os.chown(tree / 'instances', old_user, old_group)
        os.chown(files['owned'], old_user, old_group)
        os.chown(files['kvm'], 0, old_kvm)
        yield dict(old=(old_user, old_group, old_kvm), new=(new_user, new_group, new_kvm), tree=str(tree),
                   files=dict((key, str(value)) for key, value in files.items()))
    finally:
        subprocess.run(['userdel', USER], check=False, capture_output=True)
        subprocess.run(['groupdel', GROUP], check=False, capture_output=True)
        subprocess.run(['groupdel', KVM], check=False, capture_output=True)
    assert getent('passwd', USER) is None and getent('group', GROUP) is None and getent('group', KVM) is None


def owners(files):
    return dict((key, (os.lstat(path).st_uid, os.lstat(path).st_gid)) for key, path in files.items())


def test_apply_changes_the_ids_and_reowns_the_files(collections_path, throwaway_accounts, tmp_path):
    accounts = throwaway_accounts
    old_user, old_group, old_kvm = accounts['old']
    new_user, new_group, new_kvm = accounts['new']
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('[compute]\ncompute1 ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
    extra = dict(nova_libvirt_ids_become=False, nova_libvirt_ids_reown_paths=[accounts['tree'], '/nonexistent/path'],
                 nova_libvirt_ids_users={USER: new_user, 'smtest-absent': None},
                 nova_libvirt_ids_groups={GROUP: new_group, KVM: new_kvm},
                 nova_libvirt_ids_apply=True, nova_libvirt_ids_services_stopped=True)
    before = owners(accounts['files'])
    before_tree = os.stat(os.path.dirname(accounts['files']['owned']))

    def unchanged():
        assert (getent('passwd', USER), getent('group', GROUP), getent('group', KVM)) == accounts['old']
        assert owners(accounts['files']) == before

    # Check mode with --diff: the plan, with the files to re-own, and nothing changed. It needs no
    # confirmation that the services are stopped, since it changes nothing.
    checked = run_playbook(collections_path, PLAYBOOK, dict(extra, nova_libvirt_ids_services_stopped=False),
                           check=True, diff=True, inventory=str(inventory))
    assert checked.returncode == 0, checked.stdout[-4000:]
    plan = checked.tasks('Show the plan of this host')[0]['msg']
    assert 'group %s: %d -> %d, 2 file(s) to re-own under %s' % (GROUP, old_group, new_group, accounts['tree']) in plan
    assert 'group %s: %d -> %d, 1 file(s) to re-own' % (KVM, old_kvm, new_kvm) in ' '.join(plan)
    assert 'user %s: %d -> %d, 2 file(s) to re-own' % (USER, old_user, new_user) in ' '.join(plan)
    assert all(result.get('changed') for result in checked.tasks('Change the group ids')[0]['results'])
    unchanged()

    # Without the confirmation that the services are stopped: refused, nothing changed.
    refused = run_playbook(collections_path, PLAYBOOK, dict(extra, nova_libvirt_ids_services_stopped=False),
                           inventory=str(inventory))
    assert refused.returncode != 0
    assert 'nova_libvirt_ids_services_stopped=true' in refused.tasks('Refuse to change ids')[0]['msg']
    unchanged()

    # A target id another account holds is refused by the same comparison before any change: see
    # test_hosts_are_compared_with_each_other_and_with_the_targets (the 'belongs to render' problem).

    # The change.
    applied = run_playbook(collections_path, PLAYBOOK, extra, inventory=str(inventory))
    assert applied.returncode == 0, applied.stdout[-6000:]
    assert (getent('passwd', USER), getent('group', GROUP), getent('group', KVM)) == accounts['new']
    assert pwd.getpwnam(USER).pw_gid == new_group, 'the primary group of the user does not follow its group'
    assert owners(accounts['files']) == dict(owned=(new_user, new_group), kvm=(0, new_kvm), other=before['other'])
    tree = os.stat(os.path.dirname(accounts['files']['owned']))
    assert (tree.st_uid, tree.st_gid) == (new_user, new_group) != (before_tree.st_uid, before_tree.st_gid)
    assert 'match on compute1' in applied.tasks('Fail while the ids do not match')[0]['msg']

    # Again: nothing to change.
    again = run_playbook(collections_path, PLAYBOOK, extra, inventory=str(inventory))
    assert again.returncode == 0, again.stdout[-4000:]
    assert again.changed == []


def passwd(**users):
    return dict((name, ['x', str(uid), str(uid), '', '/var/lib/' + name, '/bin/false']) for name, uid in users.items())


def group(**groups):
    return dict((name.replace('_', '-'), ['x', str(gid), '']) for name, gid in groups.items())


def test_hosts_are_compared_with_each_other_and_with_the_targets(collections_path, tmp_path):
    hosts = {
        'compute1': dict(nova_libvirt_ids__passwd=passwd(nova=162, **{'libvirt-qemu': 64055}),
                         nova_libvirt_ids__group=group(nova=162, kvm=36, libvirt=990)),
        'compute2': dict(nova_libvirt_ids__passwd=passwd(nova=163),
                         nova_libvirt_ids__group=group(nova=162, kvm=78, libvirt=990, render=36)),
        'compute3': dict(nova_libvirt_ids__passwd=passwd(nova=162, **{'libvirt-qemu': 64055}),
                         nova_libvirt_ids__group=group(nova=162, libvirt=990)),
    }
    for variables in hosts.values():
        variables.update(ansible_connection='local', ansible_python_interpreter=sys.executable)
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(yaml.safe_dump({'all': {'hosts': hosts}}))
    playbook = tmp_path / 'compare.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Compare given ids', 'hosts': 'all', 'gather_facts': False,
        'tasks': [{'name': 'Compare', 'ansible.builtin.include_role': {
            'name': 'stackmender.openstack.nova_libvirt_ids', 'tasks_from': 'compare'}}]}]))
    run = run_playbook(collections_path, str(playbook), dict(
        nova_libvirt_ids_users={'nova': None, 'libvirt-qemu': None, 'qemu': None},
        nova_libvirt_ids_groups={'nova': '', 'libvirt': None, 'kvm': 36}), inventory=str(inventory))
    assert run.returncode == 0, run.stdout[-4000:]
    table = dict(((entry['kind'], entry['name']), entry) for entry in
                 run.tasks('Compare the hosts with each other')[0]['ansible_facts']['nova_libvirt_ids__table'])
    assert sorted(table) == [('group', 'kvm'), ('group', 'libvirt'), ('group', 'nova'), ('user', 'libvirt-qemu'),
                             ('user', 'nova')]
    assert table[('user', 'nova')]['ids'] == dict(compute1=162, compute2=163, compute3=162)
    assert table[('user', 'nova')]['problems'] == [
        'user nova differs between hosts (compute1: 162, compute2: 163, compute3: 162); '
        'set its target in nova_libvirt_ids_users']
    assert table[('user', 'libvirt-qemu')]['problems'] == []   # absent without a target: ignored
    assert table[('group', 'nova')]['problems'] == [] and table[('group', 'libvirt')]['problems'] == []
    kvm = table[('group', 'kvm')]
    assert kvm['target'] == 36 and kvm['ids'] == dict(compute1=36, compute2=78, compute3=None)
    assert kvm['problems'] == ['on compute2, gid 36 (the target of group kvm) belongs to render',
                               'group kvm does not exist on compute3 (target 36); create it first']
    assert kvm['changes'] == [] and kvm['mismatches'] == []
    summary = run.tasks('Summarise the comparison')[0]['ansible_facts']
    assert len(summary['nova_libvirt_ids__mismatches']) == 3
    assert 'group kvm (target 36): compute1=36, compute2=78, compute3=absent' in summary['nova_libvirt_ids__report_lines'][0]
