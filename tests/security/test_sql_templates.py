"""No SQL statement is built by formatting user input into it.

Dynamic: every registry module runs through Ansible with marker strings in
every free-text option and its real ids, while a test-only sitecustomize
(tests/security/sqlspy) logs each (template, arguments) PyMySQL receives.
No marker and no id may appear in a template; the ids must appear in the
arguments.

Static: every ``.query``/``.execute``/``.executemany`` call in plugins/ gets
SQL built only from literals, ``placeholders()``, ``quote_identifier()``,
module constants and local names or helpers built from those, so a change
that interpolates a variable fails here with its file and line.
"""

import ast
import json
import os
import re
import secrets
import sys

import pytest

from tests.harness import REPO_ROOT
from tests.security.module_cases import CASE_IDS, CASES, CaseContext

# What these check is the modules' code, not the schema: the newest release is enough.
pytestmark = pytest.mark.newest_release

SPY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sqlspy')
UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
METACHARACTERS = "'; DROP TABLE volumes; -- \" ` \\ %s %(x)s /* */ #"


def spy_environment(log_path):
    return {'PYTHONPATH': SPY_DIR, 'STACKMENDER_SQL_LOG': log_path}


def read_log(log_path):
    if not os.path.exists(log_path):
        return []
    with open(log_path) as stream:
        return [json.loads(line) for line in stream if line.strip()]


def uuids_in(value):
    return set(UUID.findall(json.dumps(value)))


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_no_user_input_reaches_a_sql_template(case, cloud, dbs, ansible, journal_dir, tmp_path):
    ctx = CaseContext(cloud, dbs, ansible, journal_dir)
    marker = 'smk%s' % secrets.token_hex(5)
    hostile_text = marker + METACHARACTERS
    log_path = str(tmp_path / 'sql.jsonl')
    env = spy_environment(log_path)
    scenario = case.build(ctx)
    refusal = case.refusal(ctx)
    # A well-formed id that exists nowhere, carrying the marker in its hex digits.
    marked_uuid = '%s-0000-4000-8000-%s' % (marker[3:11], marker[3:13].ljust(12, '0'))

    def run(args, databases, check=False):
        full = dict(args, journal_dir=str(tmp_path / marker), **ctx.admin_args(*databases))
        return ansible(case.module, full, check=check, env=env)

    marked = dict(scenario.args, force=True, force_reason=hostile_text)
    results = [run(marked, scenario.databases, check=True), run(marked, scenario.databases)]
    assert not results[-1].failed and results[-1].changed, results[-1]
    results.append(run(dict(refusal.args, force_reason=hostile_text), refusal.databases))
    assert results[-1].failed and results[-1].get('guards'), results[-1]
    for option, kind in case.hostile_options.items():
        if kind == 'uuid_list':
            values = [list(scenario.args.get(option) or []) + [marked_uuid], [hostile_text]]
        else:
            values = [[hostile_text]] if kind == 'choice_list' else [hostile_text]
        for value in values:
            results.append(run(dict(scenario.args, **{option: value}), scenario.databases))
            assert results[-1].failed or not results[-1].changed, results[-1]

    statements = read_log(log_path)
    templates = [entry['template'] for entry in statements]
    writes = ('UPDATE ', 'DELETE ', 'INSERT ')
    assert any(template.lstrip().upper().startswith(writes) for template in templates), \
        'the spy saw no apply: %s' % templates[:5]
    given_ids = uuids_in(scenario.args) | uuids_in(refusal.args) | {marked_uuid}
    for entry in statements:
        assert marker not in entry['template'], 'user input formatted into SQL: %s' % entry['template']
        leaked = [value for value in given_ids if value in entry['template']]
        assert not leaked, 'ids formatted into SQL: %s in %s' % (leaked, entry['template'])
    arguments = ' '.join(entry['args'] for entry in statements)
    ids_read = [value for value in uuids_in(scenario.args) if value in arguments]
    if case.module != 'journal_undo' and uuids_in(scenario.args):
        assert ids_read, 'the ids given never reached SQL as parameters'
    if 'volume' in case.hostile_options or 'instance' in case.hostile_options:
        assert marked_uuid in arguments, 'the marked id was not looked up as a parameter'


# --------------------------------------------------------------------------
# Static check of every SQL call site in plugins/

PLUGINS = os.path.join(REPO_ROOT, 'plugins')
SQL_METHODS = ('query', 'execute', 'executemany')
SAFE_FUNCTIONS = ('placeholders', 'quote_identifier')
# Calls whose result is text the code itself built from safe parts.
SAFE_STRING_METHODS = ('join', 'format', 'strip', 'lower', 'upper', 'replace')


def _python_files():
    for directory, _dirs, files in os.walk(PLUGINS):
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.join(directory, name)


class SourceIndex:
    """Every function of plugins/ by name, and each file's module-level constants."""

    def __init__(self):
        self.trees = {}
        self.functions = {}
        self.constants = set()
        self.parents = {}
        for path in _python_files():
            with open(path) as stream:
                tree = ast.parse(stream.read(), path)
            self.trees[path] = tree
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    self.parents[child] = node
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions.setdefault(node.name, []).append((path, node))
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else []
                for target in targets:
                    if isinstance(target, ast.Name) and target.id.isupper():
                        self.constants.add(target.id)
                if isinstance(node, ast.ImportFrom):
                    for alias in node.names:
                        name = alias.asname or alias.name
                        if name.isupper():
                            self.constants.add(name)

    def enclosing_function(self, node):
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return node
        return None


class SqlChecker:
    """Decides whether an expression can only hold SQL the code built itself."""

    def __init__(self, index):
        self.index = index
        self.visiting = set()
        self.reasons = []

    def unsafe(self, node, function, why):
        line = getattr(node, 'lineno', None)
        self.reasons.append('%s line %s: %s (%s)' % (function.name if function else 'module', line,
                                                     ast.unparse(node)[:100], why))
        return False

    def safe(self, node, function):
        """Whether ``node``, an expression inside ``function`` (None at module level), is built from safe parts."""
        if isinstance(node, _InContext):
            return self.safe(node.node, node.function)
        if isinstance(node, _YieldedPart):
            return self._safe_yielded(node)
        if isinstance(node, ast.Constant):
            return isinstance(node.value, (str, bytes, int, float, type(None)))
        if isinstance(node, ast.JoinedStr):
            return all(self.safe(value.value, function) for value in node.values if isinstance(value, ast.FormattedValue))
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Mult):
                # ['%s'] * n or [row] * n: a literal sequence of safe text repeated by a count.
                return any((isinstance(side, (ast.List, ast.Tuple)) or isinstance(side, ast.Constant) and
                            isinstance(side.value, str)) and self.safe(side, function)
                           for side in (node.left, node.right)) or \
                    self.unsafe(node, function, 'repetition of text that is not a safe literal')
            return isinstance(node.op, (ast.Mod, ast.Add)) and self.safe(node.left, function) and \
                self.safe(node.right, function)
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self.safe(element, function) for element in node.elts)
        if isinstance(node, ast.IfExp):
            return self.safe(node.body, function) and self.safe(node.orelse, function)
        if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
            return self.safe(node.elt, function)
        if isinstance(node, ast.Subscript):
            return self.safe(node.value, function)
        if isinstance(node, ast.Call):
            return self.safe_call(node, function)
        if isinstance(node, ast.Name):
            return self.safe_name(node.id, function, node)
        if isinstance(node, ast.Attribute):
            return node.attr.isupper() or self.unsafe(node, function, 'an attribute that is not a constant')
        return self.unsafe(node, function, 'not built from literals')

    def safe_call(self, node, function):
        callee = node.func
        name = callee.id if isinstance(callee, ast.Name) else callee.attr if isinstance(callee, ast.Attribute) else None
        if name in SAFE_FUNCTIONS:
            return True
        if name == 'len':
            return True
        if isinstance(callee, ast.Attribute) and name in SAFE_STRING_METHODS:
            return self.safe(callee.value, function) and all(self.safe(argument, function) for argument in node.args)
        if name in ('list', 'tuple', 'sorted', 'str') and len(node.args) == 1:
            return name != 'str' and self.safe(node.args[0], function)
        # A helper of plugins/: safe when everything it returns or yields is.
        if name not in self.index.functions:
            return self.unsafe(node, function, 'a call whose result cannot be traced')
        return all(self.safe_results(path, definition) for path, definition in self.index.functions[name])

    def safe_results(self, path, definition):
        key = ('results', path, definition.lineno)
        if key in self.visiting:
            return True
        self.visiting.add(key)
        try:
            for node in ast.walk(definition):
                if isinstance(node, (ast.Return, ast.Yield)) and node.value is not None:
                    value = node.value
                    if isinstance(value, ast.Tuple):
                        # (sql, params): only the first element is SQL.
                        value = value.elts[0]
                    if not self.safe(value, definition):
                        return False
            return True
        finally:
            self.visiting.discard(key)

    def safe_name(self, name, function, use):
        if name in self.index.constants:
            return True
        if function is None:
            return self.unsafe(use, function, 'a module-level name that is not a constant')
        if function.name in SQL_METHODS and name in [argument.arg for argument in function.args.args]:
            return True  # a wrapper such as Session.query: its own callers are call sites checked here
        key = ('name', function.lineno, function.name, name)
        if key in self.visiting:
            return True
        self.visiting.add(key)
        try:
            sources = list(self._sources(name, function))
            if not sources:
                return self.unsafe(use, function, 'a name with no value the code built')
            for source in sources:
                if source is None:
                    return self.unsafe(use, function, 'a name bound from something that cannot be traced')
                if not self.safe(source, function):
                    return self.unsafe(use, function, 'a name bound from unsafe text')
            return True
        finally:
            self.visiting.discard(key)

    def _sources(self, name, function):
        """Every expression that gives ``name`` a value inside ``function`` (None: not analysable)."""
        arguments = [argument.arg for argument in function.args.args + function.args.kwonlyargs]
        if name in arguments:
            yield from self._parameter_sources(name, function)
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    yield from self._bind(target, node.value, name)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                yield node.value
            elif isinstance(node, (ast.For, ast.comprehension)):
                yield from self._bind(node.target, node.iter, name, iterated=True)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == name and \
                    node.func.attr in ('append', 'extend', 'insert'):
                yield node.args[-1] if node.args else None

    def _bind(self, target, value, name, iterated=False):
        if isinstance(target, ast.Name):
            if target.id == name:
                yield self._element(value) if iterated else value
        elif isinstance(target, (ast.Tuple, ast.List)):
            for position, element in enumerate(target.elts):
                if isinstance(element, ast.Name) and element.id == name:
                    yield self._part(value, position, iterated)
                elif isinstance(element, (ast.Tuple, ast.List)):
                    yield from self._bind(element, value, name, iterated)

    @staticmethod
    def _element(iterable):
        # Iterating a safe sequence or a safe generator gives safe items.
        return iterable

    def _part(self, value, position, iterated):
        if not iterated and isinstance(value, ast.Tuple) and position < len(value.elts):
            return value.elts[position]
        if not iterated and isinstance(value, ast.IfExp):
            body, orelse = self._part(value.body, position, False), self._part(value.orelse, position, False)
            return ast.IfExp(test=value.test, body=body, orelse=orelse) if body and orelse else None
        if iterated and isinstance(value, ast.Call):
            callee = value.func
            name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, 'id', None)
            if name in self.index.functions:
                return _YieldedPart(name, position)
        if iterated and isinstance(value, (ast.Tuple, ast.List)):
            parts = [element.elts[position] for element in value.elts
                     if isinstance(element, ast.Tuple) and position < len(element.elts)]
            return ast.Tuple(elts=parts, ctx=ast.Load()) if len(parts) == len(value.elts) else None
        return None

    def _safe_yielded(self, part):
        for _path, definition in self.index.functions[part.name]:
            for inner in ast.walk(definition):
                if isinstance(inner, (ast.Yield, ast.Return)) and inner.value is not None:
                    value = inner.value
                    if isinstance(value, ast.Tuple) and part.position < len(value.elts):
                        value = value.elts[part.position]
                    if not self.safe(value, definition):
                        return False
        return True

    def _parameter_sources(self, name, function):
        """A parameter is safe when every call of its function in plugins/ passes safe SQL for it."""
        if function.name in SQL_METHODS:
            return  # the SQL call sites themselves are what this test checks
        positional = [argument.arg for argument in function.args.args]
        position = positional.index(name) if name in positional else None
        if position is not None and positional and positional[0] in ('self', 'cls'):
            position -= 1
        defaults = function.args.defaults
        if name in positional and defaults:
            offset = len(positional) - len(defaults)
            index = positional.index(name)
            if index >= offset:
                yield defaults[index - offset]
        for path, tree in self.index.trees.items():
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                callee = node.func
                called = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, 'id', None)
                if called != function.name:
                    continue
                caller = self.index.enclosing_function(node)
                passed = [keyword.value for keyword in node.keywords if keyword.arg == name]
                if not passed and position is not None and position < len(node.args):
                    passed = [node.args[position]]
                for argument in passed:
                    yield _InContext(argument, caller)


class _InContext(ast.AST):
    """An expression to judge inside another function than the one being analysed."""

    def __init__(self, node, function):
        super().__init__()
        self.node = node
        self.function = function


class _YieldedPart(ast.AST):
    """Element ``position`` of what a helper yields or returns."""

    def __init__(self, name, position):
        super().__init__()
        self.name = name
        self.position = position


def sql_call_sites(index):
    for path, tree in index.trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS:
                sql = node.args[0] if node.args else next(
                    (keyword.value for keyword in node.keywords if keyword.arg in ('sql', 'query')), None)
                if sql is not None:
                    yield path, node, sql


def unsafe_sql_call_sites(index):
    checker = SqlChecker(index)
    problems = []
    for path, node, sql in sql_call_sites(index):
        checker.reasons = []
        if not checker.safe(sql, index.enclosing_function(node)):
            problems.append('%s:%d: %s <- %s' % (os.path.relpath(path, REPO_ROOT), node.lineno, ast.unparse(sql)[:160],
                                                 checker.reasons[0] if checker.reasons else '?'))
    return problems


def test_every_sql_call_site_in_plugins_builds_its_sql_from_safe_parts():
    index = SourceIndex()
    sites = list(sql_call_sites(index))
    assert len(sites) >= 10, 'the call-site scan found too little to be looking at the right code'
    assert unsafe_sql_call_sites(index) == []


@pytest.mark.parametrize('body, safe', [
    ("session.query('SELECT * FROM volumes WHERE id IN (%s)' % placeholders(len(ids)), ids)", True),
    ("session.query('SELECT * FROM %s WHERE id = %%s' % quote_identifier(TABLE), (key,))", True),
    ("where = []\n    where.append('a IN (%s)' % placeholders(2))\n    session.query('SELECT 1 WHERE ' + ' AND '.join(where))",
     True),
    ("session.query(\"SELECT * FROM volumes WHERE host = '%s'\" % host)", False),
    ("session.query('SELECT * FROM volumes WHERE host = ' + params['host'])", False),
    ("session.query(f'SELECT * FROM volumes WHERE id = {volume_id}')", False),
    ("sql = 'SELECT * FROM v WHERE status = %s' % status\n    session.execute(sql)", False),
    ("where = []\n    where.append(row['clause'])\n    session.query(' AND '.join(where))", False),
    ("session.query('SELECT 1 FROM v WHERE host = ' + host * 1)", False),
    ("column, values = ('id', ids) if key else (host, ids)\n    session.query('SELECT %s FROM v' % column)", False),
])
def test_the_static_check_tells_safe_from_formatted_sql(tmp_path, monkeypatch, body, safe):
    """The checker itself: formatting a variable into SQL is caught, building from safe parts is not."""
    source = ('TABLE = "volumes"\n\n\ndef placeholders(count):\n    return ", ".join(["%%s"] * count)\n\n\n'
              'def quote_identifier(name):\n    return "`%%s`" %% name\n\n\n'
              'def run(session, ids, key, host, params, volume_id, status, row):\n    %s\n' % body)
    module = tmp_path / 'plugins' / 'modules' / 'example.py'
    module.parent.mkdir(parents=True)
    module.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], 'PLUGINS', str(tmp_path / 'plugins'))
    index = SourceIndex()
    assert (unsafe_sql_call_sites(index) == []) is safe, unsafe_sql_call_sites(index)
