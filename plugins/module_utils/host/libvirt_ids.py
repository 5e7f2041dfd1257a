# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The comparison of the nova_libvirt_ids role: user and group ids per host, against targets and between hosts.

Plain data in, plain data out (the filters of plugins/filter/libvirt_ids.py call these). A host's
users and groups are what ``ansible.builtin.getent`` returns: name -> the other fields of the entry,
the id second (passwd: ``[password, uid, gid, ...]``, group: ``[password, gid, members]``).

Statuses of a row: ``ok`` (the id is the target), ``change`` (to the target), ``absent`` (a target
is set but the host lacks the name), ``collision`` (another user or group holds the target id here),
``unmanaged`` (no target: the hosts must only agree).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

KINDS = ('group', 'user')
ID_WORD = {'user': 'uid', 'group': 'gid'}


def target_id(value):
    """A target as given: None or blank text is no target, anything else an integer id."""
    if value is None or str(value).strip() == '':
        return None
    return int(value)


def _entry_id(entry):
    return str(entry[1])


def host_rows(passwd, group, users, groups):
    """One row per user and group name of ``users``/``groups`` that this host has or that has a target.

    Each row: kind, name, current (the id here or None), target (or None), status, held_by (the other
    names of the same kind that hold the target id here).
    """
    rows = []
    for kind, wanted, known in (('group', groups, group), ('user', users, passwd)):
        known = known or {}
        for name, given in (wanted or {}).items():
            target = target_id(given)
            current = int(_entry_id(known[name])) if name in known else None
            if current is None and target is None:
                continue
            holders = [] if target is None else [
                other for other, entry in known.items() if other != name and _entry_id(entry) == str(target)]
            if target is None:
                status = 'unmanaged'
            elif current is None:
                status = 'absent'
            elif current == target:
                status = 'ok'
            elif holders:
                status = 'collision'
            else:
                status = 'change'
            rows.append(dict(kind=kind, name=name, current=current, target=target, status=status, held_by=holders))
    return rows


def _problem(kind, name, host, row):
    if row['status'] == 'absent':
        return '%s %s does not exist on %s (target %s); create it first' % (kind, name, host, row['target'])
    return 'on %s, %s %s (the target of %s %s) belongs to %s' % (
        host, ID_WORD[kind], row['target'], kind, name, ', '.join(row['held_by']))


def compare_hosts(hosts, rows_per_host):
    """The table across hosts: one entry per kind and name that any host has a row for.

    ``hosts``: the host names in play order; ``rows_per_host``: each host's :func:`host_rows`, in the
    same order. Each entry: kind, name, target, ids (host -> id, None where the name is absent but has
    a target), changes (host, from, to), mismatches (ids to change) and problems (what refuses a
    change: an absent name, a collision, or hosts that disagree about a name without a target).
    """
    per_host = list(zip(hosts, rows_per_host))
    keys = sorted(set('%s:%s' % (row['kind'], row['name']) for _host, rows in per_host for row in rows or []))
    table = []
    for key in keys:
        kind, name = key.split(':', 1)
        entry = dict(kind=kind, name=name, target=None, ids={}, changes=[], mismatches=[], problems=[])
        for host, rows in per_host:
            for row in rows or []:
                if row['kind'] != kind or row['name'] != name:
                    continue
                entry['ids'][host] = row['current']
                entry['target'] = row['target']
                if row['status'] == 'change':
                    entry['changes'].append({'host': host, 'from': row['current'], 'to': row['target']})
                    entry['mismatches'].append('%s %s has %s %s on %s, the target is %s' % (
                        kind, name, ID_WORD[kind], row['current'], host, row['target']))
                elif row['status'] in ('absent', 'collision'):
                    entry['problems'].append(_problem(kind, name, host, row))
        present = set(value for value in entry['ids'].values() if value is not None)
        if entry['target'] is None and len(present) > 1:
            entry['problems'].append('%s %s differs between hosts (%s); set its target in nova_libvirt_ids_%ss' % (
                kind, name, ', '.join('%s: %s' % (host, value) for host, value in entry['ids'].items()
                                      if value is not None), kind))
        table.append(entry)
    return table


def report_lines(table):
    """One line per entry of :func:`compare_hosts`: its target, every host's id, then what differs or ``ok``."""
    lines = []
    for entry in table:
        ids = ', '.join('%s=%s' % (host, 'absent' if value is None else value) for host, value in entry['ids'].items())
        found = entry['mismatches'] + entry['problems']
        lines.append('%s %s (target %s): %s; %s' % (
            entry['kind'], entry['name'], 'none' if entry['target'] is None else entry['target'], ids,
            '; '.join(found) if found else 'ok'))
    return lines


def reown_plan_lines(found, paths):
    """What apply shows for a host: each id change with how many files ``find`` listed for it.

    ``found``: the results of the role's ``find`` loop (each with ``item`` and ``stdout_lines``).
    """
    lines = []
    for result in found or []:
        item = result['item']
        lines.append('%s %s: %s -> %s, %d file(s) to re-own under %s' % (
            item['kind'], item['name'], item['current'], item['target'], len(result.get('stdout_lines') or []),
            ', '.join(paths or [])))
    return lines or ['nothing to change']
