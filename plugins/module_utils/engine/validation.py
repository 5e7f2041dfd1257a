# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Validation of operator input, before anything is read or written."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

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
    ordered, seen = [], set()
    for value in values:
        uuid = canonical_uuid(value, option)
        if uuid not in seen:
            seen.add(uuid)
            ordered.append(uuid)
    return ordered


def host_name(value, option, empty_message=None):
    """A host or node name as Nova and Cinder store it: 1 to 255 characters, none of them whitespace or control.

    Names are compared exactly, so anything else is accepted as given.
    """
    if not value:
        raise InputError(empty_message or '%s: give a host name' % option)
    if len(value) > 255:
        raise InputError('%s: %r... is %d characters; host names have at most 255' % (option, value[:40], len(value)))
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in value):
        raise InputError('%s: %r contains whitespace or control characters; host names are matched exactly'
                         % (option, value))
    return value


def chunks(items, size=1000):
    """Slices of a list, for IN (...) lists of bounded length."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def placeholders(count):
    return ', '.join(['%s'] * count)
