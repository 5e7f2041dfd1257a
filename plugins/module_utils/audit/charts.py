# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Charts for the reports, as inline SVG in HTML5: no script, no external asset, every label escaped.

``stacked_bars`` draws one horizontal bar per row, split by series (findings per class and
severity, per host, per cell); ``trend_lines`` draws one small line per series over the last
runs (findings per class in the audit's history). Both return an ``<svg>`` element with a
``<title>`` and a text description, so the chart reads without the picture too.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import html

# Colours of the severities, as in the report's tables; series without one take the palette in turn.
SEVERITY_COLOURS = {'critical': '#a1121c', 'error': '#d9534f', 'warning': '#e0a526', 'info': '#4a7fc1'}
PALETTE = ('#4a7fc1', '#d9534f', '#e0a526', '#2f7a3b', '#7a4ab0', '#1b8a8a', '#8a5a1b', '#555555')
ROW_HEIGHT = 22
LABEL_WIDTH = 240
BAR_WIDTH = 420


def _esc(value):
    return html.escape('' if value is None else str(value), quote=True)


def colour_of(series, index):
    return SEVERITY_COLOURS.get(series, PALETTE[index % len(PALETTE)])


def _legend(series, y):
    parts, x = [], LABEL_WIDTH
    for index, name in enumerate(series):
        parts.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (x, y, colour_of(name, index)))
        parts.append('<text x="%d" y="%d" font-size="12">%s</text>' % (x + 16, y + 11, _esc(name)))
        x += 28 + 8 * len(str(name))
    return parts


def stacked_bars(title, rows, series):
    """rows: [(label, {series: count})]; one bar per row, its parts in the order of ``series``."""
    total_max = max([sum(counts.values()) for _label, counts in rows] + [1])
    height = ROW_HEIGHT * len(rows) + 40
    width = LABEL_WIDTH + BAR_WIDTH + 60
    parts = ['<svg role="img" class="chart" width="%d" height="%d" '
             'viewBox="0 0 %d %d">' % (width, height, width, height),
             '<title>%s</title>' % _esc(title),
             '<desc>%s</desc>' % _esc('; '.join('%s: %s' % (label, ', '.join(
                 '%d %s' % (counts[name], name) for name in series if counts.get(name))) for label, counts in rows))]
    for number, (label, counts) in enumerate(rows):
        y = number * ROW_HEIGHT
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>'
                     % (LABEL_WIDTH - 8, y + 15, _esc(label if len(str(label)) <= 34 else str(label)[:33] + '…')))
        x = LABEL_WIDTH
        for index, name in enumerate(series):
            count = counts.get(name, 0)
            if not count:
                continue
            width_of = max(1, int(round(BAR_WIDTH * count / float(total_max))))
            values = (x, y + 3, width_of, ROW_HEIGHT - 6, colour_of(name, index), _esc(name), count, _esc(label),
                      count, _esc(name))
            parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s" data-series="%s" data-count="%d">'
                         '<title>%s: %d %s</title></rect>' % values)
            x += width_of
        parts.append('<text x="%d" y="%d" font-size="12">%d</text>' % (x + 4, y + 15, sum(counts.values())))
    parts.extend(_legend(series, ROW_HEIGHT * len(rows) + 12))
    parts.append('</svg>')
    return ''.join(parts)


def trend_lines(title, labels, series):
    """labels: one per run, oldest first; series: {name: [count per run]}; one line per series."""
    names = sorted(series)
    width, plot_height = LABEL_WIDTH + BAR_WIDTH + 60, 40
    height = (plot_height + 14) * len(names) + 24
    step = BAR_WIDTH / float(max(len(labels) - 1, 1))
    parts = ['<svg role="img" class="chart trend" width="%d" height="%d" '
             'viewBox="0 0 %d %d">' % (width, height, width, height),
             '<title>%s</title>' % _esc(title),
             '<desc>%s</desc>' % _esc('; '.join(
                 '%s: %s' % (name, ' -> '.join(str(value) for value in series[name])) for name in names))]
    for number, name in enumerate(names):
        values = series[name]
        top = number * (plot_height + 14)
        peak = max(values + [1])
        points = ' '.join('%.1f,%.1f' % (LABEL_WIDTH + index * step, top + plot_height - plot_height * value / float(peak))
                          for index, value in enumerate(values))
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>'
                     % (LABEL_WIDTH - 8, top + plot_height / 2 + 4, _esc(name)))
        parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ccd"/>'
                     % (LABEL_WIDTH, top + plot_height, LABEL_WIDTH + BAR_WIDTH, top + plot_height))
        parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s" data-series="%s"/>'
                     % (colour_of(name, number), points, _esc(name)))
        parts.append('<text x="%d" y="%d" font-size="12">%s</text>'
                     % (LABEL_WIDTH + BAR_WIDTH + 6, top + plot_height / 2 + 4, values[-1] if values else ''))
    if labels:
        parts.append('<text x="%d" y="%d" font-size="11" fill="#555">%s</text>' % (LABEL_WIDTH, height - 6, _esc(labels[0])))
        parts.append('<text x="%d" y="%d" font-size="11" fill="#555" text-anchor="end">%s</text>'
                     % (LABEL_WIDTH + BAR_WIDTH, height - 6, _esc(labels[-1])))
    parts.append('</svg>')
    return ''.join(parts)
