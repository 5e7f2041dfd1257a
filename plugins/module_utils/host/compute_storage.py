# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a compute host's nova.conf and mount table say about its instance storage.

Config files are read by oslo_config.OsloConfig, the way oslo.config reads
``--config-file`` options: later files override earlier ones, and within one
file an option's current name wins over its deprecated names. The mount table is
``/proc/mounts``; the file system holding a path is the mount with the
longest mount point that is a path prefix of it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.oslo_config import OsloConfig

DEFAULT_STATE_PATH = '/var/lib/nova'

# Nova's image cache options (nova/conf/imagecache.py, the same in 2024.1 to 2026.2): the
# section and name first, then the deprecated locations oslo.config still honours.
IMAGE_CACHE_OPTIONS = {
    'manager_interval': dict(type='int', default=2400, names=[
        ('image_cache', 'manager_interval'), ('DEFAULT', 'image_cache_manager_interval')]),
    'subdirectory_name': dict(type='str', default='_base', names=[
        ('image_cache', 'subdirectory_name'), ('DEFAULT', 'image_cache_subdirectory_name')]),
    'remove_unused_base_images': dict(type='bool', default=True, names=[
        ('image_cache', 'remove_unused_base_images'), ('DEFAULT', 'remove_unused_base_images')]),
    'remove_unused_original_minimum_age_seconds': dict(type='int', default=24 * 3600, names=[
        ('image_cache', 'remove_unused_original_minimum_age_seconds'),
        ('DEFAULT', 'remove_unused_original_minimum_age_seconds')]),
    'remove_unused_resized_minimum_age_seconds': dict(type='int', default=3600, names=[
        ('image_cache', 'remove_unused_resized_minimum_age_seconds'),
        ('libvirt', 'remove_unused_resized_minimum_age_seconds')]),
}

# File system types whose content other hosts can see and change. A path on one of
# these is treated as shared storage unless the caller says otherwise.
SHARED_FILESYSTEM_TYPES = (
    'nfs', 'nfs4',                                   # NFS
    'cifs', 'smb3',                                  # SMB
    'ceph', 'cephfs', 'fuse.ceph', 'fuse.ceph-fuse', 'fuse.cephfs',  # CephFS (kernel and FUSE clients)
    'glusterfs', 'fuse.glusterfs',                   # GlusterFS
    'gpfs',                                          # IBM Storage Scale (GPFS)
    'ocfs2', 'gfs2',                                 # cluster file systems on shared block devices
    'lustre',
    'beegfs',
    'fuse.quobyte', 'quobyte',                       # Quobyte (Nova has a volume driver for it)
    'fuse.sshfs',
    'fuse.moosefs', 'fuse.mfs',                      # MooseFS
    'virtiofs', '9p',                                # host directories shared into a VM
)

_TRUE = ('true', '1', 'on', 'yes')
_FALSE = ('false', '0', 'off', 'no')


class NovaConfig(object):
    """The merged view of several nova.conf files (oslo_config.OsloConfig), with where each value came from."""

    def __init__(self, paths, config_dirs=()):
        if not paths and not config_dirs:
            raise InputError('config_files: give at least one nova.conf')
        # Registered with their defaults, so $state_path resolves when no file sets it.
        self.config = OsloConfig(paths, config_dirs, what='config_files', defaults={
            ('DEFAULT', 'state_path'): DEFAULT_STATE_PATH,
            ('DEFAULT', 'instances_path'): '$state_path/instances',
        })
        self.paths = self.config.paths

    def lookup(self, names):
        """(value, source) of the first of ``names`` set, later files first; (None, None) when unset."""
        return self.config.lookup(names)

    def instances_path(self):
        _value, source = self.lookup([('DEFAULT', 'instances_path')])
        return os.path.normpath(self.config.get('DEFAULT', 'instances_path')), source

    def state_path(self):
        return os.path.normpath(self.config.get('DEFAULT', 'state_path'))

    def image_cache(self):
        """Each image cache option's effective value and its source (None: the default)."""
        settings, sources = {}, {}
        for key, spec in IMAGE_CACHE_OPTIONS.items():
            raw, source = self.lookup(spec['names'])
            if raw is None:
                settings[key] = spec['default']
            else:
                value = self.config.substitute(raw, source['section'], ((source['section'], source['option']),))
                settings[key] = convert(value, spec['type'], source)
            sources[key] = source
        return settings, sources


def convert(value, kind, source):
    where = '%s [%s] %s' % (source['file'], source['section'], source['option']) if source else 'value'
    if kind == 'bool':
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise InputError('%s = %r is not a boolean (true/false, yes/no, on/off, 1/0)' % (where, value))
    if kind == 'int':
        try:
            return int(value.strip())
        except ValueError:
            raise InputError('%s = %r is not an integer' % (where, value))
    return value


# ------------------------------------------------------------------ mounts

def unescape_mount_field(field):
    """/proc/mounts writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return re.sub(r'\\([0-7]{3})', lambda match: chr(int(match.group(1), 8)), field)


def parse_mounts(text):
    """[{device, mount_point, filesystem_type, options}] of a /proc/mounts text, in order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mounts.append(dict(device=unescape_mount_field(fields[0]), mount_point=unescape_mount_field(fields[1]),
                           filesystem_type=fields[2], options=fields[3] if len(fields) > 3 else ''))
    return mounts


def mount_of(path, mounts):
    """The mount holding ``path``: the longest mount point that is a prefix of it (the last one of equal mounts)."""
    best = None
    for mount in mounts:
        point = mount['mount_point'].rstrip('/') or '/'
        if path == point or point == '/' or path.startswith(point + '/'):
            if best is None or len(point) >= len(best['mount_point'].rstrip('/') or '/'):
                best = mount
    return best


def storage_of(path, mounts, shared_types, override='auto'):
    """Where ``path`` lives and whether other hosts share it, with the reason."""
    real = os.path.realpath(path)
    mount = mount_of(real, mounts) or dict(device=None, mount_point=None, filesystem_type=None)
    kind = mount['filesystem_type']
    result = dict(path=path, real_path=real, mount_point=mount['mount_point'], device=mount['device'],
                  filesystem_type=kind)
    if override == 'shared':
        result.update(shared=True, shared_reason='shared_storage=shared says so')
    elif override == 'local':
        result.update(shared=False, shared_reason='shared_storage=local says so')
    elif kind is None:
        result.update(shared=False, shared_reason='no mount holds %s' % real)
    elif kind in shared_types:
        result.update(shared=True, shared_reason='file system type %s is shared storage' % kind)
    else:
        result.update(shared=False, shared_reason='file system type %s is local' % kind)
    return result
