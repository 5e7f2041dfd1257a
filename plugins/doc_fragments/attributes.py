# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Every remediation module plans first: full check mode and diff support.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    description: Returns the complete plan (statements, before and after) and writes nothing.
    support: full
  diff_mode:
    description: Returns the fields each row change touches, before and after.
    support: full
'''
