#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nova_bdm_purge
short_description: Remove the Nova block device mappings of volumes Cinder no longer attaches
version_added: 0.1.0
description:
  - Retires the live Nova block device mappings (BDMs) of one or many volumes and/or instances.
    It repairs the BDMs that outlive their Cinder attachment, for example after a volume was
    reset to C(available) in Cinder while Nova still lists it on the server.
  - Only volume BDMs are touched (C(destination_type=volume), C(deleted=0)). With O(instance)
    and O(volume) together, only the BDMs of a listed volume on a listed instance are.
  - By default each BDM is soft-deleted the way Nova's own C(BlockDeviceMapping.destroy()) does.
    C(deleted) takes the row's own id, C(deleted_at) is set and C(updated_at) is kept.
    O(purge=true) deletes the rows instead.
  - The plan is computed first. Check mode returns it and writes nothing. Applying runs
    exactly that plan in one transaction per cell database, re-reading and locking every row,
    and writes a journal of before-images that M(stackmender.openstack.journal_undo) can revert.
    A purged row is re-inserted by the undo.
  - With O(nova_api_db), every cell database in C(cell_mappings) is searched. Rows in cell0 are
    never written, even with O(force).
  - The API path (O(method=api), or V(auto) when a cloud is configured) handles the BDMs whose
    attachment Cinder still holds. It calls Nova's volume detach
    (C(DELETE /servers/{id}/os-volume_attachments/{volume})), which disconnects the disk on the
    hypervisor, deletes the Cinder attachment and soft-deletes the BDM. With O(wait) it then
    waits up to O(timeout) for both services to let go. The plan names the compute microversion.
  - Nova's API cannot remove a BDM that Cinder no longer knows (its detach asks Cinder first and
    fails), nor a root volume, nor anything while the server has a task or its compute is down.
    When any selected BDM is like that, V(auto) falls back to the database path (given O(nova_db)
    or O(nova_api_db)) and says why in RV(method_reason); O(method=api) fails with that reason.
    A hard reboot on a compute of 2023.2 or later also removes the BDMs whose C(attachment_id)
    Cinder returns 404 for, but not legacy BDMs without one.
  - With only O(volume) on the API path, the servers are those Cinder attaches the volume to;
    BDMs on servers Cinder does not know about are found only by the database path.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
  - stackmender.openstack.wait
requirements:
  - openstacksdk >= 1.0.0 (for the API path)
options:
  instance:
    description:
      - UUID of the instance whose volume BDMs to remove, or a list of UUIDs handled together
        in one transaction.
      - At least one of O(instance) and O(volume) is required.
    type: list
    elements: str
    aliases: [instances]
    version_added: 0.1.0
  volume:
    description:
      - UUID of the Cinder volume whose BDMs to remove, or a list of UUIDs.
      - With O(instance), only the BDMs of these volumes on those instances are removed.
    type: list
    elements: str
    aliases: [volumes]
    version_added: 0.1.0
  purge:
    description:
      - V(false) soft-deletes the BDMs with Nova's convention (C(deleted = id), C(deleted_at) set,
        C(updated_at) unchanged).
      - V(true) deletes the rows. The journal keeps each whole row, so
        M(stackmender.openstack.journal_undo) can put it back.
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - Cinder still has a live attachment (C(volume_attachment.deleted = 0)) of the volume to the
    instance. The database path reads it from O(cinder_db); without it the run is refused, naming
    the option, unless O(accept_unverified) with an O(unverified_reason) accepts that Cinder was
    not consulted.
  - The BDM is the instance's root disk (C(boot_index = 0)).
  - A BDM whose instance lives in cell0 is never written, even with O(force). Cell0 holds
    instances that were never scheduled to a host.
  - The hypervisor still has the disk in the guest definition after the purge. Hard reboot
    (or stop and start) each instance named in the warnings so the disk is dropped.
seealso:
  - module: stackmender.openstack.cinder_volume_state
  - module: stackmender.openstack.journal_undo
'''

EXAMPLES = r'''
- name: Show which BDMs of the volume reset to available would be soft-deleted (nothing is written)
  stackmender.openstack.nova_bdm_purge:
    volume: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    nova_api_db:
      config_file: /etc/nova/nova.conf
    cinder_db: /etc/cinder/cinder.conf
  check_mode: true
  diff: true

- name: Soft-delete the BDM Nova kept after Cinder let the volume go
  stackmender.openstack.nova_bdm_purge:
    volume: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    nova_api_db:
      config_file: /etc/nova/nova.conf
    cinder_db:
      config_file: /etc/cinder/cinder.conf
  register: purged

- name: Delete the rows of every volume BDM of several instances of a single-cell cloud
  stackmender.openstack.nova_bdm_purge:
    instance:
      - 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
      - 3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    purge: true
    nova_db: "mysql+pymysql://nova:{{ nova_db_password }}@db.example.org/nova?charset=utf8"
    cinder_db: "mysql+pymysql://cinder:{{ cinder_db_password }}@db.example.org/cinder?charset=utf8"

- name: Detach through Nova's API a volume Cinder still attaches (method auto picks the API)
  stackmender.openstack.nova_bdm_purge:
    cloud: production-admin
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    volume: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
    # Given too, so that BDMs Cinder no longer knows fall back to the database path
    nova_api_db:
      config_file: /etc/nova/nova.conf
    cinder_db:
      config_file: /etc/cinder/cinder.conf

- name: Undo the purge from its journal
  stackmender.openstack.journal_undo:
    journal: "{{ purged.journal }}"
    nova_api_db:
      config_file: /etc/nova/nova.conf
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "1 block device mapping(s) of 1 instance(s) to soft-delete, applied"
method:
  description: The path taken, V(db) or V(api). On the API path RV(plan) lists API calls
    (C(kind=api), service, call, microversion, arguments) and RV(journal) lists them with their outcomes.
  returned: success
  type: str
  sample: db
method_reason:
  description: Why that path was taken, or V(requested).
  returned: success
  type: str
plan:
  description:
    - The statements the run executes (or would in check mode), in order, with parameters.
      A soft delete writes each row's own id to C(deleted) (C(SET deleted = id)), so many rows
      share one statement.
      Rows are named by the database option that reaches them, C(nova_db) or C(nova:<cell name>).
  returned: success
  type: list
  elements: dict
  sample:
    - kind: sql
      database: "nova:cell1"
      table: block_device_mapping
      action: update
      statement: "UPDATE `block_device_mapping` SET `deleted` = `id`, `deleted_at` = %s WHERE `id` IN (%s)"
      params: ["2026-11-22 03:04:05", 12]
      rows: 1
before:
  description: Per database option, per C(table/id), the fields the plan changes, as they were.
    For O(purge=true), the identifying fields of each deleted row.
  returned: success
  type: dict
  sample: {"nova:cell1": {"block_device_mapping/12": {deleted: 0, deleted_at: null}}}
after:
  description: The same fields as they are after the run (or would be, in check mode); V(null) for a deleted row.
  returned: success
  type: dict
  sample: {"nova:cell1": {"block_device_mapping/12": {deleted: 12, deleted_at: "2026-11-22 03:04:05"}}}
diff:
  description: RV(before) and RV(after) in Ansible's diff format.
  returned: in diff mode, when something changes
  type: dict
journal:
  description: Path of the journal of before-images; V(null) in check mode or when nothing changed.
  returned: success
  type: str
  sample: /home/operator/.local/state/stackmender/journal/20261122T030405Z-nova_bdm_purge-1a2b3c4d.json
force:
  description: Whether O(force) was set.
  returned: success
  type: bool
forced_guards:
  description: The guards O(force) overrode, with their evidence.
  returned: when force overrode a guard
  type: list
  elements: dict
unverified_guards:
  description:
    - The guards that could not look, each with C(guard), C(missing_option) (the option that
      would let it look) and C(message). On success they were accepted with O(accept_unverified),
      and the journal records them with O(unverified_reason); on refusal nothing was changed.
  returned: when a guard could not look
  type: list
  elements: dict
  sample:
    - guard: cinder_attachment_live
      missing_option: cinder_db
      message: "Cinder was not consulted, so nothing shows that Cinder no longer attaches the volume(s) of ..."
  version_added: 0.1.0
pending:
  description: When O(wait) timed out, each volume still attached (C(name)) with what Nova and Cinder
    last showed (C(state)).
  returned: failure by the wait's timeout
  type: list
  elements: dict
  version_added: 0.1.0
calls:
  description: On the API path, every planned call with its C(outcome) (V(done), V(failed) or V(not run)).
    A failure midway returns it too, and its message names the calls done and those not run.
  returned: when API calls ran
  type: list
  elements: dict
  version_added: 0.1.0
guards:
  description: On refusal, each guard that failed, its message and the evidence rows.
  returned: failure by a guard
  type: list
  elements: dict
  sample:
    - guard: cinder_attachment_live
      message: "Cinder still has a live attachment of volume 6b1a... to instance 2f9e..."
      evidence: [{id: 9d0c6f1e-5b2a-4c3d-8e9f-0a1b2c3d4e5f, volume_id: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11,
                  instance_uuid: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, attach_status: attached}]
notes:
  description: Why nothing was done, when no live volume BDM matches.
  returned: when there are any
  type: list
  elements: str
fingerprint:
  description: The fingerprint of the plan (see O(expected_fingerprint)); the same plan made again has the same one.
  returned: success
  type: str
  sample: "sha256:9f2c4e0b7d1a5c3e8f6a2b4d0c9e7f1a3b5d7c9e1f3a5b7d9c1e3f5a7b9d1c3e"
review:
  description: In check mode, the items the fingerprint is made of (one line per row change or API call, secrets
    by their stand-in) and the C(fingerprint); give it to O(expected_fingerprint) to apply only this plan.
  returned: check mode
  type: dict
'''

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.cloud import negotiated_microversion
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import DELETE, Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    ApiUnsuitable,
    RemediationModule,
    api_or_db,
    db_only,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import uuid_list

CINDER = 'cinder_db'
NOVA_DATABASES = ('nova_db', 'nova_api_db')
# Nova's volume-attachment resource in openstacksdk; the call uses the highest microversion both sides speak.
VOLUME_ATTACHMENT_MAX_MICROVERSION = '2.89'
BDM_COLUMNS = ('id', 'instance_uuid', 'volume_id', 'attachment_id', 'device_name', 'boot_index',
               'source_type', 'destination_type', 'deleted', 'deleted_at', 'updated_at')
# What a result or a guard shows of a BDM: never connection_info, which can hold CHAP secrets.
SHOWN_COLUMNS = ('id', 'uuid', 'instance_uuid', 'volume_id', 'attachment_id', 'device_name', 'boot_index',
                 'source_type', 'destination_type', 'deleted', 'deleted_at', 'updated_at')


class NovaBdmPurge(RemediationModule):
    module_name = 'stackmender.openstack.nova_bdm_purge'
    # Nova's detach soft-deletes a BDM; nothing in the API deletes its row (purge).
    method_policy = api_or_db()
    purge_policy = db_only('purge deletes the BDM rows, which no API does')
    waits = True
    pending_what = 'volume(s) still attached'
    argument_spec = dict(
        instance=dict(type='list', elements='str', aliases=['instances']),
        volume=dict(type='list', elements='str', aliases=['volumes']),
        purge=dict(type='bool', default=False),
    )
    module_kwargs = dict(required_one_of=[['instance', 'volume']])

    def validate(self):
        self.instance_ids = uuid_list(self.params['instance'], 'instance')
        self.volume_ids = uuid_list(self.params['volume'], 'volume')
        if not self.instance_ids and not self.volume_ids:
            raise InputError('give instance, volume or both to select the block device mappings to remove')

    def _has_databases(self):
        return any(option in self.targets for option in NOVA_DATABASES)

    def database_requirement(self):
        return 'nova_db (a single cell database) or nova_api_db (every cell through cell_mappings)'

    # ------------------------------------------------------------- reading

    def _read_bdms(self, cell):
        """Live volume BDMs of one cell matching the selectors, with their instance's state."""
        self.schema(cell.name, 'nova').require('block_device_mapping', BDM_COLUMNS,
                                               purpose='select and soft-delete volume BDMs')
        return nova.selected_volume_bdms(cell, self.instance_ids, self.volume_ids)

    def _cinder_attachments(self, bdms):
        """Live Cinder attachments of each (volume, instance) pair of the BDMs."""
        pairs = set((row['volume_id'], row['instance_uuid']) for row in bdms if row['volume_id'])
        if not pairs:
            return {}
        self.schema(CINDER, 'cinder').require('volume_attachment', ('id', 'volume_id', 'instance_uuid',
                                                                    'attach_status', 'deleted'),
                                              purpose='check for live Cinder attachments')
        return cinder.live_pair_attachments(self.session(CINDER), pairs)

    # ------------------------------------------------------------ planning

    @staticmethod
    def _shown(row):
        return dict((column, row.get(column)) for column in SHOWN_COLUMNS + ('cell',) if column in row)

    def plan_db(self):
        plan = Plan()
        bdms, cell0_rows = [], []
        for cell in self.nova_cells():
            for row in self._read_bdms(cell):
                (cell0_rows if cell.is_cell0 else bdms).append(row)
        if CINDER in self.targets:
            attachments = self._cinder_attachments(bdms)
        else:
            attachments = {}
            if bdms:
                plan.blind('cinder_attachment_live', CINDER,
                           'Cinder was not consulted, so nothing shows that Cinder no longer attaches the volume(s) '
                           'of block device mapping(s) %s' % ', '.join(str(row['id']) for row in bdms))
        stamp = now()
        for row in bdms:
            pair = (row['volume_id'], row['instance_uuid'])
            if attachments.get(pair):
                plan.refuse('cinder_attachment_live', 'Cinder still has a live attachment of volume %s to instance %s'
                            % pair, attachments[pair])
            if row['boot_index'] == 0:
                plan.refuse('root_bdm', 'block device mapping %s is the root disk (boot_index 0) of instance %s'
                            % (row['id'], row['instance_uuid']), [self._shown(row)])
            self._plan_row(plan, row, stamp)
        if cell0_rows:
            plan.refuse('cell0', '%d block device mapping(s) belong to instances in cell0 (%s), which is never '
                        'written, even with force'
                        % (len(cell0_rows), ', '.join(sorted(set(row['instance_uuid'] for row in cell0_rows)))),
                        [self._shown(row) for row in cell0_rows], never=True)
            plan.stop_if_never_overridden()
        if not bdms:
            plan.note('no live volume block device mapping matches %s' % self._describe_selectors())
            return plan
        self._warn_reboot(plan, bdms)
        return plan

    def _describe_selectors(self):
        parts = []
        if self.instance_ids:
            parts.append('instance(s) %s' % ', '.join(self.instance_ids))
        if self.volume_ids:
            parts.append('volume(s) %s' % ', '.join(self.volume_ids))
        return ' and '.join(parts)

    def _plan_row(self, plan, row, stamp):
        key = {'id': row['id']}
        guarded = dict(instance_uuid=row['instance_uuid'], volume_id=row['volume_id'],
                       destination_type=row['destination_type'], updated_at=row['updated_at'])
        if self.params['purge']:
            before = dict((column, row[column]) for column in SHOWN_COLUMNS if column in row)
            plan.change(row['cell'], 'block_device_mapping', key, action=DELETE, before=before,
                        note='purge the block device mapping (opt-in hard delete)')
        else:
            plan.change(row['cell'], 'block_device_mapping', key,
                        before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                        after=dict(deleted_at=stamp), from_key=('deleted',), expect=guarded,
                        note="soft-delete as Nova's BlockDeviceMapping.destroy() does (deleted = id)")

    def _warn_reboot(self, plan, bdms):
        instances = {}
        for row in bdms:
            instances.setdefault(row['instance_uuid'], (row['instance_host'], []))[1].append(row['volume_id'])
        for instance_uuid in sorted(instances):
            host, volumes = instances[instance_uuid]
            plan.warn('hard reboot instance %s%s (or stop and start it) so the hypervisor drops the disk(s) of '
                      'volume(s) %s' % (instance_uuid, ' on host %s' % host if host else '',
                                        ', '.join(sorted(set(volume or '(none)' for volume in volumes)))))

    # ------------------------------------------------------------- API path

    def methods(self):
        return self.purge_policy if self.params['purge'] else self.method_policy

    def plan_api(self):
        """Nova's detach, for BDMs whose attachment Cinder still holds; anything else needs the database."""
        plan = Plan()
        compute = self.conn.compute
        cinder_attachments = {}
        unsuitable = []
        servers = self._api_servers(cinder_attachments, unsuitable)
        microversion = negotiated_microversion(compute, VOLUME_ATTACHMENT_MAX_MICROVERSION)
        found = 0
        for server in servers:
            attached = [a for a in nova.api_server_volumes(compute, server)
                        if not self.volume_ids or a.volume_id in self.volume_ids]
            for attachment in attached:
                found += 1
                live = [a for a in self._cinder_live(attachment.volume_id, cinder_attachments) if a.instance == server.id]
                if not live:
                    unsuitable.append('Cinder holds no attachment of volume %s to server %s, so Nova\'s detach would fail'
                                      % (attachment.volume_id, server.id))
                elif server.root_device_name and attachment.device == server.root_device_name:
                    unsuitable.append('volume %s is the root disk (%s) of server %s, which Nova\'s API never detaches'
                                      % (attachment.volume_id, attachment.device, server.id))
                else:
                    self._plan_detach(plan, server, attachment, live, microversion)
        if unsuitable:
            raise ApiUnsuitable('; '.join(unsuitable))
        if not found:
            plan.note('Nova lists no attachment matching %s' % self._describe_selectors())
        return plan

    def _cinder_live(self, volume_id, cache):
        """Cinder's attachments of a volume that are not detached (read once per volume)."""
        if volume_id not in cache:
            cache[volume_id] = cinder.api_live_attachments(self.conn.block_storage, volume_id)
        return cache[volume_id]

    def _api_servers(self, cinder_attachments, unsuitable):
        """The servers to look at: those named, else those Cinder attaches the named volumes to."""
        compute, storage = self.conn.compute, self.conn.block_storage
        server_ids = list(self.instance_ids)
        if not server_ids:
            for volume_id in self.volume_ids:
                if cinder.api_volume(storage, volume_id, missing_ok=True) is None:
                    unsuitable.append('volume %s does not exist in Cinder; only the database can find the BDMs '
                                      'Nova keeps for it' % volume_id)
                    continue
                holders = sorted(set(a.instance for a in self._cinder_live(volume_id, cinder_attachments) if a.instance))
                if not holders:
                    unsuitable.append('Cinder has no live attachment of volume %s; only the database can find the '
                                      'BDMs Nova keeps for it' % volume_id)
                server_ids.extend(holder for holder in holders if holder not in server_ids)
        servers = []
        for server_id in server_ids:
            server = nova.api_server(compute, server_id)
            if server is None:
                unsuitable.append('server %s does not exist in Nova\'s API (deleted, or never scheduled)' % server_id)
                continue
            if server.task_state:
                unsuitable.append('server %s has task_state %s, and Nova refuses a detach while a task runs'
                                  % (server.id, server.task_state))
                continue
            if server.vm_state != 'shelved_offloaded' and not nova.api_compute_up(compute, server.compute_host):
                unsuitable.append('the nova-compute of host %s, where server %s runs, is not up, so a detach would '
                                  'never complete' % (server.compute_host, server.id))
                continue
            servers.append(server)
        return servers

    def _plan_detach(self, plan, server, attachment, live, microversion):
        compute = self.conn.compute
        plan.call('compute', 'DELETE /servers/%s/os-volume_attachments/%s' % (server.id, attachment.volume_id),
                  dict(server_id=server.id, volume_id=attachment.volume_id),
                  (lambda s=server.id, v=attachment.volume_id: compute.delete_volume_attachment(s, v, ignore_missing=False)),
                  microversion=microversion, resource='servers/%s/volumes/%s' % (server.id, attachment.volume_id),
                  note='Cinder still holds attachment %s, so Nova detaches properly: the hypervisor drops the disk, '
                       'Cinder deletes the attachment and Nova soft-deletes the BDM' % ', '.join(a.id for a in live),
                  before=dict(attached=True, device=attachment.device, cinder_attachments=len(live)),
                  after=dict(attached=False, device=None, cinder_attachments=0))

    def api_pending(self, plan):
        """The detaches not finished: Nova still lists the volume on the server, or Cinder still attaches it."""
        pending = {}
        for call in plan.calls:
            server_id, volume_id = call.arguments['server_id'], call.arguments['volume_id']
            in_nova = [a for a in nova.api_server_volumes(self.conn.compute, server_id) if a.volume_id == volume_id]
            in_cinder = [a for a in cinder.api_live_attachments(self.conn.block_storage, volume_id)
                         if a.instance == server_id]
            if in_nova or in_cinder:
                state = 'Nova lists it: %s, Cinder attachments: %d' % (bool(in_nova), len(in_cinder))
                pending['volume %s on server %s (%s)' % (volume_id, server_id, state)] = state
        return pending

    def describe(self, plan):
        if plan.calls:
            return '%d volume(s) to detach through Nova\'s API' % len(plan.calls)
        instances = set()
        for change in plan.changes:
            instances.add(change.expect.get('instance_uuid') or change.before.get('instance_uuid'))
        return '%d block device mapping(s) of %d instance(s) to %s' % (
            len(plan.changes), len(instances), 'purge' if self.params['purge'] else 'soft-delete')


def main():
    NovaBdmPurge().run()


if __name__ == '__main__':
    main()
