# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The options of a module that waits for the cloud after its API calls, as openstack.cloud names them.
    DOCUMENTATION = r'''
options:
  wait:
    description:
      - On the API path, wait after the calls until the cloud has done what they asked, reading each resource
        back, and fail when it has not within O(timeout).
      - With V(false) the run ends once the cloud has accepted the calls; nothing is read back, and the result
        notes it.
    type: bool
    default: true
    version_added: 0.1.0
  timeout:
    description:
      - Seconds the API path waits, with O(wait), for the cloud to finish. A timeout fails the task; the cloud
        keeps working on the requests it accepted, and a re-run plans again from what is done by then.
    type: int
    default: 180
    version_added: 0.1.0
'''
