# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the cinder_multibackend_migration role; the logic is in module_utils/services/multibackend.py.

Each filter is documented in the .yml file of its name beside this one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import functools

from ansible.errors import AnsibleFilterError

from ansible_collections.stackmender.openstack.plugins.module_utils.services import multibackend


def _filter(function):
    """Bad input becomes a filter error that names the filter, not a traceback."""
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (TypeError, KeyError, AttributeError, ValueError) as error:
            raise AnsibleFilterError('%s: %s: %s' % (wrapped.__name__, type(error).__name__, error))
    return wrapped


FILTERS = {
    'multibackend_moves': multibackend.moves,
    'multibackend_invalid_moves': multibackend.invalid_moves,
    'multibackend_services': multibackend.service_rows,
    'multibackend_volumes': multibackend.volume_rows,
    'multibackend_match': multibackend.match_moves,
    'multibackend_inventory': multibackend.inventory_lines,
    'multibackend_new_not_up': multibackend.new_services_not_up,
    'multibackend_old_up': multibackend.old_services_up,
    'multibackend_orphans': multibackend.orphans,
    'multibackend_refused': multibackend.refused_lines,
    'multibackend_plan_lines': multibackend.plan_lines,
    'multibackend_transitional': multibackend.transitional_lines,
    'multibackend_resets': multibackend.resets,
    'multibackend_reset_groups': multibackend.reset_groups,
    'multibackend_waiting': multibackend.waiting_hosts,
    'multibackend_moved': multibackend.moved,
    'multibackend_report_lines': multibackend.report_lines,
}


class FilterModule(object):

    def filters(self):
        wrapped = {}
        for name, function in FILTERS.items():
            wrapped[name] = _filter(function)
            wrapped[name].__name__ = name
        return wrapped
