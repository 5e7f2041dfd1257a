"""The drills' lab fixtures, for the AWX job that runs on the lab."""

from tests.drills.conftest import admin, cleanup, lab_client, member

__all__ = ['admin', 'cleanup', 'lab_client', 'member']
