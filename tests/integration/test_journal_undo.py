"""journal_undo on its own: check mode, apply, a second undo, the undo of an undo, and the refusals.

The runs it reverts are cinder_volume_state runs on the real Cinder schema: the
smallest repair with a journal. Every module's own full cycle ends with an undo
too (tests/integration/helpers.run_full_cycle); these are the undo's own rules.
"""

import json

import pytest

from tests.integration.helpers import assert_clean_failure, db_args, one, snapshot

TABLES = [('cinder', 'volumes'), ('cinder', 'volume_attachment')]


def status(dbs, volume):
    return one(dbs, 'cinder', 'SELECT status FROM volumes WHERE id = %s', volume)['status']


def reset(ansible, dbs, volume, journal_dir):
    applied = ansible('cinder_volume_state', db_args(dbs, 'cinder', volume=volume, status='available',
                                                     journal_dir=journal_dir))
    assert applied.changed and applied['journal'], applied
    return applied


@pytest.mark.newest_release
def test_check_apply_again_and_the_undo_of_the_undo(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='detaching')
    applied = reset(ansible, dbs, volume, journal_dir)
    after_run = snapshot(dbs, TABLES)
    undo_args = db_args(dbs, 'cinder', journal=applied['journal'], journal_dir=journal_dir)

    checked = ansible('journal_undo', undo_args, check=True, diff=True)
    assert not checked.failed and checked.changed and checked['journal'] is None, checked
    assert checked['diff']['before'] and checked['diff']['after']
    assert snapshot(dbs, TABLES) == after_run, 'check mode wrote something'

    undone = ansible('journal_undo', undo_args)
    assert undone.changed and undone['journal'], undone
    assert status(dbs, volume) == 'detaching'

    # The rows already hold their before-images: nothing to write.
    again = ansible('journal_undo', undo_args)
    assert not again.failed and not again.changed, again

    # The undo wrote a journal of its own: undoing it puts the repair back.
    redone = ansible('journal_undo', db_args(dbs, 'cinder', journal=undone['journal'], journal_dir=journal_dir))
    assert redone.changed, redone
    assert status(dbs, volume) == 'available'


@pytest.mark.newest_release
def test_rows_changed_between_the_run_and_the_undo_are_refused(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='detaching')
    applied = reset(ansible, dbs, volume, journal_dir)
    dbs.execute('cinder', "UPDATE volumes SET status = 'in-use' WHERE id = %s", (volume,))
    undo_args = db_args(dbs, 'cinder', journal=applied['journal'], journal_dir=journal_dir)
    refused = ansible('journal_undo', undo_args)
    assert_clean_failure(refused, 'changed since the run')
    assert refused['guards'][0]['evidence'][0]['now']['status'] == 'in-use'
    assert status(dbs, volume) == 'in-use'
    forced = ansible('journal_undo', dict(undo_args, force=True, force_reason='operator re-checked'))
    assert forced.changed
    assert status(dbs, volume) == 'detaching'


@pytest.mark.newest_release
def test_undo_refuses_a_different_database(ansible, dbs, cloud, journal_dir):
    volume = cloud.volume(status='detaching')
    applied = reset(ansible, dbs, volume, journal_dir)
    wrong = dict(journal=applied['journal'], journal_dir=journal_dir, cinder_db=dbs.url('nova'))
    assert_clean_failure(ansible('journal_undo', wrong), 'the journal was written for database')
    assert status(dbs, volume) == 'available'


@pytest.mark.newest_release
def test_a_missing_or_damaged_journal_fails_clearly_and_writes_nothing(ansible, dbs, cloud, journal_dir, tmp_path):
    volume = cloud.volume(status='detaching')
    applied = reset(ansible, dbs, volume, journal_dir)
    before = snapshot(dbs, TABLES)
    missing = ansible('journal_undo', db_args(dbs, 'cinder', journal=str(tmp_path / 'nope.json'),
                                              journal_dir=journal_dir))
    assert_clean_failure(missing, 'nope.json')
    damaged = tmp_path / 'damaged.json'
    with open(applied['journal']) as handle:
        damaged.write_text(handle.read()[:-40])
    broken = ansible('journal_undo', db_args(dbs, 'cinder', journal=str(damaged), journal_dir=journal_dir))
    assert_clean_failure(broken, 'damaged.json')
    not_a_journal = tmp_path / 'other.json'
    not_a_journal.write_text(json.dumps({'hello': 'world'}))
    other = ansible('journal_undo', db_args(dbs, 'cinder', journal=str(not_a_journal), journal_dir=journal_dir))
    assert_clean_failure(other, 'other.json')
    assert snapshot(dbs, TABLES) == before


@pytest.mark.newest_release
def test_the_journal_of_an_api_run_is_refused_naming_the_calls_done(ansible, dbs, journal_dir):
    from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import CALLS_FAILED, Journal
    journal = Journal(journal_dir, 'stackmender.openstack.cinder_volume_state', {'volume': ['v1']}, {},
                      method='api')
    journal.prepare_directory()
    journal.write(CALLS_FAILED, calls=[
        dict(kind='api', service='block-storage', call='DELETE /attachments/a1', outcome='done'),
        dict(kind='api', service='block-storage', call='os-reset_status', outcome='failed')])
    refused = ansible('journal_undo', db_args(dbs, 'cinder', journal=journal.path, journal_dir=journal_dir))
    assert_clean_failure(refused, 'records API calls (method=api)')
    assert 'Of its 2 call(s), 1 were done: block-storage DELETE /attachments/a1' in refused['msg']
