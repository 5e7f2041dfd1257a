#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nova_image_cache_info
short_description: Check a compute host's image cache settings and every instance disk's backing file
version_added: 0.1.0
description:
  - Runs on a nova-compute host (libvirt driver, file-backed disks) and reads; it never writes.
  - Reads the nova.conf files the way nova-compute does (later files override earlier ones; an option's
    current name wins over its deprecated name in the same file). It finds C([DEFAULT] instances_path)
    (default C($state_path/instances)) and the image cache options of C([image_cache]), namely
    C(remove_unused_base_images), C(subdirectory_name), C(manager_interval) and the two minimum ages,
    honouring their deprecated C([DEFAULT]) and C([libvirt]) names.
  - Finds the file system that holds the instances path in C(/proc/mounts) (the longest mount point that is
    a prefix of it). A path on a shared file system type (see O(shared_filesystem_types)) is shared storage.
  - "A finding C(removal_on_shared_storage): the image cache manager runs and removes unused base images,
    and the instances path is on shared storage. Each host's manager then deletes the base images that only
    other hosts' instances use, and those instances lose their backing files."
  - "A finding C(missing_backing_file): for each instance directory under the instances path, every disk
    file (C(disk), C(disk.*)) that is a qcow2 image has its header read, in pure Python, and the backing file
    it names must exist. One that does not is reported with the instance, the disk and the backing path."
  - "A finding C(unreadable_disk): a disk file that could not be opened or whose qcow2 header is damaged."
  - RV(fix) names the file, section and option that turn the removal off, for
    C(community.general.ini_file); the C(stackmender.openstack.image_cache_guard) role applies it on request.
author:
  - stackmender developers (@stackmender)
attributes:
  check_mode:
    description: Reads exactly as in a normal run; the module never writes.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
options:
  config_files:
    description:
      - The nova-compute service's configuration files, in the order its C(--config-file) options name them.
        Later files override earlier ones.
      - Each must exist and be readable. List the files of a C(--config-dir) in their sorted order after the others.
    type: list
    elements: path
    default: [/etc/nova/nova.conf]
    version_added: 0.1.0
  instances_path:
    description:
      - The instances path to check instead of the one the configuration names.
    type: path
    version_added: 0.1.0
  shared_storage:
    description:
      - V(auto) decides from the file system type of the instances path.
      - V(shared) and V(local) override that, for file systems the list does not know, or a local file system
        that another host mounts by other means.
    type: str
    choices: [auto, shared, local]
    default: auto
    version_added: 0.1.0
  shared_filesystem_types:
    description:
      - File system types (as C(/proc/mounts) names them) to treat as shared, in addition to the built-in list
        C(nfs), C(nfs4), C(cifs), C(smb3), C(ceph), C(cephfs), C(fuse.ceph), C(fuse.ceph-fuse), C(fuse.cephfs),
        C(glusterfs), C(fuse.glusterfs), C(gpfs), C(ocfs2), C(gfs2), C(lustre), C(beegfs), C(quobyte),
        C(fuse.quobyte), C(fuse.sshfs), C(fuse.moosefs), C(fuse.mfs), C(virtiofs) and C(9p).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  check_backing_files:
    description: Read every instance disk's header and check its backing file. Off, only the settings are checked.
    type: bool
    default: true
    version_added: 0.1.0
notes:
  - Run it with privileges to read the nova.conf files and the instance directories (C(become=true)).
  - The upstream default of C(state_path) is the Python installation directory; every distribution package
    sets C(/var/lib/nova), which this module assumes when C(state_path) is not set.
  - Disks that are not qcow2 (raw, or in Ceph RBD) have no backing file and are not checked.
seealso:
  - module: community.general.ini_file
requirements:
  - Python 3 on the compute host.
'''

EXAMPLES = r'''
- name: Check the image cache of every compute host
  stackmender.openstack.nova_image_cache_info:
    config_files: [/etc/nova/nova.conf, /etc/nova/nova.conf.d/100-compute.conf]
  become: true
  register: image_cache

- name: Name the instances that lost their backing files
  ansible.builtin.debug:
    msg: "{{ image_cache.findings | selectattr('kind', 'equalto', 'missing_backing_file')
             | map(attribute='instance') | list }}"

- name: A GPFS mount that is exported as NFS to other hosts too
  stackmender.openstack.nova_image_cache_info:
    shared_storage: shared
  become: true
'''

RETURN = r'''
msg:
  description: A summary.
  returned: always
  type: str
  sample: "instances path /var/lib/nova/instances on nfs4 (shared); unused base images are removed; 2 finding(s)"
config:
  description: The effective settings, and where each came from.
  returned: success
  type: dict
  contains:
    state_path:
      description: C([DEFAULT] state_path), substituted.
      type: str
    instances_path:
      description: The instances path checked.
      type: str
    image_cache_path:
      description: The instances path joined with C(subdirectory_name).
      type: str
    manager_interval:
      description: Seconds between image cache manager runs; V(-1) disables the manager.
      type: int
    subdirectory_name:
      description: The cache's directory name under the instances path.
      type: str
    remove_unused_base_images:
      description: Whether the manager removes unused base images.
      type: bool
    remove_unused_original_minimum_age_seconds:
      description: Unused original base images younger than this are kept.
      type: int
    remove_unused_resized_minimum_age_seconds:
      description: Unused resized base images younger than this are kept.
      type: int
    sources:
      description: Per option, the C(file), C(section) and C(option) its value came from; null for the default.
      type: dict
storage:
  description: Where the instances path lives.
  returned: success
  type: dict
  contains:
    path:
      description: The instances path.
      type: str
    real_path:
      description: The same with symbolic links resolved.
      type: str
    mount_point:
      description: The mount point that holds it.
      type: str
    device:
      description: The mounted device or export.
      type: str
    filesystem_type:
      description: Its file system type.
      type: str
      sample: nfs4
    shared:
      description: Whether it is treated as shared storage.
      type: bool
    shared_reason:
      description: Why.
      type: str
storage_users:
  description:
    - The hosts that nova-compute recorded as users of this instances path (its C(compute_nodes) file), with
      C(host) and C(last_seen) (UTC). Nova only spares the base images of instances on these hosts.
  returned: success
  type: list
  elements: dict
instances:
  description: Counts of what was checked.
  returned: success
  type: dict
  contains:
    directories:
      description: Instance directories with at least one disk file.
      type: int
    qcow2_disks:
      description: Disk files that are qcow2 images.
      type: int
    with_backing_file:
      description: Of those, the ones with a backing file.
      type: int
base_images:
  description:
    - The files in the image cache directory. C(unreferenced) lists those no instance disk under the
      instances path uses, which the manager removes once old enough; on shared storage that is every host's
      instances, on local storage this host's.
  returned: success
  type: dict
  contains:
    total:
      description: Files in the cache directory.
      type: int
    referenced:
      description: Files some instance disk names as its backing file.
      type: int
    unreferenced:
      description: The names of the others.
      type: list
      elements: str
findings:
  description: What is wrong, each with C(kind), C(severity) (V(critical) or V(warning)), C(msg) and its evidence.
  returned: success
  type: list
  elements: dict
  sample:
    - kind: missing_backing_file
      severity: critical
      msg: "instance 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11: disk's backing file is missing"
      instance: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
      instance_uuid: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
      disk: /var/lib/nova/instances/6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11/disk
      backing_file: /var/lib/nova/instances/_base/0c9a1f3a8d5d0e6d2b4f2a2d3c2e7f1e9a8b7c6d
      backing_format: raw
    - kind: removal_on_shared_storage
      severity: critical
      msg: "unused base images are removed from /var/lib/nova/instances, which is on nfs4 (shared storage)"
      file: /etc/nova/nova.conf
      section: image_cache
      option: remove_unused_base_images
fix:
  description:
    - When the removal is a finding, what turns it off. C(path), C(section), C(option) and C(value), as
      C(community.general.ini_file) takes them. The file is the one whose value is in effect, or the first
      config file when none sets it. Null otherwise.
  returned: success
  type: dict
  sample: {path: /etc/nova/nova.conf, section: image_cache, option: remove_unused_base_images, value: "False"}
'''

import datetime
import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stackmender.openstack.plugins.module_utils.host import compute_storage
from ansible_collections.stackmender.openstack.plugins.module_utils.host import qcow2
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError, StackmenderError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import canonical_uuid

# Directories under the instances path that are not instances.
NOT_INSTANCES = ('locks', 'snapshots')


def instance_uuid(name):
    try:
        return canonical_uuid(name, 'instance directory')
    except InputError:
        return None


def check_disks(instances_path, cache_name):
    """(counts, findings, backing paths used) of every instance disk under ``instances_path``."""
    counts = dict(directories=0, qcow2_disks=0, with_backing_file=0)
    findings, used = [], set()
    for name in sorted(os.listdir(instances_path)):
        directory = os.path.join(instances_path, name)
        if name in NOT_INSTANCES or name.startswith('_base') or name == cache_name or not os.path.isdir(directory):
            continue
        disks = sorted(entry for entry in os.listdir(directory)
                       if (entry == 'disk' or entry.startswith('disk.')) and entry != 'disk.info'
                       and os.path.isfile(os.path.join(directory, entry)))
        if not disks:
            continue
        counts['directories'] += 1
        evidence = dict(instance=name, instance_uuid=instance_uuid(name))
        for disk in disks:
            path = os.path.join(directory, disk)
            try:
                header = qcow2.read_header(path)
            except (IOError, OSError) as error:
                findings.append(dict(evidence, kind='unreadable_disk', severity='warning', disk=path,
                                     msg='instance %s: %s cannot be read: %s' % (name, disk, error.strerror or error)))
                continue
            except qcow2.Qcow2Error as error:
                findings.append(dict(evidence, kind='unreadable_disk', severity='warning', disk=path,
                                     msg='instance %s: %s' % (name, error)))
                continue
            if header is None:
                continue
            counts['qcow2_disks'] += 1
            if not header['backing_file']:
                continue
            counts['with_backing_file'] += 1
            target = qcow2.backing_path(path, header['backing_file'])
            if target is None:
                continue
            used.add(os.path.realpath(target))
            if not os.path.exists(target):
                findings.append(dict(evidence, kind='missing_backing_file', severity='critical', disk=path,
                                     backing_file=target, backing_format=header['backing_format'],
                                     msg="instance %s: %s's backing file %s is missing" % (name, disk, target)))
    return counts, findings, used


def base_images(cache_path, used):
    if not os.path.isdir(cache_path):
        return dict(total=0, referenced=0, unreferenced=[])
    names = sorted(name for name in os.listdir(cache_path) if os.path.isfile(os.path.join(cache_path, name)))
    unreferenced = [name for name in names if os.path.realpath(os.path.join(cache_path, name)) not in used]
    return dict(total=len(names), referenced=len(names) - len(unreferenced), unreferenced=unreferenced)


def storage_users(instances_path):
    """nova-compute's record of the hosts using this instances path (nova/virt/storage_users.py)."""
    path = os.path.join(instances_path, 'compute_nodes')
    try:
        with open(path) as handle:
            recorded = json.load(handle)
    except (IOError, OSError, ValueError):
        return []
    users = []
    for host, seen in sorted(recorded.items()) if isinstance(recorded, dict) else []:
        try:
            when = datetime.datetime.fromtimestamp(float(seen), datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
        except (TypeError, ValueError, OverflowError):
            when = None
        users.append(dict(host=host, last_seen=when))
    return users


def removal_finding(settings, sources, storage, config_files):
    """The finding and the fix when the cache manager removes base images from shared storage, else (None, None)."""
    if not (storage['shared'] and settings['remove_unused_base_images'] and settings['manager_interval'] >= 0):
        return None, None
    source = sources['remove_unused_base_images']
    path = source['file'] if source else config_files[0]
    finding = dict(kind='removal_on_shared_storage', severity='critical', file=path,
                   section=source['section'] if source else None, option=source['option'] if source else None,
                   filesystem_type=storage['filesystem_type'], mount_point=storage['mount_point'],
                   msg='unused base images are removed from %s, which is on %s (%s)%s' % (
                       storage['path'], storage['filesystem_type'] or 'an unknown file system', storage['shared_reason'],
                       '' if source else '; remove_unused_base_images is not set and defaults to true'))
    fix = dict(path=path, section='image_cache', option='remove_unused_base_images', value='False')
    return finding, fix


def inspect(params, mounts_text):
    config = compute_storage.NovaConfig(params['config_files'])
    settings, sources = config.image_cache()
    if params['instances_path']:
        instances_path = os.path.normpath(params['instances_path'])
    else:
        instances_path = config.instances_path()[0]
    if not os.path.isdir(instances_path):
        raise InputError('instances path %s is not a directory on this host (is this a compute host, and is its '
                         'storage mounted?)' % instances_path)
    cache_name = settings['subdirectory_name']
    if not cache_name or '/' in cache_name or cache_name in ('.', '..'):
        raise InputError('[image_cache] subdirectory_name %r is not a directory name' % cache_name)
    shared_types = set(compute_storage.SHARED_FILESYSTEM_TYPES) | set(params['shared_filesystem_types'])
    storage = compute_storage.storage_of(instances_path, compute_storage.parse_mounts(mounts_text), shared_types,
                                         params['shared_storage'])
    findings = []
    finding, fix = removal_finding(settings, sources, storage, params['config_files'])
    if finding:
        findings.append(finding)
    counts = dict(directories=0, qcow2_disks=0, with_backing_file=0)
    used = set()
    if params['check_backing_files']:
        counts, disk_findings, used = check_disks(instances_path, cache_name)
        findings.extend(disk_findings)
    cache_path = os.path.join(instances_path, cache_name)
    result = dict(
        config=dict(settings, state_path=config.state_path(), instances_path=instances_path,
                    image_cache_path=cache_path, sources=sources),
        storage=storage, storage_users=storage_users(instances_path), instances=counts,
        base_images=base_images(cache_path, used) if params['check_backing_files'] else dict(
            total=0, referenced=0, unreferenced=[]),
        findings=findings, fix=fix)
    removal = 'unused base images are %s' % (
        'kept' if not settings['remove_unused_base_images'] else
        'removed' if settings['manager_interval'] >= 0 else 'to be removed, but the cache manager is disabled')
    result['msg'] = 'instances path %s on %s (%s); %s; %d instance(s), %d finding(s)' % (
        instances_path, storage['filesystem_type'] or 'unknown', 'shared' if storage['shared'] else 'local',
        removal, counts['directories'], len(findings))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_files=dict(type='list', elements='path', default=['/etc/nova/nova.conf']),
            instances_path=dict(type='path'),
            shared_storage=dict(type='str', choices=['auto', 'shared', 'local'], default='auto'),
            shared_filesystem_types=dict(type='list', elements='str', default=[]),
            check_backing_files=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    try:
        with open('/proc/mounts') as handle:
            mounts_text = handle.read()
    except (IOError, OSError) as error:
        module.fail_json(msg='cannot read /proc/mounts (is this Linux?): %s' % error)
    try:
        result = inspect(module.params, mounts_text)
    except StackmenderError as error:
        module.fail_json(msg=error.msg, **error.details)
    except (IOError, OSError) as error:
        module.fail_json(msg='reading %s failed: %s' % (error.filename or 'the instances path', error.strerror or error))
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
