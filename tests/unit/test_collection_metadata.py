"""The collection's metadata says only what is true: no placeholder links, the ansible-core it is tested on."""

import os
import re

import yaml

from tests.collection_path import REPO_ROOT

LINK_KEYS = ('repository', 'documentation', 'homepage', 'issues')
# Hosts reserved for examples and tests (RFC 2606, RFC 6761): never a real link.
PLACEHOLDER_HOST = re.compile(r'^https?://([^/]*\.)?(example\.(com|org|net)|example|invalid|test|localhost)(:\d+)?(/|$)')


def _load(*path):
    with open(os.path.join(REPO_ROOT, *path)) as handle:
        return yaml.safe_load(handle)


def test_galaxy_links_are_real_or_absent():
    galaxy = _load('galaxy.yml')
    for key in LINK_KEYS:
        value = galaxy.get(key)
        if value is not None:
            assert not PLACEHOLDER_HOST.match(value), '%s: %s is a placeholder host' % (key, value)
            assert value.startswith('https://'), '%s: %s' % (key, value)


def test_the_placeholder_rule_catches_placeholders():
    for url in ('https://example.invalid/stackmender/openstack', 'https://docs.example.org/x', 'http://localhost:8000/'):
        assert PLACEHOLDER_HOST.match(url), url
    assert not PLACEHOLDER_HOST.match('https://github.com/stackmender/openstack')


def test_requires_ansible_is_the_matrix_that_is_tested():
    runtime = _load('meta', 'runtime.yml')
    with open(os.path.join(REPO_ROOT, 'tools', 'ansible-matrix.tsv')) as handle:
        minors = sorted(set('.'.join(line.split()[0].split('.')[:2]) for line in handle
                            if line.strip() and not line.startswith('#')), key=lambda v: tuple(map(int, v.split('.'))))
    # The oldest ansible-core claimed is the oldest the matrix tests; newer ones are tested up to the newest line.
    assert runtime['requires_ansible'] == '>=%s.0' % minors[0], runtime
    assert len(minors) >= 4 and minors[-1] == '2.21', minors
