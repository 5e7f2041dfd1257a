#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: cinder_service_rehost
short_description: Move what an old cinder-volume host owns to a new host@backend#pool
version_added: 0.1.0
description:
  - Re-homes every Cinder resource recorded under an old C(cinder-volume) host to a new
    C(host@backend#pool), in one transaction. It repairs the state a switch to multi-backend
    (C(enabled_backends)) or a host rename leaves behind. The volumes still name a service that no
    longer runs, so deleting, detaching or extending them hangs or fails, and deleting a server
    with such a volume attached waits for a service that never answers.
  - It changes C(volumes.host) (always with the pool of O(to_host)), C(volumes.service_uuid)
    (the new service's uuid) and C(volumes.cluster_name), the C(attached_host) of the
    moved volumes' live attachments where it names the old Cinder host (also of volumes that
    C(cinder-manage volume update_host) already moved to the new service), and the C(host) and
    C(cluster_name) of C(groups), C(consistencygroups) and C(image_volume_cache_entries).
  - C(cluster_name) becomes the new service's cluster with the pool of O(to_host) when the new
    service is clustered, and NULL when it is not (Cinder sends a resource's calls to its cluster
    when it has one).
  - Matching is exact and case-sensitive. O(from_host=controller1) matches C(controller1) and
    C(controller1#<pool>), never C(controller10), C(Controller1) or C(controller1@lvm); C(_) and C(%)
    are plain characters. C(cinder-manage volume update_host) matches case-insensitively with
    C(LIKE) and drops the pool; see the collection's docs/cinder-service-rehost.md.
  - O(disable_old) disables the old service rows in the same transaction (C(disabled_reason) names
    stackmender and the new host; C(updated_at), the heartbeat, is kept, as Cinder does).
    O(remove_old) soft-deletes them with Cinder's convention (C(deleted = 1), C(deleted_at)).
  - The plan is computed first. Check mode returns it, writes nothing and takes no lock. Applying
    plans under lock, at READ COMMITTED, reading every row it changes with C(SELECT ... FOR UPDATE)
    in the transaction that writes it, so the rows are written exactly as planned. A writer holding
    one of them makes the run wait at most O(lock_timeout). A second run of the same rehost waits
    for the first and then finds nothing left to do. The journal of before-images, which
    M(stackmender.openstack.journal_undo) can revert, is written before the commit. Rows of one
    shape are one statement per 500 rows, so thousands of volumes are a handful of statements.
  - Only the database path exists. Cinder has no API that changes a volume's host without moving
    its data. C(os-migrate_volume) copies the data and needs the old service alive. O(method=api)
    fails and says so; O(method=auto) uses the database.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
options:
  from_host:
    description:
      - The old host as recorded in C(volumes.host), without or with its pool. V(controller1) or
        V(controller1@lvm) also matches its C(#pool) forms; V(controller1@lvm#lvm) matches only
        that pool.
      - The old service rows are the live O(binary) rows whose C(host) is O(from_host) without the pool.
      - O(from_host) equal to the C(host@backend) of O(to_host) completes what
        C(cinder-manage volume update_host --newhost host@backend) leaves. Only the rows whose host is exactly
        that, without a pool, get the pool and the service's uuid; no service row is disabled or removed.
    type: str
    required: true
    version_added: 0.1.0
  to_host:
    description:
      - The new C(host@backend#pool). A C(cinder-volume) service C(host@backend) must exist and be up.
    type: str
    required: true
    version_added: 0.1.0
  binary:
    description:
      - The binary of the old and the new service rows.
    type: str
    default: cinder-volume
    version_added: 0.1.0
  disable_old:
    description:
      - Disable the old service rows (C(disabled = 1), C(disabled_reason), C(modified_at)) in the same transaction.
      - A row that is already disabled keeps its reason.
    type: bool
    default: true
    version_added: 0.1.0
  remove_old:
    description:
      - Soft-delete the old service rows (C(deleted = 1), C(deleted_at)), as C(cinder-manage service remove)
        does, but by exact host.
      - Refused (guard) while live volumes not moved by this run still belong to the old service.
    type: bool
    default: false
    version_added: 0.1.0
  volumes:
    description:
      - Move only these volumes (IDs) instead of everything under O(from_host).
      - Each must be live and either under O(from_host) or already at O(to_host). Their attachments and
        image cache entries move with them. A group or consistency group moves when all of its volumes
        under O(from_host) are in the list; a group that the list would split is refused (guard).
    type: list
    elements: str
    aliases: [volume]
    version_added: 0.1.0
  service_down_time:
    description:
      - Seconds after its last heartbeat (C(services.updated_at)) that a service counts as down.
        Set it to C(service_down_time) of your C(cinder.conf) (Cinder's default is 60).
    type: int
    default: 60
    version_added: 0.1.0
notes:
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - An old service row is up (a recent heartbeat). Two services would then claim the volumes.
  - The new service is down.
  - A volume to move is in a transitional status (C(creating), C(deleting), C(attaching),
    C(detaching), C(reserved), C(extending), ...) or mid-migration. Its operation was sent to the old
    service and will never finish; reset it first.
  - O(remove_old) while live volumes that this run does not move still belong to the old service.
  - O(volumes) would split a group or consistency group across hosts.
  - Never overridden, even with O(force), because nothing correct can be written. The new service
    C(host@backend) does not exist (or exists twice). O(from_host) and O(to_host) name the same
    service. A listed volume is missing, deleted or under another host.
  - The storage behind O(to_host) must be the one that holds the volumes (same array, pool or Ceph
    pool). The database cannot tell; a pool name that does not exist makes the scheduler skip the
    volumes' capacity. Check with C(openstack volume backend pool list).
seealso:
  - module: stackmender.openstack.journal_undo
  - module: stackmender.openstack.cinder_volume_state
'''

EXAMPLES = r'''
- name: Show what moving the legacy host's volumes to the new backend would change (nothing is written)
  stackmender.openstack.cinder_service_rehost:
    from_host: controller1
    to_host: controller1@lvm#lvm
    cinder_db: /etc/cinder/cinder.conf
  check_mode: true
  diff: true

- name: Move them, disable the old service row and soft-delete it
  stackmender.openstack.cinder_service_rehost:
    from_host: controller1
    to_host: controller1@lvm#lvm
    remove_old: true
    cinder_db:
      config_file: /etc/cinder/cinder.conf
  register: rehosted

- name: Move two volumes of a Ceph backend that was renamed
  stackmender.openstack.cinder_service_rehost:
    from_host: rbd:volumes@ceph
    to_host: rbd:cinder.volumes@cinder.volumes#cinder.volumes
    volumes:
      - 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11
      - 0d7cbb27-0f0f-4f0c-8c6f-1c2d4a5b6c7d
    cinder_db: "mysql+pymysql://cinder:{{ cinder_db_password }}@db.example.org/cinder?charset=utf8"

- name: Undo the move from its journal
  stackmender.openstack.journal_undo:
    journal: "{{ rehosted.journal }}"
    cinder_db: /etc/cinder/cinder.conf
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "3 volume(s) from controller1 to controller1@lvm#lvm (7 row change(s)), applied"
method:
  description: The path taken; always V(db).
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
      Rows of one shape are one statement per 500 rows, by id. C(keys_not_shown) counts keys left
      out of a long list.
    - When every volume under O(from_host) moves alike, the volumes are one statement by the
      condition they were read through (C(scoped=true)); it must touch exactly C(rows) rows, the
      ones C(keys) lists.
  returned: success
  type: list
  elements: dict
  sample:
    - kind: sql
      database: cinder_db
      table: volumes
      action: update
      statement: "UPDATE `volumes` SET `host` = %s, `service_uuid` = %s, `updated_at` = %s WHERE (`deleted` = %s)
        AND (`host` = BINARY %s OR LEFT(`host`, CHAR_LENGTH(%s)) = BINARY %s)"
      params: [controller1@lvm#lvm, 3f0c2d4e-1b2a-4c5d-8e9f-0a1b2c3d4e5f, "2026-11-22 03:04:05", 0,
               controller1, "controller1#", "controller1#"]
      rows: 2
      keys: [0d7cbb27-0f0f-4f0c-8c6f-1c2d4a5b6c7d, 6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11]
      scoped: true
before:
  description: Per database option, per C(table/id), the fields the plan changes, as they were.
  returned: success
  type: dict
  sample: {cinder_db: {"volumes/6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11": {host: "controller1#DEFAULT"}}}
after:
  description: The same fields as they are after the run (or would be, in check mode).
  returned: success
  type: dict
  sample: {cinder_db: {"volumes/6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11": {host: "controller1@lvm#lvm"}}}
diff:
  description: RV(before) and RV(after) in Ansible's diff format.
  returned: in diff mode, when something changes
  type: dict
journal:
  description: Path of the journal of before-images; V(null) in check mode or when nothing changed.
  returned: success
  type: str
  sample: /home/operator/.local/state/stackmender/journal/20261122T030405Z-cinder_service_rehost-1a2b3c4d.json
force:
  description: Whether O(force) was set.
  returned: success
  type: bool
forced_guards:
  description: The guards O(force) overrode, with their evidence.
  returned: when force overrode a guard
  type: list
  elements: dict
guards:
  description: On refusal, each guard that failed, its message and the evidence rows.
  returned: failure by a guard
  type: list
  elements: dict
  sample:
    - guard: old_service_up
      message: "the old cinder-volume service controller1 is up (last heartbeat 4 s ago)"
      evidence: [{id: 3, host: controller1, binary: cinder-volume, disabled: 0, updated_at: "2026-11-22 03:04:01",
                  heartbeat_age: 4}]
notes:
  description: What was already in the desired state, or why nothing was done.
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
from ansible_collections.stackmender.openstack.plugins.module_utils.services import rehost
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, normalize, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import RemediationModule, db_only
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import uuid_list

CINDER = 'cinder_db'
NO_REHOST_API = ('Cinder has no API that changes the host of a volume without moving its data (os-migrate_volume '
                 'copies the data and needs the old cinder-volume service alive)')
SERVICE_SHOWN = ('id', 'uuid', 'host', 'binary', 'cluster_name', 'disabled', 'disabled_reason', 'updated_at',
                 'heartbeat_age', 'deleted')
EVIDENCE_LIMIT = 50


def _shown(row, columns):
    return dict((column, row[column]) for column in columns if column in row)


class CinderServiceRehost(RemediationModule):
    module_name = 'stackmender.openstack.cinder_service_rehost'
    required_databases = (CINDER,)
    method_policy = db_only(NO_REHOST_API)
    # 100,000 volumes are read and planned under the locks of the write: no row is re-checked.
    plans_under_lock = True
    argument_spec = dict(
        from_host=dict(type='str', required=True),
        to_host=dict(type='str', required=True),
        binary=dict(type='str', default='cinder-volume'),
        disable_old=dict(type='bool', default=True),
        remove_old=dict(type='bool', default=False),
        volumes=dict(type='list', elements='str', aliases=['volume']),
        service_down_time=dict(type='int', default=60),
    )

    def validate(self):
        # The same checks as the cinder_multibackend_migration role's (multibackend_invalid_moves).
        self.move = rehost.Move(self.params['from_host'], self.params['to_host'])
        if not self.params['binary']:
            raise InputError('binary must not be empty')
        if self.params['service_down_time'] <= 0:
            raise InputError('service_down_time must be a positive number of seconds')
        self.volume_ids = uuid_list(self.params['volumes'], 'volumes')

    # -------------------------------------------------------------- reading

    def _columns(self, table, wanted):
        """The wanted columns this release's table has."""
        return [column for column in wanted if self.cinder_schema.has(table, column)]

    def _read_volumes(self, plan):
        columns = self._columns('volumes', rehost.VOLUME_COLUMNS)
        if not self.volume_ids:
            volumes, self.scopes['volumes'] = rehost.read_under(self.db, self.move, 'volumes', columns)
            return volumes
        moving, already, elsewhere = rehost.sort_listed(self.move, rehost.read_listed_volumes(self.db, columns,
                                                                                              self.volume_ids))
        for row in already:
            plan.note('volume %s is already at %s' % (row['id'], self.move.to_host))
        if elsewhere:
            plan.refuse('volume_elsewhere', '%d listed volume(s) are deleted or under another host than %s '
                        '(check the list)' % (len(elsewhere), self.move.from_host), elsewhere, never=True)
            plan.stop_if_never_overridden()
        return moving

    def _read_owned(self, plan, table, moving_ids):
        """Groups, consistency groups and image cache entries under from_host that move with the volumes."""
        if not self.cinder_schema.has(table, 'host'):
            return []
        rows, _scope = rehost.read_under(self.db, self.move, table, self._columns(table, rehost.OWNED_COLUMNS),
                                         live=self.cinder_schema.has(table, 'deleted'))
        if not self.volume_ids:
            return rows
        if table == 'image_volume_cache_entries':
            return [row for row in rows if row['volume_id'] in moving_ids]
        link = 'group_id' if table == 'groups' else 'consistencygroup_id'
        if not self.cinder_schema.has('volumes', link):
            return []
        members = rehost.read_group_members(self.db, link, [row['id'] for row in rows])
        selected, splits = rehost.split_groups(self.move, rows, members, moving_ids)
        for split in splits:
            row, inside, left = split['row'], split['inside'], split['left']
            plan.refuse('group_split', '%s %s would be split: volume(s) %s move but %s stay under %s'
                        % (table, row['id'], ', '.join(volume['id'] for volume in inside),
                           ', '.join(volume['id'] for volume in left), self.move.from_host),
                        [dict(table=table, id=row['id'], host=row['host'])] + left[:EVIDENCE_LIMIT])
        return selected

    # ------------------------------------------------------------- planning

    def plan_db(self):
        plan = Plan(locked=self.planning_under_lock)
        self.scopes = {}
        self.db = self.session(CINDER)
        self.cinder_schema = schema = self.schema(CINDER, 'cinder')
        schema.require('volumes', ('id', 'host', 'status', 'migration_status', 'deleted', 'updated_at'),
                       purpose='find and move the volumes of the old host')
        schema.require('services', ('id', 'host', 'binary', 'disabled', 'disabled_reason', 'updated_at', 'deleted',
                                    'deleted_at'), purpose='check and retire the old service')
        schema.require('volume_attachment', ('id', 'volume_id', 'attached_host', 'deleted', 'updated_at'),
                       purpose='rewrite attachments that name the old host')
        for column, table in (('service_uuid', 'volumes'), ('uuid', 'services')):
            if not schema.has(table, column):
                plan.note('this cinder schema has no %s.%s; service_uuid is left alone' % (table, column))
        move, binary = self.move, self.params['binary']
        services = cinder.live_services(self.db, binary)
        # The rows this run retires are read again under lock; the other services only feed the guards,
        # and their heartbeats must not wait for this run.
        old_services = cinder.live_services(self.db, binary, host=move.old_service_host, lock=True)
        if not old_services and not move.fill_pool:
            plan.note('no live %s service row %s (missing or already removed)' % (binary, move.old_service_host))
        if move.fill_pool:
            old_services = []
            plan.note('from_host %s is the new service itself: only its rows without a pool are completed, and no '
                      'service row is disabled or removed' % move.from_host)
        new_services = [row for row in services if row['host'] == move.new_service_host]

        volumes = self._read_volumes(plan)
        moving_ids = set(volume['id'] for volume in volumes)
        attachments = rehost.read_attachments(self.db, move, self._columns('volume_attachment', rehost.ATTACHMENT_COLUMNS),
                                              moving_ids, bool(self.volume_ids))
        owned = dict((table, self._read_owned(plan, table, moving_ids)) for table in rehost.OWNED_TABLES)
        # As a plan holds it: 100,000 rows then share one text instead of each converting a datetime.
        stamp = normalize(now())
        if volumes or attachments or any(owned.values()):
            new_service = self._new_service(plan, new_services, services)
            self._plan_moves(plan, volumes, attachments, owned, new_service, stamp)
        retiring = rehost.service_changes(move, old_services, self.params['disable_old'], self.params['remove_old'],
                                          stamp, schema.has('services', 'modified_at'))
        for row, before, after in retiring:
            plan.change(CINDER, 'services', {'id': row['id']}, before=before, after=after,
                        expect=dict(host=row['host'], binary=row['binary'], updated_at=row['updated_at']),
                        note='retire the old service (%s)' % ' and '.join(
                            verb for verb, wanted in (('disable', 'disabled' in after), ('soft-delete', 'deleted' in after))
                            if wanted))
        retired = [row['id'] for row, _before, _after in retiring]
        for row in old_services:
            if row['id'] not in retired:
                plan.note('old service %s (%s, id %s) is already disabled' % (row['host'], row['binary'], row['id']))
        if self.params['remove_old'] and old_services:
            self._guard_remaining(plan, old_services, moving_ids)
        if not plan.changes:
            plan.note('nothing under %s to move (no live volume%s, attachment, group, consistency group or image '
                      'cache entry) and no old %s service row to %s' % (
                          move.from_host, ' of the list' if self.volume_ids else '', binary, self._service_verbs()))
            return plan
        self._guard_services(plan, old_services, new_services)
        busy = rehost.busy_volumes(volumes)
        if busy:
            plan.refuse('volume_transitional', '%d volume(s) under %s are in a transitional state (%s): their operation '
                        'was sent to the old service and will never finish; reset them first'
                        % (len(busy), move.from_host, ', '.join(rehost.busy_states(busy))),
                        [_shown(volume, ('id', 'host', 'status', 'attach_status', 'migration_status'))
                         for volume in busy[:EVIDENCE_LIMIT]])
        if attachments or [volume for volume in volumes if volume['status'] == 'in-use']:
            plan.warn('if the storage behind %s is not the very same as before, refresh the connection info of the '
                      'attached volumes (nova-manage volume_attachment refresh) before the next hard reboot'
                      % move.to_host)
        return plan

    def _plan_moves(self, plan, volumes, attachments, owned, new_service, stamp):
        move = self.move
        updates = rehost.volume_updates(move, volumes, new_service, stamp,
                                        self.cinder_schema.has('volumes', 'service_uuid'),
                                        self.cinder_schema.has('volumes', 'cluster_name'))
        # Every volume the condition read changes the same columns: one statement by that condition.
        scope = self.scopes.get('volumes') if len(updates) == 1 else None
        for after, rows in updates:
            plan.updates(CINDER, 'volumes', 'id', rows, after, scope=scope,
                         note='move the volume from %s to %s' % (move.from_host, move.to_host))
        for key, before, after, expect in rehost.attachment_changes(move, attachments, stamp):
            plan.change(CINDER, 'volume_attachment', {'id': key}, before=before, after=after, expect=expect,
                        note='the attachment names the old Cinder host')
        for table in rehost.OWNED_TABLES:
            for key, before, after, expect in rehost.owned_changes(move, owned[table], new_service, stamp):
                plan.change(CINDER, table, {'id': key}, before=before, after=after, expect=expect,
                            note='%s under the old host moves with its volumes' % table)

    def _service_verbs(self):
        wanted = (('disable', self.params['disable_old']), ('remove', self.params['remove_old']))
        verbs = [verb for verb, chosen in wanted if chosen]
        return ' or '.join(verbs) or 'change'

    def _new_service(self, plan, new_services, services):
        """The one live new service, or a refusal force cannot override: there is nothing right to write."""
        problem = rehost.new_service_problem(new_services, services, self.params['binary'], self.move.new_service_host)
        if problem is None:
            return new_services[0]
        message, evidence = problem
        plan.refuse('new_service_missing', message, [_shown(row, SERVICE_SHOWN) for row in evidence][:EVIDENCE_LIMIT],
                    never=True)
        plan.stop_if_never_overridden()
        return None  # not reached: the refusal above stops the run

    # --------------------------------------------------------------- guards

    def _guard_services(self, plan, old_services, new_services):
        down_time, binary = self.params['service_down_time'], self.params['binary']
        alive = [row for row in old_services if cinder.service_is_up(row, down_time)]
        if alive:
            plan.refuse('old_service_up', 'the old %s service %s is up (last heartbeat %s s ago, service_down_time %d): '
                        'stop it first, two services must not own the same volumes'
                        % (binary, self.move.old_service_host,
                           ', '.join(str(row['heartbeat_age']) for row in alive), down_time),
                        [_shown(row, SERVICE_SHOWN) for row in alive])
        dead = [row for row in new_services if not cinder.service_is_up(row, down_time)]
        if dead:
            plan.refuse('new_service_down', 'the new %s service %s is down (last heartbeat %s s ago, service_down_time '
                        '%d): nothing would serve the moved volumes'
                        % (binary, self.move.new_service_host,
                           ', '.join(str(row['heartbeat_age']) for row in dead), down_time),
                        [_shown(row, SERVICE_SHOWN) for row in dead])
        disabled = [row for row in new_services if row['disabled']]
        if disabled:
            plan.warn('the new service %s is disabled (%s): it serves the moved volumes, but the scheduler places no '
                      'new ones there' % (self.move.new_service_host, disabled[0]['disabled_reason'] or 'no reason given'))

    def _guard_remaining(self, plan, old_services, moving_ids):
        """remove_old must not orphan volumes this run leaves with the old service."""
        uuids = [row['uuid'] for row in old_services if row.get('uuid')]
        remaining = [row for row in rehost.read_service_volumes(self.db, self.move.old_service_host, uuids,
                                                                self.cinder_schema.has('volumes', 'service_uuid'))
                     if row['id'] not in moving_ids]
        if remaining:
            plan.refuse('old_service_still_owns', 'remove_old: %d live volume(s) not moved by this run still belong to '
                        'the old service %s' % (len(remaining), self.move.old_service_host),
                        remaining[:EVIDENCE_LIMIT])

    def describe(self, plan):
        count = len([change for change in plan.changes if change.table == 'volumes'])
        return '%d volume(s) from %s to %s (%d row change(s))' % (
            count, self.move.from_host, self.move.to_host, len(plan.changes))


def main():
    CinderServiceRehost().run()


if __name__ == '__main__':
    main()
