#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: attachment_snapshot_info
short_description: Record which volume is attached to which server at which device, and compare later
version_added: 0.1.0
description:
  - Reads, through the Nova and Cinder APIs (openstacksdk), every relation between a server and a
    volume, from both sides. Nova's side is each server's volume attachments (the device name and
    the block device mapping). Cinder's side is each volume's status and its attachments. It returns
    them as one JSON-ready RV(snapshot) document. Nothing is written.
  - A relation is a server and a volume that Nova lists, Cinder lists, or both. Each relation records
    its device name, the server's compute host and state, the volume's status, and the state of
    every Cinder attachment of the pair.
  - For each Cinder attachment whose C(connection_info) is iSCSI, RV(snapshot.iscsi_targets) lists the
    portal, target IQN and LUN that the compute host needs a session to. CHAP user names and secrets
    are never returned unless O(iscsi_credentials=true).
  - With O(compare_to), a snapshot taken earlier, it reads the current state of the same servers and
    volumes and returns RV(comparison). That lists each relation as intact or broken, the reasons,
    and the repairs that bring each broken one back (M(stackmender.openstack.cinder_volume_state),
    M(stackmender.openstack.nova_bdm_purge), a reattach with the recorded device). The
    C(stackmender.openstack.power_loss_recovery) role uses it to plan and to verify.
  - Needs an admin cloud user, since it reads every project.
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
  cloud:
    description:
      - The cloud, a name in C(clouds.yaml) or a dict of connection settings.
      - When absent, the single cloud of C(OS_CLIENT_CONFIG_FILE)/C(clouds.yaml) is used,
        as AWX's OpenStack credential provides it.
    type: raw
    version_added: 0.1.0
  compute_hosts:
    description:
      - Only servers on these Nova compute hosts. By default every server of every project.
      - Ignored with O(compare_to), which reads the servers of that snapshot.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  servers:
    description:
      - Only these servers (IDs). Combined with O(compute_hosts), servers that match either.
      - Ignored with O(compare_to), which reads the servers of that snapshot.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  compare_to:
    description:
      - A snapshot this module returned earlier (its RV(snapshot), for example read back from the file
        a playbook saved it to). The module then reads the current state of that snapshot's servers
        and volumes and returns RV(comparison).
    type: dict
    version_added: 0.1.0
  iscsi_credentials:
    description:
      - Also return the CHAP user names and secrets of each iSCSI target in RV(snapshot.iscsi_targets),
        as C(chap_username) and C(chap_secret), for a login task.
      - Use it only in a task with C(no_log=true), and never save that result to a file.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - A server's root volume (its device is the server's root device name) is recorded, but a broken one
    is listed in RV(comparison.unrepairable), since the runbooks never detach a root volume.
  - When any relation of a volume is broken, every relation of that volume is repaired together,
    so a multi-attach volume is detached from all its servers and attached again to each.
seealso:
  - module: stackmender.openstack.cinder_volume_state
  - module: stackmender.openstack.nova_bdm_purge
requirements:
  - openstacksdk >= 1.0.0
'''

EXAMPLES = r'''
- name: Record every volume attachment of two compute hosts
  stackmender.openstack.attachment_snapshot_info:
    compute_hosts: [compute1, compute2]
  register: attachments

- name: Keep it as the baseline for the next incident
  ansible.builtin.copy:
    content: "{{ attachments.snapshot | to_nice_json }}"
    dest: /var/lib/stackmender/attachments-baseline.json
    mode: "0600"

- name: Later, compare the cloud with that baseline
  stackmender.openstack.attachment_snapshot_info:
    compare_to: "{{ lookup('ansible.builtin.file', '/var/lib/stackmender/attachments-baseline.json') | from_json }}"
  register: compared

- name: Fail unless every relation is back as recorded
  ansible.builtin.assert:
    that: compared.comparison.restored
    fail_msg: "{{ compared.comparison.broken | map(attribute='problems') | list }}"
'''

RETURN = r'''
msg:
  description: A summary of what was found.
  returned: always
  type: str
  sample: "12 relation(s) of 5 server(s) and 11 volume(s); 3 iSCSI target(s)"
snapshot:
  description:
    - The relations as they are now. Save it as JSON to compare later with O(compare_to).
    - It holds no secrets unless O(iscsi_credentials=true).
  returned: success
  type: dict
  contains:
    taken_at:
      description: When the APIs were read (UTC, ISO 8601).
      type: str
      sample: "2026-11-22T03:04:05Z"
    scope:
      description: The O(compute_hosts) and O(servers) it was taken with.
      type: dict
    servers:
      description: Each server that has at least one relation, with C(id), C(name), C(project_id),
        C(compute_host), C(status), C(vm_state), C(task_state), C(power_state), C(root_device_name).
      type: list
      elements: dict
    relations:
      description:
        - One per server and volume. C(server_id), C(volume_id), C(device) (Nova's device name, else
          Cinder's), C(root), C(in_nova), C(nova_device), C(nova_attachment_id), C(volume_status),
          C(volume_exists), C(volume_name), C(multiattach), C(server_status), C(compute_host), and C(cinder_attachments), each with
          C(id), C(status) and C(attached_host).
      type: list
      elements: dict
      sample:
        - server_id: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
          volume_id: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
          device: /dev/vdb
          root: false
          in_nova: true
          nova_device: /dev/vdb
          volume_status: in-use
          cinder_attachments: [{id: 9d0c6f1e-5b2a-4c3d-8e9f-0a1b2c3d4e5f, status: attached, attached_host: compute1}]
    iscsi_targets:
      description: Per iSCSI portal of each Cinder attachment, C(compute_host), C(server_id), C(volume_id),
        C(attachment_id), C(portal) (host), C(port), C(iqn), C(lun) and C(chap) (whether CHAP is used).
      type: list
      elements: dict
      sample:
        - compute_host: compute1
          server_id: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
          volume_id: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
          portal: 192.0.2.10
          port: 3260
          iqn: iqn.2010-10.org.openstack:volume-6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
          lun: 1
          chap: true
comparison:
  description: With O(compare_to), how the recorded relations stand now and what repairs them.
  returned: when O(compare_to) is given
  type: dict
  contains:
    restored:
      description: Whether every recorded relation is intact.
      type: bool
    intact:
      description: The relations that are as recorded (C(server_id), C(volume_id), C(device)).
      type: list
      elements: dict
    broken:
      description: The relations that are not, each with C(problems), sentences saying why.
      type: list
      elements: dict
    unrepairable:
      description: Broken relations the runbooks do not repair (a root volume, a server or volume that
        no longer exists), with C(problems).
      type: list
      elements: dict
    repair:
      description:
        - What brings the broken relations back, in order. C(reset_in_use) is the volumes stuck in a
          transitional status that Nova and Cinder both still attach, which must be C(in-use) before
          Nova can detach them. C(purge_bdms) is each server and volume pair Nova still lists.
          C(reset_available) is every volume to repair. C(reattach) is each relation to attach again
          with its recorded C(device).
      type: dict
'''

import datetime

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError, StackmenderError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import canonical_uuid

# Cinder attachment states that still hold (or are about to hold) the volume.
LIVE_ATTACHMENT_STATES = ('attached', 'attaching', 'reserved', 'detaching')
SERVER_FIELDS = ('id', 'name', 'project_id', 'compute_host', 'status', 'vm_state', 'task_state', 'power_state',
                 'root_device_name')


# ------------------------------------------------------------------ pure logic

def iscsi_targets(connection_info, include_credentials=False):
    """The (portal, port, iqn, lun) an attachment's iSCSI connection_info names; never its secrets unless asked."""
    if not isinstance(connection_info, dict):
        return []
    data = connection_info.get('data') if isinstance(connection_info.get('data'), dict) else connection_info
    kind = connection_info.get('driver_volume_type') or data.get('driver_volume_type')
    if kind != 'iscsi':
        return []
    portals = data.get('target_portals') or ([data['target_portal']] if data.get('target_portal') else [])
    iqns = data.get('target_iqns') or [data.get('target_iqn')] * len(portals)
    luns = data.get('target_luns') or [data.get('target_lun')] * len(portals)
    chap = bool(data.get('auth_method')) and str(data.get('auth_method')).upper() == 'CHAP'
    targets = []
    for portal, iqn, lun in zip(portals, iqns, luns):
        host, port = split_portal(portal)
        target = dict(portal=host, port=port, iqn=iqn, lun=lun, chap=chap)
        if include_credentials and chap:
            target['chap_username'] = data.get('auth_username')
            target['chap_secret'] = data.get('auth_password')
        targets.append(target)
    return targets


def split_portal(portal):
    """'192.0.2.10:3260' or '[2001:db8::1]:3260' -> (host, port); the port defaults to 3260."""
    portal = str(portal).partition(',')[0]
    if portal.startswith('['):
        host, _bracket, rest = portal[1:].partition(']')
        return host, int(rest.lstrip(':') or 3260)
    if portal.count(':') == 1:
        host, port = portal.split(':')
        return host, int(port or 3260)
    return portal, 3260


def build_relations(servers, nova_attachments, cinder_attachments, volumes):
    """Relations from both sides.

    servers: id -> server dict (SERVER_FIELDS); nova_attachments: server id -> [{volume_id, device, attachment_id}];
    cinder_attachments: [{id, volume_id, instance, status, attached_host}]; volumes: id -> {status, name,
    multiattach} (a missing volume is absent).
    """
    pairs = {}
    for server_id, attached in nova_attachments.items():
        for attachment in attached:
            pairs.setdefault((server_id, attachment['volume_id']), {})['nova'] = attachment
    for attachment in cinder_attachments:
        if attachment.get('instance') in servers and attachment.get('status') in LIVE_ATTACHMENT_STATES:
            pairs.setdefault((attachment['instance'], attachment['volume_id']), {}).setdefault('cinder', []).append(
                attachment)
    relations = []
    for (server_id, volume_id), sides in sorted(pairs.items()):
        server = servers.get(server_id) or {}
        volume = volumes.get(volume_id)
        nova = sides.get('nova')
        cinder_side = sorted(sides.get('cinder', []), key=lambda a: a['id'])
        device = nova['device'] if nova else None
        relations.append(dict(
            server_id=server_id, volume_id=volume_id, device=device,
            root=bool(device and device == server.get('root_device_name')),
            in_nova=bool(nova), nova_device=device, nova_attachment_id=nova.get('attachment_id') if nova else None,
            compute_host=server.get('compute_host'), server_status=server.get('status'),
            volume_exists=volume is not None,
            volume_status=volume['status'] if volume else None,
            volume_name=volume.get('name') if volume else None,
            multiattach=bool(volume.get('multiattach')) if volume else False,
            cinder_attachments=[dict(id=a['id'], status=a['status'], attached_host=a.get('attached_host'))
                                for a in cinder_side]))
    return relations


def relation_problems(recorded, current, server_exists):
    """Why a recorded relation is not intact now (empty when it is)."""
    problems = []
    if not server_exists:
        return ['server %s no longer exists' % recorded['server_id']]
    if current is None or not current['volume_exists']:
        if current is not None and not current['volume_exists']:
            return ['volume %s no longer exists' % recorded['volume_id']]
        current = dict(in_nova=False, nova_device=None, volume_status=None, cinder_attachments=[], volume_exists=True)
    if not current['in_nova']:
        problems.append('Nova does not list volume %s on server %s' % (recorded['volume_id'], recorded['server_id']))
    elif recorded.get('device') and current['nova_device'] != recorded['device']:
        problems.append('Nova lists volume %s at %s, recorded at %s'
                        % (recorded['volume_id'], current['nova_device'], recorded['device']))
    attached = [a for a in current['cinder_attachments'] if a['status'] == 'attached']
    others = [a for a in current['cinder_attachments'] if a['status'] != 'attached']
    if not attached:
        problems.append('Cinder has no attached attachment of volume %s to server %s'
                        % (recorded['volume_id'], recorded['server_id']))
    if len(attached) > 1 or others:
        problems.append('Cinder holds %d other attachment(s) of the pair (%s)' % (
            len(attached) - 1 + len(others) if attached else len(others),
            ', '.join('%s %s' % (a['id'], a['status']) for a in (attached[1:] + others))))
    if current['volume_status'] not in (None, 'in-use'):
        problems.append('volume %s is %s' % (recorded['volume_id'], current['volume_status']))
    return problems


def compare(snapshot, current_relations, current_servers, current_volumes):
    """How the relations of ``snapshot`` stand in the current state, and the repairs that restore them."""
    current = dict(((r['server_id'], r['volume_id']), r) for r in current_relations)
    intact, broken, unrepairable = [], [], []
    for recorded in snapshot.get('relations', []):
        key = (recorded['server_id'], recorded['volume_id'])
        now = current.get(key)
        if now is None and recorded['volume_id'] not in current_volumes:
            now = dict(volume_exists=False)
        problems = relation_problems(recorded, now, recorded['server_id'] in current_servers)
        entry = dict(server_id=recorded['server_id'], volume_id=recorded['volume_id'], device=recorded.get('device'))
        if not problems:
            intact.append(entry)
            continue
        entry['problems'] = problems
        broken.append(entry)
        gone = recorded['server_id'] not in current_servers or recorded['volume_id'] not in current_volumes
        if gone or recorded.get('root'):
            reason = 'root volume: the runbooks never detach it; reset it to in-use with ' \
                     'stackmender.openstack.cinder_volume_state' if recorded.get('root') and not gone else problems[0]
            unrepairable.append(dict(entry, reason=reason))
    unrepairable_keys = set((e['server_id'], e['volume_id']) for e in unrepairable)
    repair_volumes = set(e['volume_id'] for e in broken if (e['server_id'], e['volume_id']) not in unrepairable_keys)
    to_repair = [r for r in snapshot.get('relations', []) if r['volume_id'] in repair_volumes and not r.get('root')
                 and (r['server_id'], r['volume_id']) not in unrepairable_keys]
    reset_in_use, purge = [], []
    for volume_id in sorted(repair_volumes):
        volume = current_volumes.get(volume_id) or {}
        pairs = [r for r in current_relations if r['volume_id'] == volume_id]
        both = [r for r in pairs if r['in_nova'] and r['cinder_attachments']]
        if volume.get('status') in cinder.TRANSITIONAL_STATUSES and both:
            reset_in_use.append(volume_id)
        purge.extend(dict(instance=r['server_id'], volume=volume_id) for r in pairs
                     if r['in_nova'] and not r['root'])
    repair = dict(
        reset_in_use=reset_in_use,
        purge_bdms=purge,
        reset_available=sorted(repair_volumes),
        reattach=[dict(server_id=r['server_id'], volume_id=r['volume_id'], device=r.get('device'))
                  for r in sorted(to_repair, key=lambda r: (r['server_id'], r.get('device') or '', r['volume_id']))],
        servers=sorted(set(r['server_id'] for r in to_repair)),
    )
    return dict(restored=not broken, intact=intact, broken=broken, unrepairable=unrepairable, repair=repair)


# ------------------------------------------------------------------ reading

class AttachmentSnapshot(object):

    def __init__(self):
        self.module = AnsibleModule(
            argument_spec=dict(
                cloud=dict(type='raw', no_log=True),
                compute_hosts=dict(type='list', elements='str', default=[]),
                servers=dict(type='list', elements='str', default=[]),
                compare_to=dict(type='dict'),
                iscsi_credentials=dict(type='bool', default=False),
            ),
            supports_check_mode=True,
        )
        self.params = self.module.params
        # no_log registered every leaf of cloud: keep its credentials only (see redaction.register_option_secrets).
        redaction.register_option_secrets(self.module, (), 'cloud')
        self.conn = None

    def run(self):
        if not api.HAS_OPENSTACKSDK:
            self.module.fail_json(msg=missing_required_lib('openstacksdk'), exception=str(api.OPENSTACKSDK_IMPORT_ERROR))
        try:
            recorded = self.params['compare_to']
            if recorded is not None and not isinstance(recorded.get('relations'), list):
                raise InputError('compare_to must be a snapshot this module returned (it has no relations list)')
            server_ids = [canonical_uuid(value, 'servers') for value in self.params['servers']]
            self.conn = api.connect(self.params.get('cloud'))
            if recorded is not None:
                servers = self._servers_by_id(sorted(set(r['server_id'] for r in recorded['relations'])))
                extra_volumes = set(r['volume_id'] for r in recorded['relations'])
            else:
                servers = self._servers(self.params['compute_hosts'], server_ids)
                extra_volumes = set()
            snapshot, volumes = self._snapshot(servers, extra_volumes)
            result = dict(changed=False, snapshot=snapshot)
            summary = '%d relation(s) of %d server(s) and %d volume(s); %d iSCSI target(s)' % (
                len(snapshot['relations']), len(set(r['server_id'] for r in snapshot['relations'])),
                len(set(r['volume_id'] for r in snapshot['relations'])), len(snapshot['iscsi_targets']))
            if recorded is not None:
                comparison = compare(recorded, snapshot['relations'], servers, volumes)
                result['comparison'] = comparison
                summary = '%d of %d recorded relation(s) intact, %d broken (%d unrepairable); now: %s' % (
                    len(comparison['intact']), len(recorded['relations']), len(comparison['broken']),
                    len(comparison['unrepairable']), summary)
            result['msg'] = summary
            if not self.params['iscsi_credentials']:
                # Asked for, the CHAP secrets are the point of the result (the docs require no_log then).
                result = redaction.redact(result)
            self.module.exit_json(**result)
        except StackmenderError as error:
            self.module.fail_json(msg=error.msg, **error.details)
        except Exception as error:
            if not isinstance(error, api.openstack.exceptions.SDKException):
                raise
            translated = api.translate(error, 'reading the attachments')
            self.module.fail_json(msg=translated.msg, **translated.details)

    @staticmethod
    def _server_dict(server):
        return dict((field, getattr(server, field, None)) for field in SERVER_FIELDS)

    def _servers(self, hosts, server_ids):
        compute = self.conn.compute
        found = {}
        if hosts:
            for host in hosts:
                for server in compute.servers(details=True, all_projects=True, host=host):
                    found[server.id] = self._server_dict(server)
        if server_ids:
            found.update(self._servers_by_id([i for i in server_ids if i not in found]))
        if not hosts and not server_ids:
            for server in compute.servers(details=True, all_projects=True):
                found[server.id] = self._server_dict(server)
        missing = [i for i in server_ids if i not in found]
        if missing:
            raise InputError('server(s) not found through the Nova API: %s' % ', '.join(missing), missing=missing)
        return found

    def _servers_by_id(self, server_ids):
        found = {}
        for server_id in server_ids:
            server = self.conn.compute.find_server(server_id, ignore_missing=True, all_projects=True)
            if server is not None:
                found[server.id] = self._server_dict(server)
        return found

    def _snapshot(self, servers, extra_volumes):
        compute, storage = self.conn.compute, self.conn.block_storage
        nova_attachments = {}
        for server_id in sorted(servers):
            nova_attachments[server_id] = [
                dict(volume_id=a.volume_id, device=a.device, attachment_id=getattr(a, 'attachment_id', None))
                for a in compute.volume_attachments(server_id)]
        attachments = [a for a in storage.attachments(all_projects=True) if a.instance in servers]
        volume_ids = set(extra_volumes)
        volume_ids.update(a['volume_id'] for listed in nova_attachments.values() for a in listed)
        volume_ids.update(a.volume_id for a in attachments)
        volumes, hosts = {}, {}
        for volume_id in sorted(volume_ids):
            volume = storage.find_volume(volume_id, ignore_missing=True, all_projects=True)
            if volume is not None:
                volumes[volume.id] = dict(status=volume.status, name=volume.name, multiattach=volume.is_multiattach)
                # The host Cinder records for each attached attachment (its list shows no other).
                for listed in volume.attachments or []:
                    hosts[listed.get('attachment_id')] = listed.get('host_name')
        cinder_side = [dict(id=a.id, volume_id=a.volume_id, instance=a.instance, status=a.status,
                            attached_host=hosts.get(a.id)) for a in attachments]
        relations = build_relations(servers, nova_attachments, cinder_side, volumes)
        targets = []
        related = set((r['server_id'], r['volume_id']) for r in relations)
        for attachment in sorted(attachments, key=lambda a: a.id):
            if (attachment.instance, attachment.volume_id) not in related or attachment.status not in LIVE_ATTACHMENT_STATES:
                continue
            for target in iscsi_targets(attachment.connection_info, self.params['iscsi_credentials']):
                target.update(compute_host=servers[attachment.instance]['compute_host'], server_id=attachment.instance,
                              volume_id=attachment.volume_id, attachment_id=attachment.id)
                targets.append(target)
        related_servers = set(r['server_id'] for r in relations)
        snapshot = dict(
            taken_at=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
            scope=dict(compute_hosts=list(self.params['compute_hosts']), servers=list(self.params['servers'])),
            servers=[servers[i] for i in sorted(related_servers)],
            relations=relations,
            iscsi_targets=targets,
        )
        return snapshot, volumes


def main():
    AttachmentSnapshot().run()


if __name__ == '__main__':
    main()
