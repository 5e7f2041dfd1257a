"""Connection options as an operator of openstack.cloud and AWX expects them: environment fallbacks of the *_db options."""

import pytest

from tests.integration.helpers import db_args

pytestmark = pytest.mark.newest_release


def test_the_database_options_fall_back_to_the_environment(cloud, dbs, ansible, journal_dir, tmp_path):
    cloud.nova_service('compute1')
    volume = cloud.volume(status='detaching', attach_status='attached')
    cloud.attachment(volume, instance_uuid=cloud.instance(host='compute1'), attached_host='compute1')
    # As AWX's credential writes it: a config file of the service's own form, its path in the environment.
    conf = tmp_path / 'cinder.conf'
    conf.write_text('[database]\nconnection = %s\n' % db_args(dbs, 'cinder')['cinder_db'])
    args = dict(volume=[volume], status='available', method='db', journal_dir=journal_dir)
    env = {'STACKMENDER_CINDER_DB': str(conf), 'STACKMENDER_NOVA_API_DB': db_args(dbs, 'nova_api')['nova_api_db']}
    checked = ansible('cinder_volume_state', args, check=True, env=env)
    assert checked.changed and not checked.failed, dict(checked)
    assert 'cinder_db' in checked['before']
    # Without them, the module names what it needs.
    missing = ansible('cinder_volume_state', args, check=True)
    assert missing.failed and 'cinder_db' in missing['msg'], dict(missing)


def test_an_option_given_wins_over_the_environment(cloud, dbs, ansible, journal_dir):
    volume = cloud.volume(status='error')
    args = dict(volume=[volume], status='available', method='db', journal_dir=journal_dir, **db_args(dbs, 'cinder'))
    env = {'STACKMENDER_CINDER_DB': '/nonexistent/cinder.conf'}
    result = ansible('cinder_volume_state', args, check=True, env=env)
    assert not result.failed and result.changed, dict(result)
