"""Every module's documented requirements are what it really imports: openstacksdk where it has an API path,
PyMySQL (from the database doc fragment) where it reads a database."""

import ast
import glob
import os

import pytest
import yaml

from tests.collection_path import REPO_ROOT

MODULES = sorted(glob.glob(os.path.join(REPO_ROOT, 'plugins', 'modules', '*.py')))


def _documentation(path):
    with open(path) as handle:
        source = handle.read()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'DOCUMENTATION':
            return source, yaml.safe_load(node.value.value)
    raise AssertionError('%s has no DOCUMENTATION' % path)


def _fragment_requirements(name):
    path = os.path.join(REPO_ROOT, 'plugins', 'doc_fragments', name.split('.')[-1] + '.py')
    _source, documentation = _documentation_of_fragment(path)
    return documentation.get('requirements') or []


def _documentation_of_fragment(path):
    with open(path) as handle:
        source = handle.read()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'DOCUMENTATION':
            return source, yaml.safe_load(node.value.value)
    raise AssertionError(path)


@pytest.mark.parametrize('path', MODULES, ids=[os.path.basename(path) for path in MODULES])
def test_requirements_name_what_the_module_uses(path):
    source, documentation = _documentation(path)
    requirements = list(documentation.get('requirements') or [])
    for fragment in documentation.get('extends_documentation_fragment') or []:
        if fragment.startswith('stackmender.openstack.'):
            requirements += _fragment_requirements(fragment)
    text = ' '.join(requirements)
    uses_api = 'api_or_db(' in source or 'api_only(' in source or 'api.connect(' in source or 'binding_from' in source
    if uses_api:
        assert 'openstacksdk >= 1.0.0' in text, (os.path.basename(path), requirements)
    else:
        assert 'openstacksdk' not in text, (os.path.basename(path), requirements)
    if 'stackmender.openstack.database' in (documentation.get('extends_documentation_fragment') or []):
        assert 'PyMySQL' in text
