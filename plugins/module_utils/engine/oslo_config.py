# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""OpenStack service config files, read the way oslo.config reads them.

The one reader of ``nova.conf``, ``cinder.conf`` and ``placement.conf`` in the
collection, written to give the values the services themselves see (checked
against oslo.config in tests/unit/test_oslo_config.py):

- ``--config-file`` files in the order given, then each ``--config-dir``'s
  ``*.conf`` files in sorted order; a later file wins over an earlier one;
  within one file the last assignment wins and repeated sections are merged.
- A value is the text after the first ``=`` or ``:``, stripped; one pair of
  matching surrounding quotes (``"`` or ``'``) is removed. Indented lines
  continue the value (joined with a newline); a blank line ends it. ``#`` and
  ``;`` start comments only at the beginning of a line.
- Option names are case-sensitive; group names are not, except ``[DEFAULT]``,
  which is only ever ``[DEFAULT]``. ``[DEFAULT]`` values do not appear in other
  groups.
- ``$name`` and ``${name}`` are replaced by the value of the option ``name`` of
  the same group, else of ``[DEFAULT]``; ``$group.name`` names another group;
  ``$$`` and ``\\$`` are a literal ``$``. oslo.config resolves only registered
  options; here an option counts as registered when some file sets it in that
  group or the caller gives its default.

Error messages name files, groups and options, never a value: values may hold
passwords.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import glob
import os
import re

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

DEFAULT_GROUP = 'DEFAULT'

# string.Template's pattern with oslo.config's idpattern; Template matches case-insensitively.
_REFERENCE = re.compile(r'\$(?:(?P<escaped>\$)|(?P<named>[_a-z][._a-z0-9]*)|\{(?P<braced>[_a-z][._a-z0-9]*)\}'
                        r'|(?P<invalid>))', re.IGNORECASE)


def normalize_group(name):
    """Group names are case-insensitive, except DEFAULT."""
    return name if name == DEFAULT_GROUP else name.lower()


class ParseError(Exception):
    def __init__(self, message, lineno):
        super(ParseError, self).__init__(message)
        self.message = message
        self.lineno = lineno


def parse_lines(lines):
    """{group: {option: [value, ...]}} of one file's lines, each value in the order assigned.

    Raises :class:`ParseError` with the line number (never the line, which may hold a password).
    """
    groups = {}
    state = dict(group=None, key=None, value=[])

    def flush():
        if state['key'] is None:
            return
        if state['group'] is None:
            raise ParseError('an option is set before any [section]', lineno)
        groups[state['group']].setdefault(state['key'], []).append('\n'.join(state['value']))
        state['key'], state['value'] = None, []

    lineno = 0
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip()
        if not line:
            flush()  # a blank line ends a multi-line value
            continue
        if line[0] in ' \t':
            if state['key'] is None:
                raise ParseError('an indented line continues no option (a blank line ends a value)', lineno)
            state['value'].append(line.lstrip())
            continue
        flush()
        if line.startswith('['):
            if not line.endswith(']'):
                raise ParseError('a section header must end with ]', lineno)
            if len(line) <= 2:
                raise ParseError('the section name is empty', lineno)
            state['group'] = normalize_group(line[1:-1])
            groups.setdefault(state['group'], {})
        elif line[0] in '#;':
            continue
        else:
            colon, equal = line.find(':'), line.find('=')
            if colon < 0 and equal < 0:
                raise ParseError("no '=' or ':' in the assignment", lineno)
            cut = equal if colon < 0 or 0 <= equal < colon else colon
            key, value = line[:cut].strip(), line[cut + 1:].strip()
            if not key:
                raise ParseError('the option name is empty', lineno)
            if value and value[0] == value[-1] and value[0] in '"\'':
                value = value[1:-1]
            state['key'], state['value'] = key, [value]
    flush()
    return groups


class OsloConfig(object):
    """The merged view of a service's config files and directories.

    ``what`` prefixes every error message (the module option, e.g. ``cinder_db``).
    ``defaults`` maps ``(group, option)`` to the default value of options that
    ``$references`` may name although no file sets them.
    """

    def __init__(self, config_files=(), config_dirs=(), defaults=None, what='config'):
        self.what = what
        self.defaults = dict(defaults or {})
        self.files = []  # (path, {group: {option: [values]}}) in the order read
        paths = list(config_files)
        for directory in config_dirs:
            expanded = os.path.expanduser(directory)
            if not os.path.isdir(expanded):
                raise InputError('%s: config directory %s does not exist' % (what, directory))
            paths.extend(sorted(glob.glob(os.path.join(expanded, '*.conf'))))
        if not paths:
            raise InputError('%s: no config file to read (config_dir holds no *.conf file)' % what)
        for path in paths:
            self.files.append((path, self._read(path)))

    @property
    def paths(self):
        return [path for path, _groups in self.files]

    def describe(self):
        """The files read, for messages."""
        return ', '.join(self.paths)

    def _read(self, path):
        try:
            with open(os.path.expanduser(path), encoding='utf-8') as handle:
                return parse_lines(handle.readlines())
        except ParseError as error:
            raise InputError('%s: %s is not a valid config file: line %d: %s'
                             % (self.what, path, error.lineno, error.message))
        except UnicodeDecodeError:
            raise InputError('%s: %s is not UTF-8 text' % (self.what, path))
        except (IOError, OSError) as error:
            if error.errno == errno.ENOENT:
                raise InputError('%s: cannot read config file %s: it does not exist' % (self.what, path))
            if error.errno == errno.EACCES:
                raise InputError('%s: cannot read config file %s: permission denied (run with become?)'
                                 % (self.what, path))
            raise InputError('%s: cannot read config file %s: %s' % (self.what, path, error.strerror or error))

    def _registered(self, group, name):
        return (group, name) in self.defaults or any(name in groups.get(group, {}) for _path, groups in self.files)

    def lookup(self, names):
        """(raw value, source) of the first of ``names`` ([(group, option)], current name first) set.

        Later files first; within a file the first of ``names`` it sets. ``source`` is
        ``dict(file, section, option)``. (None, None) when no file sets any of them.
        """
        names = [(normalize_group(group), option) for group, option in names]
        for path, groups in reversed(self.files):
            for group, option in names:
                values = groups.get(group)
                if values is not None and option in values:
                    return values[option][-1], dict(file=path, section=group, option=option)
        return None, None

    def has(self, group, option):
        return self.lookup([(group, option)])[1] is not None

    def get(self, group, option, deprecated=(), _stack=()):
        """The value of ``[group] option`` with ``$references`` resolved; its default, or None when unset."""
        group = normalize_group(group)
        raw, _source = self.lookup([(group, option)] + list(deprecated))
        if raw is None:
            raw = self.defaults.get((group, option))
        if raw is None:
            return None
        return self.substitute(raw, group, _stack + ((group, option),))

    def substitute(self, value, group=DEFAULT_GROUP, _stack=()):
        """Replace ``$name``/``${name}``/``$group.name`` in ``value`` as oslo.config does."""
        if '$' not in value:
            return value
        where = '[%s] %s' % _stack[-1] if _stack else 'a value'

        def replace(match):
            if match.group('escaped') is not None:
                return '$'
            key = match.group('named') or match.group('braced')
            if key is None:
                return match.group(0)
            if '.' in key:
                other, name = key.split('.', 1)
                candidates = [(other, name), (DEFAULT_GROUP, key)]
            else:
                candidates = [(group, key), (DEFAULT_GROUP, key)]
            for candidate in candidates:
                if self._registered(*candidate):
                    if candidate in _stack:
                        raise InputError('%s: %s in %s refers to $%s in a loop'
                                         % (self.what, where, self.describe(), key))
                    found = self.get(candidate[0], candidate[1], _stack=_stack)
                    return '' if found is None else found
            raise InputError('%s: %s in %s refers to $%s, which is not set' % (self.what, where, self.describe(), key))
        return _REFERENCE.sub(replace, value.replace('\\$', '$$'))
