# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Cinder and Nova disagree about volumes: attachments without a block device mapping, mappings
without an attachment, and live attachments of deleted volumes or instances."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import reads
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import (
    ATTACHMENT_COLUMNS, CINDER, STUCK_STATUSES, VOLUME_COLUMNS, columns_sql, first_time, group, owner)

# What bdm_without_attachment says of each reason.
BDM_REASONS = {
    'volume_missing': 'Cinder has no volume %(volume)s',
    'volume_deleted': 'Cinder volume %(volume)s is deleted',
    'attachment_deleted': 'its Cinder attachment %(attachment)s is deleted',
    'attachment_missing': 'Cinder has no attachment %(attachment)s',
    'attachment_detached': 'its Cinder attachment %(attachment)s is detached',
    'no_attachment': 'Cinder has no live attachment of volume %(volume)s to the instance',
}


def unmapped_candidates(inuse, mapped):
    """Ids of in-use/attached volumes (``inuse``: {id: (status, attach_status, migration_status)}) that
    no BDM maps. Transitional statuses belong to volume_stuck; migration targets are Cinder's own
    temporary volumes."""
    return [volume_id for volume_id, (status, _attach, migration) in inuse.items()
            if volume_id not in mapped and status not in STUCK_STATUSES
            and not (migration or '').startswith(cinder.MIGRATION_TARGET_PREFIX)]


def unmapped_reason(attachments, instances):
    """Why Nova does not map an attached volume, from its live attachments and their instance rows."""
    seen = [instances.get(row['instance_uuid']) for row in attachments if row['instance_uuid']]
    if seen and all(instance is not None and instance['deleted'] for instance in seen):
        return 'its instance(s) %s are deleted' % ', '.join(sorted(instance['uuid'] for instance in seen))
    if seen and all(instance is None for instance in seen):
        return 'Nova has no instance %s' % ', '.join(sorted(row['instance_uuid'] for row in attachments
                                                            if row['instance_uuid']))
    return 'Nova has no live block device mapping for it'


def volume_attached_without_bdm(audit, spec):
    """Volumes Cinder calls in-use/attached that no live Nova BDM (of a live instance) references."""
    audit.schema(CINDER, 'cinder').require('volumes', VOLUME_COLUMNS, purpose='find attached volumes')
    candidates = unmapped_candidates(reads.inuse_volumes(audit), reads.mapped_volumes(audit))
    if not candidates:
        return
    volumes = reads.volume_rows(audit, candidates)
    attachments = group(reads.attachment_rows(audit, volume_ids=candidates), 'volume_id')
    instance_uuids = set(row['instance_uuid'] for rows in attachments.values() for row in rows if row['instance_uuid'])
    instances = reads.instances_by_uuid(audit, instance_uuids)
    # An instance in none of the cells read is only missing when Nova has no trace of it anywhere.
    absent = audit.absent_instances(set(uuid for uuid in instance_uuids if uuid not in instances))
    not_judged = sorted(uuid for uuid, absence in absent.items() if not absence.gone)
    if not_judged:
        audit.note('volume_attached_without_bdm: %d volume(s) attached to instance(s) in no cell read were not judged '
                   '(%s)' % (len(not_judged), '; '.join(absent[uuid].explain() for uuid in not_judged[:5])))
    now = audit.now(CINDER)
    for volume_id in sorted(volumes):
        volume = volumes[volume_id]
        rows = attachments.get(volume_id, [])
        if any(row['instance_uuid'] in absent and not absent[row['instance_uuid']].gone for row in rows):
            continue
        seen = [instances.get(row['instance_uuid']) for row in rows if row['instance_uuid']]
        evidence = [dict(volume, table='volumes')] + [dict(row, table='volume_attachment') for row in rows]
        evidence += [dict(instance, table='instances') for instance in seen if instance is not None]
        yield audit.finding(
            spec, 'volume %s is %s/%s but %s' % (volume_id, volume['status'], volume['attach_status'],
                                                 unmapped_reason(rows, instances)),
            dict(volume=volume_id, attachments=[row['id'] for row in rows],
                 instances=sorted(set(row['instance_uuid'] for row in rows if row['instance_uuid']))),
            evidence, project=volume['project_id'], host=owner(volume['host']),
            since=first_time(volume['updated_at'], volume['created_at']), now=now, key='volume/%s' % volume_id,
            fix=spec.repair('cinder_volume_state', volume=[volume_id], status='available', attach_status='detached',
                            from_status=[volume['status']]),
            hint='with a cloud configured the module deletes stale attachments through Cinder, which also removes '
                 'the backend export; through the database the export is left for the operator to remove')


def bdm_defect(bdm, inuse, volume, attachments, live_pairs):
    """What is wrong with one volume BDM ``(cell, instance, volume_id, attachment_id)``, or None.

    ``inuse``: the in-use volumes by id; ``volume``: the row of its volume when that is not in use
    (None: Cinder has none); ``attachments``: {id: (volume_id, instance, attach_status)} of the live
    attachments; ``live_pairs``: (volume_id, instance) of those not detached. ``attachment_gone``
    is told apart (deleted or missing) once the rows are read.
    """
    _cell, instance, volume_id, attachment_id = bdm
    if volume_id not in inuse and volume is None:
        return 'volume_missing'
    if volume is not None and volume['deleted']:
        return 'volume_deleted'
    if attachment_id:
        attachment = attachments.get(attachment_id)
        if attachment is None:
            return 'attachment_gone'
        if attachment[2] == 'detached':
            return 'attachment_detached'
        return None
    if (volume_id, instance) not in live_pairs:
        return 'no_attachment'
    return None


def _bdm_details(audit, flagged):
    """{(cell option, instance, volume, attachment): [BDM rows joined to their instance]} of the flagged BDMs."""
    details = {}
    for cell in set(item[0] for item in flagged):
        schema = audit.nova_schema(cell)
        columns = ['id', 'instance_uuid', 'volume_id', 'attachment_id', 'device_name', 'boot_index', 'created_at',
                   'updated_at'] + (['uuid'] if schema.has('block_device_mapping', 'uuid') else [])
        sql = ("SELECT %s, i.host AS instance_host, i.node AS instance_node, i.vm_state, i.project_id "
               "FROM block_device_mapping b JOIN instances i ON i.uuid = b.instance_uuid "
               "WHERE b.deleted = 0 AND i.deleted = 0 AND b.destination_type = 'volume' AND b.instance_uuid IN (%%s) "
               "ORDER BY b.id" % columns_sql('b', columns))
        for row in audit.rows_in(cell.option, sql, set(item[1] for item in flagged if item[0] is cell)):
            details.setdefault((cell.option, row['instance_uuid'], row['volume_id'], row['attachment_id']), []).append(row)
    return details


def bdm_repair(spec, bdm_row, instance, volume_id, cinder_pairs):
    """(repair, hint) of a BDM Cinder no longer backs: purged, unless Cinder still pairs the volume
    with the instance or the BDM is the root disk."""
    if (volume_id, instance) in cinder_pairs:
        return None, ('Cinder still has a live attachment row of volume %s to instance %s, so the block device '
                      'mapping cannot simply go: refresh it with nova-manage volume_attachment refresh, or delete '
                      'the stale Cinder attachment first' % (volume_id, instance))
    if bdm_row['boot_index'] == 0:
        return None, ('this is the root disk of instance %s: rebuild or delete the instance rather than removing '
                      'its root mapping' % instance)
    return (spec.repair('nova_bdm_purge', instance=[instance], volume=[volume_id]),
            'hard reboot (or stop and start) instance %s afterwards so the hypervisor drops the disk' % instance)


def bdm_without_attachment(audit, spec):
    """Live Nova volume BDMs whose Cinder volume or attachment is gone or detached."""
    audit.schema(CINDER, 'cinder').require('volume_attachment', ATTACHMENT_COLUMNS, purpose='match attachments')
    bdms = [bdm for bdm in reads.volume_bdms(audit) if not bdm[0].is_cell0]
    inuse = reads.inuse_volumes(audit)
    attachments = reads.live_attachments(audit)
    live_pairs = set((volume_id, instance) for volume_id, instance, status in attachments.values() if status != 'detached')
    any_pairs = set((volume_id, instance) for volume_id, instance, _status in attachments.values())
    others = reads.volume_rows(audit, set(bdm[2] for bdm in bdms if bdm[2] not in inuse))
    flagged = {}
    for bdm in bdms:
        reason = bdm_defect(bdm, inuse, others.get(bdm[2]), attachments, live_pairs)
        if reason is not None:
            cell, instance, volume_id, attachment_id = bdm
            flagged[(cell.option, instance, volume_id, attachment_id)] = bdm + (reason,)
    flagged = [flagged[key] for key in sorted(flagged, key=lambda key: tuple(part or '' for part in key))]
    if not flagged:
        return
    gone = reads.attachment_rows(audit, ids=set(item[3] for item in flagged if item[3]), live_only=False)
    attachment_by_id = dict((row['id'], row) for row in gone)
    details = _bdm_details(audit, flagged)
    for cell, instance, volume_id, attachment_id, reason in flagged:
        now = audit.now(cell.option)
        volume = others.get(volume_id)
        attachment = attachment_by_id.get(attachment_id)
        if reason == 'attachment_gone':
            reason = 'attachment_deleted' if attachment is not None else 'attachment_missing'
        for bdm in details.get((cell.option, instance, volume_id, attachment_id), []):
            since = first_time(attachment and attachment['deleted_at'], volume and volume['deleted_at'],
                               bdm['updated_at'], bdm['created_at'])
            evidence = [dict(bdm, table='block_device_mapping', cell=cell.option)]
            if volume is not None:
                evidence.append(dict(volume, table='volumes'))
            if attachment is not None:
                evidence.append(dict(attachment, table='volume_attachment'))
            fix, hint = bdm_repair(spec, bdm, instance, volume_id, any_pairs)
            yield audit.finding(
                spec, 'instance %s maps volume %s (block device mapping %s) but %s'
                % (instance, volume_id, bdm['id'], BDM_REASONS[reason] % dict(volume=volume_id, attachment=attachment_id)),
                dict(instance=instance, volume=volume_id, bdm=bdm['id'], attachment=attachment_id, cell=cell.option,
                     reason=reason),
                evidence, project=bdm['project_id'], host=bdm['instance_host'], since=since, now=now,
                key='%s/bdm/%s' % (cell.option, bdm['id']), fix=fix, hint=hint)


def attachment_of_deleted_volume(audit, spec):
    """Live attachment rows of soft-deleted volumes."""
    audit.schema(CINDER, 'cinder').require('volume_attachment', ATTACHMENT_COLUMNS, purpose='find orphaned attachments')
    now = audit.now(CINDER)
    rows = audit.rows(
        CINDER, 'SELECT %s, v.status AS volume_status, v.host AS volume_host, v.project_id, '
                'v.deleted_at AS volume_deleted_at FROM volume_attachment a JOIN volumes v ON v.id = a.volume_id '
                'WHERE a.deleted = 0 AND v.deleted <> 0 ORDER BY a.id' % columns_sql('a', ATTACHMENT_COLUMNS))
    for row in rows:
        yield audit.finding(
            spec, 'attachment %s (instance %s) is live but its volume %s is deleted'
            % (row['id'], row['instance_uuid'], row['volume_id']),
            dict(attachment=row['id'], volume=row['volume_id'], instance=row['instance_uuid']),
            [dict(row, table='volume_attachment')], project=row['project_id'], host=owner(row['volume_host']),
            since=first_time(row['volume_deleted_at'], row['updated_at'], row['created_at']), now=now,
            key='attachment/%s' % row['id'],
            hint='soft-delete the attachment row as volume_destroy does (deleted = 1, deleted_at, attach_status = '
                 'detached), after checking that the backend export and the host connection of %s are gone'
                 % (row['attached_host'] or 'the compute host'))


def orphaned_attachments(candidates, instances, absent):
    """(attachment id, 'deleted' | 'missing') of the ``candidates`` (attachment id, volume id, instance)
    whose instance row is deleted, or that no cell holds and Nova has no trace of (``absent``)."""
    chosen = []
    for attachment_id, _volume_id, instance in candidates:
        row = instances.get(instance)
        if row is not None and row['deleted']:
            chosen.append((attachment_id, 'deleted'))
        elif row is None and absent[instance].gone:
            chosen.append((attachment_id, 'missing'))
    return chosen


def attachment_of_deleted_instance(audit, spec):
    """Live attachments of live volumes whose instance Nova has deleted (or, with every cell read, lost)."""
    audit.schema(CINDER, 'cinder').require('volume_attachment', ATTACHMENT_COLUMNS, purpose='find orphaned attachments')
    live = reads.live_instances(audit)
    candidates = [(attachment_id, volume_id, instance) for attachment_id, (volume_id, instance, _status)
                  in reads.live_attachments(audit).items() if instance and instance not in live]
    if not candidates:
        return
    instances = reads.instances_by_uuid(audit, set(instance for _a, _v, instance in candidates))
    # Only every cell read, with no mapping and no build request, makes an instance missing.
    absent = audit.absent_instances(set(instance for _a, _v, instance in candidates if instance not in instances))
    chosen = orphaned_attachments(candidates, instances, absent)
    if not chosen:
        return
    rows = dict((row['id'], row) for row in reads.attachment_rows(audit, ids=[item[0] for item in chosen]))
    volumes = reads.volume_rows(audit, set(row['volume_id'] for row in rows.values()))
    siblings = group(reads.attachment_rows(audit, volume_ids=list(volumes)), 'volume_id')
    referenced = reads.mapped_volumes(audit)
    orphans = set(item[0] for item in chosen)
    now = audit.now(CINDER)
    for attachment_id, state in chosen:
        attachment = rows.get(attachment_id)
        if attachment is None:
            continue
        volume = volumes[attachment['volume_id']]
        instance_row = instances.get(attachment['instance_uuid'])
        others = [row['id'] for row in siblings.get(volume['id'], []) if row['id'] not in orphans]
        fix, hint = None, None
        if not others and volume['id'] not in referenced:
            fix = spec.repair('cinder_volume_state', volume=[volume['id']], status='available',
                              attach_status='detached', from_status=[volume['status']])
            hint = 'with a cloud configured the module deletes the attachment through Cinder, which removes the export'
        else:
            hint = ('volume %s has other live attachments or Nova mappings: delete only this one through Cinder '
                    '(openstack volume attachment delete %s)' % (volume['id'], attachment_id))
        evidence = [dict(attachment, table='volume_attachment'), dict(volume, table='volumes')]
        if instance_row is not None:
            evidence.append(dict(instance_row, table='instances'))
        yield audit.finding(
            spec, 'attachment %s of volume %s is live but instance %s is %s'
            % (attachment_id, volume['id'], attachment['instance_uuid'],
               'deleted' if state == 'deleted' else 'in no cell and has no instance mapping'),
            dict(attachment=attachment_id, volume=volume['id'], instance=attachment['instance_uuid'],
                 instance_state=state),
            evidence, project=volume['project_id'], host=attachment['attached_host'],
            since=first_time(instance_row and instance_row['deleted_at'], attachment['updated_at'],
                             attachment['created_at']), now=now,
            key='attachment/%s' % attachment_id, fix=fix, hint=hint)
