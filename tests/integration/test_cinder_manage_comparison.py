"""cinder_service_rehost next to the tool the Cinder docs prescribe.

The same incident database is copied; the release's own
``cinder-manage volume update_host`` (from its OpenStack virtualenv, with a
minimal cinder.conf pointing at the copy) runs on one copy and the module
on the other. Both must change the same volume rows; what cinder-manage
leaves behind (attachments naming the old host, groups, consistency groups,
image cache entries, the dropped pool, service_uuid, the old service row)
the module fixes, on its own copy and as a follow-up on cinder-manage's.
"""

import json
import os
import subprocess
import uuid

import pytest

from tests.harness import dbset
from tests.integration.helpers import db_args

MODULE = 'cinder_service_rehost'
TABLES = ('services', 'volumes', 'volume_attachment', 'groups', 'consistencygroups', 'image_volume_cache_entries')
# Columns that differ between two correct runs only by when they ran.
TIMESTAMPS = ('updated_at', 'modified_at', 'deleted_at')


@pytest.fixture
def cinder_copy(mariadb_server, schema_snapshot, dbs):
    """A second database set; ``copy()`` fills its cinder database with the test's rows."""
    other = dbset.create_database_set(mariadb_server, schema_snapshot)

    def copy():
        source, target = dbs.name('cinder'), other.name('cinder')
        tables = [row['TABLE_NAME'] for row in dbs.query(
            'cinder', "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                      "AND TABLE_TYPE = 'BASE TABLE'", (source,))]
        conn = dbs.connect('cinder')
        try:
            with conn.cursor() as cursor:
                cursor.execute('SET FOREIGN_KEY_CHECKS = 0')
                for table in tables:
                    cursor.execute('DELETE FROM `%s`.`%s`' % (target, table))
                    cursor.execute('INSERT INTO `%s`.`%s` SELECT * FROM `%s`.`%s`' % (target, table, source, table))
        finally:
            conn.close()
        return other

    yield copy
    other.drop(wait=False)


def cinder_manage(openstack_venv, tmp_path, database_url, *arguments):
    """Run the release's own cinder-manage against one database; returns its output."""
    state = tmp_path / 'cinder-state'
    (state / 'locks').mkdir(parents=True, exist_ok=True)
    config = tmp_path / 'cinder.conf'
    config.write_text('[DEFAULT]\nstate_path = %s\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n\n'
                      '[database]\nconnection = %s\n\n[oslo_concurrency]\nlock_path = %s\n'
                      % (state, database_url, state / 'locks'))
    command = [os.path.join(openstack_venv, 'bin', 'cinder-manage'), '--config-file', str(config)] + list(arguments)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=str(tmp_path), check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout + completed.stderr


def rows_of(database_set):
    found = {}
    for table in TABLES:
        for row in database_set.query('cinder', 'SELECT * FROM `%s` ORDER BY id' % table):
            found[(table, str(row['id']))] = json.loads(json.dumps(row, default=str))
    return found


def changes(before, after, ignore=()):
    """{(table, id): {column: (old, new)}} of the rows that differ."""
    found = {}
    for key, row in after.items():
        old = before.get(key, {})
        diff = dict((column, (old.get(column), value)) for column, value in row.items()
                    if old.get(column) != value and column not in ignore)
        if diff:
            found[key] = diff
    return found


def incident(cloud):
    ids = dict(old_service=cloud.cinder_service('controller1', up=False),
               new_service=cloud.cinder_service('controller1@lvm', up=True))
    ids['group'] = cloud.group(host='controller1#DEFAULT')
    ids['cg'] = cloud.consistencygroup(host='controller1#DEFAULT')
    ids['plain'] = cloud.volume(host='controller1')
    ids['pooled'] = cloud.volume(host='controller1#DEFAULT', group_id=ids['group'], consistencygroup_id=ids['cg'])
    ids['attached'] = cloud.volume(host='controller1#DEFAULT', status='in-use', attach_status='attached')
    ids['host_attachment'] = cloud.attachment(ids['attached'], str(uuid.uuid4()), 'controller1', connector=None)
    ids['nova_attachment'] = cloud.attachment(ids['attached'], str(uuid.uuid4()), 'compute1')
    ids['cache'] = cloud.image_cache_entry('controller1#DEFAULT', str(uuid.uuid4()), ids['plain'])
    ids['deleted'] = cloud.volume(host='controller1#DEFAULT', status='deleted', deleted=True)
    ids['other'] = cloud.volume(host='controller2@lvm#lvm')
    return ids


def test_same_volume_rows_as_cinder_manage_and_what_it_leaves_behind(
        ansible, dbs, cloud, cinder_copy, openstack_venv, tmp_path, journal_dir):
    ids = incident(cloud)
    new_uuid = dbs.scalar('cinder', 'SELECT uuid FROM services WHERE id = %s', (ids['new_service'],))
    old_uuid = dbs.scalar('cinder', 'SELECT uuid FROM services WHERE id = %s', (ids['old_service'],))
    original = rows_of(dbs)
    copy = cinder_copy()
    assert rows_of(copy) == original

    # The documented procedure (admin/multi-backend): --newhost CURRENTHOST@BACKEND.
    cinder_manage(openstack_venv, tmp_path, copy.url('cinder'), 'volume', 'update_host',
                  '--currenthost', 'controller1', '--newhost', 'controller1@lvm')
    by_cinder_manage = changes(original, rows_of(copy))
    applied = ansible(MODULE, db_args(dbs, 'cinder', from_host='controller1', to_host='controller1@lvm#lvm',
                                      journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied
    by_module = changes(original, rows_of(dbs))

    # The same volumes, and only volumes.host (+ updated_at) from cinder-manage.
    moved = set(('volumes', ids[key]) for key in ('plain', 'pooled', 'attached'))
    assert set(key for key in by_cinder_manage if key[0] == 'volumes') == moved
    assert set(key for key in by_module if key[0] == 'volumes') == moved
    assert set(by_cinder_manage) == moved
    for key in moved:
        assert set(by_cinder_manage[key]) == {'host', 'updated_at'}
        assert by_cinder_manage[key]['host'][1] == 'controller1@lvm'  # the pool is gone
        assert by_module[key]['host'][1] == 'controller1@lvm#lvm'
        assert by_module[key]['service_uuid'] == (old_uuid, new_uuid)

    # What only the module fixes.
    attachment = by_module[('volume_attachment', ids['host_attachment'])]
    assert attachment['attached_host'] == ('controller1', 'controller1@lvm')
    for table, key in (('groups', 'group'), ('consistencygroups', 'cg'), ('image_volume_cache_entries', 'cache')):
        assert by_module[(table, str(ids[key]))]['host'] == ('controller1#DEFAULT', 'controller1@lvm#lvm')
    assert by_module[('services', str(ids['old_service']))]['disabled'] == (0, 1)
    for untouched in (('volume_attachment', ids['nova_attachment']), ('volumes', ids['deleted']),
                      ('volumes', ids['other']), ('services', str(ids['new_service']))):
        assert untouched not in by_module and untouched not in by_cinder_manage

    # After cinder-manage, the module finishes the job on that copy: first what still names the old
    # host, then the pool-less volumes of the new service. The result equals the module's own run.
    args = db_args(copy, 'cinder', to_host='controller1@lvm#lvm', journal_dir=journal_dir)
    rest = ansible(MODULE, dict(args, from_host='controller1'))
    assert not rest.failed and rest.changed, rest
    assert not [key for key in rest['after']['cinder_db'] if key.startswith('volumes/')]
    pools = ansible(MODULE, dict(args, from_host='controller1@lvm'))
    assert not pools.failed and pools.changed, pools
    assert sorted(key for key in pools['after']['cinder_db']) == sorted('volumes/%s' % key[1] for key in moved)
    assert 'only its rows without a pool' in ' '.join(pools['notes'])
    assert changes(original, rows_of(copy), ignore=TIMESTAMPS) == changes(original, rows_of(dbs), ignore=TIMESTAMPS)
    for run in (dict(args, from_host='controller1'), dict(args, from_host='controller1@lvm')):
        assert not ansible(MODULE, run).changed


def test_cinder_manage_widens_the_match_where_the_module_does_not(
        ansible, dbs, cloud, cinder_copy, openstack_venv, tmp_path, journal_dir):
    cloud.cinder_service('controller1', up=False)
    cloud.cinder_service('controller1@lvm', up=True)
    mine = cloud.volume(host='controller1#DEFAULT')
    upper = cloud.volume(host='CONTROLLER1#DEFAULT', service_uuid=None)
    longer = cloud.volume(host='controller10#DEFAULT', service_uuid=None)
    original = rows_of(dbs)
    copy = cinder_copy()

    # LIKE without BINARY: case-insensitive, so another host's volume moves too.
    cinder_manage(openstack_venv, tmp_path, copy.url('cinder'), 'volume', 'update_host',
                  '--currenthost', 'controller1', '--newhost', 'controller1@lvm')
    assert set(key[1] for key in changes(original, rows_of(copy))) == {mine, upper}
    # '_' is a LIKE wildcard: "controller_" takes controller1's pools (in either case).
    copy = cinder_copy()
    cinder_manage(openstack_venv, tmp_path, copy.url('cinder'), 'volume', 'update_host',
                  '--currenthost', 'controller_', '--newhost', 'controller9@lvm')
    assert set(key[1] for key in changes(original, rows_of(copy))) == {mine, upper}
    assert copy.scalar('cinder', 'SELECT host FROM volumes WHERE id = %s', (mine,)) == 'controller9@lvm'

    for selector in ('controller_', 'CONTROLLER1#default'):
        result = ansible(MODULE, db_args(dbs, 'cinder', from_host=selector, to_host='controller1@lvm#lvm',
                                         journal_dir=journal_dir))
        assert not result.failed and not result.changed, result
    applied = ansible(MODULE, db_args(dbs, 'cinder', from_host='controller1', to_host='controller1@lvm#lvm',
                                      journal_dir=journal_dir))
    assert not applied.failed and applied.changed, applied
    moved = set(key.split('/', 1)[1] for key in applied['after']['cinder_db'] if key.startswith('volumes/'))
    assert moved == {mine}
    for volume_id, host in ((upper, 'CONTROLLER1#DEFAULT'), (longer, 'controller10#DEFAULT')):
        assert dbs.scalar('cinder', 'SELECT host FROM volumes WHERE id = %s', (volume_id,)) == host
