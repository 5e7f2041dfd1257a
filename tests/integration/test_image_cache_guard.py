"""nova_image_cache_info and the image_cache_guard role on real qcow2 images, real Ansible, and each release's nova.

An instances path is laid out the way nova-compute's libvirt driver leaves it:
``_base`` with the cached images, one directory per instance holding qcow2
overlays (made by the real qemu-img) whose backing files are in ``_base``,
``disk.info``, ``locks`` and the ``compute_nodes`` record of the hosts that
share the path. One instance's base image is then deleted, as the image cache
manager of another host sharing the storage does. The instances path is on
this machine's own file system; naming that file system's type as shared
(``shared_filesystem_types``) makes the module find it shared through the real
``/proc/mounts``.

The option names and deprecated names the module reads are checked against
each release's own nova (oslo.config) reading the same files.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.ansible_run import run_playbook
from tests.collection_path import REPO_ROOT
from tests.unit.test_qcow2 import make_base, make_overlay

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'image_cache_guard.yml')
INSTANCE_OK = '6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11'
INSTANCE_LOST = '2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e'
INSTANCE_EPHEMERAL = '9d0c6f1e-5b2a-4c3d-8e9f-0a1b2c3d4e5f'


def filesystem_type(path):
    """The file system type of ``path``, as util-linux's findmnt reads it (not through the module)."""
    return subprocess.run(['findmnt', '-n', '-o', 'FSTYPE', '--target', str(path)], check=True,
                          capture_output=True, text=True).stdout.strip()


def base_name(image_id):
    # nova names a cached image after the SHA-1 of the image id.
    return hashlib.sha1(image_id.encode()).hexdigest()


@pytest.fixture
def compute_host(tmp_path):
    """A state path with a populated instances path and its nova.conf; one instance's base image is gone."""
    state = tmp_path / 'nova'
    instances = state / 'instances'
    cache = instances / '_base'
    for directory in (cache, instances / 'locks', instances / INSTANCE_OK, instances / INSTANCE_LOST,
                      instances / INSTANCE_EPHEMERAL, instances / 'not-an-instance'):
        os.makedirs(directory)
    kept, lost, unused = (base_name(name) for name in ('image-kept', 'image-lost', 'image-unused'))
    for name in (kept, lost, unused, 'ephemeral_1_40d1321'):
        make_base(cache / name)
    make_overlay(instances / INSTANCE_OK / 'disk', backing=str(cache / kept))
    (instances / INSTANCE_OK / 'disk.info').write_text(json.dumps({str(instances / INSTANCE_OK / 'disk'): 'qcow2'}))
    make_base(instances / INSTANCE_OK / 'disk.config')
    make_overlay(instances / INSTANCE_LOST / 'disk', backing=str(cache / lost))
    make_overlay(instances / INSTANCE_EPHEMERAL / 'disk', backing=str(cache / kept))
    make_overlay(instances / INSTANCE_EPHEMERAL / 'disk.eph0', backing='../_base/ephemeral_1_40d1321')
    (instances / 'compute_nodes').write_text(json.dumps({'compute1': time.time(), 'compute2': time.time()}))
    # Another host's image cache manager decided the base image was unused.
    os.unlink(cache / lost)
    config = tmp_path / 'nova.conf'
    config.write_text(textwrap.dedent('''\
        [DEFAULT]
        state_path = %s
        debug = false

        [image_cache]
        manager_interval = 2400
        ''' % state))
    return dict(state=str(state), instances=str(instances), cache=str(cache), config=str(config), kept=kept,
                lost=lost, unused=unused, fstype=filesystem_type(tmp_path))


def test_module_finds_the_removal_on_shared_storage_and_the_lost_backing_file(ansible, compute_host):
    host = compute_host
    args = dict(config_files=[host['config']], shared_filesystem_types=[host['fstype']])
    result = ansible('nova_image_cache_info', args, check=True)
    assert not result.failed, result
    assert result['changed'] is False
    assert result['config']['instances_path'] == host['instances']
    assert result['config']['image_cache_path'] == host['cache']
    assert result['config']['remove_unused_base_images'] is True
    assert result['config']['sources']['remove_unused_base_images'] is None
    assert result['config']['sources']['manager_interval'] == dict(
        file=host['config'], section='image_cache', option='manager_interval')
    assert result['storage']['filesystem_type'] == host['fstype'] and result['storage']['shared'] is True
    assert [user['host'] for user in result['storage_users']] == ['compute1', 'compute2']
    assert result['instances'] == dict(directories=3, qcow2_disks=4, with_backing_file=4)
    kinds = sorted((finding['kind'], finding.get('instance')) for finding in result['findings'])
    assert kinds == [('missing_backing_file', INSTANCE_LOST), ('removal_on_shared_storage', None)]
    lost = [finding for finding in result['findings'] if finding['kind'] == 'missing_backing_file'][0]
    assert lost['instance_uuid'] == INSTANCE_LOST
    assert lost['disk'] == os.path.join(host['instances'], INSTANCE_LOST, 'disk')
    assert lost['backing_file'] == os.path.join(host['cache'], host['lost'])
    assert lost['backing_format'] == 'raw' and lost['severity'] == 'critical'
    assert result['base_images'] == dict(total=3, referenced=2, unreferenced=[host['unused']])
    assert result['fix'] == dict(path=host['config'], section='image_cache', option='remove_unused_base_images',
                                 value='False')

    # Local storage: the removal is harmless, the lost backing file is still a finding.
    local = ansible('nova_image_cache_info', dict(config_files=[host['config']]))
    assert local['storage']['shared'] is False and local['fix'] is None
    assert [finding['kind'] for finding in local['findings']] == ['missing_backing_file']

    # Bad input: a clear error naming the problem.
    missing = ansible('nova_image_cache_info', dict(config_files=[host['config'] + '.absent']))
    assert missing.failed and 'cannot read config file %s.absent' % host['config'] in missing['msg']
    nowhere = ansible('nova_image_cache_info', dict(config_files=[host['config']],
                                                    instances_path=host['state'] + '/absent'))
    assert nowhere.failed and 'is not a directory on this host' in nowhere['msg']


def nova_reads(openstack_venv, config_files):
    """What the release's own nova-compute configuration code makes of the files."""
    script = textwrap.dedent('''\
        import json, sys
        import nova.conf
        conf = nova.conf.CONF
        conf([], project='nova', default_config_files=sys.argv[1:], default_config_dirs=[])
        group = conf.image_cache
        print(json.dumps(dict(instances_path=conf.instances_path, state_path=conf.state_path,
              remove_unused_base_images=group.remove_unused_base_images, subdirectory_name=group.subdirectory_name,
              manager_interval=group.manager_interval,
              remove_unused_original_minimum_age_seconds=group.remove_unused_original_minimum_age_seconds,
              remove_unused_resized_minimum_age_seconds=group.remove_unused_resized_minimum_age_seconds)))
        ''')
    completed = subprocess.run([os.path.join(openstack_venv, 'bin', 'python'), '-c', script] + config_files,
                               capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_settings_match_what_each_releases_nova_reads(ansible, openstack_venv, release, tmp_path):
    # Current names, deprecated names, substitutions and a second file overriding the first.
    first = tmp_path / 'nova.conf'
    first.write_text(textwrap.dedent('''\
        [DEFAULT]
        state_path = %s
        image_cache_subdirectory_name = _cache
        image_cache_manager_interval = 600
        remove_unused_original_minimum_age_seconds = 7200

        [image_cache]
        remove_unused_base_images = true
        manager_interval = 900

        [libvirt]
        remove_unused_resized_minimum_age_seconds = 120
        ''' % (tmp_path / 'state')))
    second = tmp_path / 'compute.conf'
    second.write_text('[DEFAULT]\ninstances_path = ${state_path}/vms\nremove_unused_base_images = False\n')
    os.makedirs(tmp_path / 'state' / 'vms')
    files = [str(first), str(second)]
    expected = nova_reads(openstack_venv, files)
    result = ansible('nova_image_cache_info', dict(config_files=files, check_backing_files=False))
    assert not result.failed, result
    ours = dict((key, result['config'][key]) for key in expected)
    assert ours == expected, 'release %s: nova reads %s, the module %s' % (release, expected, ours)
    assert expected['remove_unused_base_images'] is False and expected['manager_interval'] == 900
    assert result['config']['sources']['remove_unused_base_images']['file'] == str(second)


def test_role_check_mode_plans_the_fix_and_apply_turns_the_removal_off(collections_path, compute_host, tmp_path):
    host = compute_host
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('[compute]\ncompute1 ansible_connection=local ansible_python_interpreter=%s\n'
                         % sys.executable)
    marker = tmp_path / 'restarted'
    extra = dict(image_cache_guard_config_files=[host['config']], image_cache_guard_become=False,
                 image_cache_guard_shared_filesystem_types=[host['fstype']], image_cache_guard_fix=True,
                 image_cache_guard_restart=True, image_cache_guard_restart_command='touch %s' % marker)
    with open(host['config'], 'rb') as handle:
        original = handle.read()

    # Check mode with --diff: the plan (the nova.conf change), and nothing written.
    checked = run_playbook(collections_path, PLAYBOOK, extra, check=True, diff=True, inventory=str(inventory))
    assert checked.returncode == 0, checked.stdout[-4000:]
    planned = checked.tasks('Turn off the removal of unused base images')[0]
    assert planned['changed'] is True
    diff = planned['diff'][0] if isinstance(planned['diff'], list) else planned['diff']
    assert diff['before_header'].startswith(host['config'])
    assert 'remove_unused_base_images = False' in diff['after'] and 'remove_unused_base_images' not in diff['before']
    with open(host['config'], 'rb') as handle:
        assert handle.read() == original, 'check mode changed nova.conf'
    assert sorted(os.listdir(os.path.dirname(host['config']))) == sorted(
        ['nova', 'nova.conf', 'inventory.ini']), 'check mode left a backup or another file'
    assert not marker.exists(), 'check mode ran the restart command'

    # Apply: the setting is turned off (nova's own reading agrees), a backup is kept, nova-compute
    # restarted; the run still fails, naming the instance whose backing file is gone.
    applied = run_playbook(collections_path, PLAYBOOK, extra, inventory=str(inventory))
    assert applied.returncode != 0
    assert marker.exists(), 'the restart handler did not run'
    failure = applied.tasks('Fail while findings remain')[0]
    assert failure['failed'] and INSTANCE_LOST in failure['msg'] and 'removal' not in failure['msg']
    backups = [name for name in os.listdir(os.path.dirname(host['config'])) if name.startswith('nova.conf.')]
    assert len(backups) == 1
    with open(os.path.join(os.path.dirname(host['config']), backups[0]), 'rb') as handle:
        assert handle.read() == original
    verify = ('import configparser, sys; p = configparser.ConfigParser(interpolation=None); p.read(sys.argv[1]); '
              'print(p.get("image_cache", "remove_unused_base_images"), p.get("image_cache", "manager_interval"))')
    assert subprocess.run([sys.executable, '-c', verify, host['config']], capture_output=True, text=True,
                          check=True).stdout.split() == ['False', '2400']

    # Again: the removal is off, nothing changes; only the lost backing file is left.
    marker.unlink()
    again = run_playbook(collections_path, PLAYBOOK, dict(extra, image_cache_guard_fail_on_findings=False),
                         inventory=str(inventory))
    assert again.returncode == 0, again.stdout[-4000:]
    assert again.changed == [] and not marker.exists()
    report = again.tasks('Read the image cache settings')[0]
    assert [finding['kind'] for finding in report['findings']] == ['missing_backing_file']
