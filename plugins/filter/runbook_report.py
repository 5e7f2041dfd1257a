# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The runbooks' human reports; the logic is in module_utils/audit/runbook_report.py.

The filter is documented in runbook_report.yml beside this file.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import runbook_report as reports
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError


def runbook_report(report, runbook, format='markdown'):  # pylint: disable=redefined-builtin
    try:
        return reports.render(report, runbook, format)
    except InputError as error:
        raise AnsibleFilterError(error.msg)


class FilterModule(object):

    def filters(self):
        return {'runbook_report': runbook_report}
