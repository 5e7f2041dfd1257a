#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: remediation_gate
short_description: Decide which repairs of a consistency audit may run unattended
version_added: 0.1.0
description:
  - Takes the registered result of M(stackmender.openstack.consistency_info) and decides which of its
    repairs may run now, without a person looking at each one. It returns the approved module calls,
    grouped so a playbook can loop them into the modules, and every other finding with the reason it is held back.
  - "Authority check first: the counts of the authoritative lists (O(authorities), by default instances and volumes)
    come from the audit's C(inventory) and from O(counts). If one is empty, or has shrunk by more than
    O(max_drop_percent) (and at least O(min_drop) rows) since the last accepted run, the module fails and
    approves nothing. A wrong database, a restored empty schema or a lost cell looks exactly like that, and every
    finding judged against it would be false."
  - Sightings. A finding is repaired only after it was seen in O(min_sightings) consecutive audits, with the same
    repair and the same C(since). A finding an audit did not see starts over. Findings of classes that audit did
    not run keep their count. The counts live in O(state_file).
  - Caps, all or nothing. A class with more repairable findings than its cap (O(max_per_class), O(class_limits))
    gets no repair at all. A run with more ripe repairs than O(max_total) gets none either.
  - Repairs of classes outside O(classes), of modules outside O(modules), or carrying C(force) or connection
    options, are never approved.
  - The module changes nothing in the cloud. It writes only O(state_file) (atomically, mode 0600, under a lock
    file beside it), so C(changed) is always V(false).
author:
  - stackmender developers (@stackmender)
attributes:
  check_mode:
    description:
      - Decides as a real run would, counting this audit as a sighting, but writes nothing, not even the lock file.
        A check run therefore shows what the next real run with the same audit would approve, and does not bring
        any finding closer to its repair.
    support: full
  diff_mode:
    description: Nothing in the cloud changes, so there is no diff.
    support: none
options:
  audit:
    description:
      - The registered result of M(stackmender.openstack.consistency_info) (its C(findings), C(classes_run),
        C(audited_at) and, when present, C(inventory)).
      - Each audit is counted once; an audit not newer than the last one counted is refused.
    type: dict
    required: true
    version_added: 0.1.0
  state_file:
    description:
      - The JSON file that holds the sighting counts and the last accepted authoritative counts between runs.
        Created when missing. A file that is not valid JSON is refused; move it aside to start over.
    type: path
    required: true
    version_added: 0.1.0
  min_sightings:
    description: Consecutive audits a finding must be seen in before its repair is approved. V(1) acts on first sight.
    type: int
    default: 2
    version_added: 0.1.0
  max_per_class:
    description:
      - Most repairable findings a class may have for any of them to be repaired in this run. A class with more
        gets none (all or nothing). Findings still waiting for their sightings count too, so a wide problem is
        never repaired in slices. V(0) never repairs a class.
    type: int
    default: 25
    version_added: 0.1.0
  class_limits:
    description: "Caps per class, overriding O(max_per_class), for example C({bdm_without_attachment: 5})."
    type: dict
    default: {}
    version_added: 0.1.0
  max_total:
    description: Most findings one run may repair in all; a run with more ripe ones repairs none.
    type: int
    default: 50
    version_added: 0.1.0
  classes:
    description: Only findings of these classes may be repaired. By default every class that carries a repair.
    type: list
    elements: str
    version_added: 0.1.0
  modules:
    description:
      - Only repairs calling these modules (fully qualified names) are approved, for example the modules a playbook
        has a task for. By default every module.
    type: list
    elements: str
    version_added: 0.1.0
  min_age:
    description: Seconds a finding must be old to be repaired. With a value above 0, a finding of unknown age is held.
    type: int
    default: 0
    version_added: 0.1.0
  authorities:
    description:
      - Names of the counts the authority check guards, looked up in the audit's C(inventory) and in O(counts).
    type: list
    elements: str
    default: [instances, volumes]
    version_added: 0.1.0
  counts:
    description:
      - "Counts of the authoritative lists read by the caller, for example the number of servers and volumes the
        APIs list, as C({instances: 812, volumes: 1530})."
      - They are compared with the audit's C(inventory), never put in its place. When the two differ by more than
        O(min_drop) rows and O(max_drop_percent) percent, the run aborts (verdict C(disagree)), as one of the two
        reads a wrong or broken source. Otherwise the smaller count is the one checked against the last run.
    type: dict
    default: {}
    version_added: 0.1.0
  max_drop_percent:
    description: The run aborts when an authoritative count fell by more than this percentage since the last accepted run.
    type: float
    default: 50.0
    version_added: 0.1.0
  min_drop:
    description: A fall of fewer rows than this never aborts, so small clouds can lose a few resources between runs.
    type: int
    default: 10
    version_added: 0.1.0
  allow_empty:
    description: Authoritative counts that may be 0 without aborting (a cloud with no volumes at all).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  accept_counts:
    description:
      - Accept counts that would abort the run (a real, intended shrink) as the new baseline, and decide as usual.
        Use it once, after checking the cloud.
    type: bool
    default: false
    version_added: 0.1.0
  require_counts:
    description:
      - Abort when none of the O(authorities) has a count. Leave it on for runs that repair; a report-only run
        may turn it off.
    type: bool
    default: true
    version_added: 0.1.0
  merge:
    description:
      - Merge approved calls that differ only in their list of resources into one call, so one transaction
        repairs them all (today the C(volume) list of M(stackmender.openstack.cinder_volume_state)).
    type: bool
    default: true
    version_added: 0.1.0
notes:
  - The gate trusts the audit to be the one the playbook just ran; it checks its shape, that it did not fail and
    that it is newer than the last one counted.
  - See the collection's C(docs/runbooks/audit-run.md) for the runbook around it.
seealso:
  - module: stackmender.openstack.consistency_info
  - module: stackmender.openstack.cinder_volume_state
  - module: stackmender.openstack.nova_bdm_purge
'''

EXAMPLES = r'''
- name: Audit
  stackmender.openstack.consistency_info:
    cinder_db: /etc/cinder/cinder.conf
    nova_api_db:
      config_file: /etc/nova/nova.conf
      section: api_database
  register: audit

- name: Decide what may be repaired unattended
  stackmender.openstack.remediation_gate:
    audit: "{{ audit }}"
    state_file: /var/lib/stackmender/gate-state.json
    min_sightings: 2
    max_per_class: 10
    counts:
      instances: "{{ servers.servers | length }}"
      volumes: "{{ volumes.volumes | length }}"
    modules: [stackmender.openstack.cinder_volume_state]
  register: gate

- name: Run the approved volume repairs
  stackmender.openstack.cinder_volume_state: >-
    {{ item | combine({'cinder_db': '/etc/cinder/cinder.conf', 'nova_api_db': '/etc/nova/nova.conf'}) }}
  loop: "{{ gate.approved_by_module['stackmender.openstack.cinder_volume_state'] | default([]) }}"
'''

RETURN = r'''
msg:
  description: How many repairs were approved and how many findings were held back.
  returned: always
  type: str
  sample: "2 repair call(s) approved for 3 finding(s); 4 finding(s) held back"
approved:
  description: The approved module calls, in audit order; identical calls appear once. Empty on abort.
  returned: success, and on abort
  type: list
  elements: dict
  contains:
    module:
      description: The fully qualified module name.
      type: str
    args:
      description: Its arguments, without database or cloud options.
      type: dict
    classes:
      description: The classes of the findings this call repairs.
      type: list
      elements: str
    finding_keys:
      description: The keys of the findings this call repairs.
      type: list
      elements: str
approved_by_module:
  description: The C(args) of the approved calls per module, for one loop per module.
  returned: success
  type: dict
  sample: {stackmender.openstack.cinder_volume_state: [{volume: [6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11],
           status: in-use, attach_status: attached, from_status: [detaching]}]}
approved_keys:
  description: The keys of the findings the approved calls repair.
  returned: success
  type: list
  elements: str
held:
  description: Every finding not approved, with why. Empty on abort.
  returned: success, and on abort
  type: list
  elements: dict
  contains:
    key:
      description: The finding's key.
      type: str
    class:
      description: Its class.
      type: str
    code:
      description: >-
        V(no_repair), V(class_disabled), V(module_unsupported), V(unsafe_arguments), V(class_cap), V(too_young),
        V(sightings) or V(run_cap).
      type: str
    reason:
      description: The reason in words.
      type: str
    sightings:
      description: Consecutive audits it was seen in, counting this one.
      type: int
held_counts:
  description: Number of held findings per code.
  returned: success
  type: dict
classes:
  description: Per class with repairable findings, their number, the cap, whether it was over it, and how many were approved.
  returned: success
  type: dict
authority:
  description: Per authoritative count, the count now, the last accepted one, the drop and the verdict
    (V(ok), V(unknown), V(empty) or V(shrunk)).
  returned: success, and on abort
  type: dict
  sample: {instances: {count: 810, previous: 812, previous_at: "2026-11-22 05:00:01", drop_percent: 0.2, verdict: ok}}
accepted_counts:
  description: Whether counts that would have aborted the run were accepted (O(accept_counts)).
  returned: success
  type: bool
authority_notes:
  description: The authority problems that O(accept_counts) overrode.
  returned: success
  type: list
  elements: str
problems:
  description: Why the run aborted.
  returned: on abort
  type: list
  elements: str
state_file:
  description: The state file.
  returned: always
  type: str
state_written:
  description: Whether the state file was written (never in check mode).
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import gate
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import StackmenderError


def argument_spec():
    return dict(
        audit=dict(type='dict', required=True),
        state_file=dict(type='path', required=True),
        min_sightings=dict(type='int', default=gate.DEFAULT_MIN_SIGHTINGS),
        max_per_class=dict(type='int', default=gate.DEFAULT_MAX_PER_CLASS),
        class_limits=dict(type='dict', default={}),
        max_total=dict(type='int', default=gate.DEFAULT_MAX_TOTAL),
        classes=dict(type='list', elements='str'),
        modules=dict(type='list', elements='str'),
        min_age=dict(type='int', default=0),
        authorities=dict(type='list', elements='str', default=list(gate.DEFAULT_AUTHORITIES)),
        counts=dict(type='dict', default={}),
        max_drop_percent=dict(type='float', default=gate.DEFAULT_MAX_DROP_PERCENT),
        min_drop=dict(type='int', default=gate.DEFAULT_MIN_DROP),
        allow_empty=dict(type='list', elements='str', default=[]),
        accept_counts=dict(type='bool', default=False),
        require_counts=dict(type='bool', default=True),
        merge=dict(type='bool', default=True),
    )


def options_from(params):
    return gate.GateOptions(
        min_sightings=params['min_sightings'], max_per_class=params['max_per_class'],
        class_limits=params['class_limits'], max_total=params['max_total'], classes=params['classes'],
        modules=params['modules'], min_age=params['min_age'], authorities=params['authorities'],
        counts=params['counts'], max_drop_percent=params['max_drop_percent'], min_drop=params['min_drop'],
        allow_empty=params['allow_empty'], accept_counts=params['accept_counts'],
        require_counts=params['require_counts'], merge=params['merge'])


def decide(module, options):
    path = module.params['state_file']
    state = gate.load_state(path)
    try:
        decision, new_state = gate.decide(module.params['audit'], state, options)
    except gate.GateAbort as abort:
        written = False
        if not module.check_mode:
            gate.save_state(path, abort.details['state'])
            written = True
        details = dict((key, value) for key, value in abort.details.items() if key != 'state')
        module.fail_json(msg=abort.msg, state_file=path, state_written=written, **details)
    if not module.check_mode:
        gate.save_state(path, new_state)
    return decision


def run(module):
    options = options_from(module.params)
    path = module.params['state_file']
    if module.check_mode:
        decision = decide(module, options)
    else:
        with gate.state_lock(path):
            decision = decide(module, options)
    decision['state_file'] = path
    decision['state_written'] = not module.check_mode
    calls = len(decision['approved'])
    decision['msg'] = '%d repair call(s) approved for %d finding(s); %d finding(s) held back%s' % (
        calls, len(decision['approved_keys']), len(decision['held']),
        ' (check mode: the state file was not written)' if module.check_mode else '')
    return decision


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = run(module)
    except StackmenderError as error:
        module.fail_json(msg=error.msg, state_file=module.params['state_file'], state_written=False,
                         **error.details)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
