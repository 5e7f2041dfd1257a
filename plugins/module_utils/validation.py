# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Validation of operator input, before anything is read or written."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.stackmender.openstack.plugins.module_utils.errors import InputError

_UUID = re.compile(r'^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$')


def canonical_uuid(value, option):
    """The lower-case, dashed form of a UUID, or a clear error naming the option."""
    if not isinstance(value, str):
        raise InputError('%s: %r is not a UUID' % (option, value))
    text = value.strip().lower()
    if not _UUID.match(text):
        shown = value if len(value) <= 80 else value[:77] + '...'
        raise InputError('%s: %r is not a UUID (expected 8-4-4-4-12 hexadecimal digits)' % (option, shown))
    digits = text.replace('-', '')
    return '%s-%s-%s-%s-%s' % (digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:])


def uuid_list(values, option):
    """A non-empty list of distinct canonical UUIDs, in the order given."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if not values:
        raise InputError('%s: the list is empty' % option)
    seen = []
    for value in values:
        uuid = canonical_uuid(value, option)
        if uuid not in seen:
            seen.append(uuid)
    return seen


def chunks(items, size=1000):
    """Slices of a list, for IN (...) lists of bounded length."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def placeholders(count):
    return ', '.join(['%s'] * count)
