"""pytest plugin: the schema harness fixtures.

Load with ``pytest -p tests.harness.fixtures`` or
``pytest_plugins = ["tests.harness.fixtures"]`` in a conftest.py at tests/
(run pytest from the repository root, e.g. ``python -m pytest``, so that
``tests`` is importable).

Fixtures:
    mariadb_server   session   the MariaDB server (tests.harness.mariadb)
    release          session   one OpenStack release; every test that uses it
                               (directly or through the fixtures below) runs
                               once per release in $STACKMENDER_RELEASES
                               (comma-separated; default: all releases in
                               tests/releases/releases.tsv)
    openstack_venv   session   path of that release's OpenStack virtualenv
    schema_snapshot  session   the release's schema snapshot
    dbs              function  a fresh, never-used DatabaseSet, dropped after
    cloud            function  a CloudBuilder writing into ``dbs``

A release whose virtualenv or schema cannot be built makes its tests error
out with the reason; nothing is skipped.
"""

import os

import pytest

from tests.harness import builder, dbset, mariadb, schema

ENV_RELEASES = "STACKMENDER_RELEASES"


def selected_releases():
    """Releases to test: $STACKMENDER_RELEASES, or every release in releases.tsv."""
    known = schema.known_releases()
    wanted = [name.strip() for name in os.environ.get(ENV_RELEASES, "").split(",") if name.strip()]
    if not wanted:
        return known
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise pytest.UsageError(f"{ENV_RELEASES} names unknown release(s) {unknown}; known: {known}")
    return wanted


def pytest_generate_tests(metafunc):
    # Session-scoped parametrization: pytest groups the tests by release, so
    # each release's snapshot and database pool are set up once.
    if "release" in metafunc.fixturenames:
        releases = selected_releases()
        if metafunc.definition.get_closest_marker("newest_release"):
            releases = releases[:1]
        metafunc.parametrize("release", releases, indirect=True, scope="session")


def pytest_report_header(config):
    return f"stackmender harness: releases {', '.join(selected_releases())}"


@pytest.fixture(scope="session")
def mariadb_server():
    server = mariadb.get_server()
    # Databases of runs that were killed before they could clean up.
    dbset.drop_stale_sets(server)
    yield server
    dbset.shutdown()  # drop pooled sets and finish background drops
    if server.private:
        server.stop()


@pytest.fixture(scope="session")
def release(request):
    return request.param


@pytest.fixture(scope="session")
def openstack_venv(release):
    return schema.openstack_venv(release)


@pytest.fixture(scope="session")
def schema_snapshot(mariadb_server, release, openstack_venv):
    snapshot = schema.load_snapshot(mariadb_server, release, venv=openstack_venv)
    dbset.prefill(mariadb_server, snapshot)  # the first `dbs` is then ready at once
    return snapshot


@pytest.fixture
def dbs(mariadb_server, schema_snapshot):
    database_set = dbset.create_database_set(mariadb_server, schema_snapshot)
    yield database_set
    database_set.drop(wait=False)


@pytest.fixture
def cloud(dbs):
    return builder.CloudBuilder(dbs)
