# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that carry the reviewed plans of a check job to the apply job of an AWX workflow.

A runbook's check job records the ``review`` of each remediation task with ``reviews_of`` (set_stats:
stackmender_reviews); AWX hands those artifacts to the next nodes, and the apply job gives each task
its review with ``review_for`` (option expected_fingerprint), so a plan that drifted is refused.
Each filter is documented in the .yml file of its name beside this one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

from ansible.errors import AnsibleFilterError


def review_key(task, item=None):
    """The key of one task's review (of one loop item), the same in the check and the apply job."""
    if not isinstance(task, str) or not task:
        raise AnsibleFilterError('review_key: the task name must be a non-empty string')
    if item is None:
        return task
    return '%s %s' % (task, json.dumps(item, sort_keys=True, default=str))


def _keyed(item, item_key):
    """The part of a loop item that names it: ``item_key`` of a dict, of each dict of a list, or the item."""
    if item_key is None:
        return item
    if isinstance(item, list):
        return [entry[item_key] for entry in item]
    return item[item_key]


def reviews_of(registered, task, item_key=None):
    """{key: review} of a registered result (or of each result of a loop) that check mode returned.

    ``item_key`` names the loop item by one attribute (of each of its dicts, for a batch), so that
    other attributes that change between the jobs do not change the key.
    """
    if not isinstance(registered, dict):
        raise AnsibleFilterError('reviews_of: expects a registered result, got %s' % type(registered).__name__)
    results = registered.get('results') if 'results' in registered else [registered]
    found = {}
    for result in results or []:
        if isinstance(result, dict) and isinstance(result.get('review'), dict):
            item = _keyed(result.get('item'), item_key) if 'results' in registered else None
            found[review_key(task, item)] = result['review']
    return found


def review_for(reviews, task, item=None):
    """The review recorded for this task (and loop item), or '': no review, nothing to compare.

    An empty string, not None: every ansible-core templates it the same, and expected_fingerprint
    takes it as not given.
    """
    if reviews in (None, ''):
        return ''
    if not isinstance(reviews, dict):
        raise AnsibleFilterError('review_for: stackmender_reviews must be a dict of reviews, got %s'
                                 % type(reviews).__name__)
    return reviews.get(review_key(task, item)) or ''


class FilterModule(object):

    def filters(self):
        return {'reviews_of': reviews_of, 'review_for': review_for}
