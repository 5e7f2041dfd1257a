# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The plan of the cinder_multibackend_migration role, on plain data (its filters call these).

The service rules (host matching, the pool rule, the statuses that block a move and the reset
that unblocks them) are Cinder's and cinder_service_rehost's: they come from module_utils/services/cinder.py,
so the role plans exactly what the module will accept.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

# The guard of cinder_service_rehost that step 1 (the resets) removes.
TRANSITIONAL_GUARD = 'volume_transitional'


def moves(host_map):
    """Each old host -> new host@backend#pool of the map as a move, with both services."""
    found = []
    for old, new in (host_map or {}).items():
        old, new = str(old).strip(), str(new).strip()
        found.append(dict(from_host=old, to_host=new, old_service=cinder.service_host(old),
                          new_service=cinder.service_host(new)))
    return found


def invalid_moves(planned):
    """One line per move cinder_service_rehost would refuse as input, or that another move undoes."""
    new_services = [move['new_service'] for move in planned]
    bad = []
    for move in planned:
        try:
            cinder.check_rehost_hosts(move['from_host'], move['to_host'])
        except InputError as error:
            bad.append('%s -> %s: %s' % (move['from_host'], move['to_host'], error))
            continue
        if move['old_service'] != move['new_service'] and move['old_service'] in new_services:
            bad.append('%s -> %s: the old service %s is the new service of another move'
                       % (move['from_host'], move['to_host'], move['old_service']))
    return bad


def _value(item, key, default=None):
    value = item.get(key)
    return default if value is None or value == '' else value


def service_rows(volume_services):
    """What the runbook keeps of each cinder-volume service the API lists, by host."""
    return [dict(host=service['host'], state=service.get('state'), status=service.get('status'),
                 updated_at=service.get('updated_at'), disabled_reason=service.get('disabled_reason'))
            for service in sorted(volume_services or [], key=lambda service: service['host'])]


def volume_rows(volumes):
    """What the runbook keeps of each volume the API lists, by id; ``service`` is its host without the pool."""
    rows = []
    for volume in sorted(volumes or [], key=lambda volume: volume['id']):
        host = _value(volume, 'host', '')
        rows.append(dict(id=volume['id'], name=_value(volume, 'name', ''), host=host, service=cinder.service_host(host),
                         status=volume.get('status'), migration_status=_value(volume, 'migration_status', ''),
                         servers=[attachment.get('server_id') for attachment in volume.get('attachments') or []]))
    return rows


def match_moves(planned, volumes, services):
    """Each move with the ids of the volumes it moves and the service rows of its old and new service.

    A volume moves when cinder_service_rehost would move it (:func:`cinder.rehost_matches`). A move
    that stays on one service (it fills the pool-less rows) has no old service rows.
    """
    matched = []
    for move in planned:
        ids = [volume['id'] for volume in volumes
               if cinder.rehost_matches(volume['host'], move['from_host'], move['to_host'])]
        same = cinder.fills_pool(move['from_host'], move['to_host'])
        matched.append(dict(move, volumes=ids,
                            old_services=[] if same else [row for row in services if row['host'] == move['old_service']],
                            new_services=[row for row in services if row['host'] == move['new_service']]))
    return matched


def new_services_not_up(matched):
    """Each move whose new service is not exactly one service row that is up, as 'service is state(s)'.

    Nothing would serve the moved volumes: the preflight refuses while this is not empty.
    """
    return ['%s is %s' % (move['new_service'], '/'.join(str(row['state']) for row in move['new_services']) or 'missing')
            for move in matched if [row['state'] for row in move['new_services']] != ['up']]


def old_services_up(matched):
    """The old services of the moves that are still up (two services would own the same volumes)."""
    return [row['host'] for move in matched for row in move['old_services'] if row['state'] == 'up']


def orphans(findings, matched, reset_orphaned):
    """The volumes left in-use for servers Nova deleted, on the services of the moves, from the audit.

    ``findings``: consistency_info's; those of class volume_attached_without_bdm with a repair whose
    ``host`` (the volume's service) is the old or the new service of a move count (the audit's hosts
    option also matches host@other, so the services are compared exactly here). Returns ``volumes``
    (empty unless ``reset_orphaned``), ``from_status`` (of their repairs) and ``reasons`` (the messages).
    """
    services = set(move['old_service'] for move in matched) | set(move['new_service'] for move in matched)
    found = [finding for finding in findings or [] if finding.get('class') == 'volume_attached_without_bdm'
             and finding.get('host') in services and finding.get('repair')]
    statuses = []
    for finding in found:
        status = finding['repair']['args'].get('from_status')
        for value in status if isinstance(status, list) else [status]:
            if value is not None and value not in statuses:
                statuses.append(value)
    return dict(volumes=[finding['resources']['volume'] for finding in found] if reset_orphaned else [],
                from_status=statuses, reasons=[finding['message'] for finding in found])


def refused_lines(gate_results, waiting):
    """'old host: message' of each check-mode rehost refused for a reason no step of the runbook fixes.

    ``waiting``: the hosts of :func:`waiting_hosts`, whose refusal step 1 removes.
    """
    return ['%s: %s' % (result['item']['from_host'], result.get('msg')) for result in gate_results or []
            if 'plan' not in result and result['item']['from_host'] not in waiting]


def plan_lines(planned_resets, gate_results, waiting, matched, remove_old, orphan_reasons):
    """The plan shown before step 1: the resets, each rehost's check-mode message, the hosts that wait
    for step 1, what happens to the old services and the volumes step 3 detaches."""
    return [
        'step 1, reset: %s' % (', '.join('%s %s -> %s' % (reset['id'], reset['from_status'], reset['status'])
                                         for reset in planned_resets) or 'nothing'),
        'step 2, rehost: %s' % ', '.join('%s | %s | %s' % (result['item']['from_host'], result['item']['to_host'],
                                                           result.get('msg')) for result in gate_results or []),
        'step 2 waits for step 1 on: %s (their plan follows in step 2, with the guard %s overridden in check mode '
        'only)' % (', '.join(waiting) or 'none', TRANSITIONAL_GUARD),
        'step 2, old services: %s %s' % ('disable and soft-delete' if remove_old else 'disable',
                                         ', '.join(row['host'] for move in matched for row in move['old_services'])
                                         or 'none'),
        'step 3, detach (in-use for deleted servers): %s' % ('; '.join(orphan_reasons) or 'nothing'),
    ]


def transitional_lines(planned_resets):
    """'volume status' of each reset, for the refusal when resets are not allowed."""
    return ['%s %s' % (reset['id'], reset['from_status']) for reset in planned_resets]


def inventory_lines(services, volumes, matched):
    """The preflight's picture: each service with its volumes, hosts of volumes without a service, each move."""
    per_service = {}
    for volume in volumes:
        per_service[volume['service']] = per_service.get(volume['service'], 0) + 1
    listed = set(service['host'] for service in services)
    lines = ['cinder-volume services (host: state, status, volumes):']
    for service in services:
        lines.append('  %s: %s, %s, %d volume(s)' % (service['host'], service['state'], service['status'],
                                                     per_service.get(service['host'], 0)))
    for host in sorted(per_service):
        if host not in listed:
            lines.append('  %s: NO SERVICE ROW, %d volume(s)' % (host or '(no host)', per_service[host]))
    for move in matched:
        lines.append('move %s -> %s: %d volume(s)' % (move['from_host'], move['to_host'], len(move['volumes'])))
    return lines


def resets(volumes, matched):
    """The reset of each moving volume that cinder_service_rehost would refuse as transitional.

    Each: id, from_status, status (the resting or error status), migration_status (``error`` for a
    migration in flight, else ``''``) and servers (of its attachments).
    """
    moving = set(volume_id for move in matched for volume_id in move['volumes'])
    found = []
    for volume in volumes:
        if volume['id'] not in moving:
            continue
        reset = cinder.lost_operation_reset(volume['status'], volume['migration_status'], bool(volume['servers']))
        if reset:
            found.append(dict(id=volume['id'], from_status=volume['status'], status=reset[0],
                              migration_status=reset[1], servers=volume['servers']))
    return found


def reset_groups(planned_resets):
    """The resets as one cinder_volume_state call per (status, migration_status), sorted by them."""
    groups = {}
    for reset in planned_resets:
        groups.setdefault((reset['status'], reset['migration_status']), []).append(reset)
    return [dict(status=status, migration_status=migration_status,
                 volumes=[reset['id'] for reset in members],
                 from_status=sorted(set(reset['from_status'] for reset in members)))
            for (status, migration_status), members in sorted(groups.items())]


def waiting_hosts(gate_results, planned_resets):
    """The old hosts whose check-mode rehost step 1 unblocks.

    ``gate_results``: the results of cinder_service_rehost in check mode, one per move (with ``item``,
    the move). A host waits when its rehost was refused by the transitional guard alone, and every
    volume of its evidence is one that step 1 resets.
    """
    reset_ids = set(reset['id'] for reset in planned_resets)
    waiting = []
    for result in gate_results or []:
        if 'plan' in result:
            continue
        guards = result.get('guards') or []
        evidence = [row for guard in guards for row in guard.get('evidence') or []]
        if (guards and all(guard.get('guard') == TRANSITIONAL_GUARD for guard in guards)
                and all(isinstance(row, dict) and row.get('id') in reset_ids for row in evidence)):
            waiting.append(result['item']['from_host'])
    return waiting


def moved(rehost_results):
    """The report of each rehost result: its move, what it said, and the rows it changes per table."""
    report = []
    for result in rehost_results or []:
        rows = {}
        for statement in result.get('plan') or []:
            if 'table' in statement:
                rows[statement['table']] = rows.get(statement['table'], 0) + (statement.get('rows') or 0)
        move = result['item']
        report.append(dict(from_host=move['from_host'], to_host=move['to_host'], changed=result.get('changed'),
                           msg=result.get('msg'), volumes=move['volumes'], rows_per_table=rows,
                           old_services=[service['host'] for service in move['old_services']],
                           journal=result.get('journal')))
    return report


def report_lines(report, check_mode, report_file=None):
    """The lines the runbook ends with: each move, the resets, the detaches, what the audit still finds,
    the journals, the report file (None: not written), then the modules' warnings."""
    lines = ['check mode: nothing was changed; this is what the run would do'] if check_mode else []
    for move in report['moves']:
        lines.append('%s -> %s: %s' % (move['from_host'], move['to_host'], move['msg']))
    lines.append('reset before the move: %s' % (', '.join(
        '%s %s %s' % (reset['id'], reset['from_status'], reset['status'])
        for reset in report['reset_transitional']) or 'none'))
    lines.append('detached after the move (in-use for a deleted server): %s'
                 % (', '.join(report['reset_orphaned']) or 'none'))
    lines.append('volumes of these hosts on a missing or down service %s: %d'
                 % ('now' if check_mode else 'after the run', len(report['unavailable'])))
    lines.append('journals: %s' % (', '.join(report['journals']) or 'none'))
    lines.append('report: %s' % (report_file or 'not written'))
    return lines + list(report['warnings'])
