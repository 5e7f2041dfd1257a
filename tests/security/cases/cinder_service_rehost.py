"""Registry entry of cinder_service_rehost: the volumes a renamed cinder-volume host left behind."""

import uuid

from tests.security.module_cases import ModuleCase, Scenario

REHOST_TABLES = [('cinder', table) for table in (
    'services', 'volumes', 'volume_attachment', 'groups', 'consistencygroups', 'image_volume_cache_entries')]
MOVED = ['volumes', 'volume_attachment', 'groups', 'consistencygroups', 'image_volume_cache_entries']


# Services built "up" report once, when the scenario is built; on a loaded machine a run can come
# more than a minute later. 1800 s still counts the hour-old reports of services built down as down.
def _names():
    # A host of its own, so that the scenario can be built more than once on the same databases.
    old = 'legacy-%s' % uuid.uuid4().hex[:8]
    return old, old + '@lvm', old + '@lvm#lvm'


def build_cinder_service_rehost(ctx):
    cloud = ctx.cloud
    old, new_service, new = _names()
    cloud.cinder_service(old, up=False)
    cloud.cinder_service(new_service)
    group = cloud.group(host=old + '#DEFAULT')
    volumes = [cloud.volume(host=old, group_id=group), cloud.volume(host=old + '#DEFAULT', status='in-use',
                                                                    attach_status='attached')]
    cloud.attachment(volumes[1], str(uuid.uuid4()), old, connector=None)
    cloud.consistencygroup(host=old + '#DEFAULT')
    cloud.image_cache_entry(old + '#DEFAULT', str(uuid.uuid4()), volumes[0])

    def verify():
        rows = ctx.dbs.query('cinder', 'SELECT host FROM volumes WHERE id IN (%s, %s)', volumes)
        assert [row['host'] for row in rows] == [new, new]

    return Scenario(args=dict(from_host=old, to_host=new, method='db', service_down_time=1800), databases=('cinder',),
                    tables=REHOST_TABLES, verify=verify)


def refuse_cinder_service_rehost(ctx):
    """The old service still reports: something may still be serving those volumes."""
    cloud = ctx.cloud
    old, new_service, new = _names()
    cloud.cinder_service(old, up=True)
    cloud.cinder_service(new_service)
    cloud.volume(host=old)
    return Scenario(args=dict(from_host=old, to_host=new, method='db', service_down_time=1800), databases=('cinder',),
                    tables=REHOST_TABLES)


CASES = [
    ModuleCase(
        name='cinder_service_rehost', module='cinder_service_rehost',
        build=build_cinder_service_rehost, refusal=refuse_cinder_service_rehost,
        grants={'cinder': {'SELECT': ['services'] + MOVED, 'UPDATE': ['services'] + MOVED}},
        undo_grants={},
        hostile_options={'from_host': 'host', 'to_host': 'host', 'volumes': 'uuid_list',
                         'force_reason': 'free_text'},
    ),
]
