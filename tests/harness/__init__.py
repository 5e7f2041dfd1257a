"""Test harness: a MariaDB server, the real OpenStack schemas of each
supported release, fresh per-test databases and a builder of realistic rows.

Modules:
    mariadb   the server (an external one, or a private throw-away one)
    schema    the schema snapshot of a release, built with the real migrations
    dbset     fresh, uniquely named sets of the five databases
    builder   CloudBuilder: realistic rows written with plain SQL
    fixtures  the pytest plugin (``pytest -p tests.harness.fixtures``)

Import these as ``tests.harness.<module>`` (run pytest from the repository
root, e.g. ``python -m pytest``), so each module is loaded once.
"""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The five logical databases of a cloud whose schema the real migrations build, in the order they are created.
LOGICAL_DATABASES = ("nova_api", "nova", "nova_cell0", "cinder", "placement")

# Every test cloud has two cells beside cell0, as real clouds can: cell1 (logical "nova") and cell2
# ("nova_cell2", a copy of cell1's migrated schema, mapped in nova_api.cell_mappings).
EXTRA_CELLS = {"nova_cell2": "cell2"}
SET_DATABASES = LOGICAL_DATABASES + tuple(EXTRA_CELLS)


def schema_source(logical):
    """The snapshot database whose schema a set database has (a further cell has cell1's)."""
    return "nova" if logical in EXTRA_CELLS else logical


def cache_dir():
    """``$STACKMENDER_CACHE``, with the same default as tools/lib.sh."""
    path = os.environ.get("STACKMENDER_CACHE")
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "stackmender")
    os.makedirs(path, exist_ok=True)
    return path
