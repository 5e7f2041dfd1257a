"""Compute-node evacuation drill: the compute_node_evacuation playbook on the lab's real Nova.

The incident: nova-compute on compute1 dies with three servers on it, two
running and one stopped. The runbook refuses while the fencing of the host is
not confirmed. With it confirmed, check mode waits until Nova counts the host
down, shows the whole plan (force down and disable, one evacuation per server
at a pinned microversion) and writes nothing, neither in the cloud nor a
report. The run evacuates the servers to compute2, where the API shows the
running ones ACTIVE and the stopped one SHUTOFF; a re-run changes nothing.
compute1 then comes back, destroys its stale guests and is enabled again.
"""

import json
import os

import pytest

from tests.ansible_run import run_playbook
from tests.collection_path import REPO_ROOT
from tests.drills.conftest import FLAVOR, IMAGE, WAIT, compute_service, wait_for

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'compute_node_evacuation.yml')
SOURCE, TARGET = 'compute1', 'compute2'

pytestmark = [
    pytest.mark.lab,
    pytest.mark.xdist_group('lab'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::PendingDeprecationWarning'),
]


def placement(admin, server_ids):
    """server id -> (host, status, power state, task state), through the Compute API."""
    found = {}
    for server_id in server_ids:
        server = admin.compute.get_server(server_id)
        found[server_id] = (server.compute_host, server.status, server.power_state, server.task_state)
    return found


def clear_source(admin):
    """Servers another drill left on compute1, deleted first: the runbook evacuates everything on the host.

    Their names carry the drill that made them, printed so a leak can be traced.
    """
    leftovers = list(admin.compute.servers(all_projects=True, host=SOURCE))
    for server in leftovers:
        print('deleting a server left on %s by an earlier test: %s (%s, %s)'
              % (SOURCE, server.name, server.id, server.status))
        admin.compute.delete_server(server)
    for server in leftovers:
        admin.compute.wait_for_delete(server, wait=WAIT)


def boot_on_source(admin, cleanup, count):
    """Servers booted on compute1 together, then waited for."""
    image = admin.image.find_image(IMAGE, ignore_missing=False)
    servers = []
    for index in range(count):
        server = admin.compute.create_server(name='evacuation-%d-%s' % (index, os.urandom(3).hex()), flavor_id=FLAVOR,
                                             image_id=image.id, networks='none', availability_zone='nova:%s' % SOURCE)
        cleanup['servers'].append(server.id)
        servers.append(server)
    return [admin.compute.wait_for_server(server, status='ACTIVE', failures=['ERROR'], interval=0.5, wait=WAIT)
            for server in servers]


def test_dead_compute_host_is_fenced_and_evacuated(collections_path, lab_client, admin, lab_env, cleanup, tmp_path,
                                                   compute1_restored):
    clear_source(admin)
    servers = boot_on_source(admin, cleanup, 3)
    running_ids = [server.id for server in servers[:2]]
    stopped_id = servers[2].id
    admin.compute.stop_server(stopped_id)
    wait_for('server stopped', lambda: admin.compute.get_server(stopped_id).status == 'SHUTOFF')
    ids = running_ids + [stopped_id]
    before = placement(admin, ids)
    assert set(entry[0] for entry in before.values()) == {SOURCE}
    state_dir = str(tmp_path / 'state')
    common = dict(compute_node_evacuation_cloud='lab-admin', compute_node_evacuation_failed_host=SOURCE,
                  compute_node_evacuation_target_host=TARGET, compute_node_evacuation_state_dir=state_dir,
                  compute_node_evacuation_parallel=2, compute_node_evacuation_timeout=90,
                  compute_node_evacuation_down_timeout=90)

    lab_client.run('kill', 'nova-compute.%s' % SOURCE)

    # Without confirmed fencing: refused, nothing touched.
    refused = run_playbook(collections_path, PLAYBOOK, common, env=lab_env)
    assert refused.returncode != 0
    failure = refused.tasks('Refuse to evacuate a host whose fencing is not confirmed')[0]
    assert failure['failed'] and 'its fencing is not confirmed' in failure['msg'], failure
    assert 'compute_node_evacuation_fenced=true' in failure['msg']
    assert not refused.tasks('Read the nova-compute services'), 'the refusal came after reading the cloud'
    fenced = dict(common, compute_node_evacuation_fenced=True)

    # A fence command that fails stops the run too, before anything in Nova.
    failing = run_playbook(collections_path, PLAYBOOK, dict(common, compute_node_evacuation_fence_command=[
        'sh', '-c', 'echo ipmi-password-s3cret >&2; exit 3']), env=lab_env)
    assert failing.returncode != 0
    stop = failing.tasks('Stop, the fence command failed')[0]
    assert 'exit code 3' in stop['msg'] and 'nothing was changed in Nova' in stop['msg'], stop
    assert 's3cret' not in failing.stdout + failing.stderr
    assert not compute_service(admin, SOURCE).is_forced_down

    # Check mode: waits until Nova counts compute1 down, shows the whole plan, writes nothing.
    checked = run_playbook(collections_path, PLAYBOOK, fenced, check=True, diff=True, env=lab_env)
    assert checked.returncode == 0, checked.stdout[-6000:]
    assert compute_service(admin, SOURCE).state == 'down'
    service_id = compute_service(admin, SOURCE).id
    evacuate_task = checked.tasks('Evacuate the instances, in batches')
    assert len(evacuate_task) == 1 and 'results' in evacuate_task[0], checked.results
    batches = evacuate_task[0]['results']
    assert [len(batch['item']) for batch in batches] == [2, 1], 'not two at a time'
    evacuations = dict((entry['instance'], entry) for batch in batches for entry in batch['evacuations'])
    assert sorted(evacuations) == sorted(ids)
    for batch in batches:
        assert batch['changed'] and batch['msg'].startswith('check mode'), batch
        batch_ids = [server['id'] for server in batch['item']]
        assert [(step['call'], step['microversion']) for step in batch['plan']] == [
            ('PUT /os-services/%s' % service_id, '2.53')] + [
            ('POST /servers/%s/action evacuate' % server_id, '2.68') for server_id in batch_ids]
        assert batch['plan'][0]['arguments']['forced_down'] is True
        assert batch['plan'][0]['arguments']['status'] == 'disabled'
        for server_id in batch_ids:
            assert batch['diff']['after']['compute']['servers/%s' % server_id]['host'] == TARGET
    for server_id, entry in evacuations.items():
        assert entry['expected_status'] == ('SHUTOFF' if server_id == stopped_id else 'ACTIVE'), entry
    summary = checked.tasks('Report')[0]['msg']
    assert summary[0].startswith('check mode, nothing was changed: 3 instance(s) found on %s' % SOURCE), summary
    assert placement(admin, ids) == before, 'check mode moved a server'
    service = compute_service(admin, SOURCE)
    assert not service.is_forced_down and service.status == 'enabled', 'check mode touched the service'
    assert not os.path.exists(state_dir), 'check mode wrote the report directory'

    # The evacuation.
    applied = run_playbook(collections_path, PLAYBOOK, fenced, env=lab_env)
    assert applied.returncode == 0, applied.stdout[-8000:]
    assert not applied.failed
    # Proven through the API, not through the runbook.
    after = placement(admin, ids)
    for server_id in running_ids:
        assert after[server_id] == (TARGET, 'ACTIVE', 1, None), after
    assert after[stopped_id] == (TARGET, 'SHUTOFF', 4, None), after
    service = compute_service(admin, SOURCE)
    assert service.is_forced_down and service.status == 'disabled'
    evacuations = [(migration.server_id, migration.source_compute, migration.dest_compute)
                   for migration in admin.compute.migrations(source_compute=SOURCE, migration_type='evacuation')
                   if migration.server_id in ids]
    assert sorted(evacuations) == sorted((server_id, SOURCE, TARGET) for server_id in ids)
    reports = os.listdir(state_dir)
    report_files = [name for name in reports if name.startswith(SOURCE + '-') and name.endswith('.json')]
    assert len(report_files) == 1, reports
    report_path = os.path.join(state_dir, report_files[0])
    assert oct(os.stat(report_path).st_mode & 0o777) == '0o600'
    with open(report_path) as handle:
        report = json.load(handle)
    assert report['not_as_expected'] == [] and sorted(report['evacuated']) == sorted(ids)
    assert report['failed_service']['forced_down'] is True and report['failed_service']['status'] == 'disabled'
    rows = dict((row['id'], row) for row in report['instances'])
    assert (rows[stopped_id]['status_before'], rows[stopped_id]['status'], rows[stopped_id]['host']) == (
        'SHUTOFF', 'SHUTOFF', TARGET)
    assert all(rows[server_id]['ok'] and rows[server_id]['path'] == 'evacuation' for server_id in ids)

    # Nothing left on compute1: a re-run changes nothing and writes no report.
    again = run_playbook(collections_path, PLAYBOOK, fenced, env=lab_env)
    assert again.returncode == 0, again.stdout[-6000:]
    assert again.changed == [], again.changed
    skipped = again.tasks('Evacuate the instances, in batches') + again.tasks('Run the fence command')
    assert skipped and all(result.get('skipped') for result in skipped)
    assert os.listdir(state_dir) == reports
    assert again.tasks('Report')[0]['msg'][0] == '0 instance(s) found on %s, target %s' % (SOURCE, TARGET)


def test_an_instance_nova_cannot_evacuate_moves_in_the_databases(collections_path, lab_client, admin, lab_env, lab_db,
                                                                 sql, cleanup, tmp_path, compute1_restored):
    """The opt-in database fallback: a server whose stop was cast to the dead compute keeps task_state
    powering-off, which Nova's evacuate refuses. The runbook moves it in the databases and hard reboots
    it, so Nova defines its guest on compute2."""
    clear_source(admin)
    server = boot_on_source(admin, cleanup, 1)[0]
    lab_client.run('kill', 'nova-compute.%s' % SOURCE)
    admin.compute.stop_server(server.id)
    wait_for('Nova records the stop', lambda: admin.compute.get_server(server.id).task_state == 'powering-off', wait=30)
    variables = dict(compute_node_evacuation_cloud='lab-admin', compute_node_evacuation_failed_host=SOURCE,
                     compute_node_evacuation_target_host=TARGET, compute_node_evacuation_fenced=True,
                     compute_node_evacuation_state_dir=str(tmp_path / 'state'), compute_node_evacuation_timeout=90,
                     compute_node_evacuation_down_timeout=90,
                     # The lab's nova.conf: the database path must judge the service as Nova does.
                     compute_node_evacuation_service_down_time=30)

    # Without the fallback the server is left, and the run says so and fails.
    left = run_playbook(collections_path, PLAYBOOK, variables, env=lab_env)
    assert left.returncode != 0
    assert admin.compute.get_server(server.id).compute_host == SOURCE
    assert 'compute_node_evacuation_db_fallback is off' in left.stdout

    fallback = dict(variables, compute_node_evacuation_db_fallback=True,
                    compute_node_evacuation_nova_api_db=lab_db['nova_api'],
                    compute_node_evacuation_placement_db=lab_db['placement'],
                    compute_node_evacuation_cinder_db=lab_db['cinder'])
    moved = run_playbook(collections_path, PLAYBOOK, fallback, env=lab_env)
    assert moved.returncode == 0, [(entry["task"], entry["result"].get("msg"), entry["result"].get("guards")) for entry in moved.failed]
    journal = moved.tasks('Move the instances Nova could not evacuate, in the databases')[0]['journal']
    assert journal and os.path.isfile(journal)
    # Proven through the API: on compute2, running after the hard reboot, no task left; placement follows.
    after = admin.compute.get_server(server.id)
    assert (after.compute_host, after.status, after.task_state) == (TARGET, 'ACTIVE', None), after
    used = sql('SELECT DISTINCT p.name FROM placement.allocations a JOIN placement.resource_providers p '
               'ON p.id = a.resource_provider_id WHERE a.consumer_id = %s', server.id)
    assert [row['name'] for row in used] == [after.hypervisor_hostname], used
    rows = []
    for name in os.listdir(str(tmp_path / 'state')):
        if name.endswith('.json'):
            with open(str(tmp_path / 'state' / name)) as handle:
                rows += [row for row in json.load(handle)['instances'] if row['id'] == server.id]
    assert [(row['path'], row['ok']) for row in rows if row['path'] == 'database'] == [('database', True)], rows

    again = run_playbook(collections_path, PLAYBOOK, fallback, env=lab_env)
    assert again.returncode == 0, again.stdout[-6000:]
    assert again.changed == [], again.changed
