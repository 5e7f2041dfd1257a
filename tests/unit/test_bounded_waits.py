"""Bounded waits and honest API sequences: pure logic, no database and no cloud.

- a run of API calls that fails midway says which calls were done, which failed, which never ran;
- lock_timeout and api_timeout must be positive;
- a database session reads with a timeout longer than lock_timeout, so a lock wait ends as a lock wait.
"""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import cloud as api
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import plan as planning
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import remediation
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal


class Recorder(object):
    """The calls' side effects, in the order they happened."""

    def __init__(self, failing=None):
        self.ran = []
        self.failing = failing

    def call(self, name):
        def run():
            self.ran.append(name)
            if name == self.failing:
                raise ApiError('block-storage %s on volumes/v1 failed (HTTP 500): boom' % name)
            return name
        return api.ApiCall('block-storage', name, {'attachment_id': name}, run, microversion='3.27',
                           resource='volumes/v1')


def test_every_call_done_is_reported_in_order():
    recorder = Recorder()
    calls = [recorder.call(name) for name in ('DELETE /attachments/a1', 'DELETE /attachments/a2')]
    outcomes = api.run_calls(calls)
    assert recorder.ran == ['DELETE /attachments/a1', 'DELETE /attachments/a2']
    assert [(entry['call'], entry['outcome']) for entry in outcomes] == [
        ('DELETE /attachments/a1', 'done'), ('DELETE /attachments/a2', 'done')]
    assert outcomes[0]['microversion'] == '3.27'
    assert outcomes[0]['arguments'] == {'attachment_id': 'DELETE /attachments/a1'}


def test_a_failure_midway_names_the_calls_done_failed_and_not_run():
    names = ['DELETE /attachments/a1', 'DELETE /attachments/a2', 'os-reset_status', 'DELETE /attachments/a4']
    recorder = Recorder(failing='os-reset_status')
    calls = [recorder.call(name) for name in names]
    with pytest.raises(ApiError) as raised:
        api.run_calls(calls)
    error = raised.value
    # The calls after the failure never ran.
    assert recorder.ran == names[:3]
    assert [entry['outcome'] for entry in error.details['calls']] == ['done', 'done', 'failed', 'not run']
    assert [entry['call'] for entry in error.details['calls']] == names
    assert error.msg.startswith('block-storage os-reset_status on volumes/v1 failed (HTTP 500): boom. ')
    assert 'API call 3 of 4 failed' in error.msg
    assert 'done before it: block-storage DELETE /attachments/a1, block-storage DELETE /attachments/a2' in error.msg
    assert 'not run: block-storage DELETE /attachments/a4' in error.msg


def test_a_first_call_failing_says_none_was_done():
    recorder = Recorder(failing='DELETE /attachments/a1')
    with pytest.raises(ApiError) as raised:
        api.run_calls([recorder.call('DELETE /attachments/a1'), recorder.call('os-reset_status')])
    assert 'done before it: none; not run: block-storage os-reset_status' in raised.value.msg
    assert [entry['outcome'] for entry in raised.value.details['calls']] == ['failed', 'not run']


def test_a_single_failing_call_keeps_its_own_message():
    recorder = Recorder(failing='os-reset_status')
    with pytest.raises(ApiError) as raised:
        api.run_calls([recorder.call('os-reset_status')])
    assert raised.value.msg == 'block-storage os-reset_status on volumes/v1 failed (HTTP 500): boom'
    assert raised.value.details['calls'][0]['outcome'] == 'failed'


@pytest.mark.parametrize('params, fragment', [
    (dict(lock_timeout=0), 'lock_timeout must be a positive number of seconds, got 0'),
    (dict(lock_timeout=-1), 'lock_timeout must be a positive number of seconds, got -1'),
    (dict(lock_timeout=30, api_timeout=0), 'api_timeout must be a positive number of seconds, got 0'),
])
def test_non_positive_timeouts_are_refused(params, fragment):
    with pytest.raises(InputError) as raised:
        remediation.validate_connection_options(params)
    assert fragment in raised.value.msg


def test_positive_timeouts_pass():
    remediation.validate_connection_options(dict(lock_timeout=1, api_timeout=5))
    remediation.validate_connection_options(dict(lock_timeout=30, api_timeout=None))


@pytest.mark.parametrize('value', [0, -1, None, True, 'x'])
def test_a_session_refuses_a_lock_timeout_that_is_not_positive(value):
    target = db.parse_url('cinder_db', 'mysql+pymysql://cinder:pw@db.example.org/cinder')
    with pytest.raises(InputError) as raised:
        db.Session(target, lock_timeout=value)
    assert 'lock_timeout must be a positive number' in raised.value.msg


def test_a_session_reads_longer_than_it_waits_for_locks():
    target = db.parse_url('cinder_db', 'mysql+pymysql://cinder:pw@db.example.org/cinder')
    session = db.Session(target, lock_timeout=45)
    assert session.read_timeout > session.lock_timeout == 45
    assert session.write_timeout and session.connect_timeout


def test_a_timed_out_server_is_named_without_its_password():
    target = db.parse_url('cinder_db', 'mysql+pymysql://cinder:s3cret@db.example.org:3307/cinder')

    class Lost(Exception):
        pass
    message = db.describe_error(target, Lost(2013, 'Lost connection to MySQL server during query (timed out)'))
    assert 'db.example.org:3307' in message and 'did not answer in time' in message and 's3cret' not in message
    message = db.describe_error(target, Lost(2003, "Can't connect to MySQL server on 'db.example.org' (timed out)"))
    assert 'db.example.org:3307' in message and 'timed out' in message and 's3cret' not in message


class FakeSession(object):
    def __init__(self, timeout):
        self.timeout = timeout


class FakeSdk(object):
    """openstacksdk's connect(): records its arguments; the session carries the cloud's api_timeout."""

    def __init__(self, cloud_timeout=None):
        self.cloud_timeout = cloud_timeout
        self.kwargs = None
        # openstack.config: a clouds.yaml with the one cloud the tests name.
        loaded = type('Config', (), dict(cloud_config={'clouds': {'production': {}}}, config_filename='clouds.yaml',
                                         default_cloud='production'))
        self.config = type('ConfigModule', (), dict(OpenStackConfig=staticmethod(lambda: loaded)))

    def connect(self, **kwargs):
        self.kwargs = kwargs
        timeout = kwargs.get('api_timeout', self.cloud_timeout)
        connection = type('Connection', (), {})()
        connection.session = FakeSession(None if timeout is None else float(timeout))
        connection.authorize = lambda: None
        return connection


@pytest.mark.parametrize('api_timeout, cloud_timeout, passed, effective', [
    (None, None, {}, 60.0),           # neither the option nor clouds.yaml: bounded by the default
    (None, 15, {}, 15.0),             # clouds.yaml's own api_timeout is kept
    (5, 15, {'api_timeout': 5}, 5.0),  # the option wins, as in openstack.cloud
])
def test_api_requests_are_always_bounded(monkeypatch, api_timeout, cloud_timeout, passed, effective):
    fake = FakeSdk(cloud_timeout)
    monkeypatch.setattr(api, 'HAS_OPENSTACKSDK', True)
    monkeypatch.setattr(api, 'sdk', lambda: fake)
    connection = api.connect('production', api_timeout)
    assert fake.kwargs == dict(passed, cloud='production')
    assert connection.session.timeout == effective


class CallRun(remediation.RemediationModule):
    """The base's API-call runner alone: no Ansible module, no database."""

    module_name = 'stackmender.openstack.cinder_volume_state'

    def __init__(self, journal_dir, **params):  # pylint: disable=super-init-not-called
        self.params = dict(dict(journal_dir=journal_dir, force=False, force_reason=None, accept_unverified=False,
                                unverified_reason=None, volume=['v1']), **params)
        self.targets = {}

    def _journal_arguments(self):
        return dict(volume=self.params['volume'])


def CallPlan(calls):
    """A plan of API calls, with the fingerprint the base gives it once planning ends."""
    plan = planning.Plan()
    plan.calls = calls
    plan.fingerprint = planning.fingerprint(plan.review_items())
    return plan


def test_an_api_run_journals_every_call_with_its_outcome(tmp_path):
    recorder = Recorder()
    calls = [recorder.call(name) for name in ('DELETE /attachments/a1', 'os-reset_status')]
    outcomes, path = CallRun(str(tmp_path))._run_calls(CallPlan(calls))
    document = load_journal(path)
    assert document['method'] == 'api' and document['status'] == 'committed' and document['entries'] == []
    assert document['calls'] == outcomes and [call['outcome'] for call in outcomes] == ['done', 'done']
    assert document['arguments'] == {'volume': ['v1']} and document['databases'] == {}
    assert document['fingerprint'].startswith('sha256:')


def test_an_api_run_that_fails_midway_leaves_a_journal_naming_what_was_done(tmp_path):
    names = ['DELETE /attachments/a1', 'os-reset_status', 'DELETE /attachments/a3']
    recorder = Recorder(failing='os-reset_status')
    with pytest.raises(ApiError) as raised:
        CallRun(str(tmp_path))._run_calls(CallPlan([recorder.call(name) for name in names]))
    document = load_journal(raised.value.details['journal'])
    assert document['status'] == 'calls_failed'
    assert [(call['call'], call['outcome']) for call in document['calls']] == [
        ('DELETE /attachments/a1', 'done'), ('os-reset_status', 'failed'), ('DELETE /attachments/a3', 'not run')]
    assert 'the journal lists them' in raised.value.msg
