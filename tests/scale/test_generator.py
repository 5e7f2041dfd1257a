"""The scale generator writes what it says, and exactly the inconsistencies asked for.

Every check reads the databases with its own SQL: row counts per table, and
each kind of injected inconsistency found by the rule that defines it, so
the injected fraction is proved on the data, not taken from the manifest.
"""

import json

import pytest

from tests.scale.generator import DEAD_HOST, KINDS, OLD_CINDER_HOST, generate

INSTANCES = 1000


def names(dbs):
    return dict((logical, dbs.name(logical)) for logical in ('nova', 'nova_api', 'cinder', 'placement'))


def found_inconsistencies(dbs):
    """Each kind's ids, found by its definition across the databases."""
    n = names(dbs)
    found = {}
    found['stuck_detaching'] = dbs.query('cinder', (
        "SELECT v.id FROM `{cinder}`.volumes v WHERE v.deleted = 0 AND v.status = 'detaching' "
        "AND EXISTS (SELECT 1 FROM `{cinder}`.volume_attachment a WHERE a.volume_id = v.id AND a.deleted = 0) "
        "AND NOT EXISTS (SELECT 1 FROM `{nova}`.block_device_mapping b WHERE b.volume_id = v.id AND b.deleted = 0)"
    ).format(**n))
    found['stale_bdm'] = dbs.query('cinder', (
        "SELECT DISTINCT b.volume_id AS id FROM `{nova}`.block_device_mapping b "
        "JOIN `{cinder}`.volumes v ON v.id = b.volume_id "
        "WHERE b.deleted = 0 AND b.destination_type = 'volume' AND v.status = 'available' "
        "AND NOT EXISTS (SELECT 1 FROM `{cinder}`.volume_attachment a WHERE a.volume_id = v.id AND a.deleted = 0)"
    ).format(**n))
    found['renamed_host'] = dbs.query('cinder', (
        "SELECT v.id FROM `{cinder}`.volumes v JOIN `{cinder}`.services s "
        "ON s.host = SUBSTRING_INDEX(v.host, '#', 1) AND s.`binary` = 'cinder-volume' AND s.deleted = 0 "
        "WHERE v.deleted = 0 AND s.updated_at < UTC_TIMESTAMP() - INTERVAL 1 HOUR"
    ).format(**n))
    found['dead_host'] = dbs.query('nova', (
        "SELECT i.uuid AS id FROM `{nova}`.instances i JOIN `{nova}`.services s "
        "ON s.host = i.host AND s.`binary` = 'nova-compute' AND s.deleted = 0 "
        "WHERE i.deleted = 0 AND s.updated_at < UTC_TIMESTAMP() - INTERVAL 1 HOUR"
    ).format(**n))
    return dict((kind, sorted(row['id'] for row in rows)) for kind, rows in found.items())


@pytest.mark.parametrize('fraction', [0.02, 0.0])
def test_generated_cloud_has_the_rows_and_the_injected_fraction(dbs, fraction):
    manifest = generate(dbs, INSTANCES, fraction=fraction, seed=7)

    for (logical, table), count in manifest.counts.items():
        assert dbs.scalar(logical, 'SELECT COUNT(*) FROM `%s`' % table) == count, (logical, table)
    counts = dict(('%s.%s' % key, value) for key, value in manifest.counts.items())
    assert counts['nova.instances'] == INSTANCES
    assert counts['nova_api.instance_mappings'] == INSTANCES
    assert counts['nova.block_device_mapping'] == 2 * INSTANCES
    assert counts['nova.instance_info_caches'] == INSTANCES
    assert counts['cinder.volumes'] == INSTANCES + INSTANCES // 10
    assert counts['cinder.volume_attachment'] == INSTANCES
    assert counts['placement.consumers'] == INSTANCES
    assert counts['placement.allocations'] == 3 * INSTANCES

    expected = int(round(INSTANCES * fraction))
    found = found_inconsistencies(dbs)
    for kind in KINDS:
        assert len(found[kind]) == expected, (kind, len(found[kind]))
        assert found[kind] == sorted(manifest.injected[kind]), kind
    injected = [value for kind in KINDS for value in found[kind]]
    assert len(injected) == len(set(injected)), 'an id carries two kinds'


def test_everything_not_injected_is_consistent(dbs):
    manifest = generate(dbs, INSTANCES, fraction=0.03, seed=11)
    n = names(dbs)
    broken_volumes = set(manifest.injected['stuck_detaching'] + manifest.injected['stale_bdm'])
    # Every other attached volume: in-use, one live attachment to its instance, one live BDM on that instance.
    rows = dbs.query('cinder', (
        "SELECT v.id, v.status, v.attach_status, a.instance_uuid, "
        "(SELECT COUNT(*) FROM `{nova}`.block_device_mapping b WHERE b.volume_id = v.id AND b.deleted = 0 "
        " AND b.instance_uuid = a.instance_uuid) AS bdms "
        "FROM `{cinder}`.volumes v JOIN `{cinder}`.volume_attachment a ON a.volume_id = v.id AND a.deleted = 0"
    ).format(**n))
    healthy = [row for row in rows if row['id'] not in broken_volumes]
    assert len(healthy) == INSTANCES - len(broken_volumes)
    assert all((row['status'], row['attach_status'], row['bdms']) == ('in-use', 'attached', 1) for row in healthy)
    # Each instance has its placement allocations on the provider of its own host.
    mismatched = dbs.query('nova', (
        "SELECT i.uuid FROM `{nova}`.instances i JOIN `{nova}`.compute_nodes c ON c.host = i.host "
        "JOIN `{placement}`.resource_providers p ON p.uuid = c.uuid "
        "WHERE (SELECT COUNT(*) FROM `{placement}`.allocations a WHERE a.consumer_id = i.uuid "
        "       AND a.resource_provider_id = p.id) <> 3"
    ).format(**n))
    assert mismatched == []
    hosts = dict((row['host'], row['n']) for row in dbs.query(
        'nova', 'SELECT host, COUNT(*) AS n FROM instances GROUP BY host'))
    assert hosts[DEAD_HOST] == len(manifest.injected['dead_host'])
    assert OLD_CINDER_HOST in [row['host'] for row in dbs.query('cinder', 'SELECT host FROM services')]
    # Every instance has a network info cache of one port with its network, as a running cloud does.
    caches = dbs.query('nova', 'SELECT instance_uuid, network_info FROM instance_info_caches WHERE deleted = 0')
    assert len(caches) == INSTANCES
    assert all(len(json.loads(row['network_info'])) == 1 and json.loads(row['network_info'])[0]['network']['label']
               for row in caches)
