"""Demo: the multi-backend incident on the drill lab, repaired by the cinder_multibackend_migration playbook.

A cinder-volume is re-registered under a new host@backend name, as enabling
multi-backend does. Its volumes keep naming the old host: a server delete
hangs and leaves its volume in-use, and a volume delete never finishes.
The demo shows the services and the volumes per host, the failing
deletes, the runbook's plan (check mode), the run, and the deletes that
now complete. It brings the lab up if it is not running, and afterwards
restores the lab's layout (`lab reset`), or takes the lab down again if it
started it.

    python -m tests.demo.multibackend_drill
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from tests.collection_path import REPO_ROOT, ansible_collections_path
from tests.conftest import import_lab_client
from tests.drills.conftest import WAIT, attach, new_server, wait_status
from tests.drills.multibackend import (LAB_SERVICE_DOWN_TIME, backend_volume_type, create_volumes,
                                       multibackend_name, rename_volume_service, wait_old_service_down,
                                       wait_until)

PLAYBOOK = os.path.join(REPO_ROOT, 'playbooks', 'cinder_multibackend_migration.yml')


def banner(text):
    print('\n\033[1m==> %s\033[0m' % text, flush=True)


def show_services_and_volumes(admin, volume_ids):
    print('  cinder-volume services (openstack volume service list):')
    for service in sorted(admin.block_storage.services(binary='cinder-volume'), key=lambda service: service.host):
        print('    %-28s state=%-4s status=%s' % (service.host, service.state, service.status))
    print('  the demo volumes (openstack volume list --long):')
    for volume_id in volume_ids:
        volume = admin.block_storage.find_volume(volume_id, ignore_missing=True, all_projects=True)
        if volume is None:
            print('    %s  deleted' % volume_id)
            continue
        servers = [attachment.get('server_id') for attachment in volume.attachments or []]
        attached = '  attached to %s' % servers[0] if servers else ''
        print('    %-24s %-10s host=%s%s' % (volume.name, volume.status, volume.host, attached))
    sys.stdout.flush()


def run_playbook(lab, extra_vars, check):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=ansible_collections_path(),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_INVENTORY_UNPARSED_WARNING='false',
               ANSIBLE_CALLBACK_RESULT_FORMAT='yaml', ANSIBLE_DISPLAY_SKIPPED_HOSTS='false',
               OS_CLIENT_CONFIG_FILE=lab['clouds_yaml'])
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), PLAYBOOK]
    if check:
        command += ['--check', '--diff']
    with tempfile.NamedTemporaryFile('w', suffix='.json', prefix='multibackend-demo-') as handle:
        json.dump(extra_vars, handle)
        handle.flush()
        subprocess.run(command + ['-e', '@' + handle.name], env=env, check=True)


def main():
    lab_client = import_lab_client()
    banner('The drill lab: Keystone, Nova, Cinder, Placement, Glance, MariaDB, RabbitMQ on 127.0.0.1')
    started_here = not lab_client.is_up()
    if started_here:
        lab_client.run('up', capture=False)
    lab = lab_client.info()
    admin = lab_client.connect_cloud(lab, 'lab-admin')
    member = lab_client.connect_cloud(lab, 'lab-member')
    cleanup = {'servers': [], 'volumes': []}
    renamed = False
    try:
        old_service = lab['layout']['volume_hosts'][0]
        new_service, to_host = multibackend_name(old_service)
        banner('Before: three volumes on %s, two of them attached to servers' % old_service)
        volume_type = backend_volume_type(admin, old_service.split('@')[1], prefix='demo')
        orphaned, attached, doomed = create_volumes(member, admin, volume_type,
                                                    ('demo-orphaned', 'demo-attached', 'demo-doomed'), cleanup)
        volume_ids = [orphaned.id, attached.id, doomed.id]
        deleted_server, kept_server = new_server(member, 'demo-a', cleanup), new_server(member, 'demo-b', cleanup)
        attach(member, admin, deleted_server, orphaned)
        attach(member, admin, kept_server, attached)
        show_services_and_volumes(admin, volume_ids)

        banner('Incident: multi-backend is enabled; the cinder-volume comes back as %s' % new_service)
        stopped_at = rename_volume_service(lab_client, admin, old_service, new_service)
        renamed = True
        show_services_and_volumes(admin, volume_ids)

        banner('openstack server delete %s, and openstack volume delete %s' % (deleted_server.name, doomed.name))
        member.compute.delete_server(deleted_server)
        sent = time.time()
        member.block_storage.delete_volume(doomed)
        time.sleep(12)
        server = admin.compute.get_server(deleted_server.id)
        print('  after 12 s: server %s is %s, task_state %s (a delete takes about a second on this lab)'
              % (server.name, server.status, server.task_state))
        print('  Nova is retrying the detach: cinder-api calls the old host %s and times out' % old_service)
        wait_until('Nova to give up', lambda: admin.compute.find_server(
            deleted_server.id, ignore_missing=True, all_projects=True) is None, wait=WAIT)
        print('  after %.0f s Nova gave up the detach and deleted the server anyway' % (time.time() - sent))
        try:
            member.block_storage.delete_volume(orphaned)
            print('  openstack volume delete %s: accepted (unexpected)' % orphaned.name)
        except Exception as error:  # the refusal is what the demo shows
            print('  openstack volume delete %s: refused, %s' % (orphaned.name, str(error).splitlines()[0][:160]))
        show_services_and_volumes(admin, volume_ids)
        wait_old_service_down(admin, old_service, stopped_at)

        extra = dict(cinder_multibackend_migration_hosts={old_service: to_host},
                     cinder_multibackend_migration_cloud='lab-admin',
                     cinder_multibackend_migration_cinder_db=lab['database']['urls']['cinder'],
                     cinder_multibackend_migration_nova_api_db=lab['database']['urls']['nova_api'],
                     cinder_multibackend_migration_service_down_time=LAB_SERVICE_DOWN_TIME,
                     cinder_multibackend_migration_state_dir=os.path.join(lab['lab_dir'], 'drills', 'multibackend'))
        banner('The runbook in check mode: the whole plan, nothing written')
        run_playbook(lab, extra, check=True)
        show_services_and_volumes(admin, volume_ids)

        banner('The runbook')
        run_playbook(lab, extra, check=False)
        show_services_and_volumes(admin, volume_ids)

        banner('After: openstack server delete %s, then every volume deleted' % kept_server.name)
        started = time.time()
        member.compute.delete_server(kept_server)
        member.compute.wait_for_delete(kept_server, interval=1, wait=WAIT)
        wait_status(admin, attached.id, 'available')
        print('  server deleted and its volume detached in %.1f s' % (time.time() - started))
        started = time.time()
        for volume in (orphaned, attached, doomed):
            member.block_storage.delete_volume(volume)
        for volume in (orphaned, attached, doomed):
            member.block_storage.wait_for_delete(volume, interval=1, wait=WAIT)
        print('  the three volumes deleted in %.1f s' % (time.time() - started))
        show_services_and_volumes(admin, volume_ids)
        banner('Recovered: the volumes are served by %s, the old service is disabled, deletes complete' % new_service)
    finally:
        if started_here and not os.environ.get('STACKMENDER_DEMO_KEEP_LAB'):
            banner('Taking the lab down (set STACKMENDER_DEMO_KEEP_LAB=1 to keep it)')
            lab_client.run('down', capture=False)
        elif renamed:
            banner('Restoring the lab layout (lab reset)')
            lab_client.run('reset', capture=False)


if __name__ == '__main__':
    main()
