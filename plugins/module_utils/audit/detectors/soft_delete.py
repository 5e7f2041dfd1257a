# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Soft-delete bookkeeping: live rows of soft-deleted parents, and soft-deleted rows without deleted_at.
Which child tables a destroy soft-deletes is the services layer's (instance_records.CHILD_TABLES,
cinder.VOLUME_DEPENDENT_TABLES)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.services import instance_records
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import normalize, quote_identifier
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors.common import CINDER, SHOWN_IDS, owner

# Child tables whose live rows must go when their parent is soft-deleted: what nova's instance_destroy
# and cinder's volume_destroy soft-delete, as (table, column naming the parent). Live attachments of
# deleted volumes have their own class (attachment_of_deleted_volume).
NOVA_CHILD_TABLES = instance_records.CHILD_TABLES
CINDER_VOLUME_CHILD_TABLES = tuple((table, 'volume_id') for table in cinder.VOLUME_DEPENDENT_TABLES
                                   if table != 'volume_attachment')
CINDER_SNAPSHOT_CHILD_TABLES = (('snapshot_metadata', 'snapshot_id'),)
# Tables checked for soft-deleted rows without deleted_at.
NOVA_SOFT_DELETE_TABLES = ('instances', 'block_device_mapping', 'migrations', 'services', 'compute_nodes')
CINDER_SOFT_DELETE_TABLES = ('volumes', 'volume_attachment', 'snapshots', 'services', 'backups', 'groups',
                             'volume_metadata', 'volume_admin_metadata')


def _children(audit, option, parent_table, parent_key, tables, schema):
    for table, child_key in tables:
        if not (schema.has(table, child_key) and schema.has(table, 'deleted') and schema.has(table, 'id')):
            continue
        extra = ', p.project_id' if schema.has(parent_table, 'project_id') else ', NULL'
        extra += ', p.host' if schema.has(parent_table, 'host') else ', NULL'
        for child_id, parent, deleted_at, project, host in audit.tuples(
                option, 'SELECT c.id, c.%s, p.deleted_at%s FROM %s c JOIN %s p ON p.%s = c.%s '
                        'WHERE c.deleted = 0 AND p.deleted <> 0 ORDER BY c.id'
                % (quote_identifier(child_key), extra, quote_identifier(table), quote_identifier(parent_table),
                   quote_identifier(parent_key), quote_identifier(child_key))):
            yield table, child_id, parent, deleted_at, project, host


def group_children(groups, option, kind, children):
    """Adds ``children`` (table, child id, parent, parent deleted_at, project, host) of parents of
    ``kind`` in database ``option`` to ``groups``: {(option, kind, parent, table): [deleted_at,
    project, host, [child ids]]}."""
    for table, child_id, parent, deleted_at, project, host in children:
        groups.setdefault((option, kind, parent, table), [deleted_at, project, host, []])[3].append(child_id)
    return groups


def live_child_of_deleted_parent(audit, spec):
    """Live rows that belong to a soft-deleted instance, volume or snapshot."""
    groups = {}
    if audit.has('nova'):
        for cell in audit.cells():
            group_children(groups, cell.option, 'instance', _children(
                audit, cell.option, 'instances', 'uuid', NOVA_CHILD_TABLES, audit.nova_schema(cell)))
    else:
        audit.note('live_child_of_deleted_parent: Nova not read (give nova_db or nova_api_db)')
    if audit.has('cinder'):
        schema = audit.schema(CINDER, 'cinder')
        group_children(groups, CINDER, 'volume', _children(
            audit, CINDER, 'volumes', 'id', CINDER_VOLUME_CHILD_TABLES, schema))
        group_children(groups, CINDER, 'snapshot', _children(
            audit, CINDER, 'snapshots', 'id', CINDER_SNAPSHOT_CHILD_TABLES, schema))
    else:
        audit.note('live_child_of_deleted_parent: Cinder not read (give cinder_db)')
    for (option, kind, parent, table), (deleted_at, project, host, ids) in sorted(groups.items(), key=lambda item: item[0]):
        convention = 'deleted = id' if kind == 'instance' else 'deleted = 1'
        if kind == 'volume':
            host = owner(host)
        yield audit.finding(
            spec, '%d live %s row(s) belong to %s %s, which is deleted' % (len(ids), table, kind, parent),
            {kind: parent, 'database': option, 'table': table, 'rows': ids[:SHOWN_IDS], 'count': len(ids)},
            [dict(table=table, id=child_id) for child_id in ids[:SHOWN_IDS]], project=project, host=host,
            since=deleted_at, now=audit.now(option), key='%s/%s/%s/%s' % (option, kind, parent, table),
            hint='soft-delete these rows as the service\'s own destroy does (%s, deleted_at = %s); live children keep '
                 'the deleted parent from being archived or purged' % (convention, normalize(deleted_at)))


def deleted_without_deleted_at(audit, spec):
    """Soft-deleted rows (deleted set) that have no deleted_at."""
    sources = []
    if audit.has('nova'):
        for cell in audit.cells():
            sources.append((cell.option, audit.nova_schema(cell), NOVA_SOFT_DELETE_TABLES))
    if audit.has('cinder'):
        sources.append((CINDER, audit.schema(CINDER, 'cinder'), CINDER_SOFT_DELETE_TABLES))
    for option, schema, tables in sources:
        for table in tables:
            if not (schema.has(table, 'deleted') and schema.has(table, 'deleted_at')):
                continue
            where = 'WHERE deleted <> 0 AND deleted_at IS NULL'
            count = audit.tuples(option, 'SELECT COUNT(*) FROM %s %s' % (quote_identifier(table), where))[0][0]
            if not count:
                continue
            ids = [row[0] for row in audit.tuples(option, 'SELECT id FROM %s %s ORDER BY id LIMIT %d'
                                                  % (quote_identifier(table), where, SHOWN_IDS))]
            yield audit.finding(
                spec, '%d soft-deleted row(s) of %s in %s have no deleted_at' % (count, table, option),
                dict(database=option, table=table, rows=ids, count=count),
                [dict(table=table, id=row_id) for row_id in ids], key='%s/%s' % (option, table),
                hint='set deleted_at (for example to updated_at) so age-based archiving and purging '
                     '(nova-manage db archive_deleted_rows --before, cinder-manage db purge) sees them')
