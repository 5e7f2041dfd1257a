"""The waits of cinder_volume_state and nova_bdm_purge (api_pending) against a fake cloud, without Ansible."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.plan import Plan
from ansible_collections.stackmender.openstack.plugins.modules.cinder_volume_state import CinderVolumeState
from ansible_collections.stackmender.openstack.plugins.modules.nova_bdm_purge import NovaBdmPurge


class NotFound(Exception):
    status_code = 404


class Thing(object):
    def __init__(self, **fields):
        self.__dict__.update(fields)


class FakeStorage(object):
    def __init__(self, statuses, attachments=None):
        self.statuses, self.attachments_of = statuses, attachments or {}

    def get_volume(self, volume_id):
        status = self.statuses[volume_id].pop(0) if len(self.statuses[volume_id]) > 1 else self.statuses[volume_id][0]
        if status is None:
            raise NotFound(volume_id)
        return Thing(id=volume_id, status=status)

    def attachments(self, volume_id, all_projects):
        assert all_projects
        return self.attachments_of.get(volume_id, [])


class FakeCompute(object):
    def __init__(self, servers):
        self.servers = servers

    def volume_attachments(self, server_id):
        return [Thing(volume_id=volume_id, device='/dev/vdb') for volume_id in self.servers.get(server_id, [])]


def module(cls, storage=None, compute=None, **params):
    instance = cls.__new__(cls)
    instance.params = dict(dict(wait=True, timeout=30), **params)
    instance._conn = Thing(block_storage=storage, compute=compute)
    return instance


def volume_plan(*expected):
    plan = Plan()
    for volume_id, status in expected:
        plan.call('block-storage', 'os-reset_status', {}, lambda: None, resource='volumes/%s' % volume_id,
                  after=dict(status=status))
    return plan


def test_cinder_volume_state_waits_for_each_volume_and_a_deleted_one_may_be_gone():
    storage = FakeStorage({'v1': ['detaching', 'available'], 'v2': [None], 'v3': ['deleting']})
    state = module(CinderVolumeState, storage)
    plan = volume_plan(('v1', 'available'), ('v2', 'deleted'), ('v3', 'deleted'))
    assert state.waits and 'timeout' not in state.argument_spec  # the base adds wait and timeout
    assert state.api_pending(plan) == {'v1 (detaching, not available)': 'detaching', 'v3 (deleting, not deleted)': 'deleting'}
    assert state.api_pending(plan) == {'v3 (deleting, not deleted)': 'deleting'}
    with pytest.raises(ApiError) as raised:
        api.wait_until(lambda: state.api_pending(plan), 5, state.pending_what, clock=iter([0, 1, 10]).__next__,
                       sleep=lambda seconds: None)
    assert '1 volume(s) not in the requested status within timeout (5 s): v3 (deleting, not deleted)' in raised.value.msg
    assert raised.value.details['pending'] == [dict(name='v3 (deleting, not deleted)', state='deleting')]


def test_cinder_volume_state_fails_at_once_on_error_deleting_or_a_vanished_volume():
    with pytest.raises(ApiError, match='v1 is error_deleting after the API calls, not deleted'):
        module(CinderVolumeState, FakeStorage({'v1': ['error_deleting']})).api_pending(volume_plan(('v1', 'deleted')))
    with pytest.raises(ApiError, match='v1 is gone after the API calls, not available'):
        module(CinderVolumeState, FakeStorage({'v1': [None]})).api_pending(volume_plan(('v1', 'available')))


def test_wait_false_reads_nothing_back():
    state = module(CinderVolumeState, storage=None, wait=False)
    plan = volume_plan(('v1', 'available'))
    state._wait_for_cloud(plan)
    assert plan.notes == ['wait=false: the calls were accepted; nothing was read back to check that they took effect']


def test_nova_bdm_purge_waits_until_nova_and_cinder_both_let_go():
    storage = FakeStorage({}, {'v1': [Thing(instance='s1', status='attached'), Thing(instance='s2', status='attached'),
                                      Thing(instance='s1', status='detached')]})
    compute = FakeCompute({'s1': ['v1', 'v9'], 's2': []})
    purge = module(NovaBdmPurge, storage, compute)
    plan = Plan()
    for server in ('s1', 's2'):
        plan.call('compute', 'DELETE', dict(server_id=server, volume_id='v1'), lambda: None)
    assert purge.waits and purge.pending_what == 'volume(s) still attached'
    assert purge.api_pending(plan) == {
        'volume v1 on server s1 (Nova lists it: True, Cinder attachments: 1)': 'Nova lists it: True, Cinder attachments: 1',
        'volume v1 on server s2 (Nova lists it: False, Cinder attachments: 1)': 'Nova lists it: False, Cinder attachments: 1'}
    storage.attachments_of['v1'] = []
    compute.servers['s1'] = ['v9']
    assert purge.api_pending(plan) == {}
