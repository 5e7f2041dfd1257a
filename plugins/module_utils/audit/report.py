# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reports for people from a ``consistency_info`` result: Markdown and a self-contained HTML page.

Both show the counts per class and per host, the skipped classes and one
table per class. The HTML page has its style inline and no scripts, links or
other external assets, and every value in it is HTML-escaped. Markdown table
cells are escaped too, so a value cannot break out of its cell or inject
markup.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import html
import json
import os
import tempfile

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import charts
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import redaction
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

TITLE = 'OpenStack consistency report'
NO_HOST = '(no host)'
SEVERITY_ORDER = ('critical', 'error', 'warning', 'info')

_STYLE = '''
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1d2430; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef0f5; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 0.95em; word-break: break-all; }
.critical { color: #fff; background: #a1121c; } .error { background: #f6c9cc; }
.warning { background: #fbe7b5; } .info { background: #dde8f6; }
.meta { color: #555; } .none { color: #2f7a3b; font-weight: bold; }
'''


def format_age(seconds):
    """``3d 4h``, ``2h 5m``, ``45s``; ``-`` when unknown."""
    if seconds is None:
        return '-'
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return '%dd %dh' % (days, hours)
    if hours:
        return '%dh %dm' % (hours, minutes)
    if minutes:
        return '%dm %ds' % (minutes, secs)
    return '%ds' % secs


def format_resources(resources):
    """``key=value`` pairs of a finding's resource ids, lists joined with commas."""
    parts = []
    for key in sorted(resources or {}):
        value = resources[key]
        if value is None or value == []:
            continue
        if isinstance(value, (list, tuple)):
            value = ', '.join(str(item) for item in value)
        parts.append('%s=%s' % (key, value))
    return '; '.join(parts)


def format_repair(finding):
    """The repair call in one line (``module arg=value ...``), or the hint."""
    fix = finding.get('repair')
    if not fix:
        return 'manual: %s' % finding['hint'] if finding.get('hint') else 'manual'
    args = ' '.join('%s=%s' % (key, json.dumps(value, sort_keys=True)) for key, value in sorted(fix['args'].items()))
    return '%s %s' % (fix['module'], args)


def classes_in_order(result):
    """Classes that ran (in audit order) and then those only seen in findings."""
    names = list(result.get('classes_run') or [])
    for finding in result.get('findings') or []:
        if finding['class'] not in names:
            names.append(finding['class'])
    return names


def findings_of(result, name):
    return [finding for finding in result.get('findings') or [] if finding['class'] == name]


def class_severity(findings):
    present = set(finding['severity'] for finding in findings)
    for severity in SEVERITY_ORDER:
        if severity in present:
            return severity
    return None


def _describe_run(result):
    lines = []
    if result.get('audited_at'):
        lines.append('Audited at %s UTC.' % result['audited_at'])
    databases = result.get('databases') or {}
    if databases:
        lines.append('Databases: %s.' % ', '.join('%s %s' % (option, databases[option]) for option in sorted(databases)))
    thresholds = result.get('thresholds') or {}
    if thresholds:
        stuck = thresholds.get('stuck_after') or {}
        lines.append('Thresholds: stuck after %s; service down after %s s; minimum age %s s.' % (
            ', '.join('%s %s s' % (name, stuck[name]) for name in sorted(stuck)) or '-',
            thresholds.get('service_down_time', '-'), thresholds.get('min_age', 0)))
    filters = dict((key, value) for key, value in (result.get('filters') or {}).items() if value)
    if filters:
        lines.append('Filters: %s.' % '; '.join('%s %s' % (key, ', '.join(value)) for key, value in sorted(filters.items())))
    return lines


# ------------------------------------------------------------------ Markdown

def md_cell(value):
    """A value safe inside a Markdown table cell: no pipes, newlines or raw markup."""
    if value is None:
        return ''
    escaped = html.escape(str(value), quote=False)
    escaped = escaped.replace('\\', '\\\\').replace('|', '\\|').replace('`', '\\`')
    return ' '.join(escaped.split())


def md_table(headers, rows):
    lines = ['| %s |' % ' | '.join(md_cell(header) for header in headers),
             '|%s' % ''.join('---|' for _header in headers)]
    for row in rows:
        lines.append('| %s |' % ' | '.join(md_cell(value) for value in row))
    return lines


def redacted(result):
    """The audit result with every secret column of its evidence (by each row's ``table``) as a stand-in.

    The audit already shows named columns only; a report may be rendered from a result saved elsewhere.
    """
    findings = []
    for finding in result.get('findings') or []:
        finding = dict(finding)
        finding['evidence'] = [redaction.redact_row(row, row.get('table')) if isinstance(row, dict) else row
                               for row in finding.get('evidence') or []]
        findings.append(finding)
    return redaction.redact(dict(result, findings=findings))


def render_markdown(result, titles=None, history=None):
    result = redacted(result)
    titles = titles or {}
    findings = result.get('findings') or []
    lines = ['# %s' % TITLE, '']
    lines.extend('- %s' % md_cell(line) for line in _describe_run(result))
    lines.append('')
    total = len(findings)
    lines.append('**%d finding(s)**%s' % (total, ': ' + ', '.join(
        '%d %s' % (count, severity) for severity, count in _severity_counts(findings) if count) if total else
        ': the audited classes found nothing.'))
    lines.extend(history_markdown(history or []))
    lines.extend(['', '## Counts per class', ''])
    rows = []
    for name in classes_in_order(result):
        found = findings_of(result, name)
        rows.append((name, titles.get(name, ''), (result.get('counts') or {}).get(name, len(found)),
                     class_severity(found) or '-'))
    lines.extend(md_table(('class', 'what', 'findings', 'worst severity'), rows))
    lines.extend(['', '## Counts per host', ''])
    summary = result.get('summary') or {}
    if summary:
        lines.extend(md_table(('host', 'findings', 'classes'), [
            (host, summary[host]['total'], ', '.join('%s %d' % (name, count) for name, count
                                                     in sorted(summary[host]['classes'].items())))
            for host in _hosts_in_order(summary)]))
    else:
        lines.append('No findings.')
    skipped = result.get('skipped_classes') or []
    if skipped:
        lines.extend(['', '## Skipped classes', ''])
        lines.extend(md_table(('class', 'why'), [(entry['class'], entry['reason']) for entry in skipped]))
    for note in result.get('notes') or []:
        lines.extend(['', '> %s' % md_cell(note)])
    for name in classes_in_order(result):
        found = findings_of(result, name)
        lines.extend(['', '## %s (%d)' % (md_cell(name), len(found)), ''])
        if titles.get(name):
            lines.extend([md_cell(titles[name]), ''])
        if not found:
            lines.append('Nothing found.')
            continue
        lines.extend(md_table(('severity', 'problem', 'resources', 'project', 'host', 'age', 'repair'), [
            (finding['severity'], finding['message'], format_resources(finding['resources']), finding.get('project'),
             finding.get('host'), format_age(finding.get('age')), format_repair(finding)) for finding in found]))
    lines.append('')
    return '\n'.join(lines)


NO_CELL = '(no Nova cell)'
# Bars per chart: the hosts and cells with the most findings; the tables list every one.
CHART_ROWS = 20
# Runs an audit history keeps (history_file).
HISTORY_RUNS = 30


def finding_cell(finding):
    """The Nova cell a finding is in (its resources or evidence name it), else NO_CELL."""
    cell = (finding.get('resources') or {}).get('cell')
    for row in finding.get('evidence') or []:
        cell = cell or (row.get('cell') if isinstance(row, dict) else None)
    return cell or NO_CELL


def _by_severity(findings, group):
    counts = {}
    for finding in findings:
        counts.setdefault(group(finding), {}).setdefault(finding['severity'], 0)
        counts[group(finding)][finding['severity']] += 1
    return sorted(counts.items(), key=lambda item: (-sum(item[1].values()), str(item[0])))[:CHART_ROWS]


def chart_sections(result, history=None):
    """(heading, svg) of the report's charts: by class and severity, by host, by cell, and the trend."""
    findings = result.get('findings') or []
    sections = []
    if findings:
        sections.append(('Findings by class and severity', charts.stacked_bars(
            'Findings by class and severity', _by_severity(findings, lambda found: found['class']), SEVERITY_ORDER)))
        sections.append(('Findings by host', charts.stacked_bars(
            'Findings by host', _by_severity(findings, lambda found: found.get('host') or NO_HOST), SEVERITY_ORDER)))
        sections.append(('Findings by cell', charts.stacked_bars(
            'Findings by cell', _by_severity(findings, finding_cell), SEVERITY_ORDER)))
    if history and len(history) > 1:
        names = sorted(set(name for run in history for name, count in run['counts'].items() if count))
        if names:
            sections.append(('Trend over the last %d runs' % len(history), charts.trend_lines(
                'Findings per class over the last runs', [run['at'] for run in history],
                dict((name, [run['counts'].get(name, 0) for run in history]) for name in names))))
    return sections


def load_history(path):
    """The runs an audit history file holds, oldest first; [] when it does not exist yet."""
    if not path or not os.path.exists(path):
        return []
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (IOError, OSError, ValueError) as error:
        raise InputError('history_file: cannot read %s: %s' % (path, error))
    runs = document.get('runs') if isinstance(document, dict) else None
    if not isinstance(runs, list) or not all(isinstance(run, dict) and isinstance(run.get('counts'), dict)
                                             for run in runs):
        raise InputError('history_file: %s is not an audit history (a runs list of counts per class)' % path)
    return runs


def with_run(history, result, keep=HISTORY_RUNS):
    """The history with this audit's counts per class appended, the oldest runs dropped beyond ``keep``."""
    run = dict(at=result.get('audited_at') or '-', counts=dict(result.get('counts') or {}),
               findings=len(result.get('findings') or []))
    return (list(history) + [run])[-keep:]


def history_markdown(history):
    """A table of the counts per class over the runs of the history."""
    names = sorted(set(name for run in history for name, count in run['counts'].items() if count))
    if len(history) < 2 or not names:
        return []
    lines = ['', '## Trend over the last %d runs' % len(history), '']
    lines.extend(md_table(['run'] + names, [[run['at']] + [run['counts'].get(name, 0) for name in names]
                                            for run in history]))
    return lines


def _severity_counts(findings):
    return [(severity, len([finding for finding in findings if finding['severity'] == severity]))
            for severity in SEVERITY_ORDER]


def _hosts_in_order(summary):
    return sorted(summary, key=lambda host: (-summary[host]['total'], host == NO_HOST, host))


# ---------------------------------------------------------------------- HTML

def esc(value):
    return '' if value is None else html.escape(str(value), quote=True)


def html_table(headers, rows, row_classes=None):
    parts = ['<table>', '<thead><tr>%s</tr></thead>' % ''.join('<th>%s</th>' % esc(header) for header in headers),
             '<tbody>']
    for index, row in enumerate(rows):
        css = row_classes[index] if row_classes else None
        parts.append('<tr%s>%s</tr>' % (' class="%s"' % esc(css) if css else '',
                                        ''.join('<td>%s</td>' % cell for cell in row)))
    parts.append('</tbody></table>')
    return '\n'.join(parts)


def render_html(result, titles=None, history=None):
    """A complete HTML document; cells are escaped here, never trusted; charts are inline SVG."""
    result = redacted(result)
    titles = titles or {}
    findings = result.get('findings') or []
    body = ['<h1>%s</h1>' % esc(TITLE)]
    body.extend('<p class="meta">%s</p>' % esc(line) for line in _describe_run(result))
    if findings:
        body.append('<p><strong>%d finding(s)</strong>: %s</p>' % (len(findings), esc(', '.join(
            '%d %s' % (count, severity) for severity, count in _severity_counts(findings) if count))))
    else:
        body.append('<p class="none">No findings: the audited classes found nothing.</p>')
    for heading, svg in chart_sections(result, history):
        body.append('<h2>%s</h2>' % esc(heading))
        body.append('<figure>%s</figure>' % svg)
    body.append('<h2>Counts per class</h2>')
    rows, css = [], []
    for name in classes_in_order(result):
        found = findings_of(result, name)
        worst = class_severity(found)
        rows.append(['<a href="#%s">%s</a>' % (esc(name), esc(name)), esc(titles.get(name, '')),
                     esc((result.get('counts') or {}).get(name, len(found))), esc(worst or '-')])
        css.append(worst)
    body.append(html_table(('class', 'what', 'findings', 'worst severity'), rows, css))
    body.append('<h2>Counts per host</h2>')
    summary = result.get('summary') or {}
    if summary:
        body.append(html_table(('host', 'findings', 'classes'), [
            [esc(host), esc(summary[host]['total']),
             esc(', '.join('%s %d' % (name, count) for name, count in sorted(summary[host]['classes'].items())))]
            for host in _hosts_in_order(summary)]))
    else:
        body.append('<p>No findings.</p>')
    skipped = result.get('skipped_classes') or []
    if skipped:
        body.append('<h2>Skipped classes</h2>')
        body.append(html_table(('class', 'why'), [[esc(entry['class']), esc(entry['reason'])] for entry in skipped]))
    for note in result.get('notes') or []:
        body.append('<p class="meta">%s</p>' % esc(note))
    for name in classes_in_order(result):
        found = findings_of(result, name)
        body.append('<h2 id="%s">%s (%d)</h2>' % (esc(name), esc(name), len(found)))
        if titles.get(name):
            body.append('<p>%s</p>' % esc(titles[name]))
        if not found:
            body.append('<p class="none">Nothing found.</p>')
            continue
        body.append(html_table(
            ('severity', 'problem', 'resources', 'project', 'host', 'age', 'repair'),
            [[esc(finding['severity']), esc(finding['message']), '<code>%s</code>' % esc(format_resources(finding['resources'])),
              esc(finding.get('project')), esc(finding.get('host')), esc(format_age(finding.get('age'))),
              '<code>%s</code>' % esc(format_repair(finding)) if finding.get('repair') else esc(format_repair(finding))]
             for finding in found],
            [finding['severity'] for finding in found]))
    return html_page(TITLE, body)


def html_page(title, body):
    """A self-contained HTML document: the report style inline, no script, no external asset."""
    return '\n'.join([
        '<!DOCTYPE html>',
        '<html lang="en">',
        '<head>',
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<title>%s</title>' % esc(title),
        '<style>%s</style>' % _STYLE,
        '</head>',
        '<body>',
        '\n'.join(body),
        '</body>',
        '</html>',
        '',
    ])


def write_report(path, content, option):
    """Write ``content`` to ``path`` atomically (a temporary file in the same directory, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError('%s: directory %s does not exist' % (option, directory))
    try:
        handle, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
        try:
            with os.fdopen(handle, 'w') as stream:
                stream.write(content)
            # mkstemp creates 0600; a report is for people, so the usual umask decides.
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(temporary, 0o666 & ~mask)
            os.rename(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
    except (IOError, OSError) as error:
        raise InputError('%s: cannot write %s: %s' % (option, path, error.strerror or error))
