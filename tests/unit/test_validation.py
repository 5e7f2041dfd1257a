"""Input validators."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.validation import canonical_uuid, uuid_list


def test_uuids_are_canonicalised():
    assert canonical_uuid(' 6B1A2F0E3C554C1E9A530D4C1F0B8A11 ', 'volume') == '6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11'


@pytest.mark.parametrize('bad', ['', 'abc', "1' OR '1'='1", '6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a1g', None, 5, 'x' * 500])
def test_bad_uuids_are_refused_naming_the_option(bad):
    with pytest.raises(InputError) as raised:
        canonical_uuid(bad, 'volume')
    assert raised.value.msg.startswith('volume:')
    assert len(raised.value.msg) < 200


def test_uuid_lists_deduplicate_and_refuse_empty():
    one = '6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11'
    assert uuid_list([one, one.upper()], 'volume') == [one]
    assert uuid_list(one, 'volume') == [one]
    with pytest.raises(InputError, match='empty'):
        uuid_list([], 'volume')
