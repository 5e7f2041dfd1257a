# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the nova_libvirt_ids role; the logic is in module_utils/host/libvirt_ids.py.

Each filter is documented in the .yml file of its name beside this one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.stackmender.openstack.plugins.module_utils.host import libvirt_ids


def compare_ids(passwd, group, users=None, groups=None):
    try:
        return libvirt_ids.host_rows(passwd, group, users, groups)
    except (TypeError, ValueError, IndexError, AttributeError) as error:
        raise AnsibleFilterError('compare_ids: %s' % error)


def compare_hosts(hosts, rows_per_host):
    if len(hosts) != len(rows_per_host):
        raise AnsibleFilterError('compare_hosts: %d host(s) but %d list(s) of rows' % (len(hosts), len(rows_per_host)))
    try:
        return libvirt_ids.compare_hosts(list(hosts), list(rows_per_host))
    except (TypeError, KeyError, AttributeError) as error:
        raise AnsibleFilterError('compare_hosts: %s' % error)


def libvirt_ids_report(table):
    return libvirt_ids.report_lines(table)


def libvirt_ids_reown_plan(found, paths):
    return libvirt_ids.reown_plan_lines(found, paths)


class FilterModule(object):

    def filters(self):
        return {
            'compare_ids': compare_ids,
            'compare_hosts': compare_hosts,
            'libvirt_ids_report': libvirt_ids_report,
            'libvirt_ids_reown_plan': libvirt_ids_reown_plan,
        }
