"""The execution environment image, built for real (tools/ee), runs a job the way AWX runs one.

AWX starts the image with the job's private data directory mounted at /runner and runs
ansible-runner inside it: the collection, its Python dependencies (openstacksdk, PyMySQL) and the
dependency collections all come from the image, nothing from this machine. The job is the
journal undo check template with the "stackmender databases" credential, against the test
databases on loopback.
"""

import glob
import json
import os
import subprocess

import pytest
import yaml

from tests.awx.test_runner import AwxJob, controller_objects, template
from tests.collection_path import REPO_ROOT
from tests.integration.helpers import db_args

pytestmark = [pytest.mark.newest_release, pytest.mark.xdist_group('ee')]


@pytest.fixture(scope='module')
def image():
    built = subprocess.run([os.path.join(REPO_ROOT, 'tools', 'ee')], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, check=False)
    assert built.returncode == 0, built.stderr[-4000:]
    return built.stdout.strip().splitlines()[-1]


def podman(*args, **kwargs):
    env = dict(os.environ, CONTAINERS_CONF=os.path.join(os.environ.get('STACKMENDER_CACHE') or os.path.expanduser(
        '~/.cache/stackmender'), 'ee', 'containers.conf'))
    return subprocess.run(['podman', *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          check=False, **kwargs)


def test_the_image_holds_the_collection_and_what_it_needs(image):
    listed = podman('run', '--rm', image, 'ansible-galaxy', 'collection', 'list', '--format', 'json')
    assert listed.returncode == 0, listed.stderr
    collections = {}
    for found in json.loads(listed.stdout).values():
        collections.update(found)
    assert {'stackmender.openstack', 'community.general', 'openstack.cloud'} <= set(collections)
    imported = podman('run', '--rm', image, 'python3', '-c', 'import openstack, pymysql, ansible_runner; print("ok")')
    assert imported.returncode == 0 and imported.stdout.strip() == 'ok', imported.stderr


def test_a_check_job_runs_inside_the_image_as_awx_runs_it(image, ansible, dbs, cloud, journal_dir, tmp_path):
    volume = cloud.volume(status='error', attach_status='detached')
    repaired = ansible('cinder_volume_state', db_args(dbs, 'cinder', volume=volume, status='available',
                                                      journal_dir=journal_dir))
    assert repaired.changed and repaired['journal'], repaired.get('msg')
    databases, = controller_objects('credential_types.yml')['controller_credential_types']
    answers = {'journal_undo_journal': repaired['journal'], 'journal_undo_journal_dir': journal_dir}
    job = AwxJob(tmp_path / 'job', template('stackmender journal undo (check)'), answers)
    job.custom_credential(databases, dict(cinder_url=dbs.url('cinder'), nova_api_url=dbs.url('nova_api')))
    # Inside the image: its own Python and collections; the credential files where AWX mounts them.
    root = job.root
    with open(os.path.join(root, 'inventory', 'hosts'), 'w') as handle:
        handle.write('localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n')
    envvars = dict((name, value.replace(root, '/runner')) for name, value in job.envvars.items()
                   if name.startswith('STACKMENDER_'))
    job.write('env/envvars', dict(envvars, ANSIBLE_NOCOLOR='1'))
    # The job's files and the journal belong to root here (rootful podman): the job runs as root, not the
    # image's default user 1000, or it could not read them.
    ran = podman('run', '--rm', '--user', '0', '--network', 'host', '-v', '%s:/runner' % root,
                 '-v', '%s:%s' % (journal_dir, journal_dir), image,
                 'ansible-runner', 'run', '/runner', '-p', 'playbooks/journal_undo.yml', '--ident', 'check')
    assert ran.returncode == 0, (ran.stdout[-3000:], ran.stderr[-3000:])
    events = []
    for path in sorted(glob.glob(os.path.join(root, 'artifacts', 'check', 'job_events', '*.json'))):
        with open(path) as handle:
            events.append(json.load(handle))
    results = [event['event_data']['res'] for event in events if event['event'] == 'runner_on_ok'
               and 'Revert the journal' in event['event_data'].get('task', '')]
    assert len(results) == 1, [event['event'] for event in events]
    result = results[0]
    assert result['changed'] and result['msg'].startswith('check mode') and result['review']['items']
    # The module ran with the image's Python, from the image's collection.
    starts = [event for event in events if event['event'] == 'playbook_on_start']
    assert starts
    with open(os.path.join(root, 'artifacts', 'check', 'stdout')) as handle:
        stdout = handle.read()
    assert dbs.url('cinder').split('@')[0].rsplit(':', 1)[-1] not in stdout
    assert dbs.query('cinder', 'SELECT status FROM volumes WHERE id = %s', (volume,))[0]['status'] == 'available'
    with open(os.path.join(root, 'env', 'extravars')) as handle:
        assert yaml.safe_load(handle)['journal_undo_journal'] == repaired['journal']
