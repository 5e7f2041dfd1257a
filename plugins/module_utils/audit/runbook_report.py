# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The human reports of the runbooks: what moved, what was refused and why, what is left for the operator.

Each runbook (power-loss recovery, compute node evacuation, Cinder multi-backend migration)
keeps its JSON report; ``sections`` turns one into the same headed sections for every runbook,
and ``render`` writes them as Markdown or as a self-contained HTML page (the style and escaping
of the audit report, no script, no external asset).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import report as audit_report
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

DONE = 'What the run did'
REFUSED = 'What was refused, and why'
LEFT = 'Left for the operator'
NOTHING = 'Nothing.'


def _list(value):
    return list(value or [])


def _section(heading, items=None, headers=None, rows=None):
    return dict(heading=heading, items=_list(items), headers=list(headers or []), rows=[list(row) for row in rows or []])


def _power_loss(report):
    lines = ['Incident %s; snapshot %s taken at %s.' % (report.get('incident'), report.get('snapshot'),
                                                        report.get('snapshot_taken_at')),
             '%s relation(s) in the snapshot; %d broken before the run; restored: %s.' % (
                 report.get('relations'), len(_list(report.get('broken_before'))), report.get('restored'))]
    done = _section(DONE, headers=('step', 'what'), rows=[
        (step, ', '.join(str(item) for item in _list(report.get(key))) or '-') for step, key in (
            ('reset to in-use', 'reset_in_use'), ('reset to available', 'reset_available'),
            ('hard rebooted', 'rebooted'))] + [
        ('block device mappings removed', ', '.join('%s on %s' % (entry.get('volume'), entry.get('instance'))
                                                    for entry in _list(report.get('block_device_mappings_removed'))) or '-'),
        ('reattached', ', '.join('%s to %s' % (entry.get('volume_id'), entry.get('server_id'))
                                 for entry in _list(report.get('reattached')) if isinstance(entry, dict)) or '-'),
        ('iSCSI', '%s (%s target(s))' % (report.get('iscsi'), report.get('iscsi_targets')))])
    left = _section(LEFT, headers=('relation', 'problems'), rows=[
        ('%s on %s' % (entry.get('volume_id'), entry.get('server_id')), '; '.join(_list(entry.get('problems'))))
        for entry in _list(report.get('still_broken'))])
    return 'Power-loss recovery', lines, [done, _section(REFUSED), left], report.get('journals')


def _evacuation(report):
    lines = ['Failed host %s, target %s; fencing: %s.' % (report.get('failed_host'), report.get('target_host') or
                                                          'chosen by the scheduler', report.get('fencing')),
             'The failed service afterwards: %s.' % ', '.join('%s %s' % (key, value) for key, value in sorted(
                 (report.get('failed_service') or {}).items()))]
    rows = [(row.get('id'), row.get('name'), row.get('path'), row.get('status'), row.get('host'),
             'yes' if row.get('ok') else 'no') for row in _list(report.get('instances')) if isinstance(row, dict)]
    done = _section(DONE, headers=('instance', 'name', 'path', 'status', 'host', 'as expected'), rows=rows)
    refused = _section(REFUSED, items=['%s: not moved (no path: see the run for the guard that held it)' % uuid
                                       for uuid in _list(report.get('not_moved'))])
    left = _section(LEFT, items=['%s: not in the expected state after the move' % uuid
                                 for uuid in _list(report.get('not_as_expected'))] + _list(report.get('database_warnings')))
    return 'Compute node evacuation', lines, [done, refused, left], report.get('journal')


def _multibackend(report):
    lines = ['Volumes per service before the run: %s.' % ', '.join('%s %s' % (host, count) for host, count in sorted(
        (report.get('volumes_per_host_before') or {}).items()))]
    done = _section(DONE, headers=('from', 'to', 'volumes', 'rows'), rows=[
        (move.get('from_host'), move.get('to_host'), move.get('volumes'), move.get('rows'))
        for move in _list(report.get('moves')) if isinstance(move, dict)])
    done['items'] = ['reset from a transitional status: %s' % ', '.join(map(str, _list(report.get('reset_transitional'))))
                     ] if report.get('reset_transitional') else []
    if report.get('reset_orphaned'):
        done['items'].append('reset, orphaned: %s' % ', '.join(map(str, _list(report.get('reset_orphaned')))))
    refused = _section(REFUSED, items=_list(report.get('refused')))
    left = _section(LEFT, items=_list(report.get('unavailable')) + _list(report.get('orphaned')) +
                    _list(report.get('warnings')))
    return 'Cinder multi-backend migration', lines, [done, refused, left], report.get('journals')


RUNBOOKS = {
    'power_loss_recovery': _power_loss,
    'compute_node_evacuation': _evacuation,
    'cinder_multibackend_migration': _multibackend,
}


def sections(report, runbook):
    """(title, lines, sections) of one runbook's JSON report; the journals go in a last section."""
    if runbook not in RUNBOOKS:
        raise InputError('runbook_report: unknown runbook %r (known: %s)' % (runbook, ', '.join(sorted(RUNBOOKS))))
    if not isinstance(report, dict):
        raise InputError('runbook_report: the report must be a dict, got %s' % type(report).__name__)
    title, lines, parts, journals = RUNBOOKS[runbook](redaction.redact(report))
    if report.get('check_mode'):
        lines.insert(0, 'Check mode: this is the plan; nothing was changed.')
    journals = [journals] if isinstance(journals, str) else _list(journals)
    parts.append(_section('Journals (journal_undo reverts each)', items=journals))
    return title, lines, parts


def render(report, runbook, fmt='markdown'):
    title, lines, parts = sections(report, runbook)
    if fmt == 'markdown':
        return _markdown(title, lines, parts)
    if fmt == 'html':
        return _html(title, lines, parts)
    raise InputError('runbook_report: format must be markdown or html, got %r' % (fmt,))


def _markdown(title, lines, parts):
    out = ['# %s' % audit_report.md_cell(title), '']
    out.extend('- %s' % audit_report.md_cell(line) for line in lines)
    for part in parts:
        out.extend(['', '## %s' % part['heading'], ''])
        if part['rows']:
            out.extend(audit_report.md_table(part['headers'], part['rows']))
        out.extend('- %s' % audit_report.md_cell(item) for item in part['items'])
        if not part['rows'] and not part['items']:
            out.append(NOTHING)
    out.append('')
    return '\n'.join(out)


def _html(title, lines, parts):
    esc = audit_report.esc
    body = ['<h1>%s</h1>' % esc(title)]
    body.extend('<p class="meta">%s</p>' % esc(line) for line in lines)
    for part in parts:
        body.append('<h2>%s</h2>' % esc(part['heading']))
        if part['rows']:
            body.append(audit_report.html_table(part['headers'], [[esc(cell) for cell in row] for row in part['rows']]))
        if part['items']:
            body.append('<ul>%s</ul>' % ''.join('<li>%s</li>' % esc(item) for item in part['items']))
        if not part['rows'] and not part['items']:
            body.append('<p class="none">%s</p>' % esc(NOTHING))
    return audit_report.html_page(title, body)
