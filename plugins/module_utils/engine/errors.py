# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Errors every module turns into a clean ``fail_json``.

Each carries the message the operator reads and, where it helps, structured
details (the evidence rows of a guard, the rows that changed since the plan).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class StackmenderError(Exception):
    """Base: a failure with an operator-facing message and optional details."""

    def __init__(self, msg, **details):
        super(StackmenderError, self).__init__(msg)
        self.msg = msg
        self.details = details


class InputError(StackmenderError):
    """The module's arguments are wrong; nothing was read or written."""


class DatabaseError(StackmenderError):
    """A connection or statement failed; the transaction was rolled back."""


class SchemaError(StackmenderError):
    """The database lacks a table or column the plan needs."""


class GuardRefusal(StackmenderError):
    """An invariant does not hold; ``details['guards']`` holds the evidence."""


class PlanConflict(StackmenderError):
    """Rows changed between planning and applying; nothing was written."""


class PlanDrift(StackmenderError):
    """The plan made now is not the plan that was reviewed (its fingerprint differs); nothing was written."""


class ApiError(StackmenderError):
    """An OpenStack API call failed; details carry the response body."""
