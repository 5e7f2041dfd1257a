"""Reports of consistency_info: Markdown and the self-contained HTML page."""

import os
import re
from html.parser import HTMLParser

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import engine as auditing
from ansible_collections.stackmender.openstack.plugins.module_utils.audit import report
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

HOSTILE = '<script>alert("x")</script> | `rm -rf` & \n **bold**'


def finding(name, severity, host, message, age=120, fix=None, hint=None, **resources):
    return {'class': name, 'severity': severity, 'key': '%s:%s' % (name, message), 'message': message,
            'resources': resources, 'project': 'p1', 'host': host, 'age': age, 'since': '2026-11-22 01:00:00',
            'evidence': [], 'repair': fix, 'hint': hint}


def sample_result():
    findings = [
        finding('volume_attached_without_bdm', 'error', 'controller1@lvm', 'volume v1 is in-use but ...',
                fix={'module': 'stackmender.openstack.cinder_volume_state',
                     'args': {'volume': ['v1'], 'status': 'available', 'attach_status': 'detached',
                              'from_status': ['in-use']}}, volume='v1', instances=['i1', 'i2']),
        finding('volume_service_unavailable', 'critical', 'controller1', 'volume v2 is on a missing service',
                age=90061, hint='rehost it', volume='v2'),
        finding('volume_service_unavailable', 'warning', 'controller10@lvm', 'volume v3 is on a disabled service',
                age=None, volume='v3'),
        finding('deleted_without_deleted_at', 'info', None, 'rows without deleted_at', table='instances', count=3),
    ]
    return {
        'findings': findings,
        'counts': {'volume_attached_without_bdm': 1, 'volume_stuck': 0, 'volume_service_unavailable': 2,
                   'deleted_without_deleted_at': 1},
        'classes_run': ['volume_attached_without_bdm', 'volume_stuck', 'volume_service_unavailable',
                        'deleted_without_deleted_at'],
        'summary': {'controller1@lvm': {'total': 1, 'classes': {'volume_attached_without_bdm': 1}},
                    'controller1': {'total': 1, 'classes': {'volume_service_unavailable': 1}},
                    'controller10@lvm': {'total': 1, 'classes': {'volume_service_unavailable': 1}},
                    '(no host)': {'total': 1, 'classes': {'deleted_without_deleted_at': 1}}},
        'skipped_classes': [{'class': 'allocation_wrong_provider', 'reason': 'needs placement_db'}],
        'databases': {'cinder_db': 'mysql://cinder@db:3306/cinder'},
        'thresholds': {'stuck_after': {'volume_stuck': 3600}, 'service_down_time': 60, 'min_age': 0},
        'filters': {'classes': None, 'projects': None, 'hosts': None},
        'audited_at': '2026-11-22 03:04:05',
        'notes': [],
    }


def hostile_result():
    result = sample_result()
    bad = finding('volume_stuck', 'warning', HOSTILE, HOSTILE, hint=HOSTILE, volume=HOSTILE)
    bad['project'] = HOSTILE
    result['findings'].append(bad)
    result['counts']['volume_stuck'] = 1
    result['summary'][HOSTILE] = {'total': 1, 'classes': {'volume_stuck': 1}}
    result['skipped_classes'].append({'class': 'instance_mapping_missing', 'reason': HOSTILE})
    result['notes'] = [HOSTILE]
    return result


class Collector(HTMLParser):
    """The tags, attributes and text of a page, as a browser would see them."""

    def __init__(self):
        super().__init__()
        self.tags, self.attributes, self.text, self.tables = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if tag == 'table':
            self.tables += 1

    def handle_data(self, data):
        self.text.append(data)


def parse(page):
    collector = Collector()
    collector.feed(page)
    collector.close()
    return collector


def markdown_table_rows(text, heading):
    """The data rows of the first table after a heading, as lists of raw cells."""
    lines = text.split('\n')
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith('## '):
            break
        if line.startswith('|') and not line.startswith('|---'):
            rows.append(re.split(r'(?<!\\)\|', line.strip())[1:-1])
    return rows[1:]  # without the header row


def test_markdown_has_counts_per_class_and_host_and_a_table_per_class():
    text = report.render_markdown(sample_result(), auditing.CLASS_TITLES)
    assert text.startswith('# OpenStack consistency report\n')
    assert '**4 finding(s)**: 1 critical, 1 error, 1 warning, 1 info' in text
    counts = markdown_table_rows(text, '## Counts per class')
    assert [cell.strip() for cell in counts[1]] == ['volume_stuck', auditing.CLASS_TITLES['volume_stuck'], '0', '-']
    assert [cell.strip() for cell in counts[2]][2:] == ['2', 'critical']
    hosts = markdown_table_rows(text, '## Counts per host')
    assert [row[0].strip() for row in hosts] == ['controller1', 'controller10@lvm', 'controller1@lvm', '(no host)']
    assert '## volume_stuck (0)' in text and 'Nothing found.' in text
    rows = markdown_table_rows(text, '## volume_service_unavailable (2)')
    assert [row[0].strip() for row in rows] == ['critical', 'warning']
    assert rows[0][5].strip() == '1d 1h' and rows[1][5].strip() == '-'
    assert rows[0][6].strip() == 'manual: rehost it'
    repair = markdown_table_rows(text, '## volume_attached_without_bdm (1)')[0][6].strip()
    assert repair == ('stackmender.openstack.cinder_volume_state attach_status="detached" from_status=["in-use"] '
                      'status="available" volume=["v1"]')
    assert '## Skipped classes' in text and 'needs placement_db' in text
    assert 'Databases: cinder_db mysql://cinder@db:3306/cinder.' in text


def test_markdown_cells_cannot_break_out_of_their_table():
    text = report.render_markdown(hostile_result(), auditing.CLASS_TITLES)
    assert '<script>' not in text and '&lt;script&gt;' in text
    assert '\\|' in text and '\\`rm -rf\\`' in text
    rows = markdown_table_rows(text, '## volume_stuck (1)')
    assert len(rows) == 1 and len(rows[0]) == 7  # the pipe in the value did not add a column
    # Every table line is a single line: the newline in the value was folded.
    for line in text.split('\n'):
        if line.startswith('| warning |'):
            assert line.endswith('|')


def test_html_is_self_contained_and_escapes_every_value():
    page = report.render_html(hostile_result(), auditing.CLASS_TITLES)
    assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>')
    parsed = parse(page)
    assert 'script' not in parsed.tags
    assert not [tag for tag in parsed.tags if tag in ('link', 'img', 'iframe', 'object', 'embed')]
    assert not [value for name, value in parsed.attributes if name in ('src', 'srcset')]
    assert not [value for name, value in parsed.attributes if name == 'href' and not value.startswith('#')]
    assert 'http://' not in page and 'https://' not in page and '@import' not in page and 'url(' not in page
    assert '<script>alert' not in page
    # The hostile text arrives intact as text, not as markup.
    assert any('<script>alert("x")</script>' in chunk for chunk in parsed.text)


def test_html_has_a_table_per_class_and_counts_per_host():
    result = sample_result()
    page = report.render_html(result, auditing.CLASS_TITLES)
    parsed = parse(page)
    # counts per class, counts per host, skipped, then one per class that has findings
    assert parsed.tables == 3 + 3
    for name in result['classes_run']:
        assert 'id="%s"' % name in page and 'href="#%s"' % name in page
    text = ''.join(parsed.text)
    assert 'volume_stuck (0)' in text and 'Nothing found.' in text
    assert 'controller10@lvm' in text and '(no host)' in text
    assert 'class="critical"' in page and 'class="info"' in page
    assert 'from_status=[&quot;in-use&quot;]' in page


def test_an_empty_result_says_nothing_was_found():
    empty = dict(sample_result(), findings=[], summary={}, skipped_classes=[],
                 counts=dict.fromkeys(auditing.CLASS_NAMES, 0), classes_run=list(auditing.CLASS_NAMES))
    text = report.render_markdown(empty, auditing.CLASS_TITLES)
    assert '**0 finding(s)**: the audited classes found nothing.' in text
    assert text.count('Nothing found.') == len(auditing.CLASS_NAMES)
    page = report.render_html(empty)
    assert 'No findings: the audited classes found nothing.' in page
    assert page.count('<table>') == 1


@pytest.mark.parametrize('seconds, shown', [(None, '-'), (0, '0s'), (59, '59s'), (61, '1m 1s'), (3600, '1h 0m'),
                                            (90061, '1d 1h')])
def test_ages_read_like_durations(seconds, shown):
    assert report.format_age(seconds) == shown


def test_write_report_replaces_the_file_atomically(tmp_path):
    path = tmp_path / 'report.md'
    path.write_text('old')
    report.write_report(str(path), 'new content', 'report_markdown')
    assert path.read_text() == 'new content'
    assert sorted(os.listdir(str(tmp_path))) == ['report.md']
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(str(path)).st_mode & 0o777 == 0o666 & ~mask


def test_write_report_into_a_missing_directory_fails_clearly(tmp_path):
    with pytest.raises(InputError) as raised:
        report.write_report(str(tmp_path / 'missing' / 'report.html'), 'x', 'report_html')
    assert raised.value.msg.startswith('report_html: directory ') and 'does not exist' in raised.value.msg
