# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The rehost of cinder_service_rehost: what it reads, and its plan as pure functions on plain data.

A :class:`Move` is the checked pair of hosts. The readers take the Cinder session and read
under lock (the module plans under the locks of its write). The plan functions take rows as
dicts and return the changes as plain data (key, before, after, expect), which the module
hands to its Plan; they need no database (tests/unit/test_rehost_plan.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cinder
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import normalize, quote_identifier
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import placeholders

# Tables whose rows follow the volumes.
OWNED_TABLES = ('groups', 'consistencygroups', 'image_volume_cache_entries')
VOLUME_COLUMNS = ('id', 'host', 'status', 'attach_status', 'migration_status', 'deleted', 'updated_at',
                  'service_uuid', 'cluster_name')
ATTACHMENT_COLUMNS = ('id', 'volume_id', 'instance_uuid', 'attached_host', 'attach_status', 'deleted', 'updated_at')
OWNED_COLUMNS = ('id', 'host', 'cluster_name', 'status', 'deleted', 'updated_at', 'volume_id', 'image_id')
REASON_LENGTH = 255


class Move(object):
    """The hosts of a rehost, checked (InputError otherwise): see cinder.check_rehost_hosts."""

    def __init__(self, from_host, to_host):
        self.from_host, self.to_host = from_host, to_host
        self.to_pool = cinder.check_rehost_hosts(from_host, to_host)
        self.old_service_host = cinder.service_host(from_host)
        self.new_service_host = cinder.service_host(to_host)
        # from_host naming the new service itself, without a pool, completes what cinder-manage
        # volume update_host leaves: the pool-less rows get the pool and the service's uuid.
        self.fill_pool = cinder.fills_pool(from_host, to_host)

    def matches(self, value):
        """Whether a host column is one this rehost moves."""
        return cinder.rehost_matches(value, self.from_host, self.to_host)

    def shaped(self, old_value):
        """The new host for a row that named the old one: with the pool if it had one."""
        return self.to_host if '#' in old_value else self.new_service_host


# ------------------------------------------------------------------ reading (under lock)

def select_list(columns):
    return ', '.join(quote_identifier(column) for column in columns)


def read_under(session, move, table, columns, live=True):
    """Rows of ``table`` whose host is from_host or one of its pools (checked byte for byte), and their scope.

    The scope is the condition the rows were read through, when it matched them and no other
    (then it can write them, see plan.uniform_updates); else None.
    """
    where = cinder.host_condition('host')
    if live:
        where = 'deleted = 0 AND ' + where
    params = cinder.host_condition_params(move.from_host)
    rows = session.query('SELECT %s FROM %s WHERE %s ORDER BY id' % (select_list(columns), quote_identifier(table), where),
                         params, lock=True)
    matching = [row for row in rows if move.matches(row['host'])]
    scope = None
    if live and len(matching) == len(rows):
        scope = (((('deleted', 'equals'),), cinder.host_scope('host')), [0] + params)
    return matching, scope


def read_listed_volumes(session, columns, volume_ids):
    """The listed volumes, locked, in the order listed (InputError names the missing)."""
    return cinder.listed_volumes(session, volume_ids, select_list(columns), lock=True)


def read_attachments(session, move, columns, moving_ids, listed):
    """Live attachments naming the old host, of the volumes that move now or (without a list,
    ``listed`` false) that already moved to the new service, as after cinder-manage volume update_host."""
    rows = session.query('SELECT %s FROM volume_attachment WHERE deleted = 0 AND %s ORDER BY id'
                         % (select_list(columns), cinder.host_condition('attached_host')),
                         cinder.host_condition_params(move.from_host), lock=True)
    rows = [row for row in rows if move.matches(row['attached_host'])]
    others = sorted(set(row['volume_id'] for row in rows if row['volume_id'] not in moving_ids))
    moved_before = set()
    if others and not listed:
        for volume in session.select_in('SELECT id, host FROM volumes WHERE deleted = 0 AND id IN ({in})', others):
            if cinder.host_matches(volume['host'], move.new_service_host):
                moved_before.add(volume['id'])
    return [row for row in rows if row['volume_id'] in moving_ids or row['volume_id'] in moved_before]


def read_group_members(session, link, group_ids):
    """{group id: [live volume (id, host, group_id)]} of the groups, by the volumes' column ``link``."""
    members = {}
    for volume in session.select_in('SELECT id, host, %s AS group_id FROM volumes WHERE deleted = 0 AND %s IN ({in})'
                                    % (quote_identifier(link), quote_identifier(link)), group_ids):
        members.setdefault(volume['group_id'], []).append(volume)
    return members


def read_service_volumes(session, service_host, service_uuids, has_uuid):
    """Live volumes of an old service: its host and every pool of it, or (``has_uuid``) its uuids."""
    rows = session.query('SELECT id, host%s FROM volumes WHERE deleted = 0 AND %s ORDER BY id'
                         % (', service_uuid' if has_uuid else '', cinder.host_condition('host')),
                         cinder.host_condition_params(service_host))
    found = dict((row['id'], row) for row in rows if cinder.host_matches(row['host'], service_host))
    if has_uuid and service_uuids:
        for row in session.query('SELECT id, host, service_uuid FROM volumes WHERE deleted = 0 AND '
                                 'service_uuid IN (%s) ORDER BY id' % placeholders(len(service_uuids)), service_uuids):
            found.setdefault(row['id'], row)
    return [found[key] for key in sorted(found)]


# ------------------------------------------------------------------ planning (pure)

def sort_listed(move, volumes):
    """Listed volumes as (moving, already at to_host, elsewhere): the last with the problem of each."""
    moving, already, elsewhere = [], [], []
    for row in volumes:
        if row['deleted']:
            elsewhere.append(dict(id=row['id'], host=row['host'], deleted=row['deleted'], problem='deleted'))
        elif move.matches(row['host']):
            moving.append(row)
        elif row['host'] == move.to_host:
            already.append(row)
        else:
            elsewhere.append(dict(id=row['id'], host=row['host'], problem='neither under from_host nor at to_host'))
    return moving, already, elsewhere


def split_groups(move, rows, members, moving_ids):
    """Of the groups under from_host, those the listed volumes take along, and the groups the list would split.

    Returns (selected rows, splits), each split dict(row=, inside=[volumes that move], left=[that stay]).
    """
    selected, splits = [], []
    for row in rows:
        inside = [volume for volume in members.get(row['id'], []) if volume['id'] in moving_ids]
        left = [volume for volume in members.get(row['id'], []) if volume['id'] not in moving_ids
                and move.matches(volume['host'])]
        if not inside:
            continue
        if left:
            splits.append(dict(row=row, inside=inside, left=left))
        selected.append(row)
    return selected, splits


def new_service_problem(new_services, services, binary, new_service_host):
    """Why no one live new service exists, as (message, evidence rows), or None when exactly one does."""
    if len(new_services) == 1:
        return None
    if not new_services:
        return ('no live %s service %s exists: start it (or fix to_host) first; its uuid is what the volumes '
                'must point at' % (binary, new_service_host), services)
    return ('%d live %s service rows claim %s; remove the stale one first' % (len(new_services), binary,
                                                                              new_service_host), new_services)


def cluster_value(move, new_service):
    """The cluster_name of moved rows: the new service's cluster with the pool of to_host, or None."""
    cluster = new_service.get('cluster_name')
    return '%s#%s' % (cluster, move.to_pool) if cluster else None


def volume_updates(move, volumes, new_service, stamp, has_service_uuid=True, has_cluster_name=True):
    """The volumes' updates, one per set of changed columns: [(after, [(id, before, expect), ...])]."""
    targets = [('host', move.to_host)]
    if has_service_uuid and 'uuid' in new_service:
        targets.append(('service_uuid', new_service.get('uuid')))
    if has_cluster_name:
        targets.append(('cluster_name', cluster_value(move, new_service)))
    shapes = {}
    for volume in volumes:
        changed = tuple(column for column, value in targets if volume[column] != value)
        after = dict((column, value) for column, value in targets if column in changed)
        after['updated_at'] = stamp
        before = dict((column, volume[column]) for column in changed)
        # Normalized here, one value, rather than by the plan, which tests every value of the row.
        before['updated_at'] = normalize(volume['updated_at'])
        expect = {'deleted': 0, 'status': volume['status'], 'migration_status': volume['migration_status']}
        shapes.setdefault(changed, (after, []))[1].append((volume['id'], before, expect))
    return list(shapes.values())


def attachment_changes(move, attachments, stamp):
    """The attachments whose attached_host names the old Cinder host: [(id, before, after, expect)]."""
    return [(row['id'], dict(attached_host=row['attached_host'], updated_at=row['updated_at']),
             dict(attached_host=move.shaped(row['attached_host']), updated_at=stamp),
             dict(deleted=0, volume_id=row['volume_id']))
            for row in attachments if move.shaped(row['attached_host']) != row['attached_host']]


def owned_changes(move, rows, new_service, stamp):
    """Groups, consistency groups and image cache entries that follow the volumes: [(id, before, after, expect)]."""
    cluster = cluster_value(move, new_service)
    changes = []
    for row in rows:
        after = {}
        if move.shaped(row['host']) != row['host']:
            after['host'] = move.shaped(row['host'])
        if 'cluster_name' in row and row['cluster_name'] != cluster:
            after['cluster_name'] = cluster
        if not after:
            continue
        before = dict((column, row[column]) for column in after)
        if 'updated_at' in row:
            before['updated_at'] = row['updated_at']
            after['updated_at'] = stamp
        changes.append((row['id'], before, after, {'deleted': 0} if 'deleted' in row else {}))
    return changes


def service_changes(move, old_services, disable_old, remove_old, stamp, has_modified_at=True):
    """How the old service rows retire: [(row, before, after)]; a row with nothing to change is left out."""
    reason = ('stackmender: rehosted to %s' % move.to_host)[:REASON_LENGTH]
    changes = []
    for row in old_services:
        after = {}
        if disable_old and not row['disabled']:
            after.update(disabled=1, disabled_reason=reason)
            if has_modified_at:
                # Cinder's own disable stamps modified_at and keeps updated_at, the heartbeat.
                after['modified_at'] = stamp
        if remove_old:
            after.update(deleted=1, deleted_at=stamp)
        if after:
            changes.append((row, dict((column, row[column]) for column in after), after))
    return changes


def busy_volumes(volumes):
    """The volumes in a transitional status or mid-migration: their operation went to the old service."""
    return [volume for volume in volumes
            if volume['status'] in cinder.REHOST_BLOCKING_STATUSES or cinder.is_migrating(volume['migration_status'])]


def busy_states(volumes):
    """What keeps busy volumes busy, each state once, sorted."""
    return sorted(set(volume['status'] if volume['status'] in cinder.REHOST_BLOCKING_STATUSES else
                      'migration %s' % volume['migration_status'] for volume in volumes))
