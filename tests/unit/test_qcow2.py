"""qcow2 headers read in pure Python from images the real qemu-img writes; nova.conf and /proc/mounts logic."""

import os
import shutil
import struct
import subprocess

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.host import compute_storage
from ansible_collections.stackmender.openstack.plugins.module_utils.host import qcow2
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from tests.collection_path import REPO_ROOT


def qemu_img(*arguments):
    """Run the real qemu-img; installs qemu-utils the project's way when it is missing (never skips)."""
    if not shutil.which('qemu-img'):
        subprocess.run(['bash', '-c', 'source tools/lib.sh && ensure_debs qemu-utils'], cwd=REPO_ROOT, check=True)
    assert shutil.which('qemu-img'), 'qemu-img is missing and qemu-utils could not be installed'
    return subprocess.run(['qemu-img'] + [str(argument) for argument in arguments], check=True,
                          capture_output=True, text=True).stdout


def make_base(path, size='1M'):
    qemu_img('create', '-q', '-f', 'raw', path, size)
    return str(path)


def make_overlay(path, backing=None, backing_format='raw', compat='1.1', size='2M'):
    arguments = ['create', '-q', '-f', 'qcow2', '-o', 'compat=%s' % compat]
    if backing:
        arguments += ['-b', backing, '-F', backing_format]
    qemu_img(*(arguments + [path, size]))
    return str(path)


# ------------------------------------------------------------------ qcow2

def test_version_3_overlay_with_relative_backing_name(tmp_path):
    base = make_base(tmp_path / 'base')
    disk = make_overlay(tmp_path / 'disk', backing='base')
    header = qcow2.read_header(disk)
    assert header == dict(version=3, size=2 * 1024 * 1024, cluster_size=65536, backing_file='base',
                          backing_format='raw')
    # QEMU reads a relative name from the overlay's directory.
    assert qcow2.backing_path(disk, header['backing_file']) == base


def test_version_2_overlay_with_absolute_backing_name(tmp_path):
    os.mkdir(tmp_path / '_base')
    base = make_base(tmp_path / '_base' / 'abc123')
    disk = make_overlay(tmp_path / 'disk', backing=base, compat='0.10', size='1M')
    header = qcow2.read_header(disk)
    assert (header['version'], header['backing_file'], header['backing_format']) == (2, base, 'raw')
    assert qcow2.backing_path(disk, header['backing_file']) == base


def test_qcow2_backed_by_qcow2_and_image_without_backing(tmp_path):
    make_overlay(tmp_path / 'middle', size='1M')
    assert qcow2.read_header(str(tmp_path / 'middle'))['backing_file'] is None
    top = make_overlay(tmp_path / 'top', backing='middle', backing_format='qcow2', size='1M')
    assert qcow2.read_header(top)['backing_format'] == 'qcow2'


def test_raw_file_is_not_qcow2(tmp_path):
    assert qcow2.read_header(make_base(tmp_path / 'raw')) is None
    (tmp_path / 'empty').write_bytes(b'')
    assert qcow2.read_header(str(tmp_path / 'empty')) is None


def test_damaged_headers_are_errors_naming_the_file(tmp_path):
    make_base(tmp_path / 'base')
    disk = make_overlay(tmp_path / 'disk', backing='base')
    with open(disk, 'rb') as handle:
        good = handle.read(qcow2.READ_SIZE)
    cases = {
        'truncated': good[:40],
        'version': good[:4] + struct.pack('>I', 7) + good[8:],
        'cluster': good[:20] + struct.pack('>I', 40) + good[24:],
        'name length': good[:16] + struct.pack('>I', 5000) + good[20:],
        'name offset': good[:8] + struct.pack('>Q', 70000) + good[16:],
    }
    messages = {}
    for name, data in cases.items():
        path = tmp_path / name.replace(' ', '-')
        path.write_bytes(data)
        with pytest.raises(qcow2.Qcow2Error) as raised:
            qcow2.read_header(str(path))
        assert str(path) in str(raised.value)
        messages[name] = str(raised.value)
    assert 'truncated' in messages['truncated'] and 'version 7' in messages['version']
    assert 'cluster_bits 40' in messages['cluster'] and 'exceeds 1023' in messages['name length']
    assert 'outside the first cluster' in messages['name offset']


@pytest.mark.parametrize('name, expected', [
    ('json:{"file": {"driver": "nbd"}}', None),
    ('nbd://192.0.2.1/export', None),
    ('rbd:pool/image', None),
    ('file:/var/lib/nova/instances/_base/x', '/var/lib/nova/instances/_base/x'),
    ('../_base/x', '/var/lib/nova/instances/_base/x'),
    ('', None),
])
def test_backing_path_forms(name, expected):
    assert qcow2.backing_path('/var/lib/nova/instances/uuid/disk', name) == expected


# ------------------------------------------------------------------ mounts

MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
/dev/vdb1 /var/lib ext4 rw 0 0
nas:/export/nova /var/lib/nova/instances nfs4 rw,vers=4.2 0 0
nas:/export/with\\040space /srv/with\\040space nfs rw 0 0
/dev/vdc1 /var/lib/nova/instances-local xfs rw 0 0
"""


def test_longest_mount_point_wins_at_a_path_boundary():
    mounts = compute_storage.parse_mounts(MOUNTS)
    assert compute_storage.mount_of('/var/lib/nova/instances/_base', mounts)['filesystem_type'] == 'nfs4'
    assert compute_storage.mount_of('/var/lib/nova/instances-local/x', mounts)['filesystem_type'] == 'xfs'
    assert compute_storage.mount_of('/var/lib/nova/instancesx', mounts)['mount_point'] == '/var/lib'
    assert compute_storage.mount_of('/srv/with space/a', mounts)['device'] == 'nas:/export/with space'
    assert compute_storage.mount_of('/etc', mounts)['mount_point'] == '/'


def test_the_last_of_two_mounts_on_one_point_wins():
    mounts = compute_storage.parse_mounts('/dev/a /srv ext4 rw 0 0\nnas:/x /srv nfs rw 0 0\n')
    assert compute_storage.mount_of('/srv/a', mounts)['filesystem_type'] == 'nfs'


def test_storage_of_says_why(tmp_path):
    mounts = compute_storage.parse_mounts('/dev/a / ext4 rw 0 0\n')
    types = set(compute_storage.SHARED_FILESYSTEM_TYPES)
    local = compute_storage.storage_of(str(tmp_path), mounts, types)
    assert (local['shared'], local['shared_reason']) == (False, 'file system type ext4 is local')
    assert compute_storage.storage_of(str(tmp_path), mounts, types | {'ext4'})['shared'] is True
    forced = compute_storage.storage_of(str(tmp_path), mounts, types, 'shared')
    assert forced['shared'] and 'shared_storage=shared' in forced['shared_reason']


# ------------------------------------------------------------------ nova.conf

def write(path, text):
    path.write_text(text)
    return str(path)


def test_later_files_win_and_current_names_beat_deprecated_ones_in_a_file(tmp_path):
    first = write(tmp_path / 'nova.conf', '[DEFAULT]\nstate_path = /srv/nova\nremove_unused_base_images = false\n'
                  'image_cache_subdirectory_name = _cache\n[image_cache]\nremove_unused_base_images = true\n')
    config = compute_storage.NovaConfig([first])
    settings, sources = config.image_cache()
    assert settings['remove_unused_base_images'] is True
    assert sources['remove_unused_base_images'] == dict(file=first, section='image_cache',
                                                        option='remove_unused_base_images')
    assert settings['subdirectory_name'] == '_cache' and settings['manager_interval'] == 2400
    assert sources['manager_interval'] is None
    assert config.instances_path() == ('/srv/nova/instances', None)
    # A later file's deprecated name overrides an earlier file's current name, as in oslo.config.
    second = write(tmp_path / 'override.conf', '[DEFAULT]\nremove_unused_base_images = off\n'
                   'instances_path = ${state_path}/vms\n[libvirt]\nremove_unused_resized_minimum_age_seconds = 60\n')
    settings, sources = compute_storage.NovaConfig([first, second]).image_cache()
    assert settings['remove_unused_base_images'] is False and sources['remove_unused_base_images']['file'] == second
    assert settings['remove_unused_resized_minimum_age_seconds'] == 60
    assert compute_storage.NovaConfig([first, second]).instances_path()[0] == '/srv/nova/vms'


def test_default_section_is_not_merged_into_image_cache(tmp_path):
    # configparser's own DEFAULT handling would show [DEFAULT] keys in every section.
    path = write(tmp_path / 'nova.conf', '[DEFAULT]\nmanager_interval = 5\n[image_cache]\n')
    assert compute_storage.NovaConfig([path]).image_cache()[0]['manager_interval'] == 2400


def test_defaults_without_any_setting(tmp_path):
    config = compute_storage.NovaConfig([write(tmp_path / 'nova.conf', '[DEFAULT]\ndebug = true\n')])
    assert config.instances_path()[0] == '/var/lib/nova/instances'
    assert config.state_path() == '/var/lib/nova'
    assert config.image_cache()[0]['remove_unused_base_images'] is True


@pytest.mark.parametrize('text, message', [
    ('[image_cache]\nremove_unused_base_images = maybe\n', "'maybe' is not a boolean"),
    ('[image_cache]\nmanager_interval = soon\n', "'soon' is not an integer"),
    ('remove_unused_base_images = true\n', 'is not a valid config file'),
    ('[DEFAULT]\ninstances_path = $nowhere/x\n', 'refers to $nowhere, which is not set'),
    ('[DEFAULT]\nstate_path = $instances_path\ninstances_path = $state_path/i\n', 'in a loop'),
])
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    config_file = write(tmp_path / 'nova.conf', text)
    with pytest.raises(InputError) as raised:
        config = compute_storage.NovaConfig([config_file])
        config.image_cache()
        config.instances_path()
    assert message in raised.value.msg


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(InputError) as raised:
        compute_storage.NovaConfig([str(tmp_path / 'absent.conf')])
    assert 'absent.conf' in raised.value.msg and 'cannot read' in raised.value.msg
