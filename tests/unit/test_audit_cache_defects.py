"""The audit's info cache classes and nova_network_info_cache agree on what a defect of a cached VIF is:
both read network_info.vif_defects, on plain data."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.audit import registry
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import info_caches
from ansible_collections.stackmender.openstack.plugins.module_utils.services import network_info

NETWORK = {'id': 'net-1', 'bridge': 'br-int', 'label': 'private', 'subnets': [], 'meta': {'mtu': 1450}}


def vif(port='port-1', **fields):
    """A cached VIF as Nova writes it, healthy unless ``fields`` say otherwise."""
    entry = dict(id=port, address='fa:16:3e:00:00:01', network=dict(NETWORK), type='ovs',
                 details={'bridge_name': 'br-int'}, devname='tap0', ovs_interfaceid=port, active=True,
                 vnic_type='normal', profile={}, preserve_on_delete=False, meta={})
    entry.update(fields)
    return entry


def without_network():
    entry = vif()
    del entry['network']
    return entry


CASES = [
    ('healthy', vif(), set()),
    ('binding_failed', vif(type='binding_failed', active=False), {'info_cache_binding_failed'}),
    ('unbound', vif(type='unbound', active=False), {'info_cache_binding_failed'}),
    ('null_network', vif(network=None), {'info_cache_vif_without_network'}),
    ('no_network_key', without_network(), {'info_cache_vif_without_network'}),
    ('empty_network', vif(network={}), {'info_cache_vif_without_network'}),
    ('migrating_to', vif(profile={'migrating_to': 'compute2'}), {'info_cache_migrating_to'}),
    ('unbound_without_network', vif(type='unbound', network=None),
     {'info_cache_binding_failed', 'info_cache_vif_without_network'}),
    ('words_only', vif(details={'note': 'was binding_failed, then unbound'}, meta={'network': None}), set()),
]


@pytest.mark.parametrize('entry, classes', [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_audit_reports_what_the_repair_module_repairs(entry, classes):
    text = network_info.dump_cache([vif(port='port-ok'), entry])
    # What nova_network_info_cache judges: the parsed cache, then vif_defects of each VIF.
    repaired = dict((item['id'], network_info.vif_defects(item)) for item in network_info.parse_cache(text))
    vifs, by_class = info_caches.cache_defects(text)
    assert [item['id'] for item in vifs] == ['port-ok', entry['id']]
    assert set(by_class) == classes
    assert set(by_class) == set(info_caches.DEFECT_CLASSES[defect] for defects in repaired.values() for defect in defects)
    for flagged in by_class.values():
        assert [item['id'] for item in flagged] == [entry['id']]
    assert bool(classes) == bool(repaired[entry['id']]) and not repaired['port-ok']


def test_every_defect_of_network_info_has_an_audit_class():
    defects = set(value for name, value in vars(network_info).items() if name.startswith('DEFECT_'))
    assert set(info_caches.DEFECT_CLASSES) == defects
    assert set(info_caches.DEFECT_CLASSES.values()) <= set(registry.CLASS_NAMES)


@pytest.mark.parametrize('text', [None, 'not json', '{"id": "port-1"}', '[{"type": "binding_failed"}]', '[null]'])
def test_a_cache_the_module_cannot_read_has_no_defects(text):
    with pytest.raises(network_info.CacheUnreadable):
        network_info.parse_cache(text)
    assert info_caches.cache_defects(text) == ([], {})


def flagged_by_text(text):
    """What the scan of _info_cache_rows flags, on the text as Nova writes it (LIKE BINARY and the count
    of NETWORK_MARK against the number of VIFs, both exact byte comparisons)."""
    return any(marker in text for marker in info_caches.CACHE_MARKERS) or \
        len(network_info.parse_cache(text)) > text.count(info_caches.NETWORK_MARK)


@pytest.mark.parametrize('entry, classes', [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_scan_reads_every_cache_with_a_defect(entry, classes):
    for vifs in ([entry], [vif(port='port-ok'), entry], [entry, vif(port='port-ok')]):
        text = network_info.dump_cache(vifs)
        if classes:
            assert flagged_by_text(text), text
    assert not flagged_by_text(network_info.dump_cache([vif(port='a'), vif(port='b')]))
