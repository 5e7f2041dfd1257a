"""The drill budget table names real drills, and its verdicts follow the budgets."""

import ast
import os

from tests.collection_path import REPO_ROOT
from tests.drills.budgets import BUDGETS, drill_key, table

DRILLS = os.path.join(REPO_ROOT, 'tests', 'drills')


def drill_tests():
    found = set()
    for name in os.listdir(DRILLS):
        if name.startswith('test_') and name.endswith('.py'):
            with open(os.path.join(DRILLS, name)) as handle:
                tree = ast.parse(handle.read())
            found.update('%s::%s' % (name, node.name) for node in tree.body
                         if isinstance(node, ast.FunctionDef) and node.name.startswith('test_'))
    return found


def test_every_budget_names_a_drill_and_every_runbook_drill_has_one():
    tests = drill_tests()
    assert set(BUDGETS) <= tests, sorted(set(BUDGETS) - tests)
    for path in ('test_multibackend_runbook.py', 'test_compute_node_evacuation.py', 'test_power_loss_recovery.py',
                 'test_audit_run.py', 'test_binding_failed.py', 'test_nova_instance_delete_api.py'):
        assert any(key.startswith(path + '::') for key in BUDGETS), path


def test_keys_and_verdicts():
    assert drill_key('tests/drills/test_a.py::test_b@lab') == 'test_a.py::test_b'
    key, budget = sorted(BUDGETS.items())[0]
    rows = table({key: budget + 1.0})
    assert rows[2] == '| %s | %.1f | %d | OVER BUDGET |' % (key, budget + 1.0, budget)
    assert table({key: budget})[2].endswith('| within |')
    assert all(row.endswith('| not run |') for row in table({})[2:])
