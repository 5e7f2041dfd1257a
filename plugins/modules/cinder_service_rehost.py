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
'''

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, normalize, now, quote_identifier
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import RemediationModule, db_only
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import (
    chunks,
    placeholders,
    uuid_list,
)

CINDER = 'cinder_db'
NO_REHOST_API = ('Cinder has no API that changes the host of a volume without moving its data (os-migrate_volume '
                 'copies the data and needs the old cinder-volume service alive)')
# An operation in flight was sent to the old service and will never finish there.
BLOCKING_STATUSES = cinder.REHOST_BLOCKING_STATUSES
SERVICE_SHOWN = ('id', 'uuid', 'host', 'binary', 'cluster_name', 'disabled', 'disabled_reason', 'updated_at',
                 'heartbeat_age', 'deleted')
EVIDENCE_LIMIT = 50
REASON_LENGTH = 255
# Tables whose rows follow the volumes, with how each is selected and kept (soft delete or not).
OWNED_TABLES = ('groups', 'consistencygroups', 'image_volume_cache_entries')


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

    # --------------------------------------------------------------- inputs

    def validate(self):
        self.from_host = self.params['from_host']
        self.to_host = self.params['to_host']
        # The same checks as the cinder_multibackend_migration role's (multibackend_invalid_moves).
        self.to_pool = cinder.check_rehost_hosts(self.from_host, self.to_host)
        self.old_service_host = cinder.service_host(self.from_host)
        self.new_service_host = cinder.service_host(self.to_host)
        # from_host naming the new service itself, without a pool, completes what cinder-manage
        # volume update_host leaves: the pool-less rows get the pool and the service's uuid.
        self.fill_pool = cinder.fills_pool(self.from_host, self.to_host)
        if not self.params['binary']:
            raise InputError('binary must not be empty')
        if self.params['service_down_time'] <= 0:
            raise InputError('service_down_time must be a positive number of seconds')
        self.volume_ids = uuid_list(self.params['volumes'], 'volumes')

    # -------------------------------------------------------------- reading

    def _columns(self, table, wanted):
        """The wanted columns this release's table has."""
        return [column for column in wanted if self.cinder_schema.has(table, column)]

    def _matches(self, value):
        return cinder.rehost_matches(value, self.from_host, self.to_host)

    @staticmethod
    def _select(columns):
        return ', '.join(quote_identifier(column) for column in columns)

    def _read_under(self, table, columns, live=True):
        """Rows of ``table`` whose host is from_host or one of its pools (checked byte for byte)."""
        where = cinder.host_condition('host')
        if live:
            where = 'deleted = 0 AND ' + where
        params = cinder.host_condition_params(self.from_host)
        rows = self.db.query('SELECT %s FROM %s WHERE %s ORDER BY id'
                             % (self._select(columns), quote_identifier(table), where), params, lock=True)
        matching = [row for row in rows if self._matches(row['host'])]
        if live and len(matching) == len(rows):
            # The condition matched these rows and no other: it can write them (see plan.uniform_updates).
            self.scopes[table] = (((('deleted', 'equals'),), cinder.host_scope('host')), [0] + params)
        return matching

    def _read_volumes(self):
        columns = self._columns('volumes', ('id', 'host', 'status', 'attach_status', 'migration_status', 'deleted',
                                            'updated_at', 'service_uuid', 'cluster_name'))
        if not self.volume_ids:
            return self._read_under('volumes', columns)
        found = {}
        for chunk in chunks(self.volume_ids):
            for row in self.db.query('SELECT %s FROM volumes WHERE id IN (%s)'
                                     % (self._select(columns), placeholders(len(chunk))),
                                     chunk, lock=True):
                found[row['id'].lower()] = row
        missing = [volume_id for volume_id in self.volume_ids if volume_id not in found]
        if missing:
            raise InputError('volume(s) not found in the cinder database %s: %s'
                             % (self.db.target.display(), ', '.join(missing)), missing=missing)
        moving, elsewhere = [], []
        for volume_id in self.volume_ids:
            row = found[volume_id]
            if row['deleted']:
                elsewhere.append(dict(id=row['id'], host=row['host'], deleted=row['deleted'], problem='deleted'))
            elif self._matches(row['host']):
                moving.append(row)
            elif row['host'] == self.to_host:
                self.plan.note('volume %s is already at %s' % (row['id'], self.to_host))
            else:
                elsewhere.append(dict(id=row['id'], host=row['host'], problem='neither under from_host nor at to_host'))
        if elsewhere:
            self.plan.refuse('volume_elsewhere', '%d listed volume(s) are deleted or under another host than %s '
                             '(check the list)' % (len(elsewhere), self.from_host), elsewhere, never=True)
            self.plan.stop_if_never_overridden()
        return moving

    def _read_attachments(self, moving_ids):
        """Live attachments naming the old host, of the volumes that move now or (without a list)
        that already moved to the new service, as after cinder-manage volume update_host."""
        columns = self._columns('volume_attachment', ('id', 'volume_id', 'instance_uuid', 'attached_host',
                                                      'attach_status', 'deleted', 'updated_at'))
        rows = self.db.query('SELECT %s FROM volume_attachment WHERE deleted = 0 AND %s ORDER BY id'
                             % (self._select(columns), cinder.host_condition('attached_host')),
                             cinder.host_condition_params(self.from_host), lock=True)
        rows = [row for row in rows if self._matches(row['attached_host'])]
        others = sorted(set(row['volume_id'] for row in rows if row['volume_id'] not in moving_ids))
        moved_before = set()
        if others and not self.volume_ids:
            for chunk in chunks(others):
                for volume in self.db.query('SELECT id, host FROM volumes WHERE deleted = 0 AND id IN (%s)'
                                            % placeholders(len(chunk)), chunk):
                    if cinder.host_matches(volume['host'], self.new_service_host):
                        moved_before.add(volume['id'])
        return [row for row in rows if row['volume_id'] in moving_ids or row['volume_id'] in moved_before]

    def _read_owned(self, table, moving_ids):
        """Groups, consistency groups and image cache entries under from_host that move with the volumes."""
        if not self.cinder_schema.has(table, 'host'):
            return []
        live = self.cinder_schema.has(table, 'deleted')
        wanted = ('id', 'host', 'cluster_name', 'status', 'deleted', 'updated_at', 'volume_id', 'image_id')
        rows = self._read_under(table, self._columns(table, wanted), live=live)
        if not self.volume_ids:
            return rows
        if table == 'image_volume_cache_entries':
            return [row for row in rows if row['volume_id'] in moving_ids]
        link = 'group_id' if table == 'groups' else 'consistencygroup_id'
        if not self.cinder_schema.has('volumes', link):
            return []
        members = {}
        group_ids = [row['id'] for row in rows]
        for chunk in chunks(group_ids):
            for volume in self.db.query('SELECT id, host, %s AS group_id FROM volumes WHERE deleted = 0 AND %s IN (%s)'
                                        % (quote_identifier(link), quote_identifier(link), placeholders(len(chunk))),
                                        chunk):
                members.setdefault(volume['group_id'], []).append(volume)
        selected = []
        for row in rows:
            inside = [volume for volume in members.get(row['id'], []) if volume['id'] in moving_ids]
            left = [volume for volume in members.get(row['id'], []) if volume['id'] not in moving_ids
                    and self._matches(volume['host'])]
            if not inside:
                continue
            if left:
                self.plan.refuse('group_split', '%s %s would be split: volume(s) %s move but %s stay under %s'
                                 % (table, row['id'], ', '.join(volume['id'] for volume in inside),
                                    ', '.join(volume['id'] for volume in left), self.from_host),
                                 [dict(table=table, id=row['id'], host=row['host'])] + left[:EVIDENCE_LIMIT])
            selected.append(row)
        return selected

    # ------------------------------------------------------------- planning

    def plan_db(self):
        self.plan = plan = Plan(locked=self.planning_under_lock)
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
        services = cinder.live_services(self.db, self.params['binary'])
        # The rows this run retires are read again under lock; the other services only feed the guards,
        # and their heartbeats must not wait for this run.
        old_services = cinder.live_services(self.db, self.params['binary'], host=self.old_service_host, lock=True)
        if not old_services and not self.fill_pool:
            plan.note('no live %s service row %s (missing or already removed)'
                      % (self.params['binary'], self.old_service_host))
        if self.fill_pool:
            old_services = []
            plan.note('from_host %s is the new service itself: only its rows without a pool are completed, and no '
                      'service row is disabled or removed' % self.from_host)
        new_services = [row for row in services if row['host'] == self.new_service_host]

        volumes = self._read_volumes()
        moving_ids = set(volume['id'] for volume in volumes)
        attachments = self._read_attachments(moving_ids)
        owned = dict((table, self._read_owned(table, moving_ids)) for table in OWNED_TABLES)
        # As a plan holds it: 100,000 rows then share one text instead of each converting a datetime.
        stamp = normalize(now())
        if volumes or attachments or any(owned.values()):
            new_service = self._new_service(new_services, services)
            self._plan_volumes(plan, volumes, new_service, stamp)
            self._plan_attachments(plan, attachments, stamp)
            for table in OWNED_TABLES:
                self._plan_owned(plan, table, owned[table], new_service, stamp)
        self._plan_services(plan, old_services, moving_ids, stamp)
        if not plan.changes:
            plan.note('nothing under %s to move (no live volume%s, attachment, group, consistency group or image '
                      'cache entry) and no old %s service row to %s' % (
                          self.from_host, ' of the list' if self.volume_ids else '', self.params['binary'],
                          self._service_verbs()))
            return plan
        self._guard_services(plan, old_services, new_services)
        self._guard_volumes(plan, volumes)
        if attachments or [volume for volume in volumes if volume['status'] == 'in-use']:
            plan.warn('if the storage behind %s is not the very same as before, refresh the connection info of the '
                      'attached volumes (nova-manage volume_attachment refresh) before the next hard reboot'
                      % self.to_host)
        return plan

    def _service_verbs(self):
        wanted = (('disable', self.params['disable_old']), ('remove', self.params['remove_old']))
        verbs = [verb for verb, chosen in wanted if chosen]
        return ' or '.join(verbs) or 'change'

    def _new_service(self, new_services, services):
        """The one live new service, or a refusal force cannot override: there is nothing right to write."""
        if len(new_services) == 1:
            return new_services[0]
        if not new_services:
            message = ('no live %s service %s exists: start it (or fix to_host) first; its uuid is what the volumes '
                       'must point at' % (self.params['binary'], self.new_service_host))
            evidence = [_shown(row, SERVICE_SHOWN) for row in services][:EVIDENCE_LIMIT]
        else:
            message = '%d live %s service rows claim %s; remove the stale one first' % (
                len(new_services), self.params['binary'], self.new_service_host)
            evidence = [_shown(row, SERVICE_SHOWN) for row in new_services]
        self.plan.refuse('new_service_missing', message, evidence, never=True)
        self.plan.stop_if_never_overridden()
        return None  # not reached: the refusal above stops the run

    def _cluster_value(self, new_service):
        cluster = new_service.get('cluster_name')
        return '%s#%s' % (cluster, self.to_pool) if cluster else None

    def _plan_volumes(self, plan, volumes, new_service, stamp):
        cluster = self._cluster_value(new_service)
        service_uuid = new_service.get('uuid')
        targets = [('host', self.to_host)]
        if self.cinder_schema.has('volumes', 'service_uuid') and 'uuid' in new_service:
            targets.append(('service_uuid', service_uuid))
        if self.cinder_schema.has('volumes', 'cluster_name'):
            targets.append(('cluster_name', cluster))
        shapes = {}
        for volume in volumes:
            changed = tuple(column for column, value in targets if volume[column] != value)
            shapes.setdefault(changed, []).append(volume)
        # Every volume the condition read changes the same columns: one statement by that condition.
        scope = self.scopes.get('volumes') if len(shapes) == 1 else None
        # Rows that change the same columns are one statement: keep them together, each shape in id order.
        for changed in sorted(shapes, key=lambda columns: sorted(columns + ('updated_at',))):
            after = dict((column, value) for column, value in targets if column in changed)
            after['updated_at'] = stamp
            rows = []
            for volume in sorted(shapes[changed], key=lambda volume: volume['id']):
                before = {column: volume[column] for column in changed}
                # Normalized here, one value, rather than by the plan, which tests every value of the row.
                before['updated_at'] = normalize(volume['updated_at'])
                rows.append((volume['id'], before, {'deleted': 0, 'status': volume['status'],
                                                    'migration_status': volume['migration_status']}))
            plan.updates(CINDER, 'volumes', 'id', rows, after, scope=scope,
                         note='move the volume from %s to %s' % (self.from_host, self.to_host))

    def _shaped(self, old_value):
        """The new host for a row that named the old one: with a pool if it had one."""
        return self.to_host if '#' in old_value else self.new_service_host

    def _plan_attachments(self, plan, attachments, stamp):
        attachments = [row for row in attachments if self._shaped(row['attached_host']) != row['attached_host']]
        for row in sorted(attachments, key=lambda row: (self._shaped(row['attached_host']), row['id'])):
            plan.change(CINDER, 'volume_attachment', {'id': row['id']},
                        before=dict(attached_host=row['attached_host'], updated_at=row['updated_at']),
                        after=dict(attached_host=self._shaped(row['attached_host']), updated_at=stamp),
                        expect=dict(deleted=0, volume_id=row['volume_id']),
                        note='the attachment names the old Cinder host')

    def _plan_owned(self, plan, table, rows, new_service, stamp):
        cluster = self._cluster_value(new_service)
        changes = []
        for row in rows:
            after = {}
            if self._shaped(row['host']) != row['host']:
                after['host'] = self._shaped(row['host'])
            if 'cluster_name' in row and row['cluster_name'] != cluster:
                after['cluster_name'] = cluster
            if not after:
                continue
            before = dict((column, row[column]) for column in after)
            expect = {}
            if 'updated_at' in row:
                before['updated_at'] = row['updated_at']
                after['updated_at'] = stamp
            if 'deleted' in row:
                expect['deleted'] = 0
            changes.append((sorted((column, repr(value)) for column, value in after.items() if column != 'updated_at'),
                            row, before, after, expect))
        for _shape, row, before, after, expect in sorted(changes, key=lambda item: (item[0], item[1]['id'])):
            plan.change(CINDER, table, {'id': row['id']}, before=before, after=after, expect=expect,
                        note='%s under the old host moves with its volumes' % table)

    def _plan_services(self, plan, old_services, moving_ids, stamp):
        reason = ('stackmender: rehosted to %s' % self.to_host)[:REASON_LENGTH]
        has_modified_at = self.cinder_schema.has('services', 'modified_at')
        for row in old_services:
            after = {}
            if self.params['disable_old'] and not row['disabled']:
                after.update(disabled=1, disabled_reason=reason)
                if has_modified_at:
                    # Cinder's own disable stamps modified_at and keeps updated_at, the heartbeat.
                    after['modified_at'] = stamp
            if self.params['remove_old']:
                after.update(deleted=1, deleted_at=stamp)
            if not after:
                plan.note('old service %s (%s, id %s) is already disabled' % (row['host'], row['binary'], row['id']))
                continue
            before = dict((column, row[column]) for column in after)
            plan.change(CINDER, 'services', {'id': row['id']}, before=before, after=after,
                        expect=dict(host=row['host'], binary=row['binary'], updated_at=row['updated_at']),
                        note='retire the old service (%s)' % ' and '.join(
                            verb for verb, wanted in (('disable', 'disabled' in after), ('soft-delete', 'deleted' in after))
                            if wanted))
        if self.params['remove_old'] and old_services:
            self._guard_remaining(plan, old_services, moving_ids)

    # --------------------------------------------------------------- guards

    def _guard_services(self, plan, old_services, new_services):
        down_time = self.params['service_down_time']
        alive = [row for row in old_services if cinder.service_is_up(row, down_time)]
        if alive:
            plan.refuse('old_service_up', 'the old %s service %s is up (last heartbeat %s s ago, service_down_time %d): '
                        'stop it first, two services must not own the same volumes'
                        % (self.params['binary'], self.old_service_host,
                           ', '.join(str(row['heartbeat_age']) for row in alive), down_time),
                        [_shown(row, SERVICE_SHOWN) for row in alive])
        dead = [row for row in new_services if not cinder.service_is_up(row, down_time)]
        if dead:
            plan.refuse('new_service_down', 'the new %s service %s is down (last heartbeat %s s ago, service_down_time '
                        '%d): nothing would serve the moved volumes'
                        % (self.params['binary'], self.new_service_host,
                           ', '.join(str(row['heartbeat_age']) for row in dead), down_time),
                        [_shown(row, SERVICE_SHOWN) for row in dead])
        disabled = [row for row in new_services if row['disabled']]
        if disabled:
            plan.warn('the new service %s is disabled (%s): it serves the moved volumes, but the scheduler places no '
                      'new ones there' % (self.new_service_host, disabled[0]['disabled_reason'] or 'no reason given'))

    def _guard_volumes(self, plan, volumes):
        busy = [volume for volume in volumes
                if volume['status'] in BLOCKING_STATUSES or cinder.is_migrating(volume['migration_status'])]
        if busy:
            plan.refuse('volume_transitional', '%d volume(s) under %s are in a transitional state (%s): their operation '
                        'was sent to the old service and will never finish; reset them first'
                        % (len(busy), self.from_host, ', '.join(sorted(set(
                            volume['status'] if volume['status'] in BLOCKING_STATUSES else
                            'migration %s' % volume['migration_status'] for volume in busy)))),
                        [_shown(volume, ('id', 'host', 'status', 'attach_status', 'migration_status'))
                         for volume in busy[:EVIDENCE_LIMIT]])

    def _guard_remaining(self, plan, old_services, moving_ids):
        """remove_old must not orphan volumes this run leaves with the old service."""
        remaining = [row for row in self._read_under_service(old_services) if row['id'] not in moving_ids]
        if remaining:
            plan.refuse('old_service_still_owns', 'remove_old: %d live volume(s) not moved by this run still belong to '
                        'the old service %s' % (len(remaining), self.old_service_host),
                        remaining[:EVIDENCE_LIMIT])

    def _read_under_service(self, old_services):
        """Live volumes of the old service: its host and every pool of it, or its uuid."""
        has_uuid = self.cinder_schema.has('volumes', 'service_uuid')
        rows = self.db.query('SELECT id, host%s FROM volumes WHERE deleted = 0 AND %s ORDER BY id'
                             % (', service_uuid' if has_uuid else '', cinder.host_condition('host')),
                             cinder.host_condition_params(self.old_service_host))
        found = dict((row['id'], row) for row in rows if cinder.host_matches(row['host'], self.old_service_host))
        if has_uuid:
            uuids = [row['uuid'] for row in old_services if row.get('uuid')]
            if uuids:
                for row in self.db.query('SELECT id, host, service_uuid FROM volumes WHERE deleted = 0 AND '
                                         'service_uuid IN (%s) ORDER BY id' % placeholders(len(uuids)), uuids):
                    found.setdefault(row['id'], row)
        return [found[key] for key in sorted(found)]

    def describe(self, plan):
        count = len([change for change in plan.changes if change.table == 'volumes'])
        return '%d volume(s) from %s to %s (%d row change(s))' % (
            count, self.from_host, self.to_host, len(plan.changes))


def main():
    CinderServiceRehost().run()


if __name__ == '__main__':
    main()
