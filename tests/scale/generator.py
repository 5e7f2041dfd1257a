"""A realistic cloud of N instances in the real schemas, with a chosen
fraction of injected inconsistencies, written with multi-row INSERTs.

Per instance: the instances row, its API mapping, an image root BDM, one
attached volume (volume in-use, live attachment, ``attached_mode`` admin
metadata, volume BDM), a Placement consumer and its VCPU/MEMORY_MB/DISK_GB
allocations. Around them: compute hosts (nova-compute service, compute node,
host mapping, resource provider with inventories), cinder-volume services
and some unattached volumes.

Injected, each for ``round(N * fraction)`` distinct instances:

* ``stuck_detaching``: the volume is ``detaching``/``attached`` with its
  attachment live, but Nova already soft-deleted the BDM;
* ``stale_bdm``: Cinder let the volume go (``available``, attachment
  soft-deleted) while Nova's BDM is still live;
* ``renamed_host``: the volume belongs to ``cinder-old@lvm``, a
  cinder-volume service that stopped reporting when the backend was renamed;
* ``dead_host``: the instance is on ``compute-dead``, whose nova-compute is down.

Rows are sent as multi-row INSERT ... VALUES statements of 5,000 rows, with
foreign-key and unique checks off, one transaction per table. Run it alone to time a big cloud::

    python -m tests.scale.generator --instances 100000 --fraction 0.01

100,000 instances are about 1.1 million rows. The server's InnoDB buffer
pool decides the time: with Debian's default 128 MB the load is bound by
disk writes; with 2 GB it took 53 s on the 2-core development machine.
"""

import argparse
import concurrent.futures
import datetime
import json
import random
import time
import uuid

CHUNK = 5000
KINDS = ('stuck_detaching', 'stale_bdm', 'renamed_host', 'dead_host')
DEAD_HOST = 'compute-dead'
OLD_CINDER_HOST = 'cinder-old@lvm'
INSTANCES_PER_HOST = 40
VOLUMES_PER_BACKEND = 2000
SPARE_VOLUME_RATIO = 10  # one unattached volume per this many instances
FLAVOR = dict(vcpus=1, memory_mb=512, root_gb=1)


class Manifest:
    """What was generated: row counts per (logical, table) and the injected ids per kind."""

    def __init__(self, instances, fraction):
        self.instances = instances
        self.fraction = fraction
        self.counts = {}
        self.injected = dict((kind, []) for kind in KINDS)
        self.seconds = None

    def add(self, logical, table, count):
        self.counts[(logical, table)] = self.counts.get((logical, table), 0) + count

    def summary(self):
        return {'instances': self.instances, 'fraction': self.fraction, 'seconds': self.seconds,
                'rows': sum(self.counts.values()),
                'injected': dict((kind, len(ids)) for kind, ids in self.injected.items()),
                'counts': dict(('%s.%s' % key, value) for key, value in sorted(self.counts.items()))}


class _Writer:
    """Bulk INSERTs into one logical database, one transaction per table."""

    def __init__(self, dbs, logical, manifest):
        self.logical = logical
        self.manifest = manifest
        self.connection = dbs.connect(logical, autocommit=False)
        with self.connection.cursor() as cursor:
            cursor.execute('SET SESSION foreign_key_checks = 0')
            cursor.execute('SET SESSION unique_checks = 0')

    def insert(self, table, columns, rows):
        # Table and column names are this file's constants; the values are ids, uuids and words this
        # generator made, rendered as literals by _literal (PyMySQL's per-value escaping is 5x slower).
        prefix = 'INSERT INTO `%s` (%s) VALUES ' % (table, ', '.join('`%s`' % column for column in columns))
        with self.connection.cursor() as cursor:
            for start in range(0, len(rows), CHUNK):
                cursor.execute(prefix + ','.join('(%s)' % ','.join(map(_literal, row))
                                                 for row in rows[start:start + CHUNK]))
        self.connection.commit()
        self.manifest.add(self.logical, table, len(rows))

    def close(self):
        self.connection.close()


def _literal(value):
    if value is None:
        return 'NULL'
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, (int, float)):
        return repr(value)
    return "'%s'" % value.replace('\\', '\\\\').replace("'", "''")


# One OVS port with a fixed IP, in the shape nova's NetworkInfo serialises (json.dumps); the port id and
# address vary per instance.
_VIF = json.dumps([{
    'id': '@PORT@', 'address': 'fa:16:3e:@MAC@', 'type': 'ovs', 'devname': 'tap@DEV@', 'ovs_interfaceid': '@PORT@',
    'qbh_params': None, 'qbg_params': None, 'active': True, 'vnic_type': 'normal', 'meta': {},
    'preserve_on_delete': False, 'delegate_create': True, 'profile': {},
    'details': {'port_filter': True, 'connectivity': 'l2', 'bridge_name': 'br-int', 'datapath_type': 'system'},
    'network': {'id': '5b3e6c1c-7d1e-4f5a-9c1e-2f6a0b9d1e11', 'bridge': 'br-int', 'label': 'private',
                'meta': {'injected': False, 'tenant_id': 'x', 'mtu': 1450, 'physical_network': None,
                         'tunneled': True},
                'subnets': [{'cidr': '10.0.0.0/16', 'dns': [], 'routes': [], 'version': 4,
                             'meta': {'dhcp_server': '10.0.0.2'},
                             'gateway': {'address': '10.0.0.1', 'type': 'gateway', 'version': 4, 'meta': {}},
                             'ips': [{'address': '@IP@', 'type': 'fixed', 'version': 4, 'meta': {},
                                      'floating_ips': []}]}]}}])


def network_info(port_id, index):
    mac = '%02x:%02x:%02x' % ((index >> 16) & 255, (index >> 8) & 255, index & 255)
    address = '10.0.%d.%d' % ((index >> 8) & 255, index & 255)
    return _VIF.replace('@PORT@', port_id).replace('@MAC@', mac).replace('@DEV@', port_id[:11]).replace('@IP@', address)


def _uuids(rng, count):
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _number in range(count)]


def generate(dbs, instances, fraction=0.01, seed=1):
    """Populate ``dbs`` (a DatabaseSet holding fresh schemas); returns the :class:`Manifest`."""
    if not 0 <= fraction * len(KINDS) <= 1:
        raise ValueError('the injected kinds take %d x fraction of the instances; %s is too much' % (len(KINDS), fraction))
    started = time.monotonic()
    rng = random.Random(seed)
    manifest = Manifest(instances, fraction)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    stamp = now.strftime('%Y-%m-%d %H:%M:%S')
    old = (now - datetime.timedelta(hours=2)).strftime('%Y-%m-%d %H:%M:%S')
    injected_each = int(round(instances * fraction))

    # Which instances carry which inconsistency: disjoint, spread over the whole range.
    order = list(range(instances))
    rng.shuffle(order)
    kind_of = {}
    for position, kind in enumerate(KINDS):
        for index in order[position * injected_each:(position + 1) * injected_each]:
            kind_of[index] = kind

    hosts = ['compute-%05d' % number for number in range(max(1, -(-instances // INSTANCES_PER_HOST)))]
    backends = ['cinder-%02d@lvm' % number for number in range(max(1, -(-instances // VOLUMES_PER_BACKEND)))]
    projects = ['%032x' % rng.getrandbits(128) for _number in range(max(1, instances // 20))]
    users = ['%032x' % rng.getrandbits(128) for _number in range(max(1, instances // 50))]
    instance_uuids = _uuids(rng, instances)
    volume_ids = _uuids(rng, instances)
    attachment_ids = _uuids(rng, instances)
    node_uuids = _uuids(rng, len(hosts) + 1)
    all_hosts = hosts + [DEAD_HOST]

    # Reads through ``dbs`` happen here: its connections are not shared with the writer threads.
    cell_id = dbs.scalar('nova_api', "SELECT id FROM cell_mappings WHERE name = 'cell1'")
    volume_type = dbs.scalar('cinder', "SELECT id FROM volume_types WHERE name = '__DEFAULT__' AND deleted = 0")
    classes = _resource_classes(dbs)
    service_uuid = dict((backend, str(uuid.UUID(int=rng.getrandbits(128), version=4)))
                        for backend in backends + [OLD_CINDER_HOST])
    spare_ids = _uuids(rng, instances // SPARE_VOLUME_RATIO)
    row_uuids = iter(_uuids(rng, 3 * instances + len(all_hosts) + 2))  # BDMs, ports, services

    # ------------------------------------------------------------ nova cell
    def write_nova():
        nova = _Writer(dbs, 'nova', manifest)
        try:
            _write_nova(nova)
        finally:
            nova.close()

    def _write_nova(nova):
        service_rows = []
        for number, host in enumerate(all_hosts):
            heartbeat = old if host == DEAD_HOST else stamp
            service_rows.append((number + 1, heartbeat, heartbeat, host, 'nova-compute', 'compute', 100, 0, 0,
                                 heartbeat, 0, 66, next(row_uuids)))
        for number, binary in enumerate(('nova-conductor', 'nova-scheduler')):
            service_rows.append((len(all_hosts) + number + 1, stamp, stamp, 'controller', binary, binary[5:], 100, 0, 0,
                                 stamp, 0, 66, next(row_uuids)))
        nova.insert('services', ('id', 'created_at', 'updated_at', 'host', 'binary', 'topic', 'report_count',
                                 'disabled', 'deleted', 'last_seen_up', 'forced_down', 'version', 'uuid'), service_rows)
        nova.insert('compute_nodes', (
            'id', 'created_at', 'updated_at', 'deleted', 'service_id', 'host', 'hypervisor_hostname', 'uuid', 'vcpus',
            'memory_mb', 'local_gb', 'vcpus_used', 'memory_mb_used', 'local_gb_used', 'hypervisor_type',
            'hypervisor_version', 'cpu_info', 'running_vms', 'mapped'),
            [(number + 1, stamp, stamp, 0, number + 1, host, host, node_uuids[number], 64, 262144, 2000, 0, 512, 0,
              'QEMU', 8002000, '{}', 0, 1) for number, host in enumerate(all_hosts)])

        instance_rows, bdm_rows, cache_rows = [], [], []
        bdm_id = 0
        for index in range(instances):
            kind = kind_of.get(index)
            host_number = len(hosts) if kind == 'dead_host' else index % len(hosts)
            host = all_hosts[host_number]
            instance_rows.append((
                index + 1, stamp, stamp, 0, instance_uuids[index], users[index % len(users)],
                projects[index % len(projects)], 'active', 1, host, host, host, host_number + 1,
                FLAVOR['memory_mb'], FLAVOR['vcpus'], FLAVOR['root_gb'], 0, 1, 'vm-%d' % index, 'vm-%d' % index,
                'nova', stamp, '/dev/vda', 0))
            bdm_id += 1
            bdm_rows.append((bdm_id, stamp, None, 0, instance_uuids[index], None, None, 'image', 'local', 0,
                             '/dev/vda', 'disk', None, 1, next(row_uuids)))
            bdm_id += 1
            # Nova already let the volume go: its BDM is soft-deleted (deleted = id).
            deleted, deleted_at = (bdm_id, stamp) if kind == 'stuck_detaching' else (0, None)
            bdm_rows.append((bdm_id, stamp, deleted_at, deleted, instance_uuids[index], volume_ids[index],
                             attachment_ids[index], 'volume', 'volume', None, '/dev/vdb', 'disk',
                             json.dumps({'driver_volume_type': 'iscsi', 'serial': volume_ids[index]}), 0,
                             next(row_uuids)))
            # Every instance has one port: its network info cache, as nova-compute writes it (about 1 KB).
            cache_rows.append((stamp, stamp, 0, instance_uuids[index], network_info(next(row_uuids), index)))
        nova.insert('instances', (
            'id', 'created_at', 'updated_at', 'deleted', 'uuid', 'user_id', 'project_id', 'vm_state', 'power_state',
            'host', 'node', 'launched_on', 'compute_id', 'memory_mb', 'vcpus', 'root_gb', 'ephemeral_gb',
            'instance_type_id', 'hostname', 'display_name', 'availability_zone', 'launched_at', 'root_device_name',
            'cleaned'), instance_rows)
        nova.insert('instance_info_caches', ('created_at', 'updated_at', 'deleted', 'instance_uuid', 'network_info'),
                    cache_rows)
        nova.insert('block_device_mapping', (
            'id', 'created_at', 'deleted_at', 'deleted', 'instance_uuid', 'volume_id', 'attachment_id', 'source_type',
            'destination_type', 'boot_index', 'device_name', 'device_type', 'connection_info',
            'delete_on_termination', 'uuid'), bdm_rows)

    # ------------------------------------------------------------ nova_api
    def write_nova_api():
        nova_api = _Writer(dbs, 'nova_api', manifest)
        try:
            _write_nova_api(nova_api)
        finally:
            nova_api.close()

    def _write_nova_api(nova_api):
        nova_api.insert('host_mappings', ('created_at', 'host', 'cell_id'), [(stamp, host, cell_id) for host in all_hosts])
        nova_api.insert('instance_mappings', ('created_at', 'instance_uuid', 'cell_id', 'project_id', 'user_id',
                                              'queued_for_delete'),
                        [(stamp, instance_uuids[index], cell_id, projects[index % len(projects)],
                          users[index % len(users)], 0) for index in range(instances)])

    # ------------------------------------------------------------ cinder
    def write_cinder():
        cinder = _Writer(dbs, 'cinder', manifest)
        try:
            _write_cinder(cinder)
        finally:
            cinder.close()

    def _write_cinder(cinder):
        cinder.insert('services', ('created_at', 'updated_at', 'deleted', 'host', 'binary', 'topic', 'report_count',
                                   'disabled', 'availability_zone', 'uuid'),
                      [(old if backend == OLD_CINDER_HOST else stamp, old if backend == OLD_CINDER_HOST else stamp, 0,
                        backend, 'cinder-volume', 'cinder-volume', 100, 0, 'nova', service_uuid[backend])
                       for backend in backends + [OLD_CINDER_HOST]])
        volume_rows, attachment_rows, metadata_rows = [], [], []
        for index in range(instances):
            kind = kind_of.get(index)
            backend = OLD_CINDER_HOST if kind == 'renamed_host' else backends[index % len(backends)]
            status, attach_status = {'stuck_detaching': ('detaching', 'attached'),
                                     'stale_bdm': ('available', 'detached')}.get(kind, ('in-use', 'attached'))
            volume_rows.append((volume_ids[index], stamp, stamp, 0, users[index % len(users)],
                                projects[index % len(projects)], backend + '#lvm', 1, 'nova', status, attach_status,
                                'volume-%d' % index, volume_type, 0, service_uuid[backend], 1))
            gone = kind == 'stale_bdm'
            attachment_rows.append((attachment_ids[index], stamp, stamp, stamp if gone else None, 1 if gone else 0,
                                    volume_ids[index], all_hosts[len(hosts) if kind == 'dead_host' else index % len(hosts)],
                                    instance_uuids[index], '/dev/vdb', stamp, stamp if gone else None, 'rw',
                                    'detached' if gone else 'attached'))
            if not gone:
                metadata_rows.append((stamp, 0, volume_ids[index], 'attached_mode', 'rw'))
        for number, volume_id in enumerate(spare_ids):
            backend = backends[number % len(backends)]
            volume_rows.append((volume_id, stamp, stamp, 0, users[number % len(users)], projects[number % len(projects)],
                                backend + '#lvm', 1, 'nova', 'available', 'detached', 'spare-%d' % number, volume_type,
                                0, service_uuid[backend], 1))
        cinder.insert('volumes', ('id', 'created_at', 'updated_at', 'deleted', 'user_id', 'project_id', 'host', 'size',
                                  'availability_zone', 'status', 'attach_status', 'display_name', 'volume_type_id',
                                  'bootable', 'service_uuid', 'use_quota'), volume_rows)
        cinder.insert('volume_attachment', ('id', 'created_at', 'updated_at', 'deleted_at', 'deleted', 'volume_id',
                                            'attached_host', 'instance_uuid', 'mountpoint', 'attach_time',
                                            'detach_time', 'attach_mode', 'attach_status'), attachment_rows)
        cinder.insert('volume_admin_metadata', ('created_at', 'deleted', 'volume_id', 'key', 'value'), metadata_rows)

    # ------------------------------------------------------------ placement
    def write_placement():
        placement = _Writer(dbs, 'placement', manifest)
        try:
            _write_placement(placement)
        finally:
            placement.close()

    def _write_placement(placement):
        placement.insert('resource_providers', ('id', 'created_at', 'uuid', 'name', 'generation', 'root_provider_id'),
                         [(number + 1, stamp, node_uuids[number], host, 1, number + 1)
                          for number, host in enumerate(all_hosts)])
        inventory_rows = []
        for number in range(len(all_hosts)):
            for resource, total, reserved, ratio in (('VCPU', 64, 0, 4.0), ('MEMORY_MB', 262144, 512, 1.0),
                                                     ('DISK_GB', 2000, 0, 1.0)):
                inventory_rows.append((stamp, number + 1, classes[resource], total, reserved, 1, total, 1, ratio))
        placement.insert('inventories', ('created_at', 'resource_provider_id', 'resource_class_id', 'total', 'reserved',
                                         'min_unit', 'max_unit', 'step_size', 'allocation_ratio'), inventory_rows)
        placement.insert('projects', ('id', 'created_at', 'external_id'),
                         [(number + 1, stamp, project) for number, project in enumerate(projects)])
        placement.insert('users', ('id', 'created_at', 'external_id'),
                         [(number + 1, stamp, user) for number, user in enumerate(users)])
        placement.insert('consumers', ('id', 'created_at', 'uuid', 'project_id', 'user_id', 'generation'),
                         [(index + 1, stamp, instance_uuids[index], index % len(projects) + 1, index % len(users) + 1, 1)
                          for index in range(instances)])
        allocation_rows = []
        for index in range(instances):
            provider = (len(hosts) if kind_of.get(index) == 'dead_host' else index % len(hosts)) + 1
            for resource in ('VCPU', 'MEMORY_MB', 'DISK_GB'):
                amount = FLAVOR[{'VCPU': 'vcpus', 'MEMORY_MB': 'memory_mb', 'DISK_GB': 'root_gb'}[resource]]
                allocation_rows.append((stamp, provider, instance_uuids[index], classes[resource], amount))
        placement.insert('allocations', ('created_at', 'resource_provider_id', 'consumer_id', 'resource_class_id',
                                         'used'), allocation_rows)

    # One connection per database, in parallel: the server works on two while Python renders the next.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(write) for write in (write_nova, write_cinder, write_placement, write_nova_api)]:
            future.result()

    for index, kind in sorted(kind_of.items()):
        if kind == 'dead_host':
            manifest.injected[kind].append(instance_uuids[index])
        else:
            manifest.injected[kind].append(volume_ids[index])
    manifest.seconds = time.monotonic() - started
    return manifest


def _resource_classes(dbs):
    """Placement's standard class ids, written the way placement-api does at start (VCPU is 0)."""
    from tests.harness.builder import CloudBuilder
    builder = CloudBuilder(dbs)
    return dict((name, builder.resource_class_id(name)) for name in ('VCPU', 'MEMORY_MB', 'DISK_GB'))


def main():
    parser = argparse.ArgumentParser(description='Generate a cloud in fresh databases and report the time it took.')
    parser.add_argument('--instances', type=int, default=100000)
    parser.add_argument('--fraction', type=float, default=0.01)
    parser.add_argument('--release', default=None, help='schema release (default: the first in releases.tsv)')
    parser.add_argument('--keep', action='store_true', help='keep the databases and print their names')
    options = parser.parse_args()
    from tests.harness import dbset, mariadb, schema
    server = mariadb.get_server()
    release = options.release or schema.known_releases()[0]
    snapshot = schema.load_snapshot(server, release, venv=schema.openstack_venv(release))
    databases = dbset.create_database_set(server, snapshot, pool_size=0)
    try:
        manifest = generate(databases, options.instances, options.fraction)
        summary = manifest.summary()
        if options.keep:
            summary['databases'] = databases.names
        print(json.dumps(summary, indent=1))
    finally:
        if not options.keep:
            databases.drop()


if __name__ == '__main__':
    main()
