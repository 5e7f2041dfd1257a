"""The comparison of the nova_libvirt_ids role (module_utils/host/libvirt_ids.py and its filters) on plain data."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.stackmender.openstack.plugins.filter.libvirt_ids import FilterModule
from ansible_collections.stackmender.openstack.plugins.module_utils.host import libvirt_ids

FILTERS = FilterModule().filters()


def passwd(**users):
    """getent passwd as ansible.builtin.getent returns it: name -> [password, uid, gid, gecos, home, shell]."""
    return dict((name.replace('_', '-'), ['x', str(uid), str(uid), '', '/var/lib/' + name, '/bin/false'])
                for name, uid in users.items())


def group(**groups):
    return dict((name.replace('_', '-'), ['x', str(gid), '']) for name, gid in groups.items())


def by_name(rows):
    return dict(((row['kind'], row['name']), row) for row in rows)


def test_every_status_of_a_host_row():
    rows = by_name(FILTERS['compare_ids'](
        passwd(nova=162, libvirt_qemu=64055, qemu=107),
        group(nova=162, kvm=78, render=36, libvirt=990),
        users={'nova': 64060, 'libvirt-qemu': None, 'qemu': '  ', 'ghost': None, 'missing': 5000},
        groups={'nova': '162', 'kvm': 36, 'libvirt': 991}))
    assert rows[('user', 'nova')] == dict(kind='user', name='nova', current=162, target=64060, status='change',
                                          held_by=[])
    assert rows[('user', 'libvirt-qemu')]['status'] == 'unmanaged'
    assert rows[('user', 'qemu')]['status'] == 'unmanaged' and rows[('user', 'qemu')]['target'] is None
    assert ('user', 'ghost') not in rows  # neither on the host nor with a target: no row
    assert rows[('user', 'missing')] == dict(kind='user', name='missing', current=None, target=5000,
                                             status='absent', held_by=[])
    assert rows[('group', 'nova')]['status'] == 'ok' and rows[('group', 'nova')]['target'] == 162
    assert rows[('group', 'kvm')]['status'] == 'collision' and rows[('group', 'kvm')]['held_by'] == ['render']
    assert rows[('group', 'libvirt')]['status'] == 'change'


def test_rows_come_groups_first_in_the_order_given():
    rows = libvirt_ids.host_rows(passwd(nova=1), group(kvm=2, nova=1), {'nova': None}, {'nova': None, 'kvm': None})
    assert [(row['kind'], row['name']) for row in rows] == [('group', 'nova'), ('group', 'kvm'), ('user', 'nova')]


def test_a_target_already_held_by_the_name_itself_is_ok_not_a_collision():
    rows = libvirt_ids.host_rows(passwd(nova=64060), group(), {'nova': 64060}, {})
    assert rows[0]['status'] == 'ok' and rows[0]['held_by'] == []


def hosts_table():
    users, groups = {'nova': None, 'libvirt-qemu': None}, {'nova': '', 'libvirt': None, 'kvm': 36}
    hosts = ['compute1', 'compute2', 'compute3']
    rows = [libvirt_ids.host_rows(passwd(nova=162, libvirt_qemu=64055), group(nova=162, kvm=36, libvirt=990),
                                  users, groups),
            libvirt_ids.host_rows(passwd(nova=163), group(nova=162, kvm=78, libvirt=990, render=36), users, groups),
            libvirt_ids.host_rows(passwd(nova=162, libvirt_qemu=64055), group(nova=162, libvirt=990),
                                  users, groups)]
    return FILTERS['compare_hosts'](hosts, rows)


def test_hosts_that_differ_without_a_target_are_a_problem():
    table = dict(((entry['kind'], entry['name']), entry) for entry in hosts_table())
    assert [(entry['kind'], entry['name']) for entry in hosts_table()] == [
        ('group', 'kvm'), ('group', 'libvirt'), ('group', 'nova'), ('user', 'libvirt-qemu'), ('user', 'nova')]
    assert table[('user', 'nova')]['ids'] == dict(compute1=162, compute2=163, compute3=162)
    assert table[('user', 'nova')]['problems'] == [
        'user nova differs between hosts (compute1: 162, compute2: 163, compute3: 162); '
        'set its target in nova_libvirt_ids_users']
    # Absent without a target: ignored, and the hosts that have it agree.
    assert table[('user', 'libvirt-qemu')]['ids'] == dict(compute1=64055, compute3=64055)
    assert table[('user', 'libvirt-qemu')]['problems'] == []
    assert table[('group', 'nova')]['problems'] == [] and table[('group', 'libvirt')]['problems'] == []


def test_absent_and_collision_are_problems_and_change_a_mismatch():
    table = dict(((entry['kind'], entry['name']), entry) for entry in hosts_table())
    kvm = table[('group', 'kvm')]
    assert kvm['target'] == 36 and kvm['ids'] == dict(compute1=36, compute2=78, compute3=None)
    assert kvm['problems'] == ['on compute2, gid 36 (the target of group kvm) belongs to render',
                               'group kvm does not exist on compute3 (target 36); create it first']
    assert kvm['changes'] == [] and kvm['mismatches'] == []
    changed = libvirt_ids.compare_hosts(['a', 'b'], [
        libvirt_ids.host_rows(passwd(nova=162), {}, {'nova': 64060}, {}),
        libvirt_ids.host_rows(passwd(nova=64060), {}, {'nova': 64060}, {})])
    assert changed == [dict(kind='user', name='nova', target=64060, ids=dict(a=162, b=64060),
                            changes=[{'host': 'a', 'from': 162, 'to': 64060}],
                            mismatches=['user nova has uid 162 on a, the target is 64060'], problems=[])]


def test_report_lines():
    lines = FILTERS['libvirt_ids_report'](hosts_table())
    assert lines[0] == ('group kvm (target 36): compute1=36, compute2=78, compute3=absent; '
                        'on compute2, gid 36 (the target of group kvm) belongs to render; '
                        'group kvm does not exist on compute3 (target 36); create it first')
    assert lines[1] == 'group libvirt (target none): compute1=990, compute2=990, compute3=990; ok'


def test_reown_plan_lines():
    found = [{'item': dict(kind='user', name='nova', current=162, target=64060), 'stdout_lines': ['/a', '/b']},
             {'item': dict(kind='group', name='kvm', current=78, target=36), 'skipped': True}]
    assert FILTERS['libvirt_ids_reown_plan'](found, ['/var/lib/nova', '/etc/nova']) == [
        'user nova: 162 -> 64060, 2 file(s) to re-own under /var/lib/nova, /etc/nova',
        'group kvm: 78 -> 36, 0 file(s) to re-own under /var/lib/nova, /etc/nova']
    assert FILTERS['libvirt_ids_reown_plan']([], []) == ['nothing to change']


def test_bad_input_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='compare_ids'):
        FILTERS['compare_ids'](passwd(nova=1), group(), users={'nova': 'sixty'}, groups={})
    with pytest.raises(AnsibleFilterError, match='2 host'):
        FILTERS['compare_hosts'](['a', 'b'], [[]])
