#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: consistency_info
short_description: Find where Nova, Cinder and Placement disagree, and the module call that repairs each case
version_added: 0.1.0
description:
  - Audits the Nova, Cinder and Placement databases, read-only, for the inconsistencies operators
    otherwise find by hand. Examples are volumes Cinder calls C(in-use) that Nova no longer maps,
    Nova block device mappings whose Cinder attachment is gone, volumes stuck C(detaching), volumes
    owned by a C(cinder-volume) service that no longer exists, and instances on a dead compute host.
    Allocations on the wrong provider are found too.
  - Each finding carries its class, severity, resource ids, evidence rows, age, and RV(findings[].repair),
    the module and arguments that repair it. A playbook can pass it straight to the named module
    (adding its own database options). Classes that no module repairs yet have RV(findings[].repair=null)
    and a RV(findings[].hint).
  - Every database is read in one read-only transaction with a consistent snapshot, with set-based
    queries; across databases, compact key sets are read once and joined in memory. Nothing is
    ever written to a database.
  - Each class runs only when the databases it needs are given; RV(skipped_classes) lists the others and why.
    With O(nova_api_db) every cell in C(cell_mappings) is read. Cell0 holds instances that were
    never scheduled, so the host, network and migration classes skip it; it counts for the
    Cinder cross-checks, the instance mappings, stuck tasks and the soft-delete bookkeeping.
  - The OpenStack APIs are not used; every class is answered from the databases.
  - See the collection's C(docs/consistency-info.md) for each class, how it is detected and how it is repaired.
author:
  - stackmender developers (@stackmender)
extends_documentation_fragment:
  - stackmender.openstack.database
attributes:
  check_mode:
    description: Reads exactly as in a normal run. The report files are not written in check mode;
      RV(markdown) is still returned when O(return_markdown=true).
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
options:
  classes:
    description:
      - Run only these classes. By default every class runs whose databases are given.
    type: list
    elements: str
    choices: [volume_attached_without_bdm, bdm_without_attachment, volume_stuck, snapshot_stuck,
              attachment_of_deleted_volume, attachment_of_deleted_instance, volume_service_unavailable,
              instance_on_unavailable_host, instance_task_stuck, migration_unfinished, info_cache_binding_failed,
              info_cache_vif_without_network, info_cache_migrating_to, info_cache_empty, instance_node_unknown, instance_mapping_missing,
              live_child_of_deleted_parent, deleted_without_deleted_at, allocation_wrong_provider]
    version_added: 0.1.0
  projects:
    description:
      - Keep only findings about resources of these project ids. Findings that belong to no project,
        such as per-table bookkeeping findings, are dropped when this is set.
    type: list
    elements: str
    version_added: 0.1.0
  hosts:
    description:
      - Keep only findings about these hosts, compared exactly (never as a prefix or pattern).
      - A finding's host is the compute host of an instance, or the C(cinder-volume) service host
        (C(host@backend)) of a volume. V(controller1) also matches C(controller1@lvm), but never
        C(controller10@lvm).
    type: list
    elements: str
    version_added: 0.1.0
  min_age:
    description:
      - Keep only findings at least this many seconds old, to leave out operations still in progress.
        Findings whose age is unknown are kept.
    type: int
    default: 0
    version_added: 0.1.0
  stuck_after:
    description:
      - Seconds after which a transitional state counts as stuck, for the classes V(volume_stuck),
        V(snapshot_stuck), V(instance_task_stuck) and V(migration_unfinished).
      - "A number applies to all four. A dict sets it per class, with the key V(default) for the others,
        for example C({default: 3600, migration_unfinished: 86400})."
    type: raw
    default: 3600
    version_added: 0.1.0
  service_down_time:
    description:
      - Seconds without a heartbeat after which a C(nova-compute) or C(cinder-volume) service counts as down,
        as C(service_down_time) does in the services themselves. A Nova service with C(forced_down) is always down.
    type: int
    default: 60
    version_added: 0.1.0
  report_markdown:
    description:
      - Write a Markdown report (counts per class and per host, one table per class) to this path.
      - Not written in check mode.
    type: path
    version_added: 0.1.0
  report_html:
    description:
      - Write the same report as a self-contained HTML page to this path. It has no scripts, links or
        other external assets, and every value in it is HTML-escaped.
      - Not written in check mode.
    type: path
    version_added: 0.1.0
  history_file:
    description:
      - A JSON file that keeps the counts per class of the last runs (O(history_runs) of them). Each run that is
        not in check mode adds its counts; the reports then show the trend of every class over those runs, as a
        chart in the HTML page and a table in the Markdown.
      - Give the same path to every scheduled run of the audit (the audit_run role does).
    type: path
    version_added: 0.1.0
  history_runs:
    description:
      - How many runs O(history_file) keeps; the oldest are dropped.
    type: int
    default: 30
    version_added: 0.1.0
  return_markdown:
    description:
      - Return the Markdown report in RV(markdown).
    type: bool
    default: false
    version_added: 0.1.0
notes:
  - O(cloud) is accepted for C(module_defaults) shared with the other modules of the collection, and is not used.
    O(method=api) is refused; V(auto) and V(db) both read the databases.
  - The module never changes the cloud, so C(changed) is always V(false), also when it writes the report files.
  - Without O(nova_api_db), O(nova_db) is taken as the whole of Nova (a cloud with one cell).
    Give O(nova_api_db) alone to audit every cell.
seealso:
  - module: stackmender.openstack.cinder_volume_state
  - module: stackmender.openstack.nova_bdm_purge
'''

EXAMPLES = r'''
- name: Audit the whole cloud and write reports for people
  stackmender.openstack.consistency_info:
    cinder_db: /etc/cinder/cinder.conf
    nova_api_db:
      config_file: /etc/nova/nova.conf
    placement_db:
      config_file: /etc/placement/placement.conf
    report_markdown: /var/tmp/consistency.md
    report_html: /var/tmp/consistency.html
  register: audit

- name: Show what was found per class
  ansible.builtin.debug:
    var: audit.counts

- name: Reset volumes Cinder calls in-use that Nova no longer maps, one task per finding
  stackmender.openstack.cinder_volume_state: "{{ item.repair.args | combine(databases) }}"
  loop: "{{ audit.findings | selectattr('class', 'equalto', 'volume_attached_without_bdm') | list }}"
  loop_control:
    label: "{{ item.resources.volume }}"
  vars:
    databases:
      cinder_db: /etc/cinder/cinder.conf
      nova_api_db:
        config_file: /etc/nova/nova.conf

- name: Audit an RDO cloud whose Nova config is split over nova-dist.conf, nova.conf and nova.conf.d
  stackmender.openstack.consistency_info:
    cinder_db: /etc/cinder/cinder.conf
    nova_api_db:
      config_file: [/usr/share/nova/nova-dist.conf, /etc/nova/nova.conf]
      config_dir: /etc/nova/nova.conf.d
    classes: [volume_attached_without_bdm]

- name: Only volumes stuck for more than a day, on one storage host
  stackmender.openstack.consistency_info:
    cinder_db: /etc/cinder/cinder.conf
    nova_api_db:
      config_file: /etc/nova/nova.conf
    classes: [volume_stuck, volume_service_unavailable]
    hosts: [storage1]
    stuck_after: 86400
'''

RETURN = r'''
msg:
  description: How many findings, in how many classes, and how many classes were skipped.
  returned: always
  type: str
  sample: "3 finding(s) in 2 of 12 class(es) run; 6 class(es) skipped"
method:
  description: Always V(db); the audit reads the databases only.
  returned: success
  type: str
  sample: db
method_reason:
  description: Why the database path was taken.
  returned: success
  type: str
findings:
  description: Every inconsistency found, ordered by class, severity and host.
  returned: success
  type: list
  elements: dict
  contains:
    class:
      description: The class of inconsistency (see O(classes)).
      type: str
      sample: volume_attached_without_bdm
    severity:
      description: V(critical), V(error), V(warning) or V(info).
      type: str
    key:
      description: A stable identifier of the finding (class and resource), for comparing runs.
      type: str
      sample: "volume_attached_without_bdm:volume/6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11"
    message:
      description: What is wrong, in one sentence.
      type: str
    resources:
      description: The ids of the resources involved (volume, instance, attachment, bdm, cell, ...) and the reason.
      type: dict
    project:
      description: The project that owns the resource, when there is one.
      type: str
    host:
      description: The compute host or C(cinder-volume) service host the finding belongs to.
      type: str
    age:
      description: Seconds since the rows involved last changed (or since the service's last heartbeat); V(null) if unknown.
      type: int
    since:
      description: The timestamp RV(findings[].age) is counted from (UTC).
      type: str
    evidence:
      description: The rows that show the inconsistency, each with its C(table). Never connection info,
        connectors, network info contents or database URLs.
      type: list
      elements: dict
    repair:
      description: The module and arguments that repair the finding (C(module), C(args)), without database options;
        V(null) where no module repairs this class yet.
      type: dict
      sample: {module: stackmender.openstack.cinder_volume_state,
               args: {volume: [6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11], status: available, attach_status: detached,
                      from_status: [in-use]}}
    hint:
      description: What to do by hand, or what to do after the repair.
      type: str
counts:
  description: Number of findings per class that ran (after the filters), including zeros.
  returned: success
  type: dict
  sample: {volume_attached_without_bdm: 1, volume_stuck: 0}
severity_counts:
  description: Number of findings per severity.
  returned: success
  type: dict
summary:
  description: Per host, the number of findings and their count per class. Findings without a host are under C((no host)).
  returned: success
  type: dict
  sample: {compute1: {total: 2, classes: {instance_on_unavailable_host: 2}}}
skipped_classes:
  description: The classes that did not run and why (a database not given, or a table or column this schema lacks).
  returned: success
  type: list
  elements: dict
  sample: [{class: allocation_wrong_provider, reason: needs placement_db}]
classes_run:
  description: The classes that ran.
  returned: success
  type: list
  elements: str
cells:
  description: The Nova cell databases read (C(name), C(uuid), C(cell0)).
  returned: success
  type: list
  elements: dict
databases:
  description: Each database read, by option, as a URL without its password.
  returned: success
  type: dict
thresholds:
  description: The thresholds used (C(stuck_after) per class, C(service_down_time), C(min_age)).
  returned: success
  type: dict
filters:
  description: The filters applied (C(classes), C(projects), C(hosts)); V(null) for those not set.
  returned: success
  type: dict
inventory:
  description:
    - Counts of the live rows the classes were judged against, per database given
      (C(volumes), C(volume_attachments), C(cells), C(instances), C(volume_bdms), C(resource_providers)).
    - An empty or sharply smaller count than the last run means a wrong or broken source;
      M(stackmender.openstack.remediation_gate) aborts on it.
  returned: success
  type: dict
  sample: {volumes: 1204, volume_attachments: 611, cells: 2, instances: 873, volume_bdms: 640, resource_providers: 12}
audited_at:
  description: The database server's UTC time when the audit read it.
  returned: success
  type: str
timings:
  description: Seconds spent per class.
  returned: success
  type: dict
elapsed:
  description: Seconds the audit took.
  returned: success
  type: float
reports:
  description: The report files asked for (C(markdown), C(html)) and whether they were written (C(written)).
  returned: success
  type: dict
  sample: {markdown: /var/tmp/consistency.md, html: /var/tmp/consistency.html, written: true}
history:
  description: The history file (C(file)), how many runs it keeps now (C(runs)) and whether it was written (C(written)).
  returned: when O(history_file) is given
  type: dict
  sample: {file: /var/lib/stackmender/audit/history.json, runs: 12, written: true}
markdown:
  description: The Markdown report.
  returned: when O(return_markdown=true)
  type: str
notes:
  description: Remarks about the run, such as report files not written in check mode.
  returned: when there are any
  type: list
  elements: str
'''

import json

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import engine as auditing
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import remediation
from ansible_collections.stackmender.openstack.plugins.module_utils.audit import report
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError, StackmenderError


def argument_spec():
    return dict(
        remediation.connection_argument_spec(),
        classes=dict(type='list', elements='str', choices=auditing.CLASS_NAMES),
        projects=dict(type='list', elements='str'),
        hosts=dict(type='list', elements='str'),
        min_age=dict(type='int', default=0),
        stuck_after=dict(type='raw', default=3600),
        service_down_time=dict(type='int', default=60),
        report_markdown=dict(type='path'),
        report_html=dict(type='path'),
        history_file=dict(type='path'),
        history_runs=dict(type='int', default=30),
        return_markdown=dict(type='bool', default=False),
    )


def run(module):
    params = module.params
    if params['method'] == 'api':
        raise InputError('consistency_info reads the databases only; method=api is not available')
    targets = {}
    for option in (auditing.CINDER, auditing.NOVA_DB, auditing.NOVA_API, auditing.PLACEMENT):
        target = db.parse_database_option(option, params.get(option))
        if target is not None:
            module.no_log_values.update(db.secret_forms(target.password))
            targets[option] = target
    if not targets:
        raise InputError('give at least one of cinder_db, nova_db, nova_api_db and placement_db')
    options = auditing.AuditOptions(classes=params['classes'], projects=params['projects'], hosts=params['hosts'],
                                    min_age=params['min_age'], stuck_after=params['stuck_after'],
                                    service_down_time=params['service_down_time'])
    module.no_log_values.update(api.secret_values(params.get('cloud')))
    audit = auditing.Audit(targets, options,
                           register_secret=lambda password: module.no_log_values.update(db.secret_forms(password)),
                           lock_timeout=params['lock_timeout'])
    try:
        result = audit.run()
    finally:
        audit.close()
    found = [name for name, count in result['counts'].items() if count]
    result['msg'] = '%d finding(s) in %d of %d class(es) run; %d class(es) skipped' % (
        len(result['findings']), len(found), len(result['counts']), len(result['skipped_classes']))
    result['method'] = 'db'
    result['method_reason'] = 'the audit reads the databases only' if params['method'] == 'auto' else 'requested'
    result['reports'] = dict(markdown=params['report_markdown'], html=params['report_html'], written=False)
    history = None
    if params['history_file']:
        if params['history_runs'] < 1:
            raise InputError('history_runs must be at least 1, got %d' % params['history_runs'])
        history = report.with_run(report.load_history(params['history_file']), result, params['history_runs'])
        result['history'] = dict(file=params['history_file'], runs=len(history), written=False)
    markdown = None
    if params['report_markdown'] or params['return_markdown']:
        markdown = report.render_markdown(result, auditing.CLASS_TITLES, history)
    wanted = [(option, params[option]) for option in ('report_markdown', 'report_html') if params[option]]
    if (wanted or history) and module.check_mode:
        if wanted:
            result['notes'].append('check mode: the report files were not written')
        if history:
            result['notes'].append('check mode: the history file was not written')
    elif wanted or history:
        for option, path in wanted:
            html = None if option == 'report_markdown' else report.render_html(result, auditing.CLASS_TITLES, history)
            content = markdown if option == 'report_markdown' else html
            report.write_report(path, content, option)
        result['reports']['written'] = bool(wanted)
        if history:
            report.write_report(params['history_file'], json.dumps(dict(runs=history), indent=1, sort_keys=True) + '\n',
                                'history_file')
            result['history']['written'] = True
    if params['return_markdown']:
        result['markdown'] = markdown
    if not result['notes']:
        del result['notes']
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    remediation.register_secrets(module)
    if not db.HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib('PyMySQL'), exception=str(db.PYMYSQL_IMPORT_ERROR))
    try:
        result = run(module)
    except StackmenderError as error:
        module.fail_json(msg=error.msg, **redaction.redact(error.details))
    module.exit_json(changed=False, **redaction.redact(result))


if __name__ == '__main__':
    main()
