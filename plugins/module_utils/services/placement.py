# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Placement rows: resource providers, consumers and allocations.

Placement has no soft delete: rows are deleted. Each write of allocations
bumps the generation of the consumer it rewrites and of every provider whose
allocations it touches (``_set_allocations`` in placement/objects/allocation.py),
and a consumer left without allocations is deleted
(``delete_consumers_if_no_allocations``). :class:`AllocationMove` plans the
same row changes for a move between compute-node providers, so that Nova's
report client, which sends the generations it last saw, sees the change.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import DELETE, INSERT

ALLOCATION_COLUMNS = ('id', 'resource_provider_id', 'consumer_id', 'resource_class_id', 'used', 'updated_at')
CONSUMER_COLUMNS = ('id', 'uuid', 'generation', 'updated_at')
PROVIDER_COLUMNS = ('id', 'uuid', 'name', 'generation', 'root_provider_id', 'parent_provider_id', 'updated_at')


def require_schema(schema, purpose):
    schema.require('allocations', ALLOCATION_COLUMNS, purpose=purpose)
    schema.require('consumers', CONSUMER_COLUMNS, purpose=purpose)
    schema.require('resource_providers', PROVIDER_COLUMNS, purpose=purpose)
    schema.require('resource_classes', ('id', 'name'), purpose=purpose)


PROVIDER_SELECT = ('SELECT id, uuid, name, generation, root_provider_id, parent_provider_id, updated_at '
                   'FROM resource_providers WHERE %s IN (%s)')


def _providers_by(session, column, values):
    """{value of ``column``: provider row} of the providers whose ``column`` is one of ``values``."""
    found = {}
    for row in session.select_in(PROVIDER_SELECT % (column, '{in}'), sorted(set(value for value in values if value))):
        found[row[column]] = row
    return found


def providers_by_uuid(session, uuids):
    """{uuid: provider row} of the given provider uuids that exist."""
    return _providers_by(session, 'uuid', uuids)


def providers_by_id(session, ids):
    """{id: provider row} of the given provider ids that exist."""
    return _providers_by(session, 'id', ids)


def allocations_of(session, consumer_uuids):
    """Allocations of the consumers, with the provider's uuid and root and the class name."""
    return session.select_in(
        'SELECT a.id, a.resource_provider_id, a.consumer_id, a.resource_class_id, a.used, a.updated_at, '
        'p.uuid AS provider_uuid, p.root_provider_id, rc.name AS resource_class '
        'FROM allocations a JOIN resource_providers p ON p.id = a.resource_provider_id '
        'LEFT JOIN resource_classes rc ON rc.id = a.resource_class_id '
        'WHERE a.consumer_id IN ({in}) ORDER BY a.id', sorted(set(consumer_uuids)))


def consumers_by_uuid(session, uuids):
    found = {}
    for row in session.select_in('SELECT id, uuid, generation, updated_at FROM consumers WHERE uuid IN ({in})',
                                 sorted(set(uuids))):
        found[row['uuid']] = row
    return found


def shown_allocation(row):
    """What a result or a guard shows of an allocation."""
    return dict(id=row['id'], consumer_id=row['consumer_id'], resource_provider=row['provider_uuid'],
                resource_class=row.get('resource_class'), used=row['used'])


def _bump_order(bump):
    """Consumers first, then providers; equal generations next to each other so they share a statement."""
    table, row, _why = bump
    return (table != 'consumers', row['generation'] or 0, row['id'])


class AllocationMove(object):
    """Row changes that move consumers' allocations between providers of one placement database.

    ``move`` plans the allocations of one instance; ``finish`` adds the
    generation bumps (once per touched consumer and provider, as one
    placement write carrying every consumer would) and the deletion of
    consumers left without allocations.
    """

    def __init__(self, option, session, stamp):
        self.option = option
        self.session = session
        self.stamp = stamp
        self.changes = []
        self.touched_providers = {}
        self.touched_consumers = set()
        self.emptied_consumers = set()
        self.consumers = {}

    def touch_provider(self, provider_id):
        """Bump this provider's generation in finish(), as a placement write to it would."""
        self.touched_providers[provider_id] = True

    def move(self, instance_uuid, source, target, allocations, migration_uuids, abandoned_dest_ids,
             instance_consumer_exists=True):
        """Plan one instance's move from provider row ``source`` to ``target``.

        - the instance's and its abandoned migrations' allocations on the source root go to the
          target under the instance, or are dropped where the instance already holds that class there;
        - an abandoned migration's other allocations are dropped, and its consumer with them;
        - the instance's allocations on ``abandoned_dest_ids`` (destinations of abandoned migrations,
          other than the target) are dropped.

        The instance's allocations on nested providers are left alone (the caller guards them).
        Returns (moved, dropped, kept): kept are the migration rows left because the instance has no
        consumer row to take them over.
        """
        moved = dropped = 0
        kept = []
        held_on_target = set(row['resource_class_id'] for row in allocations
                             if row['consumer_id'] == instance_uuid and row['resource_provider_id'] == target['id'])
        # The instance's own rows first: those are what it uses; a migration's hold comes second.
        ordered = sorted(allocations, key=lambda row: (row['consumer_id'] != instance_uuid, row['id']))
        for row in ordered:
            is_instance = row['consumer_id'] == instance_uuid
            if not is_instance and row['consumer_id'] not in migration_uuids:
                continue
            if row['resource_provider_id'] == source['id']:
                if row['resource_class_id'] in held_on_target:
                    self.drop(row, 'the instance already holds this resource class on the target provider')
                    dropped += 1
                    continue
                if not is_instance and not instance_consumer_exists:
                    kept.append(row)
                    continue
                held_on_target.add(row['resource_class_id'])
                after = dict(resource_provider_id=target['id'], updated_at=self.stamp)
                before = dict(resource_provider_id=row['resource_provider_id'], updated_at=row['updated_at'])
                note = 'move the allocation to the target compute node provider'
                if not is_instance:
                    after['consumer_id'] = instance_uuid
                    before['consumer_id'] = row['consumer_id']
                    note = "the abandoned migration's hold on the source becomes the instance's, on the target"
                    self.emptied_consumers.add(row['consumer_id'])
                self.changes.append(dict(table='allocations', key={'id': row['id']}, before=before, after=after,
                                         expect=dict(consumer_id=row['consumer_id'],
                                                     resource_class_id=row['resource_class_id'], used=row['used']),
                                         note=note))
                self.touch_provider(source['id'])
                self.touch_provider(target['id'])
                self.touched_consumers.add(instance_uuid)
                moved += 1
            elif not is_instance:
                self.drop(row, 'hold of an abandoned migration')
                self.emptied_consumers.add(row['consumer_id'])
                dropped += 1
            elif row['resource_provider_id'] in abandoned_dest_ids and row['resource_provider_id'] != target['id']:
                self.drop(row, 'claim on the destination of an abandoned migration')
                dropped += 1
        for row in kept:
            self.emptied_consumers.discard(row['consumer_id'])
        return moved, dropped, kept

    def create_consumer(self, uuid, like):
        """Plan the consumer row placement creates when allocations move to a consumer it does not know.

        Nova's ``move_allocations`` posts them (microversion 1.28) with the source consumer's project and
        user and a null generation for the target: placement's ``ensure_consumer`` then creates the
        consumer (generation 0, no consumer type before 1.38) and the write bumps it once, to 1.
        ``like`` is the source consumer's row; the new row is keyed by its uuid, so its undo deletes it.
        The caller must move allocations to it: finish() bumps no generation of a consumer it creates.
        """
        rows = self.session.query('SELECT project_id, user_id FROM consumers WHERE id = %s', (like['id'],))
        if not rows:
            return False
        after = dict(uuid=uuid, project_id=rows[0]['project_id'], user_id=rows[0]['user_id'], generation=1,
                     created_at=self.stamp, updated_at=self.stamp)
        self.changes.append(dict(table='consumers', key={'uuid': uuid}, action=INSERT, before=None, after=after,
                                 note='the consumer placement creates for allocations moved to a new consumer'))
        return True

    def drop(self, row, why):
        """Plan the deletion of one allocation row, and the bumps it implies."""
        self.changes.append(dict(table='allocations', key={'id': row['id']}, action=DELETE,
                                 before=dict((column, row[column]) for column in ALLOCATION_COLUMNS),
                                 note=why))
        self.touch_provider(row['resource_provider_id'])
        self.touched_consumers.add(row['consumer_id'])

    def finish(self):
        """Add the generation bumps and the deletion of emptied consumers; returns every change."""
        consumers = consumers_by_uuid(self.session, self.touched_consumers | self.emptied_consumers)
        bumps = []
        for uuid in sorted(self.touched_consumers | self.emptied_consumers):
            row = consumers.get(uuid)
            if row is None:
                continue
            if uuid in self.emptied_consumers:
                # Placement deletes a consumer that no longer has allocations.
                self.changes.append(dict(table='consumers', key={'id': row['id']}, action=DELETE,
                                         before=dict(uuid=row['uuid'], generation=row['generation'],
                                                     updated_at=row['updated_at']),
                                         note='consumer left without allocations, deleted as placement does'))
                continue
            bumps.append(('consumers', row, 'consumer generation, as placement bumps it on each allocation write'))
        providers = providers_by_id(self.session, list(self.touched_providers))
        for provider_id in sorted(providers):
            bumps.append(('resource_providers', providers[provider_id],
                          'provider generation, as placement bumps it when its allocations change'))
        # Equal generations run as one statement: order by it.
        for table, row, why in sorted(bumps, key=_bump_order):
            self.changes.append(dict(table=table, key={'id': row['id']},
                                     before=dict(generation=row['generation'], updated_at=row['updated_at']),
                                     after=dict(generation=(row['generation'] or 0) + 1, updated_at=self.stamp),
                                     expect=dict(uuid=row['uuid']), note=why))
        return self.changes
