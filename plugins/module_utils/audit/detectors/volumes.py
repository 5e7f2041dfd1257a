# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Cinder volumes and snapshots stuck in a transitional status (or a migration) past a threshold."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services import nova
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import reads
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import (
    CINDER, STUCK_STATUSES, VOLUME_COLUMNS, columns_sql, cutoff, first_time, group, owner, seconds_between)


def stuck_volume_action(spec, volume, attachments, nova_rows):
    """(what, repair, hint) of a stuck volume, from its live ``attachments`` and the live BDMs Nova has
    of it (``nova_rows``; None when Nova was not read)."""
    volume_id, status = volume['id'], volume['status']
    if cinder.is_migrating(volume['migration_status']) or status == 'migrating':
        return ('migration_status %s' % volume['migration_status'],
                spec.repair('cinder_volume_state', volume=[volume_id], migration_status='error'),
                'ends the migration as failed; check the destination volume and re-audit')
    what = 'status %s' % status
    mapped_on = ', '.join(sorted(set(row['instance_uuid'] for row in nova_rows or [])))
    if status == 'creating':
        return what, spec.repair('cinder_volume_state', volume=[volume_id], status='error', from_status=[status]), None
    if status in ('deleting', 'error_deleting'):
        if nova_rows:
            return what, None, 'Nova still maps the volume; detach it from instance(s) %s first' % mapped_on
        return (what, spec.repair('cinder_volume_state', volume=[volume_id], status='deleted', from_status=[status]),
                'with a cloud configured the module force-deletes through Cinder, which removes the backend object '
                'when its cinder-volume is up; through the database the backend object is left for the operator')
    if nova_rows is None:
        return what, None, 'give nova_db or nova_api_db: whether to go back to in-use or to available depends on Nova'
    if not nova_rows:
        return what, spec.repair('cinder_volume_state', volume=[volume_id], status='available',
                                 attach_status='detached', from_status=[status]), None
    if [row for row in attachments if row['attach_status'] == 'attached']:
        return (what, spec.repair('cinder_volume_state', volume=[volume_id], status='in-use', attach_status='attached',
                                  from_status=[status]),
                'Nova still maps the volume and Cinder has a completed attachment: back to in-use')
    return what, None, ('Nova maps the volume on instance(s) %s but Cinder has no completed attachment: detach it '
                        'through Nova, or remove the mapping with nova_bdm_purge once the guest no longer uses it'
                        % mapped_on)


def volume_stuck(audit, spec):
    """Volumes in a transitional status (or mid-migration) for longer than the threshold."""
    audit.schema(CINDER, 'cinder').require('volumes', VOLUME_COLUMNS, purpose='find volumes stuck in a transitional status')
    now = audit.now(CINDER)
    # A migration in flight is what the Cinder modules call one (cinder.is_migrating); SQL only narrows.
    rows = audit.rows(
        CINDER, 'SELECT %s FROM volumes v WHERE v.deleted = 0 AND (v.status IN (%s) OR %s) '
                'AND COALESCE(v.updated_at, v.created_at) <= %%s ORDER BY v.id'
        % (columns_sql('v', VOLUME_COLUMNS), placeholders(len(STUCK_STATUSES)),
           cinder.migrating_condition('v.migration_status')),
        list(STUCK_STATUSES) + cinder.migrating_condition_params() + [cutoff(audit, spec, CINDER)])
    rows = [row for row in rows if row['status'] in STUCK_STATUSES or cinder.is_migrating(row['migration_status'])]
    if not rows:
        return
    ids = [row['id'] for row in rows]
    attachments = group(reads.attachment_rows(audit, volume_ids=ids), 'volume_id')
    bdms = group(nova.live_volume_bdms(audit.cells(), ids), 'volume_id') if audit.has('nova') else None
    for volume in rows:
        volume_id = volume['id']
        nova_rows = None if bdms is None else bdms.get(volume_id, [])
        what, fix, hint = stuck_volume_action(spec, volume, attachments.get(volume_id, []), nova_rows)
        evidence = [dict(volume, table='volumes')] + [dict(row, table='volume_attachment')
                                                      for row in attachments.get(volume_id, [])]
        evidence += [dict(row, table='block_device_mapping') for row in nova_rows or []]
        since = first_time(volume['updated_at'], volume['created_at'])
        yield audit.finding(
            spec, 'volume %s has been in %s for %s s' % (volume_id, what, seconds_between(since, now)),
            dict(volume=volume_id, status=volume['status'], migration_status=volume['migration_status']), evidence,
            project=volume['project_id'], host=owner(volume['host']), since=since, now=now,
            key='volume/%s' % volume_id, fix=fix, hint=hint)


def snapshot_stuck(audit, spec):
    """Snapshots in a transitional status for longer than the threshold."""
    audit.schema(CINDER, 'cinder').require('snapshots', ('id', 'volume_id', 'status', 'project_id', 'updated_at',
                                                         'created_at', 'deleted'),
                                           purpose='find snapshots stuck in a transitional status')
    now = audit.now(CINDER)
    rows = audit.rows(
        CINDER, 'SELECT s.id, s.volume_id, s.status, s.progress, s.project_id, s.updated_at, s.created_at, '
                'v.host AS volume_host FROM snapshots s LEFT JOIN volumes v ON v.id = s.volume_id '
                'WHERE s.deleted = 0 AND s.status IN (%s) AND COALESCE(s.updated_at, s.created_at) <= %%s ORDER BY s.id'
        % placeholders(len(STUCK_STATUSES)), list(STUCK_STATUSES) + [cutoff(audit, spec, CINDER)])
    for row in rows:
        since = first_time(row['updated_at'], row['created_at'])
        yield audit.finding(
            spec, 'snapshot %s of volume %s has been %s for %s s' % (row['id'], row['volume_id'], row['status'],
                                                                     seconds_between(since, now)),
            dict(snapshot=row['id'], volume=row['volume_id'], status=row['status']), [dict(row, table='snapshots')],
            project=row['project_id'], host=owner(row['volume_host']), since=since, now=now,
            key='snapshot/%s' % row['id'],
            hint='reset it through Cinder (openstack volume snapshot set --state error %s), then delete it if it is '
                 'unwanted; for deleting/error_deleting first make sure the backend snapshot is gone' % row['id'])
