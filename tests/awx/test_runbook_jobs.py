"""Every runbook's check template runs as an AWX job (ansible-runner, a private
data directory, extra vars, survey answers and injected credentials).

The power-loss and undo templates have their own tests in test_runner.py; the
drills run each playbook for real. Here each of the other runbooks' check
jobs runs once: against the lab where it needs a cloud, on this machine where
it inspects a host. Survey answers are passed as AWX passes them (strings).
"""

import configparser
import os
import pwd

import pytest
import yaml

from tests.awx.test_runner import AWX_NAMES, AwxJob, controller_objects, task_results, template
from tests.drills.conftest import new_server, new_volume


def database_credential(job, cinder_url, nova_api_url):
    databases, = controller_objects('credential_types.yml')['controller_credential_types']
    job.custom_credential(databases, dict(cinder_url=cinder_url, nova_api_url=nova_api_url))


def check_job(tmp_path, name, answers, state_dir):
    entry = dict(template(name))
    # The template's extra vars put the state under stackmender_awx_state_dir; here it is the test's own.
    entry['extra_vars'] = dict((key, value.replace('{{ stackmender_awx_state_dir }}', state_dir)
                                if isinstance(value, str) else value)
                               for key, value in (entry.get('extra_vars') or {}).items())
    assert entry['job_type'] == 'check' and entry['diff_mode'] is True
    return AwxJob(tmp_path / 'job', entry, answers)


def failure_messages(runner):
    return [event['event_data']['res'].get('msg', '') for event in runner.events
            if event['event'] == 'runner_on_failed']


def test_state_placeholder_is_a_base_directory():
    # Each runbook keeps its state in a directory of its own below the one AWX exposes.
    dirs = [value for entry in controller_objects('job_templates.yml')['controller_templates']
            for key, value in (entry.get('extra_vars') or {}).items() if key.endswith('_state_dir')]
    assert dirs and all(value.startswith('{{ stackmender_awx_state_dir }}/') for value in dirs), dirs
    assert len(set(dirs)) == len(set(value.split('/')[1] for value in dirs))
    assert AWX_NAMES['stackmender_awx_state_dir'] == '/var/lib/stackmender'


def test_compute_node_evacuation_check_job_refuses_without_confirmed_fencing(tmp_path):
    state_dir = str(tmp_path / 'state')
    job = check_job(tmp_path, 'stackmender compute node evacuation (check)', {
        'compute_node_evacuation_failed_host': 'compute7', 'compute_node_evacuation_target_host': 'compute8',
        'compute_node_evacuation_fenced': 'false', 'compute_node_evacuation_target_state': 'keep',
        'compute_node_evacuation_parallel': 5, 'compute_node_evacuation_db_fallback': 'false'}, state_dir)
    # Nothing answers on port 9: the refusal must come before the cloud is asked anything.
    job.openstack_credential({'auth_url': 'http://127.0.0.1:9/v3', 'username': 'admin', 'password': 'Awx-pw-77',
                              'project_name': 'admin', 'user_domain_name': 'Default',
                              'project_domain_name': 'Default'})
    runner = job.run()
    assert (runner.status, runner.rc) == ('failed', 2), runner.stdout.read()[-3000:]
    messages = failure_messages(runner)
    assert len(messages) == 1 and 'fencing is not confirmed' in messages[0], messages
    assert not os.path.exists(state_dir)
    assert 'Awx-pw-77' not in runner.stdout.read()


def test_image_cache_guard_check_job_plans_the_fix_and_writes_nothing(tmp_path):
    instances = tmp_path / 'instances'
    (instances / '_base').mkdir(parents=True)
    conf = tmp_path / 'nova.conf'
    conf.write_text('[DEFAULT]\ninstances_path = %s\n' % instances)
    before = conf.read_text()
    job = check_job(tmp_path, 'stackmender image cache guard (check)', {
        'image_cache_guard_shared_storage': 'shared', 'image_cache_guard_restart': 'false',
        'image_cache_guard_restart_command': 'systemctl restart nova-compute',
        # The machine credential's host: this one, without become.
        'image_cache_guard_hosts': 'localhost', 'image_cache_guard_become': 'false',
        'image_cache_guard_config_files': [str(conf)]}, str(tmp_path / 'state'))
    runner = job.run()
    assert (runner.status, runner.rc) == ('successful', 0), runner.stdout.read()[-3000:]
    fix, = task_results(runner, 'Turn off the removal of unused base images')
    assert fix['changed'], 'check mode shows the change it would make'
    assert conf.read_text() == before and not [name for name in os.listdir(str(tmp_path)) if '~' in name]
    parser = configparser.ConfigParser()
    parser.read(str(conf))
    assert not parser.has_section('image_cache')


def test_nova_libvirt_ids_check_job_reports_this_host(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    job = check_job(tmp_path, 'stackmender nova and libvirt ids (check)', {
        'nova_libvirt_ids_services_stopped': 'false', 'nova_libvirt_ids_hosts': 'localhost',
        'nova_libvirt_ids_become': 'false',
        # A user and a group that exist here, with their own ids as targets: nothing to change.
        'nova_libvirt_ids_users': {me: os.getuid()}, 'nova_libvirt_ids_groups': {},
        'nova_libvirt_ids_reown_paths': [str(tmp_path)]}, str(tmp_path / 'state'))
    runner = job.run()
    assert (runner.status, runner.rc) == ('successful', 0), runner.stdout.read()[-3000:]
    assert task_results(runner, 'Compare this host'), 'the comparison ran'
    stats = [event for event in runner.events if event['event'] == 'playbook_on_stats'][0]['event_data']
    assert not stats.get('changed'), stats.get('changed')


@pytest.mark.lab
@pytest.mark.xdist_group('lab')
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning')
def test_lab_check_jobs_of_the_audit_and_the_multibackend_runbook(lab, lab_db, admin, member, cleanup, tmp_path):
    # A cloud with something in it: the audit gate aborts on an empty list of servers or volumes.
    server = new_server(member, 'awx-audit', cleanup)
    volume = new_volume(member, admin, 'awx-audit', cleanup)
    with open(lab['clouds_yaml']) as handle:
        auth = yaml.safe_load(handle)['clouds']['lab-admin']['auth']

    state_dir = str(tmp_path / 'audit-state')
    audit = check_job(tmp_path / 'audit', 'stackmender audit run (check)', {
        'audit_run_remediate': 'false', 'audit_run_min_sightings': 2, 'audit_run_max_per_class': 25,
        'audit_run_accept_counts': 'false'}, state_dir)
    audit.openstack_credential(auth)
    database_credential(audit, lab_db['cinder'], lab_db['nova_api'])
    runner = audit.run()
    assert (runner.status, runner.rc) == ('successful', 0), runner.stdout.read()[-4000:]
    audited, = task_results(runner, 'Audit Nova, Cinder and Placement')
    assert audited['inventory']['instances'] >= 1 and audited['inventory']['volumes'] >= 1
    assert 'volume_attached_without_bdm' in audited['counts'] and server.id and volume.id
    assert not os.path.exists(state_dir), 'a check job wrote the state directory'
    assert auth['password'] not in runner.stdout.read()

    state_dir = str(tmp_path / 'multibackend-state')
    migration = check_job(tmp_path / 'multibackend', 'stackmender cinder multi-backend migration (check)', {
        'cinder_multibackend_migration_hosts': 'volume1@backend1: nowhere@rbd#rbd',
        'cinder_multibackend_migration_service_down_time': 60,
        'cinder_multibackend_migration_reset_transitional': 'true',
        'cinder_multibackend_migration_reset_orphaned': 'true',
        'cinder_multibackend_migration_remove_old': 'false'}, state_dir)
    migration.openstack_credential(auth)
    database_credential(migration, lab_db['cinder'], lab_db['nova_api'])
    runner = migration.run()
    # The preflight read the services through the injected cloud, and refuses: nowhere@rbd does not exist.
    assert (runner.status, runner.rc) == ('failed', 2), runner.stdout.read()[-4000:]
    messages = ' '.join(failure_messages(runner))
    assert 'nowhere@rbd' in messages, messages
    assert not os.path.exists(state_dir)
