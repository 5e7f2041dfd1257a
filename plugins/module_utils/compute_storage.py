# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a compute host's nova.conf and mount table say about its instance storage.

Config files are read the way oslo.config reads ``--config-file`` options:
later files override earlier ones, and within one file an option's current
name wins over its deprecated names. ``$name`` and ``${name}`` refer to
options of ``[DEFAULT]`` (or ``$group.name``). The mount table is
``/proc/mounts``; the file system holding a path is the mount with the
longest mount point that is a path prefix of it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

import configparser

from ansible_collections.stackmender.openstack.plugins.module_utils.errors import InputError

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
_REFERENCE = re.compile(r'\$(?:\{([A-Za-z0-9_.]+)\}|([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?))')


class NovaConfig(object):
    """The merged view of several nova.conf files, with where each value came from."""

    def __init__(self, paths):
        if not paths:
            raise InputError('config_files: give at least one nova.conf')
        self.paths = list(paths)
        self.files = []          # (path, {section: {option: value}}) in the order given
        for path in self.paths:
            self.files.append((path, read_ini(path)))

    def lookup(self, names):
        """(value, source) of the first of ``names`` set, later files first; (None, None) when unset."""
        for path, sections in reversed(self.files):
            for section, option in names:
                values = sections.get(section)
                if values is not None and option in values:
                    return values[option], dict(file=path, section=section, option=option)
        return None, None

    def raw(self, section, option):
        return self.lookup([(section, option)])[0]

    def interpolate(self, value, depth=0):
        """Replace ``$name``/``${name}`` the way oslo.config does, for the options this module reads."""
        if value is None or '$' not in value:
            return value
        if depth > 10:
            raise InputError('nova.conf: the substitutions in %r refer to each other in a loop' % value)

        def replace(match):
            name = match.group(1) or match.group(2)
            section, _dot, option = name.rpartition('.')
            section = section or 'DEFAULT'
            found = self.raw(section, option)
            if found is None:
                found = self.default(section, option)
            if found is None:
                raise InputError('nova.conf: %r refers to $%s, which is not set' % (value, name))
            return self.interpolate(found, depth + 1)
        return _REFERENCE.sub(replace, value.replace('$$', '\0')).replace('\0', '$')

    def default(self, section, option):
        if section == 'DEFAULT' and option == 'state_path':
            return DEFAULT_STATE_PATH
        if section == 'DEFAULT' and option == 'instances_path':
            return '$state_path/instances'
        return None

    def instances_path(self):
        value, source = self.lookup([('DEFAULT', 'instances_path')])
        if value is None:
            value = self.default('DEFAULT', 'instances_path')
        return os.path.normpath(self.interpolate(value)), source

    def state_path(self):
        value = self.raw('DEFAULT', 'state_path')
        return os.path.normpath(self.interpolate(value if value is not None else DEFAULT_STATE_PATH))

    def image_cache(self):
        """Each image cache option's effective value and its source (None: the default)."""
        settings, sources = {}, {}
        for key, spec in IMAGE_CACHE_OPTIONS.items():
            raw, source = self.lookup(spec['names'])
            if raw is None:
                settings[key] = spec['default']
            else:
                settings[key] = convert(self.interpolate(raw), spec['type'], source)
            sources[key] = source
        return settings, sources


def read_ini(path):
    """{section: {option: value}} of one oslo.config-style file; [DEFAULT] is a section like the others."""
    # A default section name no file uses, so that [DEFAULT] is not merged into every section.
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section='\0 none',
                                       comment_prefixes=('#', ';'), inline_comment_prefixes=None,
                                       empty_lines_in_values=False)
    parser.optionxform = str
    try:
        with open(path, encoding='utf-8') as handle:
            parser.read_file(handle, source=path)
    except (IOError, OSError) as error:
        raise InputError('config_files: cannot read %s: %s' % (path, error.strerror or error))
    except configparser.Error as error:
        raise InputError('config_files: %s is not a valid ini file: %s' % (path, str(error).splitlines()[0]))
    except UnicodeDecodeError as error:
        raise InputError('config_files: %s is not UTF-8 text: %s' % (path, error))
    return dict((section, dict((key, value.strip()) for key, value in parser.items(section, raw=True)))
                for section in parser.sections())


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
