#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: cinder_volume_state
short_description: Set the status of stuck Cinder volumes, the way Cinder itself would
version_added: 0.1.0
description:
  - Brings one or many Cinder volumes to a desired O(status), O(attach_status) and
    O(migration_status). It repairs volumes stuck C(detaching), C(attaching) or
    C(reserved), attachments Cinder keeps after Nova let go, and C(error_deleting) leftovers.
  - Unlike a bare C(UPDATE volumes SET status=...), it changes every row Cinder's own
    reset-status would. Detaching soft-deletes the live C(volume_attachment) rows and the
    C(attached_mode) admin metadata, and removes the volume's cleanup C(workers) row.
  - O(status=deleted) retires a volume the way Cinder's C(volume_destroy) does. The volume
    and its dependent rows are soft-deleted, and the project's quota usage is given back.
  - The plan is computed first. Check mode returns it and writes nothing. Applying runs
    exactly that plan in one transaction, re-reading and locking every row, and writes a
    journal of before-images that M(stackmender.openstack.journal_undo) can revert.
  - With O(method=api) (or V(auto) when a cloud is configured) it uses Cinder's API through
    openstacksdk. A reset is one C(os-reset_status) call that carries the status and the attach
    status together. A stale attachment whose C(cinder-volume) is up is deleted with
    C(DELETE /attachments/{id}), so the backend export goes too. V(deleted) is a force delete
    (microversion 3.23), which needs the owning C(cinder-volume) to be up. If that service is
    down, V(auto) falls back to the database and says so in RV(method_reason).
  - With O(wait), the API path then waits until each volume shows the requested status (or is
    gone, for V(deleted)). A volume that turns C(error_deleting) fails the task at once.
  - The API path checks Nova through its API; the database path checks Nova's
    block device mappings when O(nova_db) or O(nova_api_db) is given.
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
  volume:
    description:
      - ID of the volume to repair, or a list of IDs repaired together in one transaction.
    type: list
    elements: str
    required: true
    aliases: [volumes]
    version_added: 0.1.0
  status:
    description:
      - The status the volume should have.
      - V(deleted) retires the volume row and its dependent rows (soft delete) and gives
        back its quota usage. Use it for C(error_deleting) leftovers whose backend object
        is already gone.
      - Transitional states such as V(detaching) or V(creating) are refused. A volume
        reset into them waits for an operation that no service is running.
      - V(available) implies O(attach_status=detached) unless given.
      - V(in-use) implies O(attach_status=attached) unless given, and needs a live attachment.
    type: str
    choices: [available, in-use, error, error_deleting, error_managing, error_restoring,
              error_extending, error_backing-up, creating, deleting, attaching, detaching,
              maintenance, restoring-backup, reserved, awaiting-transfer, backing-up,
              downloading, uploading, retyping, extending, managing, deleted]
    version_added: 0.1.0
  attach_status:
    description:
      - V(detached) soft-deletes every live attachment row of the volume and its
        C(attached_mode) admin metadata, as Cinder's reset-status does. If O(status) is not
        given, the volume becomes V(available).
      - V(attached) needs at least one live attachment row.
    type: str
    choices: [attached, detached]
    version_added: 0.1.0
  migration_status:
    description:
      - Terminal migration status to set; V(none) clears it.
    type: str
    choices: ['none', error, success]
    version_added: 0.1.0
  from_status:
    description:
      - Only change volumes whose current status is one of these. Any other volume makes the
        task fail, with nothing changed. Volumes already in the desired state are left alone.
    type: list
    elements: str
    version_added: 0.1.0
notes:
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - Nova still has a live block device mapping for the volume on a live instance. The database
    path reads it from O(nova_api_db) (or O(nova_db)); the API path asks Nova's API. Without
    them, detaching an attached volume or deleting a volume is refused, naming the option,
    unless O(accept_unverified) with an O(unverified_reason) accepts that Nova was not consulted.
  - The volume is mid-migration and O(migration_status) is not given.
  - V(in-use)/V(attached) is requested but no live attachment exists.
  - V(deleted) is requested for a volume that is attached, has live snapshots, belongs to a
    group, or is in a status Cinder would not delete from.
  - After O(status=deleted) through the database, the backend object is not touched. Remove it
    on the storage backend if it still exists. The API path's force delete removes it.
seealso:
  - module: stackmender.openstack.journal_undo
'''

EXAMPLES = r'''
- name: Show what resetting a volume stuck in detaching would change (nothing is written)
  stackmender.openstack.cinder_volume_state:
    volume: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
    status: available
    cinder_db: /etc/cinder/cinder.conf
    nova_api_db: "mysql+pymysql://nova:{{ nova_db_password }}@db.example.org/nova_api?charset=utf8"
  check_mode: true
  diff: true

- name: Reset it, only if it is still detaching
  stackmender.openstack.cinder_volume_state:
    volume: 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
    status: available
    from_status: [detaching]
    cinder_db:
      config_file: /etc/cinder/cinder.conf
    nova_api_db:
      config_file: /etc/nova/nova.conf
  register: reset

- name: Retire error_deleting leftovers whose backend objects are already gone
  stackmender.openstack.cinder_volume_state:
    volume:
      - 0d7cbb27-0f0f-4f0c-8c6f-1c2d4a5b6c7d
      - 5e1f6a7b-8c9d-4e0f-a1b2-c3d4e5f60718
    status: deleted
    from_status: [error_deleting]
    cinder_db: "mysql+pymysql://cinder:{{ cinder_db_password }}@db.example.org/cinder?charset=utf8"
    nova_api_db: /etc/nova/nova.conf

- name: Undo the reset from its journal
  stackmender.openstack.journal_undo:
    journal: "{{ reset.journal }}"
    cinder_db: /etc/cinder/cinder.conf
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "2 volume(s) to change (5 row change(s)), applied"
method:
  description: The path taken, V(db) or V(api). On the API path RV(plan) lists API calls
    (C(kind=api), service, call, microversion, arguments) and RV(journal) lists them with their outcomes.
  returned: success
  type: str
  sample: db
method_reason:
  description: Why O(method=auto) chose that path, or V(requested).
  returned: success
  type: str
plan:
  description:
    - The statements the run executes (or would in check mode), in order, with parameters.
      Rows of one shape are one statement. C(keys_not_shown) counts keys left out of a long list.
  returned: success
  type: list
  elements: dict
  sample:
    - kind: sql
      database: cinder_db
      table: volumes
      action: update
      statement: "UPDATE `volumes` SET `attach_status` = %s, `status` = %s, `updated_at` = %s WHERE `id` IN (%s)"
      params: [detached, available, "2026-11-22 03:04:05", 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11]
      rows: 1
before:
  description: Per database option, per C(table/id), the fields the plan changes, as they were.
  returned: success
  type: dict
  sample: {cinder_db: {"volumes/6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11": {status: detaching}}}
after:
  description: The same fields as they are after the run (or would be, in check mode).
  returned: success
  type: dict
  sample: {cinder_db: {"volumes/6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11": {status: available}}}
diff:
  description: RV(before) and RV(after) in Ansible's diff format.
  returned: in diff mode, when something changes
  type: dict
journal:
  description: Path of the journal of before-images; V(null) in check mode or when nothing changed.
  returned: success
  type: str
  sample: /home/operator/.local/state/stackmender/journal/20261122T030405Z-cinder_volume_state-1a2b3c4d.json
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
    - guard: nova_bdm_live
      missing_option: nova_api_db (or nova_db)
      message: "Nova was not consulted, so nothing shows that no instance still uses the volume(s) to detach (6b1a...)"
  version_added: 0.1.0
pending:
  description: When O(wait) timed out, each volume not in the requested status (C(name)) with the
    status it last showed (C(state)).
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
    - guard: nova_bdm_live
      message: "Nova still has a live block device mapping for volume 6b1a... on instance 2f9e..."
      evidence: [{bdm_id: 12, instance_uuid: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, device_name: /dev/vdb}]
notes:
  description: Volumes left alone because they are already in the desired state.
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
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import DELETE, Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    ApiUnsuitable,
    RemediationModule,
    api_or_db,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import uuid_list

CINDER = 'cinder_db'


class CinderVolumeState(RemediationModule):
    module_name = 'stackmender.openstack.cinder_volume_state'
    required_databases = (CINDER,)
    method_policy = api_or_db()
    waits = True
    pending_what = 'volume(s) not in the requested status'
    argument_spec = dict(
        volume=dict(type='list', elements='str', required=True, aliases=['volumes']),
        status=dict(type='str', choices=list(cinder.VOLUME_STATUSES)),
        attach_status=dict(type='str', choices=list(cinder.ATTACH_STATUSES)),
        migration_status=dict(type='str', choices=list(cinder.MIGRATION_STATUSES)),
        from_status=dict(type='list', elements='str'),
    )
    module_kwargs = dict(required_one_of=[['status', 'attach_status', 'migration_status']])

    def validate(self):
        self.volume_ids = uuid_list(self.params['volume'], 'volume')
        status, attach = self.params['status'], self.params['attach_status']
        if status in cinder.TRANSITIONAL_STATUSES:
            raise InputError("status %r is transitional: a volume reset into it waits for an operation no "
                             "service is running. Choose a resting state such as available, in-use or error" % status)
        if status == 'available' and attach == 'attached' or status == 'in-use' and attach == 'detached':
            raise InputError('status %s contradicts attach_status %s' % (status, attach))
        if status == 'deleted' and (attach or self.params['migration_status']):
            raise InputError('status deleted takes no attach_status or migration_status')
        for value in self.params['from_status'] or []:
            if value not in cinder.VOLUME_STATUSES:
                raise InputError('from_status: %r is not a Cinder volume status' % value)

    def desired(self, volume):
        """The target (status, attach_status, migration_status) of one volume."""
        status, attach = self.params['status'], self.params['attach_status']
        if attach is None:
            attach = {'available': 'detached', 'in-use': 'attached'}.get(status, volume['attach_status'])
        if status is None:
            status = 'available' if attach == 'detached' and volume['attach_status'] != 'detached' else volume['status']
        migration = volume['migration_status']
        if self.params['migration_status'] is not None:
            migration = None if self.params['migration_status'] == 'none' else self.params['migration_status']
        return status, attach, migration

    def plan_db(self):
        plan = Plan()
        session = self.session(CINDER)
        schema = self.schema(CINDER, 'cinder')
        schema.require('volumes', ('id', 'status', 'attach_status', 'migration_status', 'deleted', 'deleted_at',
                                   'project_id', 'size', 'volume_type_id', 'group_id', 'consistencygroup_id'))
        schema.require('volume_attachment', ('volume_id', 'attach_status', 'detach_time', 'deleted'))
        volumes = cinder.listed_volumes(session, self.volume_ids)
        live = [volume for volume in volumes if not volume['deleted']]
        ids = [volume['id'] for volume in live]
        attachments = cinder.rows_by_volume(session, 'volume_attachment', ids)
        workers = cinder.volume_workers(session, ids)
        bdms = self._nova_bdms(ids)
        self._unverified = []
        self._guard_instances_not_read(plan, [volume for volume in live if self._detaches(volume)], attachments)
        stamp = now()
        # One read of every volume's attached_mode metadata, which a detach drops, not one per volume.
        attached_mode = ({} if self.params['status'] == 'deleted' else cinder.rows_by_volume(
            session, 'volume_admin_metadata', ids, ' AND `key` = %s', ('attached_mode',)))
        retiring = []
        for volume in volumes:
            if self.params['status'] == 'deleted':
                if volume['deleted']:
                    plan.note('volume %s is already deleted' % volume['id'])
                else:
                    retiring.append(volume)
                continue
            if volume['deleted']:
                raise InputError('volume %s is deleted; its status can no longer be set' % volume['id'])
            self._plan_reset(plan, volume, attachments.get(volume['id'], []), workers.get(volume['id'], []),
                             None if bdms is None else bdms.get(volume['id'], []), stamp,
                             attached_mode.get(volume['id'], []))
        if retiring:
            self._plan_retire(plan, retiring, attachments, workers, bdms, stamp, session, schema)
        return plan

    def describe(self, plan):
        volumes = set(change.key_value for change in plan.changes if change.table == 'volumes')
        return '%d volume(s) to change (%d row change(s))' % (len(volumes), len(plan.changes))

    # ------------------------------------------------------------- reading

    def _nova_bdms(self, volume_ids):
        """Live Nova BDMs by volume; None when no Nova cell database was given (the guard cannot look)."""
        if not volume_ids:
            return {}
        if not self.nova_cells():
            return None
        return nova.live_bdms_by_volume(self.nova_cells(), volume_ids)

    def _detaches(self, volume):
        return self.params['status'] == 'deleted' or self.desired(volume)[1] == 'detached'

    def _guard_instances_not_read(self, plan, volumes, attachments):
        """Refuse to detach from an instance that no cell read holds but Nova may still have elsewhere.

        Its block device mapping can then live in a cell that was not read (nova_db alone) or in a
        build request, where the nova_bdm_live guard cannot see it.
        """
        cells = self.nova_cells()
        if not cells:
            return
        rows = [row for volume in volumes for row in attachments.get(volume['id'], [])
                if row['instance_uuid'] and row['attach_status'] != 'detached']
        uuids = set(row['instance_uuid'] for row in rows)
        present = nova.instance_rows(cells, 'uuid', uuids=uuids)
        absent = self.absent_instances([uuid for uuid in uuids if uuid not in present])
        for uuid in sorted(absent):
            absence = absent[uuid]
            if absence.kind in ('unverifiable', 'building'):
                shown = [dict(table='volume_attachment', id=row['id'], volume_id=row['volume_id'],
                              instance_uuid=uuid, attach_status=row['attach_status'])
                         for row in rows if row['instance_uuid'] == uuid]
                plan.refuse('instance_not_in_cells_read', '%s; Nova may still map the volume to it' % absence.explain(),
                            shown + absence.evidence)

    def _nova_blind(self, plan, volume_id, doing):
        """The nova_bdm_live guard cannot look: refuse unless the operator accepts it (see Plan.blind)."""
        self._unverified.append(volume_id)
        plan.blind('nova_bdm_live', 'nova_api_db (or nova_db)',
                   'Nova was not consulted, so nothing shows that no instance still uses the volume(s) to %s (%s)'
                   % (doing, ', '.join(self._unverified)))

    # ------------------------------------------------------------ planning

    def _check_from_status(self, plan, volume):
        """from_status is the operator's own precondition: force never lifts it."""
        allowed = self.params['from_status']
        if allowed and volume['status'] not in allowed:
            plan.refuse('from_status', 'volume %s is %r, not one of from_status %s'
                        % (volume['id'], volume['status'], ', '.join(allowed)),
                        [dict(id=volume['id'], status=volume['status'])], never=True)
            plan.stop_if_never_overridden()

    def _plan_reset(self, plan, volume, attachments, workers, bdms, stamp, attached_mode):
        """Plan one volume's reset; a reset to detached is Cinder's detach (cinder.detach_changes)."""
        status, attach, migration = self.desired(volume)
        current = (volume['status'], volume['attach_status'], volume['migration_status'])
        # Cinder's reset to detached soft-deletes every live attachment row, whatever its state.
        detach_rows = attachments if attach == 'detached' else []
        if current == (status, attach, migration) and not detach_rows:
            plan.note('volume %s is already %s/%s' % (volume['id'], status, attach))
            return
        self._check_from_status(plan, volume)
        volume_id = volume['id']
        if cinder.is_migrating(volume['migration_status']) and self.params['migration_status'] is None:
            plan.refuse('volume_migrating', 'volume %s is mid-migration (migration_status %s)'
                        % (volume_id, volume['migration_status']),
                        [dict(id=volume_id, migration_status=volume['migration_status'])])
        if attach == 'attached' and not [row for row in attachments if not row['attach_status'].startswith('error')]:
            plan.refuse('no_live_attachment', 'volume %s has no live attachment, so it cannot be %s/attached'
                        % (volume_id, status), [dict(id=volume_id, attachments=0)])
        if attach == 'detached' and bdms:
            plan.refuse('nova_bdm_live', 'Nova still has a live block device mapping for volume %s on instance(s) %s'
                        % (volume_id, ', '.join(sorted(set(row['instance_uuid'] for row in bdms)))), bdms)
        if attach == 'detached' and bdms is None and (volume['attach_status'] != 'detached' or detach_rows):
            self._nova_blind(plan, volume_id, 'detach')
        changes = {}
        for column, old, new in (('status', volume['status'], status),
                                 ('attach_status', volume['attach_status'], attach),
                                 ('migration_status', volume['migration_status'], migration)):
            if old != new:
                changes[column] = new
        if changes:
            before = dict((column, volume[column]) for column in changes)
            changes['updated_at'] = stamp
            before['updated_at'] = volume['updated_at']
            plan.change(CINDER, 'volumes', {'id': volume_id}, before=before, after=changes,
                        expect={'deleted': 0}, note='reset volume state')
        if attach == 'detached':
            # The operator chose the volume's status; the attachments and attached_mode go as in Cinder's detach.
            detached, _status = cinder.detach_changes(volume, detach_rows, stamp, admin_metadata=attached_mode,
                                                      set_status=False)
            for change in detached:
                plan.change(CINDER, **change)
        for row in workers:
            plan.change(CINDER, 'workers', {'id': row['id']}, action=DELETE, before=row,
                        note='remove the cleanup worker entry the reset makes useless')

    def _plan_retire(self, plan, volumes, attachments, workers, bdms, stamp, session, schema):
        ids = [volume['id'] for volume in volumes]
        snapshots = cinder.rows_by_volume(session, 'snapshots', ids)
        for volume in volumes:
            self._check_from_status(plan, volume)
            volume_id = volume['id']
            if volume['status'] not in cinder.DELETABLE_STATUSES:
                plan.refuse('status_not_deletable', 'volume %s is %r; Cinder deletes only volumes in %s'
                            % (volume_id, volume['status'], ', '.join(cinder.DELETABLE_STATUSES)),
                            [dict(id=volume_id, status=volume['status'])])
            attached = [row for row in attachments.get(volume_id, []) if row['attach_status'] == 'attached']
            if volume['attach_status'] == 'attached' or attached:
                plan.refuse('volume_attached', 'volume %s is still attached' % volume_id,
                            [dict(id=volume_id, attach_status=volume['attach_status'])]
                            + cinder.evidence('volume_attachment', attached))
            if bdms is None:
                self._nova_blind(plan, volume_id, 'delete')
            elif bdms.get(volume_id):
                plan.refuse('nova_bdm_live', 'Nova still has a live block device mapping for volume %s' % volume_id,
                            bdms[volume_id])
            if snapshots.get(volume_id):
                plan.refuse('volume_has_snapshots', 'volume %s has %d live snapshot(s)'
                            % (volume_id, len(snapshots[volume_id])),
                            cinder.evidence('snapshots', snapshots[volume_id]))
            if volume['group_id'] or volume['consistencygroup_id']:
                plan.refuse('volume_in_group', 'volume %s belongs to a group; remove it from the group first' % volume_id,
                            [dict(id=volume_id, group_id=volume['group_id'],
                                  consistencygroup_id=volume['consistencygroup_id'])])
            plan.change(CINDER, 'volumes', {'id': volume_id},
                        before=dict(status=volume['status'], deleted=volume['deleted'], deleted_at=volume['deleted_at'],
                                    migration_status=volume['migration_status']),
                        after=dict(status='deleted', deleted=1, deleted_at=stamp, migration_status=None),
                        note='retire the volume as Cinder\'s volume_destroy does')
        for volume in volumes:
            # Its attachments go as in Cinder's detach; the loop below retires every other dependent row.
            detached, _status = cinder.detach_changes(volume, attachments.get(volume['id'], []), stamp, set_status=False)
            for change in detached:
                plan.change(CINDER, **change)
        for table in cinder.VOLUME_DEPENDENT_TABLES:
            if table == 'volume_attachment' or not schema.has(table, 'volume_id'):
                continue
            rows = snapshots if table == 'snapshots' else cinder.rows_by_volume(session, table, ids)
            for volume_id in ids:
                for row in rows.get(volume_id, []):
                    plan.change(CINDER, table, {'id': row['id']}, before=dict(deleted=row['deleted'], deleted_at=row['deleted_at']),
                                after=dict(deleted=1, deleted_at=stamp),
                                note='soft-delete the rows that go with a deleted volume')
        for volume_id in ids:
            for row in workers.get(volume_id, []):
                plan.change(CINDER, 'workers', {'id': row['id']}, action=DELETE, before=row,
                            note='remove the cleanup worker entry of the deleted volume')
        self._plan_quota(plan, session, volumes, snapshots)
        plan.warn('the backend objects of retired volumes were not touched: remove them on the storage backend '
                  'if they still exist')

    def _plan_quota(self, plan, session, volumes, snapshots):
        type_names = cinder.volume_type_names(session, [volume['volume_type_id'] for volume in volumes
                                                        if volume['volume_type_id']])
        decrements = cinder.quota_decrements(volumes, type_names, snapshots)
        usage = cinder.quota_usage_rows(session, decrements)
        for key in sorted(decrements):
            for row in usage.get(key, []):
                new_value = max(0, (row['in_use'] or 0) - decrements[key])
                if new_value != row['in_use']:
                    plan.change(CINDER, 'quota_usages', {'id': row['id']}, before=dict(in_use=row['in_use']),
                                after=dict(in_use=new_value), note='give back the quota usage of deleted volumes')

    # ------------------------------------------------------------- API path

    def plan_api(self):
        plan = Plan()
        storage = self.conn.block_storage
        services = cinder.api_volume_services(storage)
        volumes = [cinder.api_volume(storage, volume_id) for volume_id in self.volume_ids]
        bdms = self._nova_bdms([volume.id for volume in volumes]) if self.nova_cells() else {}
        for volume in volumes:
            attachments = cinder.api_live_attachments(storage, volume.id)
            owner = services.get((volume.host or '').split('#')[0])
            owner_up = owner is not None and owner.state == 'up'
            nova_users = bdms.get(volume.id, []) + nova.api_volume_users(
                self.conn.compute, volume.id, [attachment.instance for attachment in attachments])
            if self.params['status'] == 'deleted':
                self._plan_api_delete(plan, volume, attachments, nova_users, owner_up)
            else:
                self._plan_api_reset(plan, volume, attachments, nova_users, owner_up)
        return plan

    def _plan_api_reset(self, plan, volume, attachments, nova_users, owner_up):
        state = cinder.api_volume_state(volume, attachments)
        status, attach, migration = self.desired(state)
        stale = attachments if attach == 'detached' else []
        if (state['status'], state['attach_status'], state['migration_status']) == (status, attach, migration) \
                and not stale:
            plan.note('volume %s is already %s/%s' % (volume.id, status, attach))
            return
        self._check_from_status(plan, state)
        if cinder.is_migrating(volume.migration_status) and self.params['migration_status'] is None:
            plan.refuse('volume_migrating', 'volume %s is mid-migration (migration_status %s)'
                        % (volume.id, volume.migration_status), [state])
        if attach == 'detached' and nova_users:
            plan.refuse('nova_bdm_live', 'Nova still has a live block device mapping for volume %s on instance(s) %s'
                        % (volume.id, ', '.join(sorted(set(row['instance_uuid'] for row in nova_users)))), nova_users)
        if attach == 'attached' and not [a for a in attachments if not a.status.startswith('error')]:
            plan.refuse('no_live_attachment', 'volume %s has no live attachment, so it cannot be %s/attached'
                        % (volume.id, status), [state])
        storage = self.conn.block_storage
        resource = 'volumes/%s' % volume.id
        if stale and owner_up and status == 'available' and migration == state['migration_status']:
            # The clean way: Cinder terminates the connection on the backend and recomputes the status.
            for attachment in stale:
                plan.call('block-storage', 'DELETE /attachments/%s' % attachment.id, {'attachment_id': attachment.id},
                          (lambda a=attachment: storage.delete_attachment(a, ignore_missing=True)),
                          microversion='3.27', resource=resource,
                          note='stale attachment; its cinder-volume is up, so the backend export is removed too',
                          before=dict(status=state['status'], attachments=len(attachments)),
                          after=dict(status=status, attachments=0))
            return
        arguments = dict(status=status, attach_status=attach)
        if migration != state['migration_status']:
            arguments['migration_status'] = migration or 'none'
        why = 'one reset carrying status and attach_status together'
        if stale and not owner_up:
            why += '; the cinder-volume owning the volume is down, so attachments cannot be deleted cleanly'
        plan.call('block-storage', 'os-reset_status', arguments,
                  (lambda: storage.reset_volume_status(volume, **arguments)), microversion='3.0',
                  resource=resource, note=why,
                  before=dict(status=state['status'], attach_status=state['attach_status'],
                              migration_status=state['migration_status']),
                  after=dict(status=status, attach_status=attach, migration_status=migration))

    def _plan_api_delete(self, plan, volume, attachments, nova_users, owner_up):
        state = cinder.api_volume_state(volume, attachments)
        self._check_from_status(plan, state)
        if volume.status not in cinder.DELETABLE_STATUSES:
            plan.refuse('status_not_deletable', 'volume %s is %r; Cinder deletes only volumes in %s'
                        % (volume.id, volume.status, ', '.join(cinder.DELETABLE_STATUSES)), [state])
        if state['attach_status'] == 'attached' or nova_users:
            plan.refuse('volume_attached', 'volume %s is still attached' % volume.id, [state] + nova_users)
        if not owner_up:
            raise ApiUnsuitable('the cinder-volume service owning volume %s (%s) is not up, so a force delete '
                                'would never complete' % (volume.id, volume.host))
        storage = self.conn.block_storage
        plan.call('block-storage', 'DELETE /volumes/%s?force=true' % volume.id, {'volume_id': volume.id, 'force': True},
                  (lambda: storage.delete_volume(volume, force=True)), microversion='3.23',
                  resource='volumes/%s' % volume.id, note='force delete through the owning cinder-volume',
                  before=dict(status=volume.status), after=dict(status='deleted'))
        plan.warn('force delete also deletes the volume on its backend')

    def api_pending(self, plan):
        """The volumes not yet in the status their last call asked for, with the status they show."""
        expected = {}
        for call in plan.calls:
            expected[call.resource.split('/', 1)[1]] = call.after.get('status')
        pending = {}
        for volume_id in sorted(expected):
            volume = cinder.api_volume(self.conn.block_storage, volume_id, missing_ok=True)
            if volume is None:
                if expected[volume_id] != 'deleted':
                    raise ApiError('volume %s is gone after the API calls, not %s' % (volume_id, expected[volume_id]))
                continue
            if volume.status == expected[volume_id]:
                continue
            if volume.status == 'error_deleting':
                raise ApiError('volume %s is error_deleting after the API calls, not %s; check cinder-volume and retry'
                               % (volume_id, expected[volume_id]))
            pending['%s (%s, not %s)' % (volume_id, volume.status, expected[volume_id])] = volume.status
        return pending


def main():
    CinderVolumeState().run()


if __name__ == '__main__':
    main()
