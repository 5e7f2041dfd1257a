# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Nova cells as ``nova_api.cell_mappings`` lists them, for code outside the remediation base.

The remediation base class resolves cells itself; read-only modules such as
``consistency_info`` use :func:`cell_mappings` to find every cell database,
with URL templates resolved against the API database's own URL.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils import database as db

CELL0_UUID = '00000000-0000-0000-0000-000000000000'


class CellMapping(object):
    """One row of ``cell_mappings`` with its database target (never shown: it holds the password)."""

    def __init__(self, mapping_id, uuid, name, target):
        self.id = mapping_id
        self.uuid = uuid
        self.name = name or uuid
        self.target = target

    @property
    def option(self):
        """The name results and sessions use for this cell's database."""
        return 'nova:%s' % self.name

    @property
    def is_cell0(self):
        return self.uuid == CELL0_UUID


def cell_mappings(api_session, api_target, register_secret=None):
    """Every cell of ``nova_api_db``, in id order.

    ``register_secret`` is called with each cell database password so the
    caller can mask it (``module.no_log_values.add``).
    """
    cells = []
    for row in api_session.query('SELECT id, uuid, name, database_connection FROM cell_mappings ORDER BY id'):
        url = db.format_cell_url(row['database_connection'] or '', api_target)
        target = db.parse_url('nova_api_db cell %s' % (row['name'] or row['uuid']), url, ssl=api_target.ssl)
        if target.password and register_secret is not None:
            register_secret(target.password)
        cells.append(CellMapping(row['id'], row['uuid'], row['name'], target))
    return cells


def same_database(first, second):
    """Whether two targets name the same database on the same server."""
    return first.identity() == second.identity()
