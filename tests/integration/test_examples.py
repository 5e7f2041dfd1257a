"""Every task of every module's EXAMPLES, run against the harness databases.

Each module's EXAMPLES is parsed as YAML; each task that calls a module of the
collection is one test case. The case writes the config files the example names
(nova.conf, cinder.conf, placement.conf pointing at this test's databases), puts
this test's URLs where the example has a URL, moves every other absolute path
(reports, state files, journals) under the test's directory, renders the Jinja
the example uses with the results of the earlier tasks it names (a real journal
for journal_undo, a real audit for the gate), seeds the rows the example acts
on, and runs the module in check mode through real Ansible.

An example passes when its arguments are accepted and the module does what the
example says (a plan, an audit, "nothing to do"), or, for the API examples, fails
only because the test's cloud has no API to talk to ("cannot connect to the
cloud"). A failure of any other kind, in particular an argument or config error,
fails the test.
"""

import ast
import glob
import json
import os

import jinja2
import jinja2.nativetypes
import pytest
import yaml

from tests.harness import REPO_ROOT

pytestmark = pytest.mark.newest_release

PREFIX = 'stackmender.openstack.'
DB_OPTIONS = {'cinder_db': 'cinder', 'nova_db': 'nova', 'nova_api_db': 'nova_api', 'placement_db': 'placement'}

# The UUIDs and names the examples use.
V1, V2, V3 = ('6b1a2f0e-3c55-4c1e-9a53-0d4c1f0b8a11', '0d7cbb27-0f0f-4f0c-8c6f-1c2d4a5b6c7d',
              '5e1f6a7b-8c9d-4e0f-a1b2-c3d4e5f60718')
I1, I2 = '2f9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e', '3a9e0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e'
MIGRATION = '8b1f0c55-0f1d-4e65-9f5d-1e2a3b4c5d6e'
PORT = '5d1c7a3e-63a1-4f0e-9a55-0c2f3e4d5a6b'

# Nothing listens here: an API example can get as far as connecting, no further.
CLOUDS_YAML = {'clouds': dict((name, {'auth': {'auth_url': 'http://127.0.0.1:9/identity/v3', 'username': 'admin',
                                               'password': 'example-password', 'project_name': 'admin',
                                               'user_domain_name': 'Default', 'project_domain_name': 'Default'},
                                      'region_name': 'RegionOne', 'api_timeout': 5})
                              for name in ('admin', 'production-admin'))}
API_UNREACHABLE = 'cannot connect to the cloud'

# Messages of an argument the module did not accept (Ansible's argument spec and our input checks).
INPUT_ERRORS = ('Unsupported parameters', 'missing required arguments', 'value of ', 'is of type',
                'mutually exclusive', 'one of the following is required', 'must be a URL string',
                'neither a database URL', 'cannot read config file', 'unknown keys', 'is not a valid config file',
                'has no [', 'give either url', 'nothing to work with', 'is required for this operation')


def example_tasks():
    """(case id, module of the EXAMPLES, index, task) of every collection task in every module's EXAMPLES."""
    cases = []
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, 'plugins', 'modules', '*.py'))):
        module = os.path.basename(path)[:-3]
        with open(path) as handle:
            tree = ast.parse(handle.read())
        text = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], 'id', None) == 'EXAMPLES'][0]
        for index, task in enumerate(yaml.safe_load(text)):
            action = [key for key in task if key.startswith(PREFIX)]
            if action:
                cases.append(('%s-%d-%s' % (module, index, action[0][len(PREFIX):]), module, index, task))
    return cases


CASES = example_tasks()


def test_every_module_has_examples_that_call_it():
    pattern = os.path.join(REPO_ROOT, 'plugins', 'modules', '*.py')
    modules = sorted(os.path.basename(path)[:-3] for path in glob.glob(pattern))
    called = set(case[0].split('-')[-1] for case in CASES)
    assert set(modules) <= called, set(modules) - called
    assert len(CASES) >= 35


# ---------------------------------------------------------------- the files an example names

def local(tmp_path, path):
    """Where an absolute path of an example lives in this test."""
    return str(tmp_path / 'root' / path.lstrip('/'))


def write_config(tmp_path, dbs, path):
    """The service config file an example names, as the deployment tools write them, for this test's databases."""
    target = local(tmp_path, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    name = os.path.basename(path)
    if '.conf.d/' in path:  # a drop-in of a config dir: settings that do not touch the databases
        text = '[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\n\n[image_cache]\nmanager_interval = 2400\n'
    elif name.startswith('nova'):
        instances = str(tmp_path / 'instances')
        os.makedirs(instances, exist_ok=True)
        text = ('[DEFAULT]\n# written like a packaged nova.conf\nstate_path = %s\ninstances_path = $state_path/instances\n'
                'transport_url = rabbit://nova:rabbitpw@127.0.0.1:5672/\n\n'
                '[api_database]\nconnection = "%s"\n\n[database]\nconnection = %s\n\n[image_cache]\n'
                'remove_unused_base_images = true\n' % (tmp_path, dbs.url('nova_api'), dbs.url('nova')))
    elif name.startswith('cinder'):
        text = ('[DEFAULT]\nenabled_backends = lvm\n# not the database: [DEFAULT] does not leak into [database]\n'
                'connection = mysql+pymysql://wrong:wrong@127.0.0.1:1/wrong\n\n'
                '[database]\nconnection = %s\n\n[lvm]\nvolume_backend_name = lvm\n' % dbs.url('cinder'))
    elif name.startswith('placement'):
        text = '[DEFAULT]\ndebug = false\n\n[placement_database]\nconnection = \'%s\'\n' % dbs.url('placement')
    else:
        raise AssertionError('an example names a config file this test cannot write: %s' % path)
    with open(target, 'w') as handle:
        handle.write(text)
    return target


def localize(value, tmp_path, dbs, files):
    """The example's value with this test's databases and paths (recursively)."""
    if isinstance(value, dict):
        return dict((key, localize_option(key, item, tmp_path, dbs, files)) for key, item in value.items())
    if isinstance(value, list):
        return [localize(item, tmp_path, dbs, files) for item in value]
    if isinstance(value, str) and value.startswith('/') and not value.startswith(str(tmp_path)):
        if value in files:
            return files[value]
        if value.endswith('.conf'):
            files[value] = write_config(tmp_path, dbs, value)
            return files[value]
        if value.endswith('.conf.d'):  # a config dir, with one file in it
            files[value] = local(tmp_path, value)
            write_config(tmp_path, dbs, value + '/90-local.conf')
            return files[value]
        files[value] = local(tmp_path, value)
        os.makedirs(os.path.dirname(files[value]), exist_ok=True)
        return files[value]
    return value


def localize_option(key, value, tmp_path, dbs, files):
    if key in DB_OPTIONS:
        if isinstance(value, str) and '://' in value:
            return dbs.url(DB_OPTIONS[key])
        # A path string or a dict with config_file: the config files are written, the form is kept.
    return localize(value, tmp_path, dbs, files)


# ---------------------------------------------------------------- what each example acts on

def render(value, context):
    """The example's Jinja, evaluated as Ansible would (native types for a whole-value template)."""
    environment = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
    environment.filters['combine'] = lambda first, *others: dict(first, **dict(pair for other in others
                                                                               for pair in other.items()))
    environment.filters['to_nice_json'] = lambda item: json.dumps(item, indent=4)
    environment.filters['from_json'] = json.loads
    if isinstance(value, dict):
        return dict((key, render(item, context)) for key, item in value.items())
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, str) and '{{' in value:
        return environment.from_string(value).render(**context)
    return value


def seed(case_id, cloud):
    """The rows the example acts on, with the example's own ids and host names."""
    module, index = case_id.split('-')[0], int(case_id.split('-')[1])
    if module == 'cinder_service_rehost':
        cloud.cinder_service('controller1', up=False)
        cloud.cinder_service('controller1@lvm')
        cloud.volume(host='controller1')
        cloud.cinder_service('rbd:volumes@ceph', up=False)
        cloud.cinder_service('rbd:cinder.volumes@cinder.volumes')
        for volume in (V1, V2):
            cloud.volume(host='rbd:volumes@ceph#ceph', id=volume)
    elif module in ('cinder_volume_state', 'journal_undo'):
        cloud.cinder_service('cinder@lvm')
        cloud.volume(id=V1, status='detaching', attach_status='attached')
        cloud.attachment(V1, instance_uuid=I1, attached_host='compute1', attach_status='detaching')
        cloud.volume(id=V2, status='error_deleting')
        cloud.volume(id=V3, status='error_deleting')
    elif module in ('consistency_info', 'remediation_gate'):
        cloud.cinder_service('cinder@lvm')
        cloud.compute_host('compute1')
        cloud.instance('compute1', uuid=I1)
        # Cinder attaches it to I1, Nova has no BDM: the audit proposes a cinder_volume_state repair.
        cloud.volume(id=V1, status='in-use', attach_status='attached')
        cloud.attachment(V1, instance_uuid=I1, attached_host='compute1')
        old = '2026-01-01 00:00:00'
        cloud.volume(id=V2, status='error_deleting', updated_at=old, created_at=old)
    elif module == 'nova_bdm_purge':
        cloud.cinder_service('cinder@lvm')
        cloud.compute_host('compute1')
        for instance in (I1, I2):
            cloud.instance('compute1', uuid=instance)
        cloud.volume(id=V1)  # available: Cinder let it go, Nova kept the BDM
        cloud.bdm(I1, V1)
        cloud.bdm(I2, V2)  # a volume Cinder does not know
    elif module in ('nova_instance_delete', 'nova_instance_host'):
        cloud.cinder_service('cinder@lvm')
        dead = cloud.compute_host('compute07', up=False)
        cloud.compute_host('compute12')
        for instance in (I1, I2):
            cloud.instance('compute07', uuid=instance)
            cloud.instance_allocations(instance, dead['rp_uuid'])
        cloud.attach_volume(I1, volume_id=cloud.volume(id=V1, host='cinder@lvm#lvm'))
    elif module == 'nova_network_info_cache':
        cloud.compute_host('compute07')
        # The port's binding failed when the cache was written; the operator read the real one from Neutron.
        cloud.instance('compute07', uuid=I1, network_info=cloud.network_info(vif_type='binding_failed', port_id=PORT))
    elif module == 'nova_task_state':
        source = cloud.compute_host('compute1')
        cloud.compute_host('compute2')
        old = '2026-01-01 00:00:00'  # abandoned long ago: nothing is still working on it
        cloud.instance('compute1', uuid=I1, task_state='migrating', updated_at=old)
        cloud.migration(I1, 'compute1', 'compute2', status='error', migration_type='migration', uuid=MIGRATION,
                        updated_at=old)
        cloud.consumer(MIGRATION, consumer_type='MIGRATION')
        cloud.allocation(MIGRATION, source['rp_uuid'], 'VCPU', 1)
    del index


def producer_of(case_id, variable):
    module = case_id.split('-')[0]
    found = [case for case in CASES if case[1] == module and case[3].get('register') == variable]
    assert found, 'no task of %s registers %s' % (module, variable)
    return found[0]


class Example(object):
    """One example task made runnable here."""

    def __init__(self, case, ansible, dbs, tmp_path, journal_dir):
        self.case_id, self.module, self.index, self.task = case
        self.action = [key for key in self.task if key.startswith(PREFIX)][0][len(PREFIX):]
        self.ansible, self.dbs, self.tmp_path, self.journal_dir = ansible, dbs, tmp_path, journal_dir
        self.files = {}
        args = self.task[PREFIX + self.action]
        self.uses_api = self.action == 'attachment_snapshot_info' or (isinstance(args, dict) and 'cloud' in args)
        # The API examples see the unreachable clouds; the others no cloud at all, so method auto
        # takes the database path as it does on a controller without clouds.yaml.
        clouds = tmp_path / ('clouds.yaml' if self.uses_api else 'no-clouds.yaml')
        clouds.write_text(yaml.safe_dump(CLOUDS_YAML if self.uses_api else {'clouds': {}}))
        self.env = {'OS_CLIENT_CONFIG_FILE': str(clouds) if self.uses_api else '', 'OS_CLOUD': '', 'OS_AUTH_URL': ''}
        if self.action == 'attachment_snapshot_info':
            self.env['OS_CLOUD'] = 'admin'
        self.context = {'cinder_db_password': 'example', 'nova_db_password': 'example',
                        'placement_db_password': 'example', 'lookup': self.lookup}

    def lookup(self, kind, path):
        assert kind in ('ansible.builtin.file', 'file')
        with open(localize(path, self.tmp_path, self.dbs, self.files)) as handle:
            return handle.read()

    def arguments(self, task=None, extra=None):
        task = task or self.task
        action = [key for key in task if key.startswith(PREFIX)][0]
        context = dict(self.context)
        context.update(render(localize(task.get('vars', {}), self.tmp_path, self.dbs, self.files), context))
        context.update(extra or {})
        args = render(task[action], context)
        return localize(args, self.tmp_path, self.dbs, self.files)

    def run(self, args, module=None, check=True):
        return self.ansible(module or self.action, args, check=check, env=self.env)


def test_example_runs(case, ansible, dbs, cloud, tmp_path, journal_dir):
    example = Example(case, ansible, dbs, tmp_path, journal_dir)
    seed(example.case_id, cloud)
    if example.action == 'nova_image_cache_info' and 'config_files' not in example.task[PREFIX + example.action]:
        # The example relies on the default /etc/nova/nova.conf: that path, written here.
        example.task = dict(example.task)
        example.task[PREFIX + example.action] = dict(example.task[PREFIX + example.action],
                                                     config_files=['/etc/nova/nova.conf'])
    prepare(example)
    if 'loop' in example.task:
        items = render(example.task['loop'], example.context)
        assert items, 'the loop of %s renders no item with the seeded cloud' % example.case_id
        results = [example.run(example.arguments(extra={'item': item})) for item in items[:1]]
    else:
        results = [example.run(example.arguments())]
    for result in results:
        judge(example, result)


def prepare(example):
    """Run the tasks whose results the example names (register), and write the files it reads."""
    text = json.dumps(dict((key, value) for key, value in example.task.items() if key != 'register'))
    if example.module == 'attachment_snapshot_info' and 'compare_to' in text:
        baseline = localize('/var/lib/stackmender/attachments-baseline.json', example.tmp_path, example.dbs,
                            example.files)
        with open(baseline, 'w') as handle:
            json.dump({'taken_at': '2026-11-22T03:04:05Z', 'scope': {}, 'servers': [], 'relations': [],
                       'iscsi_targets': []}, handle)
    if example.action == 'journal_undo':
        variable = example.task[PREFIX + 'journal_undo']['journal']
        if '{{' in variable:
            variable = variable.strip('{} ').split('.')[0]
            producer = producer_of(example.case_id, variable)
        else:  # a literal journal path: made by an example of cinder_volume_state, mapped to that path
            producer = [case for case in CASES if case[0] == 'cinder_volume_state-1-cinder_volume_state'][0]
        produced = Example(producer, example.ansible, example.dbs, example.tmp_path, example.journal_dir)
        produced.files = example.files
        args = dict(produced.arguments(), journal_dir=example.journal_dir)
        applied = produced.run(args, check=False)
        assert not applied.failed and applied['journal'], (producer[0], applied.get('msg'))
        example.context[variable] = dict(applied)
        if '{{' not in example.task[PREFIX + 'journal_undo']['journal']:
            example.files[example.task[PREFIX + 'journal_undo']['journal']] = applied['journal']
    if 'audit' in text:
        run_audit(example)
    if 'gate.' in text:
        gate_task = [case for case in CASES if case[1] == example.module and case[3].get('register') == 'gate'][0]
        gate = Example(gate_task, example.ansible, example.dbs, example.tmp_path, example.journal_dir)
        gate.files = example.files
        for _sighting in range(2):  # the gate holds a finding until two audits have seen it
            run_audit(example)
            approved = example.run(gate.arguments(extra=example.context), module='remediation_gate', check=False)
            assert not approved.failed, approved.get('msg')
        example.context['gate'] = dict(approved)


def run_audit(example):
    """The example's registered audit (the task of its EXAMPLES that registers it), run now."""
    audit_task = [case for case in CASES if case[1] == example.module and case[3].get('register') == 'audit'][0]
    audit = example.run(Example(audit_task, example.ansible, example.dbs, example.tmp_path,
                                example.journal_dir).arguments(), module='consistency_info')
    assert not audit.failed, audit.get('msg')
    example.context['audit'] = dict(audit)
    inventory = audit.get('inventory') or {}
    example.context['servers'] = {'servers': [{}] * int(inventory.get('instances') or 0)}
    example.context['volumes'] = {'volumes': [{}] * int(inventory.get('volumes') or 0)}


def judge(example, result):
    """The example did what it says, or stopped only because there is no API here."""
    message = result.get('msg', '')
    for fragment in INPUT_ERRORS:
        assert fragment not in message, '%s: an input error: %s' % (example.case_id, message)
    if result.failed:
        assert example.uses_api and API_UNREACHABLE in message, '%s failed: %s' % (example.case_id, message)
        return
    assert 'Traceback' not in result.stderr
    if example.action in ('consistency_info', 'nova_image_cache_info', 'remediation_gate'):
        return
    assert result.changed or message.startswith('nothing to do'), (example.case_id, message)
    assert result.changed, '%s planned nothing on the cloud seeded for it: %s' % (example.case_id, message)


def pytest_generate_tests(metafunc):
    if 'case' in metafunc.fixturenames:
        metafunc.parametrize('case', CASES, ids=[case[0] for case in CASES])
