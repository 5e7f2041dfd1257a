"""tools/bench --quick runs end to end and its table has every row, with numbers.

The benchmark itself runs as a subprocess, as ``tools/bench`` starts it, so
what is checked is the table an operator gets: each case once, a positive
time, the ratios and peak memory where the case has them, and the rows that
compare against something (the floor UPDATE, one task) carrying a ratio.
"""

import json
import os
import subprocess
import sys

from tests.harness import REPO_ROOT
from tests.harness.fixtures import selected_releases
from tests.scale.bench import FULL, QUICK

EXPECTED = {
    # case: (has a ratio, has the module process's peak memory)
    'startup: one module process, no database work': (False, True),
    'consistency_info': (False, True),
    'rehost: one hand-written UPDATE (floor)': (True, False),
    'rehost: read the rows through PyMySQL (no plan)': (True, True),
    'rehost: module, check mode': (True, True),
    'rehost: module, apply': (True, True),
    'rehost: journal_undo of it': (True, True),
    'rehost: cinder-manage volume update_host': (True, True),
    'volume_state: module, check mode': (False, True),
    'volume_state: module, apply': (True, True),
    'volume_state: journal_undo of it': (True, True),
    'volume_state: one task, ansible-playbook': (True, False),
    'volume_state: loop of one task per volume': (True, False),
}


def test_quick_bench_prints_every_row_with_numbers(tmp_path):
    rows_file = tmp_path / 'rows.json'
    completed = subprocess.run(
        [sys.executable, '-m', 'tests.scale.bench', '--quick', '--release', selected_releases()[0],
         '--json', str(rows_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200, check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = json.loads(rows_file.read_text())

    cases = [row['case'] for row in rows]
    assert sorted(set(cases)) == sorted(EXPECTED), cases
    assert cases.count('consistency_info') == len(QUICK['audit_sizes'])
    assert [row['size'] for row in rows if row['case'] == 'consistency_info'] == QUICK['audit_sizes']
    for row in rows:
        has_ratio, has_memory = EXPECTED[row['case']]
        assert isinstance(row['seconds'], float) and row['seconds'] > 0, row
        assert (isinstance(row['ratio'], float) and row['ratio'] > 0) == has_ratio, row
        assert (isinstance(row['rss_mb'], float) and row['rss_mb'] > 10) == has_memory, row
    by_case = dict((row['case'], row) for row in rows)
    # Set-based: the rehost writes its volumes in one statement per 500 rows, the reset in a few.
    assert by_case['rehost: module, apply']['statements'] <= 3
    # The floor and the apply are measured QUICK['rehost_repeats'] times, alternately: the notes list them.
    for case in ('rehost: module, apply', 'rehost: one hand-written UPDATE (floor)'):
        assert 'median of %d: ' % QUICK['rehost_repeats'] in by_case[case]['notes'], by_case[case]
    # Each volume restores its own updated_at, written per row: still one statement per 500 rows.
    assert by_case['rehost: journal_undo of it']['statements'] <= 3
    assert by_case['volume_state: module, apply']['statements'] <= 4
    assert by_case['volume_state: loop of one task per volume']['notes'].startswith('measured %d tasks'
                                                                                    % QUICK['loop_sample'])

    # The printed table has a line per row, every cell filled.
    table = [line for line in completed.stdout.splitlines() if line.startswith('| ') and '---' not in line]
    assert len(table) == len(rows) + 1
    for line, row in zip(table[1:], rows):
        assert line.startswith('| %s | %s | ' % (row['case'], row['size'])), line
    # The full sizes are the ones docs/performance.md reports.
    assert FULL['audit_sizes'] == [10000, 100000] and FULL['rehost_volumes'] == 100000
    assert FULL['state_volumes'] == 1000
    with open(os.path.join(REPO_ROOT, 'docs', 'performance.md')) as stream:
        assert 'tools/bench' in stream.read()
