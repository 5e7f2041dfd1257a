"""The filters that carry reviewed plans from a check job to the apply job of a workflow, on plain data."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.stackmender.openstack.plugins.filter import reviews

REVIEW = {'fingerprint': 'sha256:' + 'a' * 64, 'items': ['update cinder_db volumes/v1: ...']}


def test_a_single_task_s_review_comes_back_under_its_name():
    recorded = reviews.reviews_of({'changed': True, 'review': REVIEW}, 'reset volumes')
    assert recorded == {'reset volumes': REVIEW}
    assert reviews.review_for(recorded, 'reset volumes') == REVIEW
    assert reviews.review_for(recorded, 'another task') == ''


def test_loop_results_are_keyed_by_their_item_in_any_key_order():
    registered = {'results': [{'item': {'volume': 'v1', 'instance': 'i1'}, 'review': REVIEW},
                              {'item': {'volume': 'v2', 'instance': 'i2'}, 'skipped': True}]}
    recorded = reviews.reviews_of(registered, 'purge')
    assert list(recorded) == ['purge {"instance": "i1", "volume": "v1"}']
    assert reviews.review_for(recorded, 'purge', {'volume': 'v1', 'instance': 'i1'}) == REVIEW
    assert reviews.review_for(recorded, 'purge', {'volume': 'v2', 'instance': 'i2'}) == ''


def test_a_batch_is_keyed_by_the_ids_of_its_dicts():
    batch = [{'id': 'i1', 'status': 'ACTIVE'}, {'id': 'i2', 'status': 'SHUTOFF'}]
    recorded = reviews.reviews_of({'results': [{'item': batch, 'review': REVIEW}]}, 'evacuate', 'id')
    # In the apply job the servers' statuses may differ: the ids name the batch.
    assert reviews.review_for(recorded, 'evacuate', ['i1', 'i2']) == REVIEW


def test_no_reviews_handed_on_means_nothing_to_compare():
    assert reviews.review_for(None, 'reset volumes') == ''
    assert reviews.review_for('', 'reset volumes') == ''
    assert reviews.reviews_of({'changed': False, 'msg': 'nothing to do'}, 'reset volumes') == {}


@pytest.mark.parametrize('call, words', [
    (lambda: reviews.reviews_of(['not', 'a', 'result'], 'x'), 'reviews_of: expects a registered result'),
    (lambda: reviews.review_for(['x'], 'x'), 'review_for: stackmender_reviews must be a dict'),
    (lambda: reviews.review_for({}, ''), 'the task name must be a non-empty string'),
])
def test_bad_input_names_the_filter(call, words):
    with pytest.raises(AnsibleFilterError) as refused:
        call()
    assert words in str(refused.value)
