#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: nova_instance_delete
short_description: Delete Nova instances whose compute host is gone, through the API or in the databases
version_added: 0.1.0
description:
  - Deletes one or many Nova instances and every record that belongs to them. It is the repair for
    instances stuck on a compute host that died, and the safe form of the hand SQL that deletes one.
  - With O(method=api) (or V(auto) when a cloud is configured) it uses the Compute API through
    openstacksdk. It calls C(DELETE /servers/{id}) for each instance and, with O(wait), waits up to
    O(timeout) seconds until Nova no longer returns it. When the instance's C(nova-compute) is down, Nova
    deletes the instance itself without the compute host (its local delete). It releases the ports, deletes the
    Cinder attachments, deletes the placement allocations and retires the database rows.
  - An instance in C(vm_state) C(resized) is first reset to C(error) with C(os-resetState). Otherwise Nova's
    delete confirms the resize on the source compute and waits for a host that does not answer.
  - The API path refuses an instance whose delete Nova already handed to a compute that Nova still counts
    as up. Nova ignores a repeated delete then. Wait until the service is down (C(service_down_time)),
    or force the service down, and run again.
  - With O(method=db) it writes the databases the way Nova's local delete does. In the cell database the
    instance row gets C(vm_state=deleted), no task, C(progress=0), C(terminated_at) and C(deleted_at), and
    C(deleted) takes the row's id. The live rows of its child tables are soft-deleted as Nova's
    C(instance_destroy) does. These are C(security_group_instance_association), C(instance_info_caches),
    C(instance_metadata), C(instance_faults), C(instance_extra), C(instance_system_metadata),
    C(block_device_mapping), C(migrations), C(virtual_interfaces) and C(instance_id_mappings). Its
    C(console_auth_tokens) and C(tags) are deleted, as C(instance_destroy) deletes them (the journal keeps
    each row, so M(stackmender.openstack.journal_undo) puts them back). Its C(instance_actions) stay, as in Nova.
  - With O(nova_api_db) the instance mapping gets C(queued_for_delete=1).
  - With O(placement_db) the instance's allocations and its consumer are deleted, as placement's
    C(DELETE /allocations/{consumer}) does. That call does not change provider generations, and neither does this.
  - With O(cinder_db) each live attachment of the instance is marked detached and soft-deleted, with its
    C(attachment_specs), as Cinder's attachment delete does. The volume's C(attached_mode) admin metadata
    is soft-deleted. The volume becomes C(available) and C(detached) when no attachment remains, and
    C(in-use) when another attachment stays. Volumes with C(delete_on_termination) are not deleted. The
    result warns about them.
  - An instance that is already deleted gets only the leftovers of an earlier incomplete delete cleaned
    up. These are live child rows, the mapping, allocations and attachments. A second run reports no change.
  - O(purge=true) (database path only) deletes the rows instead, as Nova's C(instance_destroy) with
    C(hard_delete) does. That covers the instance, every row of its child tables (soft-deleted or not),
    its actions and their events. In C(nova_api) it deletes the instance mapping, the request spec and the
    server group membership, as C(nova-manage db archive_deleted_rows) does after archiving. The rows are
    not copied to the C(shadow_*) tables. The journal keeps each deleted row whole, so
    M(stackmender.openstack.journal_undo) can put it back.
  - The plan is computed first. Check mode returns it and writes nothing. Applying runs exactly that
    plan in one transaction per database, re-reading and locking every row, and writes a journal of
    before-images that M(stackmender.openstack.journal_undo) can revert.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
  - stackmender.openstack.safety
  - stackmender.openstack.attributes
requirements:
  - openstacksdk >= 1.0.0 (for the API path)
options:
  instance:
    description:
      - UUID of the instance to delete, or a list of UUIDs deleted together.
    type: list
    elements: str
    required: true
    aliases: [instances]
    version_added: 0.1.0
  purge:
    description:
      - Delete the rows instead of soft-deleting them (database path only). The rows are not archived.
    type: bool
    default: false
    version_added: 0.1.0
  service_down_time:
    description:
      - Seconds after its last report that the database path counts a C(nova-compute) service as down.
        This is the rule of Nova's database servicegroup driver. Set it to the cloud's
        C([DEFAULT] service_down_time) if that differs from Nova's default of 60.
      - The API path uses the C(state) that Nova's API reports instead.
    type: int
    default: 60
    version_added: 0.1.0
  wait:
    description:
      - On the API path, wait until Nova no longer shows the instances. A delete that failed (C(vm_state)
        C(error) with no task left) fails the task at once.
      - With V(false) the task ends once Nova accepted the calls; nothing is read back.
    type: bool
    default: true
    version_added: 0.1.0
  timeout:
    description:
      - Seconds the API path waits (O(wait)) for Nova to finish the deletes. A timeout fails the task,
        naming each instance not deleted yet with its state. The deletes Nova accepted go on.
    type: int
    default: 180
    version_added: 0.1.0
notes:
  - Guards, each overridable with O(force) and a O(force_reason) recorded in the journal.
  - The instance's C(nova-compute) service is up (database path). That compute still runs the guest and
    deletes it properly when asked. Use O(method=api).
  - The instance has a task in progress (C(task_state) other than C(deleting)), or an unfinished migration
    (database path). On the API path this guard applies only while its compute is up.
  - The instance has C(disable_terminate) set. Nova's own delete silently does nothing then.
  - Refusals that O(force) never overrides. The instance is in cell0 on the database path. Nova's API
    deletes those itself, since no compute is involved, and cell0 is never written. The instance has live
    rows in several cells, or it has only a C(nova_api) mapping without a cell (a build request; use the
    API). A purge meets C(share_mapping) rows.
  - After the database path, the Neutron ports of the instance still exist and stay bound. Delete them
    (C(openstack port delete)) or unbind them. When the dead compute host comes back, C(nova-compute)
    reaps the guest of a deleted instance (C(running_deleted_instance_action), default C(reap)).
seealso:
  - module: stackmender.openstack.journal_undo
  - module: stackmender.openstack.nova_instance_host
'''

EXAMPLES = r'''
- name: Show what deleting two instances stranded on a dead compute would do
  stackmender.openstack.nova_instance_delete:
    instance:
      - 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
      - 3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    cloud: admin
  check_mode: true

- name: Delete them through Nova (its local delete, as the compute is down)
  stackmender.openstack.nova_instance_delete:
    instance:
      - 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
      - 3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    cloud: admin
    timeout: 600

- name: The control plane cannot do it; delete in the databases as Nova would
  stackmender.openstack.nova_instance_delete:
    instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e
    method: db
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db: "mysql+pymysql://placement:{{ placement_db_password }}@db.example.org/placement?charset=utf8"
    cinder_db:
      config_file: /etc/cinder/cinder.conf
  register: deleted

- name: Undo it from its journal
  stackmender.openstack.journal_undo:
    journal: "{{ deleted.journal }}"
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db: "mysql+pymysql://placement:{{ placement_db_password }}@db.example.org/placement?charset=utf8"
    cinder_db:
      config_file: /etc/cinder/cinder.conf
'''

RETURN = r'''
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "1 instance(s) to soft-delete: 14 row change(s), applied"
method:
  description: The path taken, V(api) or V(db).
  returned: success
  type: str
  sample: db
method_reason:
  description: Why O(method=auto) chose that path, or V(requested).
  returned: success
  type: str
plan:
  description:
    - The database path lists the statements the run executes (or would in check mode), in order, with
      parameters. Rows of one shape are one statement. Rows are named by the database option that reaches
      them, C(nova_db) or C(nova:<cell name>), C(nova_api_db), C(placement_db) and C(cinder_db).
    - The API path lists the calls, each with its C(microversion).
  returned: success
  type: list
  elements: dict
  sample:
    - kind: sql
      database: "nova:cell1"
      table: instances
      action: update
      statement: "UPDATE `instances` SET `deleted` = `id`, `deleted_at` = %s, `progress` = %s, `task_state` = %s,
        `terminated_at` = %s, `updated_at` = %s, `vm_state` = %s WHERE `id` IN (%s)"
      params: ["2026-11-22 03:04:05", 0, null, "2026-11-22 03:04:05", "2026-11-22 03:04:05", deleted, 41]
      rows: 1
    - kind: api
      service: compute
      call: "DELETE /servers/2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e"
      microversion: "2.1"
      arguments: {}
before:
  description: Per database option (or API service), per C(table/id) (or resource), the fields the plan
    changes, as they were.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {vm_state: error, task_state: deleting, deleted: 0}}}
after:
  description: The same fields as they are after the run (or would be, in check mode); V(null) for a deleted row.
  returned: success
  type: dict
  sample: {"nova:cell1": {"instances/41": {vm_state: deleted, task_state: null, deleted: 41}}}
diff:
  description: RV(before) and RV(after) in Ansible's diff format.
  returned: in diff mode, when something changes
  type: dict
journal:
  description: Path of the journal of before-images (on the API path, of the calls and their outcomes);
    V(null) in check mode or when nothing changed.
  returned: success
  type: str
instances:
  description:
    - The instances the run deletes (or would), each with its C(cell) (database path), C(host), C(vm_state) and
      C(task_state) before the run and the C(action) taken (V(soft-delete), V(purge), V(cleanup) of the
      leftovers of an instance already deleted, or V(api-delete)).
  returned: success
  type: list
  elements: dict
  sample: [{instance: 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e, cell: "nova:cell1", host: compute07,
            vm_state: active, task_state: deleting, action: soft-delete}]
force:
  description: Whether O(force) was set.
  returned: success
  type: bool
forced_guards:
  description: The guards O(force) overrode, with their evidence.
  returned: when force overrode a guard
  type: list
  elements: dict
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
    - guard: compute_service_up
      message: "the nova-compute service of host compute07 is up (last report 4 s ago, service_down_time 60):
        delete instance 2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e through the API (method=api)"
      evidence: [{id: 3, host: compute07, binary: nova-compute, forced_down: 0, up: true, seconds_since_report: 4}]
notes:
  description: Instances left alone because nothing of them is left to delete.
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


from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.services import instance_records
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.services import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan, now
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.remediation import (
    RemediationModule,
    api_or_db,
    db_only,
    wait_argument_spec,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import uuid_list

NOVA_API = 'nova_api_db'
PLACEMENT = 'placement_db'
CINDER = 'cinder_db'
MICROVERSION = '2.1'


class NovaInstanceDelete(RemediationModule):
    module_name = 'stackmender.openstack.nova_instance_delete'
    argument_spec = dict(
        instance=dict(type='list', elements='str', required=True, aliases=['instances']),
        purge=dict(type='bool', default=False),
        service_down_time=dict(type='int', default=60),
        **wait_argument_spec()
    )
    uses_nova_cells = True
    method_policy = api_or_db("Nova's own delete does everything this module would, and a cloud is configured")
    purge_policy = db_only('purge deletes database rows, which the Compute API cannot do')
    waits = True
    pending_what = 'instance(s) not deleted yet'

    def validate(self):
        self.instance_ids = uuid_list(self.params['instance'], 'instance')
        if self.params['service_down_time'] <= 0:
            raise InputError('service_down_time must be a positive number of seconds, not %s'
                             % self.params['service_down_time'])

    def methods(self):
        return self.purge_policy if self.params['purge'] else self.method_policy

    def describe(self, plan):
        count = len(plan.results.get('instances', []))
        if plan.calls:
            return '%d instance(s) to delete through the Compute API: %d API call(s)' % (count, len(plan.calls))
        return '%d instance(s) to %s: %d row change(s)' % (count, 'purge' if self.params['purge'] else 'soft-delete',
                                                           len(plan.changes))

    # ============================================================ database path

    def plan_db(self):
        plan = Plan()
        stamp = now()
        purge = self.params['purge']
        cells = self.nova_cells()
        for cell in cells:
            instance_records.require_cell_schema(self.schema(cell.name, 'nova'), purge and not cell.is_cell0)
        by_uuid = nova.instance_rows(cells, ', '.join('`%s`' % column for column in instance_records.INSTANCE_COLUMNS),
                                     uuids=self.instance_ids)
        found, missing = instance_records.pick_instances(plan, self.instance_ids, by_uuid)
        gone = instance_records.gone_instances(plan, missing, self.absent_instances(missing), purge) if missing else []
        plan.stop_if_never_overridden()
        changed = set()
        for cell in cells:
            rows = [found[uuid] for uuid in self.instance_ids if uuid in found and found[uuid]['cell'] is cell]
            if rows:
                changed |= self._plan_cell(cell, rows, plan, stamp)
        plan.stop_if_never_overridden()
        uuids = [uuid for uuid in self.instance_ids if uuid in found or uuid in gone]
        if NOVA_API in self.targets:
            changed |= self._plan_nova_api(uuids, plan, stamp)
        if PLACEMENT in self.targets:
            session = self.session(PLACEMENT)
            placement.require_schema(self.schema(PLACEMENT, 'placement'), 'delete the allocations of the instances')
            changed |= instance_records.plan_allocations(plan, PLACEMENT, placement.allocations_of(session, uuids),
                                                         placement.consumers_by_uuid(session, uuids),
                                                         placement.ALLOCATION_COLUMNS)
        if CINDER in self.targets:
            session = self.session(CINDER)
            instance_records.require_cinder_schema(self.schema(CINDER, 'cinder'))
            changed |= instance_records.plan_detach(plan, CINDER, instance_records.cinder_rows(session, uuids), stamp)
        plan.results['instances'] = instance_records.delete_report(plan, self.instance_ids, found, changed, purge)
        if changed:
            bdms = instance_records.instance_volume_bdms(found, changed)
            for message in instance_records.followup_warnings(bdms, changed, self.targets):
                plan.warn(message)
        return plan

    def _plan_cell(self, cell, rows, plan, stamp):
        """Guard and plan one cell's rows; returns the uuids with a change."""
        purge = self.params['purge']
        uuids = [row['uuid'] for row in rows]
        live = [row for row in rows if not row['deleted']]
        if live:
            services = {}
            for row in nova.compute_services(cell, sorted(set(row['host'] for row in live if row['host'])),
                                             self.params['service_down_time']):
                services.setdefault(row['host'], row)
            instance_records.guard_live(plan, live, services,
                                        instance_records.live_migrations(cell.session, [row['uuid'] for row in live]),
                                        self.params['service_down_time'])
        schema = self.schema(cell.name, 'nova')
        found = instance_records.cell_rows(cell.session, uuids, purge, schema.has)
        return instance_records.plan_cell(plan, cell.name, rows, found, stamp, purge)

    def _plan_nova_api(self, uuids, plan, stamp):
        session = self.session(NOVA_API)
        schema = self.schema(NOVA_API, 'nova_api')
        schema.require('instance_mappings', ('id', 'instance_uuid', 'cell_id', 'queued_for_delete', 'updated_at'),
                       purpose='mark the instance mapping queued for delete')
        if not self.params['purge']:
            return instance_records.plan_mappings(plan, NOVA_API, nova_cells.instance_mappings(session, uuids), stamp)
        schema.require('request_specs', ('id', 'instance_uuid'), purpose='purge the request specs')
        schema.require('instance_group_member', ('id', 'instance_uuid'), purpose='purge server group memberships')
        return instance_records.plan_api_purge(plan, NOVA_API, dict(
            (table, instance_records.rows_of(session, table, column, uuids, live_only=False,
                                             columns='id, %s' % instance_records.quote_identifier(column)))
            for table, column in instance_records.API_PURGED_TABLES))

    # ================================================================ API path

    def plan_api(self):
        plan = Plan()
        services = {}
        deleted = plan.results['instances'] = []
        for uuid in self.instance_ids:
            server = self._api_server(uuid)
            if server is None:
                plan.note('instance %s is already deleted' % uuid)
                continue
            host = server.compute_host
            if host and host not in services:
                services[host] = [service for service in self.conn.compute.services(binary='nova-compute', host=host)
                                  if service.host == host]
            service = services[host][0] if services.get(host) else None
            up = service is not None and service.state == 'up' and not service.is_forced_down
            evidence = [self._shown_server(server)] + ([self._shown_service(service)] if service is not None else [])
            if up and server.task_state in instance_records.DELETE_TASK_STATES:
                plan.refuse('delete_already_cast', 'instance %s is already %s on host %s, whose nova-compute '
                            'Nova counts as up: Nova ignores another delete until that compute finishes it. If '
                            'the host is dead, wait until Nova counts the service down (service_down_time) or '
                            'force it down, then run again' % (uuid, server.task_state, host), evidence, never=True)
                continue
            if up and server.task_state:
                plan.refuse('task_in_progress', 'instance %s has task_state %s in progress on host %s, whose '
                            'nova-compute is up' % (uuid, server.task_state, host), evidence)
            if getattr(server, 'is_locked', False):
                plan.note('instance %s is locked; an administrator deletes it anyway' % uuid)
            if server.vm_state == 'resized':
                body = {'os-resetState': {'state': 'error'}}
                plan.call('compute', 'POST /servers/%s/action os-resetState' % uuid, body['os-resetState'],
                          (lambda server_id=uuid, body=body: self._post('/servers/%s/action' % server_id, body)),
                          microversion=MICROVERSION, resource='servers/%s' % uuid,
                          note="a resized instance makes Nova's delete confirm the resize on the source compute "
                               "first; reset to error so the delete does not wait for it",
                          before=dict(vm_state=server.vm_state), after=dict(vm_state='error'))
            plan.call('compute', 'DELETE /servers/%s' % uuid, {},
                      (lambda server_id=uuid: self._delete(server_id)),
                      microversion=MICROVERSION, resource='servers/%s' % uuid,
                      note=('Nova deletes the instance itself (local delete): its compute is %s'
                            % ('down' if not up else 'up and deletes the guest')) if host else
                      'the instance has no host; Nova deletes it without a compute',
                      before=dict(status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                                  host=host),
                      after=dict(status='DELETED'))
            deleted.append(dict(instance=uuid, host=host, vm_state=server.vm_state, task_state=server.task_state,
                                action='api-delete',
                                compute_service='down' if host and not up else ('up' if up else None)))
        plan.stop_if_never_overridden()
        return plan

    def api_pending(self, plan):
        """The instances Nova still shows; a delete that failed (vm_state error, no task left) fails at once."""
        pending = {}
        for entry in plan.results['instances']:
            uuid = entry['instance']
            try:
                server = self.conn.compute.get_server(uuid)
            except Exception as error:
                if getattr(error, 'status_code', None) == 404:
                    continue
                raise api.translate(error, 'reading back instance %s' % uuid)
            if server.vm_state == 'error' and not server.task_state:
                raise ApiError('the delete of instance %s failed: Nova shows it in vm_state error with no task '
                               'left; see its fault (openstack server show)' % uuid, server=self._shown_server(server))
            pending[uuid] = '%s (vm_state %s, task_state %s)' % (server.status, server.vm_state, server.task_state)
        return pending

    def _api_server(self, uuid):
        """The server, or None when Nova no longer shows it (deleted); unknown ids are an input error."""
        compute = self.conn.compute
        try:
            return compute.get_server(uuid)
        except Exception as error:
            if getattr(error, 'status_code', None) != 404:
                raise api.translate(error, 'reading instance %s' % uuid)
        response = compute.get('/servers/detail', params={'deleted': 'True', 'all_tenants': 'True', 'uuid': uuid},
                               microversion=MICROVERSION)
        api.openstack.exceptions.raise_from_response(response)
        if [server for server in response.json().get('servers', []) if server.get('id') == uuid]:
            return None
        raise InputError('instance %s not found through the Compute API, not even among the deleted ones' % uuid)

    @staticmethod
    def _shown_server(server):
        return dict(id=server.id, status=server.status, vm_state=server.vm_state, task_state=server.task_state,
                    host=server.compute_host)

    @staticmethod
    def _shown_service(service):
        return dict(id=service.id, host=service.host, binary=service.binary, status=service.status,
                    state=service.state, forced_down=service.is_forced_down, updated_at=service.updated_at)

    def _post(self, path, body):
        response = self.conn.compute.post(path, json=body, microversion=MICROVERSION)
        api.openstack.exceptions.raise_from_response(response)

    def _delete(self, server_id):
        response = self.conn.compute.delete('/servers/%s' % server_id, microversion=MICROVERSION)
        if response.status_code == 404:
            return
        api.openstack.exceptions.raise_from_response(response)


def main():
    NovaInstanceDelete().run()


if __name__ == '__main__':
    main()
