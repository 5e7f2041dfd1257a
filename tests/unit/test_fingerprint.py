"""Plan fingerprints and the expected_fingerprint option, on plain data."""

import datetime

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import plan as planning
from ansible_collections.stackmender.openstack.plugins.module_utils.engine import remediation
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

CHAP = 'chap-Secret-0f3c9e'


def _plan(statuses, stamp=None, password=CHAP):
    plan = planning.Plan()
    for key, status in statuses:
        after = dict(status=status, updated_at=stamp or planning.now())
        plan.change('cinder_db', 'volumes', {'id': key}, before={'status': 'detaching', 'updated_at': None}, after=after)
    plan.change('cinder_db', 'volume_attachment', {'id': 'a1'}, action=planning.DELETE,
                before={'id': 'a1', 'connection_info': '{"auth_password": "%s"}' % password})
    return plan


def _fingerprint(plan):
    return planning.fingerprint(plan.review_items())


class _Clock(datetime.datetime):
    """datetime whose utcnow is a fixed moment (set per test)."""
    moment = None

    @classmethod
    def utcnow(cls):
        return cls.moment


def test_the_same_change_planned_at_another_time_has_the_same_fingerprint(monkeypatch):
    monkeypatch.setattr(planning.datetime, 'datetime', _Clock)
    _Clock.moment = _Clock(2026, 12, 7, 3, 0, 0)
    first = _plan([('v1', 'available')])
    _Clock.moment = _Clock(2026, 12, 7, 3, 7, 30)
    later = _plan([('v1', 'available')])
    assert first.changes[0].after['updated_at'] != later.changes[0].after['updated_at']
    assert _fingerprint(first) == _fingerprint(later)
    assert all(planning.RUN_TIME in item for item in first.review_items() if item.startswith('update'))


def test_a_fixed_time_that_is_not_the_run_s_counts_as_itself():
    fixed = datetime.datetime(2001, 1, 1)
    items = _plan([('v1', 'available')], stamp=fixed).review_items()
    assert any('2001-01-01 00:00:00' in item for item in items)
    assert _fingerprint(_plan([('v1', 'available')], stamp=fixed)) != _fingerprint(_plan([('v1', 'available')]))


def test_order_does_not_count_but_every_value_does():
    one = _plan([('v1', 'available'), ('v2', 'error')])
    other = _plan([('v2', 'error'), ('v1', 'available')])
    assert _fingerprint(one) == _fingerprint(other)
    assert _fingerprint(one) != _fingerprint(_plan([('v1', 'available'), ('v2', 'available')]))
    assert _fingerprint(one) != _fingerprint(_plan([('v1', 'available')]))


def test_secrets_are_reviewed_by_their_stand_in_and_still_count():
    plan = _plan([('v1', 'available')])
    text = '\n'.join(plan.review_items())
    assert CHAP not in text and '<secret:' in text
    assert _fingerprint(plan) != _fingerprint(_plan([('v1', 'available')], password='another-secret-1'))


def test_api_calls_are_reviewed_with_their_arguments_and_states():
    plan = planning.Plan()
    plan.call('block-storage', 'os-reset_status', {'status': 'available'}, lambda: None, resource='volumes/v1',
              before={'status': 'detaching'}, after={'status': 'available'})
    item, = plan.review_items()
    assert item == ('call block-storage os-reset_status {"status": "available"} on volumes/v1: '
                    '{"status": "detaching"} -> {"status": "available"}')


def test_an_empty_plan_has_a_fingerprint_of_its_own():
    assert _fingerprint(planning.Plan()).startswith('sha256:')
    assert _fingerprint(planning.Plan()) != _fingerprint(_plan([('v1', 'available')]))


@pytest.mark.parametrize('value', [None, ''])
def test_no_expected_fingerprint_checks_nothing(value):
    assert remediation.expected_fingerprint(value) == (None, None)


def test_expected_fingerprint_takes_a_fingerprint_a_review_or_a_check_result():
    review = dict(fingerprint='sha256:' + 'a' * 64, items=['x', 'y'])
    assert remediation.expected_fingerprint(review['fingerprint']) == (review['fingerprint'], None)
    assert remediation.expected_fingerprint(review) == (review['fingerprint'], ['x', 'y'])
    assert remediation.expected_fingerprint(dict(changed=True, review=review)) == (review['fingerprint'], ['x', 'y'])
    # A review cut short cannot show the difference: only its fingerprint is compared.
    partial = dict(review, items_not_shown=5)
    assert remediation.expected_fingerprint(partial) == (review['fingerprint'], None)


@pytest.mark.parametrize('value', ['sha256:abc', 'a' * 64, 42, ['sha256:' + 'a' * 64], {'items': []}])
def test_a_malformed_fingerprint_names_the_option(value):
    with pytest.raises(InputError) as refused:
        remediation.expected_fingerprint(value)
    assert 'expected_fingerprint' in refused.value.msg
