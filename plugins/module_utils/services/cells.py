# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one model of Nova's cells, for every module and for the audit.

A cloud has one or many cells. What a run may conclude depends on which it read:

* with ``nova_api_db`` every cell of ``cell_mappings`` is read (the view is
  *complete*); a ``nova_db`` given as well must be one of those cells, else the
  run refuses, naming the databases;
* with ``nova_db`` alone one cell is read and the view is *partial*: nothing
  may be called missing, orphaned or purgeable because it is absent from it.

Cells are keyed by uuid. Each cell has an *option*, the name that sessions,
plans, results and journals use for its database: ``nova:<name>``, or
``nova:<uuid>`` where the name is empty or shared by several cells, or
``nova_db`` for the one cell of a partial view.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

CELL0_UUID = '00000000-0000-0000-0000-000000000000'
NOVA_DB = 'nova_db'
NOVA_API_DB = 'nova_api_db'
# The options that reach Nova's cell databases: either one is enough to read cells.
NOVA_CELL_OPTIONS = (NOVA_DB, NOVA_API_DB)
NOVA_CELL_REQUIREMENT = 'nova_db (a single cell database) or nova_api_db (every cell through cell_mappings)'
PARTIAL_VIEW_NOTE = ('only the cell of nova_db was read (nova_api_db not given): the guards saw that cell alone, and '
                     'nothing was called missing because it is absent from it')


class Cell(object):
    """One Nova cell database as a run sees it. ``target`` holds the password: it is never shown."""

    def __init__(self, option, uuid=None, cell_name=None, mapping_id=None, target=None):
        self.option = option
        self.uuid = uuid
        self.cell_name = cell_name
        self.mapping_id = mapping_id
        self.target = target
        self.session = None  # set by the owner of the sessions (module base or audit)

    @property
    def name(self):
        """The name results and sessions use for this cell (its option)."""
        return self.option

    @property
    def is_cell0(self):
        return self.uuid == CELL0_UUID

    def describe(self):
        return dict(option=self.option, uuid=self.uuid, name=self.cell_name, mapping_id=self.mapping_id,
                    database=self.target.display() if self.target is not None else None)


class NovaCells(object):
    """The cells a run reads, and whether they are every cell of the cloud."""

    def __init__(self, cells, complete):
        self.cells = list(cells)
        self.complete = complete
        self.by_uuid = dict((cell.uuid, cell) for cell in self.cells if cell.uuid)
        self.by_mapping_id = dict((cell.mapping_id, cell) for cell in self.cells if cell.mapping_id is not None)

    def __iter__(self):
        return iter(self.cells)

    def __len__(self):
        return len(self.cells)

    def __bool__(self):
        return bool(self.cells)

    __nonzero__ = __bool__

    def with_hosts(self):
        """Cells whose instances have hosts: cell0 holds only instances that were never scheduled."""
        return [cell for cell in self.cells if not cell.is_cell0]

    def describe(self):
        """What a result shows: the cells read, and whether they are all of them."""
        return dict(complete=self.complete, read=[cell.option for cell in self.cells])


def _options_of(mappings):
    """``nova:<name>`` per mapping, ``nova:<uuid>`` where the name is empty or not unique."""
    names = [row['name'] for row in mappings]
    return dict((row['uuid'], 'nova:%s' % (row['name'] if row['name'] and names.count(row['name']) == 1
                                           else row['uuid'])) for row in mappings)


def read_cell_mappings(api_session, api_target, register_secret=None):
    """Every cell of ``nova_api_db`` as :class:`Cell`, in id order, with its database target."""
    rows = api_session.query('SELECT id, uuid, name, database_connection FROM cell_mappings ORDER BY id')
    options = _options_of(rows)
    cells = []
    for row in rows:
        label = 'nova_api_db cell %s' % (row['name'] or row['uuid'])
        if register_secret is not None:
            # Masked before anything parses it: a malformed cell URL fails with its password hidden.
            for form in redaction.url_password_forms(row['database_connection'] or ''):
                register_secret(form)
        url = db.format_cell_url(row['database_connection'] or '', api_target)
        target = db.parse_url(label, url, ssl=api_target.ssl)
        if target.password and register_secret is not None:
            register_secret(target.password)
        cells.append(Cell(options[row['uuid']], row['uuid'], row['name'], row['id'], target))
    return cells


def resolve_cells(targets, api_session=None, register_secret=None):
    """The cells of a run, from its parsed database options (``targets``).

    ``api_session`` is a callable returning the open ``nova_api_db`` session
    (called only when that option is given). Returns :class:`NovaCells`, or
    ``None`` when neither Nova option is given. Each cell's ``target`` is set;
    the caller registers it and opens its session.
    """
    if NOVA_API_DB in targets:
        cells = read_cell_mappings(api_session(), targets[NOVA_API_DB], register_secret)
        if NOVA_DB in targets:
            given = targets[NOVA_DB]
            matching = [cell for cell in cells if same_database(cell.target, given)]
            if not matching:
                raise InputError(
                    'nova_db (%s) is none of the cells that nova_api_db lists in cell_mappings (%s): give nova_api_db '
                    'alone to work on every cell, or a nova_db that is one of them'
                    % (given.display(), ', '.join('%s at %s' % (cell.option, cell.target.display()) for cell in cells)))
            for cell in matching:
                # The operator's own credentials for that database are used, as given.
                cell.target = given
        return NovaCells(cells, complete=True)
    if NOVA_DB in targets:
        return NovaCells([Cell(NOVA_DB, target=targets[NOVA_DB])], complete=False)
    return None


def same_database(first, second):
    """Whether two targets name the same database on the same server."""
    return first.identity() == second.identity()


# ---------------------------------------------------------------------------
# What nova_api says of instances the cells do not hold


def instance_mappings(api_session, uuids):
    """{uuid: row} of the instance mappings of ``uuids`` (id, instance_uuid, cell_id, queued_for_delete,
    updated_at, cell uuid and name)."""
    found = {}
    for row in api_session.select_in(
            'SELECT m.id, m.instance_uuid, m.cell_id, m.queued_for_delete, m.updated_at, c.uuid AS cell_uuid, '
            'c.name AS cell_name FROM instance_mappings m LEFT JOIN cell_mappings c ON c.id = m.cell_id '
            'WHERE m.instance_uuid IN ({in}) ORDER BY m.id', sorted(set(uuids))):
        found.setdefault(row['instance_uuid'], row)
    return found


def build_requests(api_session, uuids):
    """{uuid: row} of the build requests of ``uuids`` (id, instance_uuid, project_id, created_at)."""
    found = {}
    for row in api_session.select_in('SELECT id, instance_uuid, project_id, created_at FROM build_requests '
                                     'WHERE instance_uuid IN ({in}) ORDER BY id', sorted(set(uuids))):
        found.setdefault(row['instance_uuid'], row)
    return found


class Absence(object):
    """Why an instance is in none of the cells read, as nova_api and the view tell it.

    ``kind`` is one of:
      ``unverifiable``  a partial view: another cell may hold it;
      ``mapped``        nova_api maps it to a cell (``evidence`` shows the mapping); it is not gone;
      ``building``      a build request or a mapping without a cell: it is still being built;
      ``gone``          every cell read, no mapping, no build request: Nova has no trace of it.
    """

    def __init__(self, uuid, kind, evidence=()):
        self.uuid = uuid
        self.kind = kind
        self.evidence = list(evidence)

    @property
    def gone(self):
        return self.kind == 'gone'

    def explain(self):
        return {
            'unverifiable': 'instance %s is not in the cell of nova_db, and other cells were not read (give '
                            'nova_api_db to read every cell)' % self.uuid,
            'mapped': 'instance %s is in none of the cells read, but nova_api maps it to cell %s: it is not gone'
                      % (self.uuid, self.evidence[0].get('cell_name') or self.evidence[0].get('cell_id')
                         if self.evidence else '?'),
            'building': 'instance %s is in no cell read, and nova_api shows it is still a build request (a build '
                        'request row, or a mapping without a cell): delete it through the API' % self.uuid,
            'gone': 'instance %s is in no cell and nova_api has no mapping and no build request of it' % self.uuid,
        }[self.kind]


def classify_absent(cells, uuids, api_session=None):
    """{uuid: Absence} for instances none of ``cells`` holds (``api_session``: nova_api, when given)."""
    uuids = sorted(set(uuids))
    if not uuids:
        return {}
    if not cells.complete or api_session is None:
        return dict((uuid, Absence(uuid, 'unverifiable')) for uuid in uuids)
    mappings = instance_mappings(api_session, uuids)
    requests = build_requests(api_session, uuids)
    found = {}
    for uuid in uuids:
        mapping, request = mappings.get(uuid), requests.get(uuid)
        if request is not None or (mapping is not None and mapping['cell_id'] is None):
            found[uuid] = Absence(uuid, 'building', [row for row in (mapping, request) if row is not None])
        elif mapping is not None:
            found[uuid] = Absence(uuid, 'mapped', [mapping])
        else:
            found[uuid] = Absence(uuid, 'gone')
    return found
