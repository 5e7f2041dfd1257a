"""The partial-commit matrix (tests/faults/test_partial_commits.py), printed at the end of a run."""


def pytest_terminal_summary(terminalreporter):
    cells = {}
    for outcome in ('passed', 'failed'):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, 'when', None) != 'call' or 'test_partial_commits.py' not in report.nodeid:
                continue
            test = report.nodeid.split('::')[-1]
            path = 're-run complete' if test.startswith('test_rerun_after') else \
                'undo exact' if test.startswith('test_undo_after') else None
            if path is None:
                continue
            point = test.split('[', 1)[1].rstrip(']')
            if point[:1].isdigit():  # the release parameter comes first
                point = point.split('-', 1)[1]
            cells.setdefault(point, {})[path] = outcome == 'passed'
    if not cells:
        return
    terminalreporter.section('partial-commit matrix (modules x kill points)')
    terminalreporter.write_line('%-42s %-16s %-12s' % ('module - killed commit', 're-run complete', 'undo exact'))
    for point in sorted(cells):
        row = cells[point]
        terminalreporter.write_line('%-42s %-16s %-12s' % (
            point, {True: 'yes', False: 'NO', None: '-'}[row.get('re-run complete')],
            {True: 'yes', False: 'NO', None: '-'}[row.get('undo exact')]))
    paths = ('re-run complete', 'undo exact')
    done = dict((path, sum(1 for row in cells.values() if row.get(path))) for path in paths)
    terminalreporter.write_line('%d kill points over %d modules: re-run complete %d/%d, undo exact %d/%d' % (
        len(cells), len(set(point.rsplit('-commit', 1)[0] for point in cells)),
        done[paths[0]], len(cells), done[paths[1]], len(cells)))
