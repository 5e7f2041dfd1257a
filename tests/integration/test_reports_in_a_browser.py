"""The HTML reports, looked at in a real browser (headless Chromium from Debian's packages).

The audit writes its report with charts (by class and severity, by host, by cell) and, with a
history file, the trend over its last runs. Chromium renders the page: its DOM must hold the
charts' bars with the counts of the audit, and the screenshot must show them, in the colours of
the severities, where the page puts them.
"""

import json
import os
import shutil
import struct
import subprocess
import zlib

import pytest

from tests.integration.test_consistency_info import audit, build_cloud

pytestmark = pytest.mark.newest_release

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROME_FLAGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--allow-file-access-from-files',
                '--disable-dev-shm-usage', '--no-first-run']


def chromium(*args, home):
    assert CHROMIUM, 'Chromium is missing: tools/test installs Debian package chromium'
    done = subprocess.run([CHROMIUM, *CHROME_FLAGS, '--user-data-dir=%s' % home, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def png_pixels(path):
    """(width, height, rows of RGB tuples) of a PNG Chromium wrote (8-bit RGB or RGBA, not interlaced)."""
    with open(path, 'rb') as handle:
        data = handle.read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    position, chunks, header = 8, [], None
    while position < len(data):
        length, kind = struct.unpack('>I4s', data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            chunks.append(body)
        position += 12 + length
    width, height, depth, colour, _c, _f, interlace = header
    assert depth == 8 and colour in (2, 6) and not interlace, header
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b''.join(chunks))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for number in range(height):
        kind = raw[number * (stride + 1)]
        line = bytearray(raw[number * (stride + 1) + 1:(number + 1) * (stride + 1)])
        for index in range(stride):
            left = line[index - channels] if index >= channels else 0
            up = previous[index]
            corner = previous[index - channels] if index >= channels else 0
            if kind == 1:
                line[index] = (line[index] + left) & 0xFF
            elif kind == 2:
                line[index] = (line[index] + up) & 0xFF
            elif kind == 3:
                line[index] = (line[index] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                best = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))[2]
                line[index] = (line[index] + best) & 0xFF
        rows.append([tuple(line[offset:offset + 3]) for offset in range(0, stride, channels)])
        previous = line
    return width, height, rows


def colour(hex_colour):
    return tuple(int(hex_colour[index:index + 2], 16) for index in (1, 3, 5))


def test_the_audit_report_renders_its_charts_in_chromium(ansible, dbs, cloud, tmp_path):
    build_cloud(cloud, dbs)
    html_path, history = str(tmp_path / 'audit.html'), str(tmp_path / 'history.json')
    first = audit(ansible, dbs, history_file=history)
    assert first['history'] == {'file': history, 'runs': 1, 'written': True}
    result = audit(ansible, dbs, history_file=history, report_html=html_path, report_markdown=str(tmp_path / 'a.md'))
    assert result['history']['runs'] == 2 and len(json.load(open(history))['runs']) == 2
    assert '## Trend over the last 2 runs' in open(str(tmp_path / 'a.md')).read()
    severities = {}
    for finding in result['findings']:
        severities[finding['severity']] = severities.get(finding['severity'], 0) + 1
    assert len(severities) >= 2, severities

    home = str(tmp_path / 'chromium-home')
    dom = chromium('--dump-dom', 'file://' + html_path, home=home)
    # The browser parsed four charts (class and severity, host, cell, trend), each with its title.
    assert dom.count('<svg role="img" class="chart') == 4, dom[:2000]
    for title in ('Findings by class and severity', 'Findings by host', 'Findings by cell',
                  'Findings per class over the last runs'):
        assert '<title>%s</title>' % title in dom
    by_class = dom.split('<title>Findings by class and severity</title>', 1)[1].split('</svg>', 1)[0]
    drawn = {}
    for part in by_class.split('<rect ')[1:]:
        if 'data-series="' in part:
            series = part.split('data-series="', 1)[1].split('"', 1)[0]
            drawn[series] = drawn.get(series, 0) + int(part.split('data-count="', 1)[1].split('"', 1)[0])
    assert drawn == severities
    assert '<polyline' in dom and '<script' not in dom

    screenshot = str(tmp_path / 'audit.png')
    chromium('--screenshot=%s' % screenshot, '--window-size=1280,2400', 'file://' + html_path, home=home)
    width, height, rows = png_pixels(screenshot)
    assert (width, height) == (1280, 2400)
    seen = set(pixel for row in rows for pixel in row)
    from ansible_collections.stackmender.openstack.plugins.module_utils.audit.charts import SEVERITY_COLOURS
    for severity in severities:
        assert colour(SEVERITY_COLOURS[severity]) in seen, 'no %s bar on the screenshot' % severity
    # The bars are drawn as bars: a run of at least 10 pixels of one severity's colour on one line.
    wanted = colour(SEVERITY_COLOURS[max(severities, key=severities.get)])
    assert any(sum(1 for pixel in row if pixel == wanted) >= 10 for row in rows)
    assert os.path.getsize(screenshot) > 10000


@pytest.mark.parametrize('runbook', ['power_loss_recovery', 'compute_node_evacuation', 'cinder_multibackend_migration'])
def test_each_runbook_report_renders_in_chromium(runbook, tmp_path):
    from ansible_collections.stackmender.openstack.plugins.module_utils.audit import runbook_report as reports
    from tests.unit.test_runbook_report import EVACUATION, HOSTILE, MULTIBACKEND, POWER_LOSS
    report = {'power_loss_recovery': POWER_LOSS, 'compute_node_evacuation': EVACUATION,
              'cinder_multibackend_migration': MULTIBACKEND}[runbook]
    path = tmp_path / 'report.html'
    path.write_text(reports.render(report, runbook, 'html'))
    dom = chromium('--dump-dom', 'file://%s' % path, home=str(tmp_path / 'home'))
    for heading in (reports.DONE, reports.REFUSED, reports.LEFT):
        assert '<h2>%s</h2>' % heading in dom
    # A hostile value is text in the page, never an element: the browser made no script of it.
    assert '<script>' not in dom
    if HOSTILE in repr(report):
        assert '&lt;script&gt;alert(1)&lt;/script&gt;' in dom
    assert dom.count('<tr>') >= 2
