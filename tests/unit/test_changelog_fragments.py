"""Before the first release, the changelog describes what the collection does, not fixes to code never released."""

import glob
import os

import yaml

from tests.collection_path import REPO_ROOT

FIRST_RELEASE_SECTIONS = {'release_summary', 'major_changes', 'minor_changes', 'trivial'}
# Words that compare with an earlier behaviour, which no user of an unreleased collection has seen.
COMPARISONS = ('no longer', 'used to', 'instead of', 'is now ', 'are now ', 'now refuses', 'was renamed')


def _fragments():
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, 'changelogs', 'fragments', '*.yml'))):
        with open(path) as handle:
            yield os.path.basename(path), yaml.safe_load(handle)


def test_before_the_first_release_fragments_only_describe_the_release():
    with open(os.path.join(REPO_ROOT, 'changelogs', 'changelog.yaml')) as handle:
        releases = yaml.safe_load(handle).get('releases') or {}
    if releases:
        return  # after a release, bugfixes and breaking changes are against it
    fragments = list(_fragments())
    assert fragments
    for name, fragment in fragments:
        assert set(fragment) <= FIRST_RELEASE_SECTIONS, (name, sorted(set(fragment) - FIRST_RELEASE_SECTIONS))
        entries = [fragment.get('release_summary', '')] + list(fragment.get('minor_changes', []))
        for entry in entries:
            lowered = entry.lower()
            assert not [word for word in COMPARISONS if word in lowered], (name, entry[:120])
