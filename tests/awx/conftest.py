"""The drills' lab fixtures, for the AWX job that runs on the lab."""

from tests.drills.conftest import admin, cleanup, lab_client, lab_db, member

__all__ = ['admin', 'cleanup', 'lab_client', 'lab_db', 'member']
