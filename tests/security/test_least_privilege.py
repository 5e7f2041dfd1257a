"""Each module works with exactly the grants docs/privileges.md lists, and
fails clearly, writing nothing, when one of them is missing.

Every registry case runs under an account of its own holding exactly its
documented grants (the grants of journal_undo for its own undo included),
with the cell databases reached through cell_mappings under that account.
"""

import pytest

from tests.integration.helpers import run_full_cycle, snapshot
from tests.security.dbusers import DatabaseUser
from tests.security.module_cases import CASE_IDS, CASES, CaseContext, without_grant

# Words MariaDB and the modules use when an account lacks a privilege.
DENIED_WORDS = ('command denied', 'lacks a privilege', 'no privilege')


@pytest.fixture
def db_user(dbs):
    user = DatabaseUser(dbs)
    yield user
    user.drop()


@pytest.fixture
def context(cloud, dbs, ansible, journal_dir):
    return CaseContext(cloud, dbs, ansible, journal_dir)


# Every release: the tables and columns a module touches follow the schema.
@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_full_cycle_with_exactly_the_documented_grants(case, context, db_user, dbs, ansible, journal_dir):
    scenario = case.build(context)
    db_user.grant(case.full_cycle_grants())
    db_user.point_cells_here()
    args = dict(scenario.args, journal_dir=journal_dir, **db_user.args(*scenario.databases))
    run_full_cycle(ansible, dbs, case.module, args, scenario.tables, scenario.verify or (lambda: None))


@pytest.mark.newest_release
def test_status_reads_and_session_settings_need_no_grant(db_user, dbs, ansible, journal_dir, cloud):
    """require_writable_node (SHOW GLOBAL VARIABLES/STATUS) and lock_timeout (SET SESSION) run for a bare account."""
    from tests.security.module_cases import build_cinder_volume_state, case
    scenario = build_cinder_volume_state(CaseContext(cloud, dbs, ansible, journal_dir), count=1)
    db_user.grant(case('cinder_volume_state').full_cycle_grants())
    db_user.point_cells_here()
    rows = dbs.query('nova_api', 'SELECT COUNT(*) AS n FROM information_schema.USER_PRIVILEGES WHERE GRANTEE LIKE %s',
                     ("'%s'@%%" % db_user.name,))
    # Only USAGE at the global level: nothing like PROCESS, SUPER or REPLICATION CLIENT.
    assert rows[0]['n'] == 1
    applied = ansible('cinder_volume_state', dict(scenario.args, journal_dir=journal_dir, lock_timeout=7,
                                                  **db_user.args(*scenario.databases)))
    assert not applied.failed and applied.changed, applied


# Removing this grant leaves the account only DELETE on the table, and information_schema
# shows no columns for it: schema probing then reports the table as missing.
MISLEADING = {('nova_bdm_purge:purge', ('nova', 'SELECT', 'block_device_mapping'))}


def _expect_clear_failure(result, dbs, case, grant, reduced, password):
    """Problems with one run missing ``grant`` (empty when it failed clearly)."""
    logical, privilege, table = grant
    label = '%s on %s.%s' % (privilege, logical, table)
    if not result.failed:
        return ['succeeded without %s' % label]
    message = result['msg']
    problems = []
    if 'Traceback' in message or 'MODULE FAILURE' in message:
        problems.append('%s: not a clean failure: %s' % (label, message))
    if password in message:
        problems.append('%s: the password is in the message' % label)
    if not any(reduced.get(logical, {}).values()):
        # No grant left on that database at all: the connection itself is refused, naming the database.
        names = [dbs.name(name) for name in (('nova', 'nova_cell0') if logical == 'nova' else (logical,))]
        if 'Access denied' not in message or not any(name in message for name in names):
            problems.append('%s: %s' % (label, message))
    elif table not in message or not any(word in message for word in DENIED_WORDS):
        problems.append('%s: %s' % (label, message))
    return problems


@pytest.mark.newest_release
@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_each_missing_grant_fails_clearly_and_writes_nothing(case, context, dbs, ansible, journal_dir):
    scenario = case.build(context)
    before = snapshot(dbs, scenario.tables)
    problems = []
    removed = [grant for grant in case.grant_list() if grant not in case.unexercised and (case.name, grant) not in MISLEADING]
    assert removed
    for grant in removed:
        reduced = without_grant(case.grants, *grant)
        user = DatabaseUser(dbs)
        try:
            user.grant(reduced)
            user.point_cells_here()
            result = ansible(case.module, dict(scenario.args, journal_dir=journal_dir, **user.args(*scenario.databases)))
        finally:
            user.drop()
        # A failed run writes nothing, so the same broken state serves every removal.
        problems.extend(_expect_clear_failure(result, dbs, case, grant, reduced, user.password))
        assert snapshot(dbs, scenario.tables) == before, 'a run without %s wrote something' % (grant,)
    assert problems == []


@pytest.mark.newest_release
def test_missing_select_with_delete_left_names_the_privilege(context, db_user, dbs, ansible, journal_dir):
    from tests.security.module_cases import case
    entry = case('nova_bdm_purge:purge')
    scenario = entry.build(context)
    reduced = without_grant(entry.grants, 'nova', 'SELECT', 'block_device_mapping')
    db_user.grant(reduced)
    db_user.point_cells_here()
    result = ansible(entry.module, dict(scenario.args, journal_dir=journal_dir, **db_user.args(*scenario.databases)))
    assert _expect_clear_failure(result, dbs, entry, ('nova', 'SELECT', 'block_device_mapping'), reduced,
                                 db_user.password) == []
