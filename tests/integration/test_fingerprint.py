"""The plan that was reviewed is the plan that runs.

A check run returns the fingerprint of its plan and the review items it is made of. An apply
given that fingerprint (or the review, or the whole check result) plans again from the
databases, runs only when the new plan has the same fingerprint, and refuses with nothing
written, showing the difference, when it does not. Every module of the registry is checked for
the first half: its fingerprint is stable between two check runs and the apply accepts it.
"""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal
from tests.integration.helpers import CINDER_TABLES, db_args, snapshot
from tests.security.module_cases import CASE_IDS, CASES, CaseContext

pytestmark = pytest.mark.newest_release


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_the_reviewed_plan_is_the_plan_that_runs(case, cloud, dbs, ansible, journal_dir):
    ctx = CaseContext(cloud, dbs, ansible, journal_dir)
    scenario = case.build(ctx)
    args = dict(scenario.args, journal_dir=journal_dir, **ctx.admin_args(*scenario.databases))
    checked = ansible(case.module, args, check=True)
    assert checked.changed, dict(checked)
    review = checked['review']
    assert checked['fingerprint'] == review['fingerprint'] and review['fingerprint'].startswith('sha256:')
    assert review['items'] and all(isinstance(item, str) for item in review['items'])
    # Planned again a moment later: the same plan, the same fingerprint (the run's time stamps do not count).
    again = ansible(case.module, args, check=True)
    assert again['fingerprint'] == checked['fingerprint'], (review['items'], again['review']['items'])

    applied = ansible(case.module, dict(args, expected_fingerprint=review))
    assert applied.changed and not applied.failed, dict(applied)
    assert applied['fingerprint'] == checked['fingerprint'] and 'review' not in applied
    if applied.get('journal'):
        assert load_journal(applied['journal'])['fingerprint'] == checked['fingerprint']
    if scenario.verify:
        scenario.verify()


def _stuck_volumes(cloud, count=2):
    volumes = []
    for _number in range(count):
        volume = cloud.volume(status='detaching', attach_status='attached')
        cloud.attachment(volume, instance_uuid=cloud.instance(host='compute1'), attached_host='compute1')
        volumes.append(volume)
    return volumes


def test_a_row_that_changed_since_the_review_refuses_the_apply_and_shows_how(cloud, dbs, ansible, journal_dir):
    cloud.nova_service('compute1')
    volumes = _stuck_volumes(cloud)
    args = dict(volume=volumes, status='available', method='db', journal_dir=journal_dir,
                **db_args(dbs, 'cinder', 'nova_api'))
    checked = ansible('cinder_volume_state', args, check=True)
    # After the review, someone else touches one of the volumes.
    dbs.execute('cinder', "UPDATE volumes SET attach_status = 'detached' WHERE id = %s", (volumes[0],))
    before = snapshot(dbs, CINDER_TABLES)

    refused = ansible('cinder_volume_state', dict(args, expected_fingerprint=checked['review']))
    assert refused.failed and 'not the plan that was reviewed' in refused['msg'], dict(refused)
    assert 'Nothing was changed' in refused['msg']
    assert refused['expected_fingerprint'] == checked['fingerprint'] != refused['fingerprint']
    # The difference names the volume whose row changed, as it was reviewed and as it is now.
    assert refused['added'] and refused['removed']
    assert all(volumes[0] in item for item in refused['added'] + refused['removed'] if 'volumes/' in item)
    assert any('"attached" -> "detached"' in item for item in refused['removed'])
    assert not any(volumes[1] in item for item in refused['added'] + refused['removed'])
    assert snapshot(dbs, CINDER_TABLES) == before
    assert not refused.get('journal')

    # Given only the fingerprint, the refusal shows the new plan to review.
    bare = ansible('cinder_volume_state', dict(args, expected_fingerprint=checked['fingerprint']))
    assert bare.failed and bare['review'] and 'added' not in bare
    # The same check in check mode: the drift is reported before anything would run.
    in_check = ansible('cinder_volume_state', dict(args, expected_fingerprint=checked), check=True)
    assert in_check.failed and 'not the plan that was reviewed' in in_check['msg']
    assert snapshot(dbs, CINDER_TABLES) == before

    # Reviewed again, the new plan runs.
    reviewed = ansible('cinder_volume_state', args, check=True)
    applied = ansible('cinder_volume_state', dict(args, expected_fingerprint=reviewed))
    assert applied.changed and not applied.failed, dict(applied)


def test_a_resource_that_broke_since_the_review_is_refused_as_an_addition(cloud, dbs, ansible, journal_dir):
    # The multi-backend switch: the legacy host's volumes, a new service that owns nothing yet.
    cloud.cinder_service('controller1', up=False)
    cloud.cinder_service('controller1@lvm')
    first = cloud.volume(host='controller1#DEFAULT')
    args = dict(from_host='controller1', to_host='controller1@lvm#lvm', journal_dir=journal_dir,
                **db_args(dbs, 'cinder'))
    checked = ansible('cinder_service_rehost', args, check=True)
    assert checked.changed, dict(checked)
    second = cloud.volume(host='controller1#DEFAULT')
    before = snapshot(dbs, CINDER_TABLES)
    refused = ansible('cinder_service_rehost', dict(args, expected_fingerprint=checked['review']))
    assert refused.failed and not refused['removed'], dict(refused)
    assert refused['added'] and all(second in item for item in refused['added'])
    assert not any(first in item for item in refused['added'])
    assert snapshot(dbs, CINDER_TABLES) == before


@pytest.mark.parametrize('value, words', [
    ('sha256:1234', 'expected_fingerprint must be a fingerprint'),
    ({'fingerprint': 'md5:0', 'items': []}, 'expected_fingerprint must be a fingerprint'),
    ({'fingerprint': 'sha256:' + '0' * 64, 'items': 'not a list'}, "the review's items must be a list of strings"),
])
def test_a_malformed_expected_fingerprint_is_refused_before_anything_is_read(value, words, dbs, ansible, journal_dir):
    result = ansible('cinder_volume_state', dict(volume=['00000000-0000-0000-0000-000000000001'], status='available',
                                                 method='db', journal_dir=journal_dir, expected_fingerprint=value,
                                                 **db_args(dbs, 'cinder')))
    assert result.failed and words in result['msg'], dict(result)
