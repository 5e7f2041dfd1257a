"""The demo on the real-schema databases: break, plan, repair, undo.

Creates a fresh set of Nova/Cinder/Placement databases from the schema the
real migrations built, breaks one volume the way an incident does (its
instance was deleted while cinder-volume was down, so Cinder still holds the
volume "detaching" with a live attachment row), then runs the repair
playbook with ansible-playbook and shows the rows before and after, and the
undo from the journal.
"""

import os
import subprocess
import sys
import tempfile

from tests.collection_path import COLLECTIONS_PATH
from tests.harness.builder import CloudBuilder
from tests.harness.dbset import create_database_set
from tests.harness.mariadb import get_server
from tests.harness.schema import load_snapshot

HERE = os.path.dirname(os.path.abspath(__file__))
RELEASE = os.environ.get('STACKMENDER_DEMO_RELEASE', '2026.2')


def banner(text):
    print('\n\033[1m==> %s\033[0m' % text, flush=True)


def show(dbs, volume, instance):
    rows = dbs.query('cinder', 'SELECT id, status, attach_status FROM volumes WHERE id = %s', (volume,))
    for row in rows:
        print('  cinder.volumes             %s  status=%-10s attach_status=%s' % (row['id'], row['status'], row['attach_status']))
    for row in dbs.query('cinder', 'SELECT id, instance_uuid, attach_status, deleted FROM volume_attachment '
                         'WHERE volume_id = %s', (volume,)):
        print('  cinder.volume_attachment   %s  instance=%s attach_status=%-9s deleted=%s'
              % (row['id'], row['instance_uuid'], row['attach_status'], row['deleted']))
    for row in dbs.query('cinder', "SELECT `key`, deleted FROM volume_admin_metadata WHERE volume_id = %s", (volume,)):
        print('  cinder.volume_admin_metadata %s deleted=%s' % (row['key'], row['deleted']))
    workers = dbs.query('cinder', "SELECT count(*) AS n FROM workers WHERE resource_id = %s", (volume,))[0]['n']
    print('  cinder.workers             %d cleanup row(s) for the volume' % workers)
    for row in dbs.query('nova', 'SELECT uuid, vm_state, deleted FROM instances WHERE uuid = %s', (instance,)):
        print('  nova.instances             %s  vm_state=%s deleted=%s (the instance is gone)'
              % (row['uuid'], row['vm_state'], row['deleted']))


def playbook(name, extra_vars):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_LOCALHOST_WARNING='false',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='false', ANSIBLE_CALLBACK_RESULT_FORMAT='yaml')
    args = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), os.path.join(HERE, name)]
    for key, value in extra_vars.items():
        args += ['-e', '%s=%s' % (key, value)]
    subprocess.run(args, env=env, check=True)


def main():
    banner('Real schemas of OpenStack %s, built by the projects\' own migrations' % RELEASE)
    server = get_server()
    snapshot = load_snapshot(server, RELEASE)
    dbs = create_database_set(server, snapshot)
    journal_dir = tempfile.mkdtemp(prefix='stackmender-demo-journal-')
    try:
        cloud = CloudBuilder(dbs)
        cloud.nova_service('compute1')
        instance = cloud.instance(host='compute1')
        volume = cloud.volume(status='in-use', attach_status='attached', host='controller1@lvm#lvm')
        attachment = cloud.attachment(volume, instance_uuid=instance, attached_host='compute1')
        bdm = cloud.bdm(instance, volume, attachment_id=attachment)

        banner('Incident: the instance is deleted while cinder-volume is down mid-detach')
        # What Nova's local delete leaves behind: instance and BDM soft-deleted (deleted = id) ...
        dbs.execute('nova', 'UPDATE block_device_mapping SET deleted = id, deleted_at = UTC_TIMESTAMP() WHERE id = %s', (bdm,))
        dbs.execute('nova', "UPDATE instances SET deleted = id, deleted_at = UTC_TIMESTAMP(), vm_state = 'deleted' "
                    "WHERE uuid = %s", (instance,))
        # ... while Cinder never finished the detach: the volume is stuck and the attachment row lives on.
        dbs.execute('cinder', "UPDATE volumes SET status = 'detaching' WHERE id = %s", (volume,))
        cloud.worker('VOLUME', volume, 'detaching')
        show(dbs, volume, instance)

        banner('Repair with the playbook: check mode and diff first, then apply, then a re-run')
        extra = dict(demo_cinder_db=dbs.url('cinder'), demo_nova_api_db=dbs.url('nova_api'),
                     demo_journal_dir=journal_dir, demo_volume=volume)
        playbook('stuck_volume.yml', extra)

        banner('After the repair (read back with plain SQL)')
        show(dbs, volume, instance)

        journal = open(os.path.join(journal_dir, 'last')).read().strip()
        banner('Undo from the journal %s' % os.path.basename(journal))
        playbook('undo_journal.yml', dict(demo_journal=journal, demo_cinder_db=dbs.url('cinder'),
                                          demo_journal_dir=journal_dir))
        show(dbs, volume, instance)
        banner('Demo complete: broken, planned, repaired, verified, undone')
    finally:
        dbs.drop()
        if server.private:
            server.stop()


if __name__ == '__main__':
    main()
