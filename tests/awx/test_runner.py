"""The AWX packaging: job templates, credential types, the execution environment, and jobs run as AWX runs them.

AWX runs a job with ansible-runner in a private data directory: the project
checkout, the inventory, env/extravars (the template's extra vars and the
survey answers), env/envvars and files written by the credentials' injectors
(the OpenStack credential writes a clouds.yaml whose one cloud is named
``devstack`` and sets OS_CLIENT_CONFIG_FILE), env/cmdline (``--check`` for a
check template, ``--diff`` for "show changes"). These tests build exactly
that from the templates in awx/controller/ and run it with ansible-runner.
"""

import json
import os
import shutil
import subprocess
import sys

import jinja2
import pytest
import yaml

from tests.collection_path import REPO_ROOT, ansible_collections_path
from tests.drills.conftest import attach, new_server, new_volume
from tests.integration.helpers import db_args

AWX = os.path.join(REPO_ROOT, 'awx')
# Each runbook's playbook; a runbook added later gets its check/apply pair in job_templates.yml and a line here.
RUNBOOKS = {
    'power_loss_recovery': 'playbooks/power_loss_recovery.yml',
    'journal_undo': 'playbooks/journal_undo.yml',
    'cinder_multibackend_migration': 'playbooks/cinder_multibackend_migration.yml',
    'compute_node_evacuation': 'playbooks/compute_node_evacuation.yml',
    'audit_run': 'playbooks/audit_run.yml',
    'image_cache_guard': 'playbooks/image_cache_guard.yml',
    'nova_libvirt_ids': 'playbooks/nova_libvirt_ids.yml',
}
SURVEY_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}
# Values for the placeholders configure.yml defines.
AWX_NAMES = dict(stackmender_awx_organization='Default', stackmender_awx_project='stackmender-openstack',
                 stackmender_awx_inventory='stackmender-controller', stackmender_awx_openstack_credential='openstack-admin',
                 stackmender_awx_compute_inventory='stackmender-computes', stackmender_awx_machine_credential='compute-ssh',
                 stackmender_awx_database_credential='stackmender-databases', stackmender_awx_ee_image='ee:test',
                 stackmender_awx_state_dir='/var/lib/stackmender')


def controller_objects(name):
    with open(os.path.join(AWX, 'controller', name)) as handle:
        return yaml.safe_load(handle)


def templates():
    return controller_objects('job_templates.yml')['controller_templates']


def template(name):
    found = [entry for entry in templates() if entry['name'] == name]
    assert len(found) == 1, name
    return found[0]


# ------------------------------------------------------------------ definitions

def test_each_runbook_has_a_check_and_an_apply_template_with_the_same_survey():
    by_playbook = {}
    for entry in templates():
        assert os.path.isfile(os.path.join(REPO_ROOT, entry['playbook'])), entry['playbook']
        assert entry['job_type'] in ('run', 'check')
        assert entry['allow_simultaneous'] is False
        by_playbook.setdefault(entry['playbook'], []).append(entry)
    for runbook, playbook in RUNBOOKS.items():
        pair = [e for e in by_playbook[playbook] if e.get('survey_enabled')]
        checks = [e for e in pair if e['job_type'] == 'check']
        applies = [e for e in pair if e['job_type'] == 'run']
        assert len(checks) == 1 and len(applies) == 1, runbook
        check, apply = checks[0], applies[0]
        assert check['diff_mode'] is True, 'a check template shows the changes'
        assert check['name'].endswith('(check)') and apply['name'].endswith('(apply)')
        for key in ('playbook', 'survey_spec', 'credentials', 'inventory', 'project', 'execution_environment',
                    'extra_vars'):
            assert check.get(key) == apply.get(key), '%s differs between the pair of %s' % (key, runbook)


@pytest.mark.parametrize('runbook', sorted(name for name in RUNBOOKS if name != 'journal_undo'))
def test_surveys_ask_only_for_variables_the_role_declares(runbook):
    with open(os.path.join(REPO_ROOT, 'roles', runbook, 'meta', 'argument_specs.yml')) as handle:
        options = yaml.safe_load(handle)['argument_specs']['main']['options']
    entry, = [e for e in templates() if e['playbook'] == RUNBOOKS[runbook] and e['job_type'] == 'run'
              and e.get('survey_enabled')]
    variables = set(entry.get('extra_vars') or {})
    for question in entry['survey_spec']['spec']:
        assert question['type'] in SURVEY_TYPES
        assert question['variable'] in options, question['variable']
        assert question['variable'] not in variables, 'the survey and the extra vars both set ' + question['variable']
        if question['type'] == 'multiplechoice':
            assert question['default'] in question['choices']
            choices = options[question['variable']].get('choices')
            if choices:
                assert set(question['choices']) == set(choices)
    assert set(variables) <= set(options)


def test_power_loss_baseline_is_scheduled():
    baseline = template('stackmender power-loss baseline snapshot')
    assert baseline['extra_vars']['power_loss_recovery_snapshot_only'] is True
    schedule, = controller_objects('schedules.yml')['controller_schedules']
    assert schedule['unified_job_template'] == baseline['name']


def test_database_credential_type_keeps_passwords_out_of_variables():
    credential_type, = controller_objects('credential_types.yml')['controller_credential_types']
    fields = dict((field['id'], field) for field in credential_type['inputs']['fields'])
    assert all(field['secret'] for field in fields.values())
    injectors = credential_type['injectors']
    assert set(injectors) == {'file', 'env'}, 'no extra_vars injector: URLs with passwords never become variables'
    assert not [name for name in injectors['env'] if name.startswith('ANSIBLE_')], 'AWX rejects ANSIBLE_* injectors'
    assert set(injectors['env']) == {'STACKMENDER_CINDER_CONF', 'STACKMENDER_NOVA_CONF', 'STACKMENDER_CINDER_DB',
                                     'STACKMENDER_NOVA_API_DB'}
    # The modules' fallbacks get the files' paths, never a URL (with its password).
    assert injectors['env']['STACKMENDER_CINDER_DB'] == injectors['env']['STACKMENDER_CINDER_CONF']
    assert injectors['env']['STACKMENDER_NOVA_API_DB'] == injectors['env']['STACKMENDER_NOVA_CONF']


def test_configure_playbook_passes_every_template_field():
    with open(os.path.join(AWX, 'configure.yml')) as handle:
        play, = yaml.safe_load(handle)
    assert set(AWX_NAMES) == set(play['vars'])
    task = [t for t in play['tasks'] if 'awx.awx.job_template' in t][0]
    passed = set(task['awx.awx.job_template']) - {'state'}
    for entry in templates():
        assert set(entry) <= passed, set(entry) - passed


# ---------------------------------------------------------------- execution environment

def test_execution_environment_definitions(tmp_path):
    from ansible_builder.ee_schema import validate_schema
    with open(os.path.join(REPO_ROOT, 'meta', 'execution-environment.yml')) as handle:
        collection_ee = yaml.safe_load(handle)
    for kind in ('python', 'system'):
        assert os.path.isfile(os.path.join(REPO_ROOT, collection_ee['dependencies'][kind]))
    with open(os.path.join(REPO_ROOT, collection_ee['dependencies']['python'])) as handle:
        requirements = [line.strip() for line in handle if line.strip() and not line.startswith('#')]
    assert sorted(line.split('>=')[0] for line in requirements) == ['PyMySQL', 'openstacksdk']
    assert not [line for line in requirements if '==' in line or '<' in line], 'no exact pins or caps in an EE'

    with open(os.path.join(AWX, 'ee', 'execution-environment.yml')) as handle:
        definition = yaml.safe_load(handle)
    validate_schema(definition)
    assert definition['version'] == 3

    builder = os.path.join(os.path.dirname(sys.executable), 'ansible-builder')
    # What ansible-builder finds in the installed collection (its introspection, run here on the checkout).
    collection_root = ansible_collections_path().partition(os.pathsep)[0]
    introspected = subprocess.run([builder, 'introspect', '--sanitize', collection_root],
                                  capture_output=True, text=True, check=True).stdout
    found = yaml.safe_load(introspected)
    assert sorted(line.split('>=')[0].split()[0] for line in found['python']) == ['PyMySQL', 'openstacksdk'], found
    assert any(line.startswith('open-iscsi') for line in found['system']), found

    # The build context: the collection's tarball and the definition, then `ansible-builder create`.
    work = tmp_path / 'ee'
    shutil.copytree(os.path.join(AWX, 'ee'), str(work))
    galaxy = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
    subprocess.run([galaxy, 'collection', 'build', '--output-path', str(work / '_collections'), REPO_ROOT],
                   capture_output=True, text=True, check=True)
    with open(str(work / 'requirements.yml')) as handle:
        wanted = yaml.safe_load(handle)['collections'][0]['name']
    assert os.listdir(str(work / '_collections')) == [os.path.basename(wanted)]
    created = subprocess.run([builder, 'create', '-f', 'execution-environment.yml', '-c', 'context',
                              '--output-filename', 'Containerfile'], cwd=str(work), capture_output=True, text=True,
                             check=False)
    assert created.returncode == 0, created.stdout + created.stderr
    with open(str(work / 'context' / 'Containerfile')) as handle:
        containerfile = handle.read()
    assert 'COPY _build/collections /usr/share/stackmender/collections' in containerfile
    assert os.path.isfile(str(work / 'context' / '_build' / 'collections' / os.path.basename(wanted)))
    assert os.path.isfile(str(work / 'context' / '_build' / 'requirements.yml'))


# ---------------------------------------------------------------- jobs through ansible-runner

def render(value, variables):
    """A credential injector template, rendered as AWX renders it (Jinja2, ``tower`` namespace)."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(**variables)


class AwxJob(object):
    """A private data directory laid out as AWX lays it out for one job of a template."""

    def __init__(self, root, job_template, answers):
        self.root = str(root)
        self.template = job_template
        for directory in ('env', 'inventory', 'project'):
            os.makedirs(os.path.join(self.root, directory))
        shutil.copytree(os.path.join(REPO_ROOT, 'playbooks'), os.path.join(self.root, 'project', 'playbooks'))
        with open(os.path.join(self.root, 'inventory', 'hosts'), 'w') as handle:
            handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
        extravars = dict((key, render(value, AWX_NAMES) if isinstance(value, str) else value)
                         for key, value in (job_template.get('extra_vars') or {}).items())
        extravars.update(answers)
        self.write('env/extravars', extravars)
        cmdline = []
        if job_template['job_type'] == 'check':
            cmdline.append('--check')
        if job_template['diff_mode']:
            cmdline.append('--diff')
        with open(os.path.join(self.root, 'env', 'cmdline'), 'w') as handle:
            handle.write(' '.join(cmdline))
        # The collection as the execution environment provides it.
        self.envvars = {'ANSIBLE_COLLECTIONS_PATH': ansible_collections_path(),
                        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false', 'ANSIBLE_NOCOLOR': '1',
                        'ANSIBLE_HOME': os.path.join(self.root, '.ansible-home')}

    def write(self, relative, document):
        with open(os.path.join(self.root, relative), 'w') as handle:
            json.dump(document, handle)

    def openstack_credential(self, auth):
        """awx-plugins' OpenStack injector: a 0600 clouds.yaml with one cloud named devstack."""
        path = os.path.join(self.root, 'env', 'clouds.yaml')
        with open(path, 'w') as handle:
            yaml.safe_dump({'clouds': {'devstack': {'auth': auth, 'verify': False}}}, handle)
        os.chmod(path, 0o600)
        self.envvars['OS_CLIENT_CONFIG_FILE'] = path

    def custom_credential(self, credential_type, inputs):
        """A custom credential type's injectors: one file per template, env vars naming them."""
        filenames = {}
        for key, value in credential_type['injectors'].get('file', {}).items():
            path = os.path.join(self.root, 'env', 'tmp_' + key.replace('.', '_'))
            with open(path, 'w') as handle:
                handle.write(render(value, inputs))
            os.chmod(path, 0o600)
            filenames[key.split('.', 1)[1]] = path
        tower = {'filename': filenames}
        for name, value in credential_type['injectors'].get('env', {}).items():
            self.envvars[name] = render(value, dict(inputs, tower=tower))

    def run(self):
        import ansible_runner
        self.write('env/envvars', self.envvars)
        os.environ['PATH'] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
        with open(os.path.join(self.root, 'env', 'cmdline')) as handle:
            cmdline = handle.read()
        return ansible_runner.run(private_data_dir=self.root, playbook=self.template['playbook'], quiet=True,
                                  cmdline=cmdline or None)


def task_results(runner, task_part):
    return [event['event_data']['res'] for event in runner.events
            if event['event'] in ('runner_on_ok', 'runner_on_failed')
            and task_part in event['event_data'].get('task', '')]


def test_undo_templates_run_as_awx_jobs(ansible, dbs, cloud, journal_dir, tmp_path):
    volume = cloud.volume(status='error', attach_status='detached')
    repaired = ansible('cinder_volume_state', db_args(dbs, 'cinder', volume=volume, status='available',
                                                      journal_dir=journal_dir))
    assert repaired.changed and repaired['journal'], repaired.get('msg')
    databases, = controller_objects('credential_types.yml')['controller_credential_types']
    inputs = dict(cinder_url=dbs.url('cinder'), nova_api_url=dbs.url('nova_api'))
    answers = {'journal_undo_journal': repaired['journal'], 'journal_undo_journal_dir': journal_dir}

    def status():
        return dbs.query('cinder', 'SELECT status FROM volumes WHERE id = %s', (volume,))[0]['status']

    check = AwxJob(tmp_path / 'check', template('stackmender journal undo (check)'), answers)
    check.custom_credential(databases, inputs)
    checked = check.run()
    assert (checked.status, checked.rc) == ('successful', 0), checked.stdout.read()[-3000:]
    result, = task_results(checked, 'Revert the journal')
    assert result['changed'] and result['msg'].startswith('check mode')
    assert status() == 'available', 'the check job wrote'

    apply = AwxJob(tmp_path / 'apply', template('stackmender journal undo (apply)'), answers)
    apply.custom_credential(databases, inputs)
    applied = apply.run()
    assert (applied.status, applied.rc) == ('successful', 0), applied.stdout.read()[-3000:]
    result, = task_results(applied, 'Revert the journal')
    assert result['changed'] and result['journal']
    assert result['diff'], 'a template with diff_mode shows the changes'
    assert status() == 'error'
    stdout = applied.stdout.read()
    password = dbs.url('cinder').split('@')[0].rsplit(':', 1)[-1]
    assert password not in stdout and password not in json.dumps(list(applied.events), default=str)
    assert [event for event in applied.events if event['event'] == 'playbook_on_stats']


def workflows():
    return controller_objects('workflow_job_templates.yml')['controller_workflows']


def test_each_runbook_has_a_reviewed_workflow_check_approval_apply():
    by_name = dict((entry['name'], entry) for entry in workflows())
    for entry in templates():
        if entry['job_type'] != 'check' or not entry.get('survey_enabled'):
            continue
        base = entry['name'][:-len(' (check)')]
        workflow = by_name.pop('%s (reviewed)' % base)
        assert workflow['survey_spec'] == entry['survey_spec'], base
        assert workflow['allow_simultaneous'] is False
        nodes = dict((node['identifier'], node) for node in workflow['workflow_nodes'])
        assert list(nodes) == ['check', 'approve', 'apply'], base
        assert nodes['check']['unified_job_template'] == {'name': entry['name'], 'type': 'job_template'}
        assert nodes['check']['related']['success_nodes'] == [{'identifier': 'approve'}]
        assert 'unified_job_template' not in nodes['approve'] and nodes['approve']['approval_node']['name']
        assert nodes['approve']['related']['success_nodes'] == [{'identifier': 'apply'}]
        assert nodes['apply']['unified_job_template'] == {'name': base + ' (apply)', 'type': 'job_template'}
        assert template(base + ' (apply)')['job_type'] == 'run'
    assert not by_name, 'workflows without a check template: %s' % sorted(by_name)


def artifacts(runner):
    """What AWX hands to the next workflow nodes: the set_stats data of the job's stats event."""
    stats = [event for event in runner.events if event['event'] == 'playbook_on_stats']
    assert stats, 'no stats event'
    return stats[-1]['event_data'].get('artifact_data') or {}


def workflow_apply(tmp_path, name, base, answers, reviewed, databases, inputs):
    """The apply node of a workflow: the survey answers, and the check node's artifacts as extra vars."""
    job = AwxJob(tmp_path / name, template(base + ' (apply)'), dict(answers, **reviewed))
    job.custom_credential(databases, inputs)
    return job.run()


def test_the_reviewed_workflow_applies_only_the_approved_plan(ansible, dbs, cloud, journal_dir, tmp_path):
    base = 'stackmender journal undo'
    databases, = controller_objects('credential_types.yml')['controller_credential_types']
    inputs = dict(cinder_url=dbs.url('cinder'), nova_api_url=dbs.url('nova_api'))

    def repaired_volume():
        volume = cloud.volume(status='error', attach_status='detached')
        repaired = ansible('cinder_volume_state', db_args(dbs, 'cinder', volume=volume, status='available',
                                                          journal_dir=journal_dir))
        assert repaired.changed and repaired['journal'], repaired.get('msg')
        return volume, repaired['journal']

    def status(volume):
        return dbs.query('cinder', 'SELECT status FROM volumes WHERE id = %s', (volume,))[0]['status']

    def check_node(name, answers):
        job = AwxJob(tmp_path / name, template(base + ' (check)'), answers)
        job.custom_credential(databases, inputs)
        checked = job.run()
        assert (checked.status, checked.rc) == ('successful', 0), checked.stdout.read()[-3000:]
        return artifacts(checked)

    # Approved, unchanged: the apply node runs the reviewed plan.
    volume, journal = repaired_volume()
    answers = {'journal_undo_journal': journal, 'journal_undo_journal_dir': journal_dir}
    reviewed = check_node('check', answers)
    review = reviewed['stackmender_reviews']['journal_undo %s' % journal]
    assert review['fingerprint'].startswith('sha256:') and review['items']
    applied = workflow_apply(tmp_path, 'apply', base, answers, reviewed, databases, inputs)
    assert (applied.status, applied.rc) == ('successful', 0), applied.stdout.read()[-3000:]
    result, = task_results(applied, 'Revert the journal')
    assert result['changed'] and result['fingerprint'] == review['fingerprint']
    assert status(volume) == 'error'

    # Approved, then the volume changed before the apply node ran: refused, nothing written, the drift shown.
    volume, journal = repaired_volume()
    answers = {'journal_undo_journal': journal, 'journal_undo_journal_dir': journal_dir}
    reviewed = check_node('check-2', answers)
    dbs.execute('cinder', "UPDATE volumes SET status = 'in-use', attach_status = 'attached' WHERE id = %s", (volume,))
    drifted = workflow_apply(tmp_path, 'apply-2', base, answers, reviewed, databases, inputs)
    assert drifted.status == 'failed', drifted.stdout.read()[-3000:]
    result, = task_results(drifted, 'Revert the journal')
    assert 'not the plan that was reviewed' in result['msg'] and result['added'] and result['removed']
    assert any(volume in item for item in result['removed'])
    assert status(volume) == 'in-use'


@pytest.mark.lab
@pytest.mark.xdist_group('lab')
@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning')
def test_power_loss_check_template_runs_as_an_awx_job_with_the_openstack_credential(
        lab, admin, member, cleanup, tmp_path):
    server = new_server(member, 'awx-job', cleanup)
    volume = new_volume(member, admin, 'awx-job', cleanup)
    attach(member, admin, server, volume)
    with open(lab['clouds_yaml']) as handle:
        auth = yaml.safe_load(handle)['clouds']['lab-admin']['auth']
    state_dir = str(tmp_path / 'state')
    # Survey answers as AWX passes them: text answers are strings, lists comma-separated.
    job = AwxJob(tmp_path / 'job', template('stackmender power-loss recovery (check)'), {
        'power_loss_recovery_incident': 'awx-drill', 'power_loss_recovery_servers': server.id,
        'power_loss_recovery_compute_hosts': '', 'power_loss_recovery_iscsi': 'skip',
        'power_loss_recovery_use_baseline': 'false', 'power_loss_recovery_state_dir': state_dir})
    job.openstack_credential(auth)
    runner = job.run()
    assert (runner.status, runner.rc) == ('successful', 0), runner.stdout.read()[-4000:]
    snapshot, = task_results(runner, 'Read every volume-server relation')
    assert [(r['server_id'], r['volume_id']) for r in snapshot['snapshot']['relations']] == [(server.id, volume.id)]
    comparison, = task_results(runner, 'Compare the cloud with the snapshot again')
    assert comparison['comparison']['restored'] is True
    reboot, = task_results(runner, 'Hard reboot server')
    assert reboot['changed'], 'check mode plans the reboot'
    stats = [event for event in runner.events if event['event'] == 'playbook_on_stats'][0]
    assert stats['event_data']['artifact_data']['power_loss_recovery']['relations'] == 1
    assert not os.path.exists(state_dir), 'a check job wrote the state directory'
    assert not [a for a in admin.compute.server_actions(server.id) if a.action == 'reboot']
    assert auth['password'] not in runner.stdout.read()
