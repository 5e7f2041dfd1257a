"""The main job: the demo drill on the embedded lab.

Brings up the real control plane on loopback, breaks a volume the way an
incident does (its cinder-volume is killed in the middle of a detach), shows
what the APIs and databases say, repairs it with the collection's playbook,
lets Nova retry the detach it gave up on, and shows the result.
"""

import json
import os
import subprocess
import sys
import time

from tests.collection_path import COLLECTIONS_PATH
from tests.conftest import import_lab_client

HERE = os.path.dirname(os.path.abspath(__file__))


def banner(text):
    print('\n\033[1m==> %s\033[0m' % text, flush=True)


def show(lab_client, lab, admin, volume_id, server_id):
    volume = admin.block_storage.get_volume(volume_id)
    print('  API   volume %s: status=%s, attachments=%s' % (volume.id, volume.status,
                                                            [a.get('server_id') for a in volume.attachments or []]))
    connection = lab_client.connect_database(lab)
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT status, attach_status FROM cinder.volumes WHERE id = %s', (volume_id,))
            status, attach_status = cursor.fetchone()
            print('  DB    cinder.volumes            status=%s attach_status=%s' % (status, attach_status))
            cursor.execute('SELECT id, attach_status, deleted FROM cinder.volume_attachment WHERE volume_id = %s',
                           (volume_id,))
            for row in cursor.fetchall():
                print('  DB    cinder.volume_attachment  %s attach_status=%s deleted=%s' % row)
            cursor.execute('SELECT id, device_name, deleted FROM nova.block_device_mapping '
                           'WHERE volume_id = %s AND instance_uuid = %s', (volume_id, server_id))
            for row in cursor.fetchall():
                print('  DB    nova.block_device_mapping %s %s deleted=%s' % row)
    finally:
        connection.close()


def main():
    lab_client = import_lab_client()
    banner('Bringing up the drill lab: Keystone, Nova, Cinder, Placement, Glance, MariaDB, RabbitMQ on 127.0.0.1')
    started_here = not lab_client.is_up()
    if started_here:
        lab_client.run('up', capture=False)
    lab = lab_client.info()
    admin = lab_client.connect_cloud(lab, 'lab-admin')
    try:
        banner('Incident: cinder-volume is killed in the middle of a detach (Nova retries, then gives up)')
        started = time.time()
        broken = json.loads(lab_client.run('break-detach').stdout)
        volume_id, server_id = broken['volume_id'], broken['server_id']
        print('  broke volume %s of server %s in %.0f s (killed %s, restarted it as a supervisor would)'
              % (volume_id, server_id, time.time() - started, broken['killed_service']))
        show(lab_client, lab, admin, volume_id, server_id)

        banner('Repair with the playbook (check mode first)')
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_LOCALHOST_WARNING='false',
                   ANSIBLE_INVENTORY_UNPARSED_WARNING='false', ANSIBLE_CALLBACK_RESULT_FORMAT='yaml',
                   OS_CLIENT_CONFIG_FILE=lab['clouds_yaml'])
        subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                        os.path.join(HERE, 'lab_stuck_detach.yml'), '-e', 'demo_volume=%s' % volume_id],
                       env=env, check=True)

        banner('Nova retries the detach it gave up on')
        admin.compute.delete_volume_attachment(server_id, volume_id)
        deadline = time.time() + 120
        while admin.block_storage.get_volume(volume_id).status != 'available':
            if time.time() > deadline:
                raise SystemExit('the detach did not complete')
            time.sleep(1)
        show(lab_client, lab, admin, volume_id, server_id)
        banner('Recovered: the volume is available, Cinder and Nova agree, and the detach went through the backend')
    finally:
        if started_here and not os.environ.get('STACKMENDER_DEMO_KEEP_LAB'):
            banner('Taking the lab down (set STACKMENDER_DEMO_KEEP_LAB=1 to keep it)')
            lab_client.run('down', capture=False)


if __name__ == '__main__':
    main()
