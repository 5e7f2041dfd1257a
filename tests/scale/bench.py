"""Scale benchmarks of the collection's modules, measured side by side in one run.

Each module runs as its own process through its entry point (the way
Ansible's module runner starts it, with the arguments file), so the time is
the module's own and the peak memory is that process's maximum RSS, read
with ``getrusage(RUSAGE_CHILDREN)`` in a launcher that runs nothing else.
The task-versus-loop comparison runs real ``ansible-playbook`` plays.

Data comes from :mod:`tests.scale.generator` (the real schemas of one
release, a generated cloud with injected inconsistencies). What is compared:

* ``consistency_info`` on two cloud sizes: time and peak memory;
* ``cinder_service_rehost`` of N volumes, next to the same change as one
  hand-written ``UPDATE`` (the floor) and next to the release's own
  ``cinder-manage volume update_host``; check mode next to apply; the undo;
* ``cinder_volume_state`` on N stuck volumes in one task, next to a loop of
  tasks (a sample of the loop is run and scaled, and the table says so);
  check mode next to apply; the undo.

Run it through ``tools/bench``; ``--quick`` is a smoke test of a minute.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

MODULE_PACKAGE = 'ansible_collections.stackmender.openstack.plugins.modules.'
OLD_HOST = 'cinder-old@lvm'
NEW_HOST = 'cinder-00@lvm'
NEW_POOL_HOST = NEW_HOST + '#lvm'
# Generated heartbeats are 'now' when the cloud is written; injected dead services are two hours old.
SERVICE_DOWN_TIME = 3600

QUICK = dict(audit_sizes=[100, 500], rehost_volumes=200, rehost_repeats=2, state_volumes=20, loop_sample=2,
             server='shared', buffer_pool='1G', cinder_manage_seconds=0)
FULL = dict(audit_sizes=[10000, 100000], rehost_volumes=100000, rehost_repeats=3, state_volumes=1000, loop_sample=20,
            server='private', buffer_pool='2G', cinder_manage_seconds=300)

# Runs a command and reports its wall time and the peak RSS of the processes it waited for.
LAUNCHER = r'''
import json, resource, subprocess, sys, time
limit = float(sys.argv[2]) or None
started = time.monotonic()
try:
    rc = subprocess.run(sys.argv[3:], timeout=limit).returncode
except subprocess.TimeoutExpired:
    rc = 'timeout'
seconds = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], 'w') as stream:
    json.dump(dict(rc=rc, seconds=seconds, cpu=usage.ru_utime + usage.ru_stime, maxrss_kb=usage.ru_maxrss), stream)
'''


# The read every client-side plan of the rehost needs: the volumes' rows through PyMySQL, as
# the module reads them (same columns, same WHERE, dict rows), and nothing else.
READ_ROWS = r"""
import json, sys, urllib.parse
import pymysql, pymysql.cursors
url = urllib.parse.urlsplit(sys.argv[1])
connection = pymysql.connect(host=url.hostname, port=url.port or 3306, user=urllib.parse.unquote(url.username or ''),
                             password=urllib.parse.unquote(url.password or ''), database=url.path.lstrip('/'),
                             charset='utf8', cursorclass=pymysql.cursors.DictCursor)
with connection.cursor() as cursor:
    cursor.execute(sys.argv[2], json.loads(sys.argv[3]))
    print(len(cursor.fetchall()))
"""


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def log(message):
    sys.stderr.write('[bench %s] %s\n' % (time.strftime('%H:%M:%S'), message))
    sys.stderr.flush()


class Measure(object):
    """One measured subprocess: wall and CPU seconds, peak RSS in MB, return code, output."""

    def __init__(self, data, stdout, stderr):
        self.seconds = data['seconds']
        self.cpu = data['cpu']
        self.rss_mb = data['maxrss_kb'] / 1024.0
        self.rc = data['rc']
        self.stdout = stdout
        self.stderr = stderr


def measured(argv, env=None, cwd=None, limit=0, while_running=None):
    """Run ``argv`` under the launcher; ``limit`` seconds stops it (rc 'timeout').

    ``while_running`` is called about once a second until the command ends.
    """
    with tempfile.NamedTemporaryFile('r', suffix='.json', prefix='bench-measure-') as stats, \
            tempfile.TemporaryFile('w+') as stdout, tempfile.TemporaryFile('w+') as stderr:
        process = subprocess.Popen([sys.executable, '-c', LAUNCHER, stats.name, str(limit)] + list(argv),
                                   stdout=stdout, stderr=stderr, env=env, cwd=cwd, text=True)
        while True:
            try:
                process.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if while_running:
                    while_running()
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
        if process.returncode != 0:
            raise RuntimeError('the launcher failed: %s' % err[-2000:])
        return Measure(json.load(stats), out, err)


def collections_dir(tree, workdir):
    """A collections path whose stackmender.openstack is ``tree`` (a checkout or an unpacked commit)."""
    path = os.path.join(workdir, 'collections')
    os.makedirs(os.path.join(path, 'ansible_collections', 'stackmender'))
    os.symlink(os.path.abspath(tree), os.path.join(path, 'ansible_collections', 'stackmender', 'openstack'))
    return path


class Table(object):
    """The rows of the result table, printed as Markdown."""

    COLUMNS = ('case', 'size', 'seconds', 'ratio', 'CPU s', 'peak RSS MB', 'statements', 'notes')

    def __init__(self):
        self.rows = []

    def add(self, case, size, seconds, ratio=None, measure=None, statements=None, notes=''):
        cpu, rss_mb = (measure.cpu, measure.rss_mb) if measure else (None, None)
        self.rows.append(dict(case=case, size=size, seconds=seconds, ratio=ratio, cpu=cpu, rss_mb=rss_mb,
                              statements=statements, notes=notes))
        used = '' if measure is None else ', %.2f CPU s, %.0f MB' % (measure.cpu, measure.rss_mb)
        log('%s [%s]: %.2f s%s%s' % (case, size, seconds, '' if ratio is None else ' (x%.2f)' % ratio, used))

    def markdown(self):
        def cell(value, digits=2):
            if value is None:
                return '-'
            if isinstance(value, float):
                return '%.*f' % (digits, value)
            return str(value)
        lines = ['| %s |' % ' | '.join(self.COLUMNS), '|%s|' % '|'.join(['---'] * len(self.COLUMNS))]
        for row in self.rows:
            lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
                row['case'], cell(row['size']), cell(row['seconds']),
                '-' if row['ratio'] is None else 'x%.2f' % row['ratio'], cell(row['cpu']),
                cell(row['rss_mb'], 0), cell(row['statements']), row['notes']))
        return '\n'.join(lines)


class Bench(object):

    def __init__(self, options):
        from tests.ansible_run import ansible_environment
        from tests.collection_path import dependency_collections_path
        from tests.harness import dbset, mariadb, schema
        self.options = options
        self.dbset = dbset
        self.workdir = tempfile.mkdtemp(prefix='stackmender-bench-')
        self.collections = collections_dir(options.collection or REPO_ROOT, self.workdir)
        self.ansible_env = ansible_environment(self.collections)
        self.ansible_env['ANSIBLE_COLLECTIONS_PATH'] = os.pathsep.join([self.collections, dependency_collections_path()])
        self.module_env = dict(os.environ, PYTHONPATH=self.collections)
        if options.server == 'private':
            log('starting a private MariaDB with a %s buffer pool' % options.buffer_pool)
            self.server = mariadb.start_private_server(['--innodb-buffer-pool-size=%s' % options.buffer_pool])
        else:
            self.server = mariadb.get_server()
        self.release = options.release or schema.known_releases()[0]
        self.venv = schema.openstack_venv(self.release)
        self.snapshot = schema.load_snapshot(self.server, self.release, venv=self.venv)
        self.sets = []
        self.table = Table()
        self.counter = 0

    def close(self):
        for database_set in self.sets:
            database_set.drop()
        self.dbset.shutdown()
        if self.server.private:
            self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ helpers

    def cloud(self, instances, fraction):
        from tests.scale.generator import generate
        database_set = self.dbset.create_database_set(self.server, self.snapshot, pool_size=0)
        self.sets.append(database_set)
        manifest = generate(database_set, instances, fraction)
        log('generated %d instances (%d rows) in %.1f s' % (instances, sum(manifest.counts.values()), manifest.seconds))
        return database_set, manifest

    def drop(self, database_set):
        self.sets.remove(database_set)
        database_set.drop()

    def module(self, name, args, check=False, fail=False):
        """Run one module through its entry point; returns (result, Measure).

        ``fail``: the run is expected to fail (the startup measurement).
        """
        self.counter += 1
        path = os.path.join(self.workdir, 'args-%d.json' % self.counter)
        arguments = dict(args, _ansible_check_mode=check)
        with open(path, 'w') as stream:
            json.dump(dict(ANSIBLE_MODULE_ARGS=arguments), stream)
        measure = measured([sys.executable, '-m', MODULE_PACKAGE + name, path], env=self.module_env,
                           cwd=self.workdir)
        os.unlink(path)
        try:
            result = json.loads(measure.stdout[measure.stdout.index('{'):])
        except ValueError:
            raise RuntimeError('%s printed no result (rc %s):\n%s\n%s'
                               % (name, measure.rc, measure.stdout[-2000:], measure.stderr[-2000:]))
        if bool(result.get('failed')) != fail:
            raise RuntimeError('%s failed: %s' % (name, result.get('msg')))
        return result, measure

    def playbook(self, text, extra_vars):
        self.counter += 1
        path = os.path.join(self.workdir, 'play-%d.yml' % self.counter)
        variables = os.path.join(self.workdir, 'vars-%d.json' % self.counter)
        with open(path, 'w') as stream:
            stream.write(text)
        with open(variables, 'w') as stream:
            json.dump(extra_vars, stream)
        measure = measured([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), path,
                            '-e', '@' + variables], env=self.ansible_env, cwd=self.workdir)
        if measure.rc != 0:
            raise RuntimeError('ansible-playbook failed (rc %s):\n%s\n%s'
                               % (measure.rc, measure.stdout[-3000:], measure.stderr[-3000:]))
        return measure

    def journal_dir(self):
        return os.path.join(self.workdir, 'journal')

    @staticmethod
    def statements(result):
        """Write statements the module ran: one per 500-row chunk of a plan entry, one for an entry written
        by its condition (scoped)."""
        return sum(1 if step.get('scoped') else -(-step.get('rows', 1) // 500) for step in result['plan'])

    # ------------------------------------------------------------ startup

    def bench_startup(self):
        """The fixed cost of one module process: Python, Ansible's module_utils, argument parsing."""
        args = dict(volume=['not-a-uuid'], status='available', cinder_db='mysql+pymysql://nobody@127.0.0.1/none')
        _result, measure = self.module('cinder_volume_state', args, fail=True)
        self.table.add('startup: one module process, no database work', 1, measure.seconds, measure=measure,
                       notes='fails on input validation before connecting: the fixed cost in every row below')

    # ------------------------------------------------------------ consistency_info

    def bench_audit(self):
        for size in self.options.audit_sizes:
            database_set, manifest = self.cloud(size, self.options.fraction)
            args = dict(cinder_db=database_set.url('cinder'), nova_db=database_set.url('nova'),
                        nova_api_db=database_set.url('nova_api'), placement_db=database_set.url('placement'),
                        service_down_time=SERVICE_DOWN_TIME, stuck_after=0)
            result, measure = self.module('consistency_info', args, check=True)
            injected = sum(len(ids) for ids in manifest.injected.values())
            self.table.add('consistency_info', size, measure.seconds, measure=measure,
                           notes='%d rows; %d findings (%s) for %d injected' % (
                               sum(manifest.counts.values()), len(result['findings']),
                               ', '.join('%s %d' % (name, number) for name, number in sorted(result['counts'].items())
                                         if number), injected))
            self.drop(database_set)

    # ------------------------------------------------------------ cinder_service_rehost

    def bench_rehost(self):
        count = self.options.rehost_volumes
        database_set, _manifest = self.cloud(count, 0.0)
        old_uuid = database_set.scalar('cinder', "SELECT uuid FROM services WHERE host = %s", (OLD_HOST,))
        new_uuid = database_set.scalar('cinder', "SELECT uuid FROM services WHERE host = %s", (NEW_HOST,))
        # The attached volumes of the generated cloud all belong to the old backend; their updated_at
        # values differ row by row, as in a real cloud (this matters to the undo).
        move = ("UPDATE volumes SET host = %s, service_uuid = %s, "
                "updated_at = TIMESTAMPADD(SECOND, -(CRC32(id) %% 86400), created_at) "
                "WHERE display_name LIKE 'volume-%%'")
        database_set.execute('cinder', move, (OLD_HOST + '#lvm', old_uuid))
        assert self.on_host(database_set, OLD_HOST + '#lvm') == count
        service_reset = ("UPDATE services SET disabled = 0, disabled_reason = NULL, updated_at = "
                         "(CASE WHEN host = %s THEN UTC_TIMESTAMP() - INTERVAL 2 HOUR ELSE UTC_TIMESTAMP() END) "
                         "WHERE `binary` = 'cinder-volume'")
        database_set.execute('cinder', service_reset, (OLD_HOST,))

        args = dict(cinder_db=database_set.url('cinder'), from_host=OLD_HOST, to_host=NEW_POOL_HOST,
                    service_down_time=SERVICE_DOWN_TIME, journal_dir=self.journal_dir())

        def reset():
            database_set.execute('cinder', move, (OLD_HOST + '#lvm', old_uuid))
            database_set.execute('cinder', service_reset, (OLD_HOST,))
            assert self.on_host(database_set, OLD_HOST + '#lvm') == count

        # What no plan made in the client can avoid: the start of a Python process and the read of the rows.
        read_sql = ('SELECT id, host, status, attach_status, migration_status, deleted, updated_at, '
                    'service_uuid, cluster_name FROM volumes WHERE deleted = 0 AND '
                    '(host = BINARY %s OR LEFT(host, CHAR_LENGTH(%s)) = BINARY %s) ORDER BY id')
        read = measured([sys.executable, '-c', READ_ROWS, database_set.url('cinder'), read_sql,
                         json.dumps([OLD_HOST, OLD_HOST + '#', OLD_HOST + '#'])], env=self.module_env)
        assert read.rc == 0 and int(read.stdout) == count, (read.rc, read.stdout, read.stderr[-2000:])

        # The floor and the apply, alternately, on the same data: the floor's time varies by a
        # third from one try to the next on one machine, so each is taken as the median.
        floors, applies = [], []
        for attempt in range(self.options.rehost_repeats):
            floors.append(self.rehost_floor(database_set, new_uuid, count))
            reset()
            if attempt == 0:
                _result, check = self.module('cinder_service_rehost', args, check=True)
            result, apply = self.module('cinder_service_rehost', args)
            assert self.on_host(database_set, NEW_POOL_HOST) == count
            applies.append((apply.seconds, apply, result))
            if attempt + 1 < self.options.rehost_repeats:
                reset()
        floor = median(floors)
        _seconds, apply, result = sorted(applies, key=lambda item: item[0])[(len(applies) - 1) // 2]
        tries = '' if len(floors) == 1 else ' (median of %d: %s)' % (len(floors), ', '.join('%.2f' % f for f in floors))
        self.table.add('rehost: one hand-written UPDATE (floor)', count, floor, ratio=1.0, statements=1,
                       notes='volumes only, no lock check, no journal' + tries)

        self.table.add('rehost: read the rows through PyMySQL (no plan)', count, read.seconds,
                       ratio=read.seconds / floor, measure=read, statements=1,
                       notes='what any client-side plan must spend before writing: a Python process and the '
                             'SELECT of the volumes as the module runs it')
        self.table.add('rehost: module, check mode', count, check.seconds, ratio=check.seconds / floor,
                       measure=check, notes='plans and reads; writes nothing')
        journal_mb = os.path.getsize(result['journal']) / 1e6
        self.table.add('rehost: module, apply', count, apply.seconds, ratio=apply.seconds / floor,
                       measure=apply, statements=self.statements(result),
                       notes='planned under lock, written with the journal (%.0f MB, fsynced) before commit; check '
                             'mode is x%.2f of apply%s' % (
                                 journal_mb, check.seconds / apply.seconds,
                                 '' if len(applies) == 1 else ' (median of %d: %s)' % (
                                     len(applies), ', '.join('%.2f' % item[0] for item in applies))))
        # The undo reverts the last apply, whose journal it reads.
        result = applies[-1][2]
        undo_args = dict(cinder_db=database_set.url('cinder'), journal=result['journal'],
                         journal_dir=self.journal_dir())
        undone, undo = self.module('journal_undo', undo_args)
        self.table.add('rehost: journal_undo of it', count, undo.seconds, ratio=undo.seconds / floor,
                       measure=undo, statements=self.statements(undone),
                       notes='every volume has its own updated_at to restore')
        assert self.on_host(database_set, OLD_HOST + '#lvm') == count

        database_set.execute('cinder', service_reset, (OLD_HOST,))
        samples = []

        def sample():
            samples.append((time.monotonic(), self.on_host(database_set, NEW_HOST)))

        started = time.monotonic()
        cinder_manage = self.cinder_manage(database_set, ['volume', 'update_host', '--currenthost', OLD_HOST,
                                                          '--newhost', NEW_HOST], self.options.cinder_manage_seconds,
                                           sample)
        moved = self.on_host(database_set, NEW_HOST)
        if cinder_manage.rc == 'timeout':
            # It commits volume by volume: its rate after the first commit gives the rest.
            first = [(at, done) for at, done in samples if done] or [(started, 0)]
            first_at, first_done = first[0]
            ended = started + cinder_manage.seconds
            rate = (moved - first_done) / max(ended - first_at, 1e-6)
            if rate:
                estimate = (first_at - started) + (count - first_done) / rate
                notes = ('stopped after %.0f s with %d of %d volumes done; the rest scaled from its rate of %.0f/s. '
                         % (cinder_manage.seconds, moved, count, rate))
            else:
                estimate = cinder_manage.seconds
                notes = 'stopped after %.0f s before its first commit: a lower bound. ' % cinder_manage.seconds
        else:
            assert moved == count, (moved, count)
            estimate, notes = cinder_manage.seconds, ''
        self.table.add('rehost: cinder-manage volume update_host', count, estimate, ratio=estimate / floor,
                       measure=cinder_manage, statements=2 * count + 1,
                       notes=notes + 'One ORM update and commit per volume; drops the pool, leaves service_uuid')
        self.drop(database_set)

    def rehost_floor(self, database_set, new_uuid, count):
        """The same volume change as one hand-written statement, committed: its seconds."""
        connection = database_set.connect('cinder', autocommit=False)
        try:
            started = time.monotonic()
            with connection.cursor() as cursor:
                cursor.execute('UPDATE volumes SET host = %s, service_uuid = %s, updated_at = UTC_TIMESTAMP() '
                               'WHERE deleted = 0 AND host = %s', (NEW_POOL_HOST, new_uuid, OLD_HOST + '#lvm'))
                rows = cursor.rowcount
            connection.commit()
            seconds = time.monotonic() - started
        finally:
            connection.close()
        assert rows == count, (rows, count)
        return seconds

    @staticmethod
    def on_host(database_set, host):
        """Attached (generated 'volume-N') volumes on ``host``."""
        return database_set.scalar('cinder', "SELECT COUNT(*) FROM volumes WHERE host = %s AND deleted = 0 "
                                   "AND display_name LIKE 'volume-%%'", (host,))

    def cinder_manage(self, database_set, arguments, limit, while_running):
        state = os.path.join(self.workdir, 'cinder-state')
        os.makedirs(os.path.join(state, 'locks'), exist_ok=True)
        config = os.path.join(self.workdir, 'cinder.conf')
        with open(config, 'w') as stream:
            stream.write('[DEFAULT]\nstate_path = %s\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n\n'
                         '[database]\nconnection = %s\n\n[oslo_concurrency]\nlock_path = %s\n'
                         % (state, database_set.url('cinder'), os.path.join(state, 'locks')))
        measure = measured([os.path.join(self.venv, 'bin', 'cinder-manage'), '--config-file', config] + list(arguments),
                           cwd=self.workdir, limit=limit, while_running=while_running)
        if measure.rc not in (0, 'timeout'):
            raise RuntimeError('cinder-manage failed:\n%s\n%s' % (measure.stdout[-2000:], measure.stderr[-2000:]))
        return measure

    # ------------------------------------------------------------ cinder_volume_state

    def bench_volume_state(self):
        count, sample = self.options.state_volumes, self.options.loop_sample
        # The generator's stuck_detaching volumes: detaching, live attachment, Nova's BDM already gone.
        instances = count * 10
        database_set, manifest = self.cloud(instances, 0.1)
        stuck = manifest.injected['stuck_detaching']
        assert len(stuck) == count, (len(stuck), count)
        databases = dict(cinder_db=database_set.url('cinder'), nova_db=database_set.url('nova'),
                         journal_dir=self.journal_dir())
        args = dict(databases, volume=stuck, status='available')

        result, check = self.module('cinder_volume_state', args, check=True)
        rows = sum(step['rows'] for step in result['plan'])
        self.table.add('volume_state: module, check mode', count, check.seconds, measure=check,
                       notes='%d row changes planned' % rows)
        result, apply = self.module('cinder_volume_state', args)
        self.table.add('volume_state: module, apply', count, apply.seconds, ratio=apply.seconds / check.seconds,
                       measure=apply, statements=self.statements(result),
                       notes='ratio to check mode; %d plan entries for %d rows' % (len(result['plan']), rows))
        undone, undo = self.module('journal_undo', dict(databases, journal=result['journal']))
        self.table.add('volume_state: journal_undo of it', count, undo.seconds, ratio=undo.seconds / check.seconds,
                       measure=undo, statements=self.statements(undone), notes='ratio to check mode')

        play = ('- name: Reset stuck volumes\n  hosts: localhost\n  gather_facts: false\n  tasks:\n'
                '    - name: Reset them\n      stackmender.openstack.cinder_volume_state:\n'
                '        volume: %s\n        status: available\n        cinder_db: "{{ cinder_db }}"\n'
                '        nova_db: "{{ nova_db }}"\n        journal_dir: "{{ journal_dir }}"\n%s')
        one_task = self.playbook(play % ('"{{ volume_ids }}"', ''), dict(databases, volume_ids=stuck))
        self.table.add('volume_state: one task, ansible-playbook', count, one_task.seconds, ratio=1.0,
                       notes='one task with the whole list')
        # Back to the stuck state for the loop: undo through the module, from the newest journal.
        newest = max((os.path.join(self.journal_dir(), name) for name in os.listdir(self.journal_dir())
                      if 'cinder_volume_state' in name), key=os.path.getmtime)
        self.module('journal_undo', dict(databases, journal=newest))
        loop = self.playbook(play % ('"{{ item }}"', '      loop: "{{ volume_ids }}"\n'),
                             dict(databases, volume_ids=stuck[:sample]))
        scaled = loop.seconds * count / sample
        honest = 'measured %d tasks in %.1f s, scaled x%d' % (sample, loop.seconds, count // sample) \
            if sample < count else 'measured'
        self.table.add('volume_state: loop of one task per volume', count, scaled, ratio=scaled / one_task.seconds,
                       notes=honest)
        self.drop(database_set)


SECTIONS = ('startup', 'audit', 'rehost', 'volume_state')


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--quick', action='store_true', help='small sizes, a smoke test of about a minute')
    parser.add_argument('--only', default=','.join(SECTIONS), help='sections to run: %s' % ', '.join(SECTIONS))
    parser.add_argument('--audit-sizes', help='comma-separated instance counts for consistency_info')
    parser.add_argument('--rehost-volumes', type=int, help='volumes to rehost')
    parser.add_argument('--rehost-repeats', type=int, help='times the floor and the apply are each measured, '
                        'alternately; the table gives the medians')
    parser.add_argument('--state-volumes', type=int, help='stuck volumes for cinder_volume_state')
    parser.add_argument('--loop-sample', type=int, help='tasks actually run for the loop case (scaled to the rest)')
    parser.add_argument('--cinder-manage-seconds', type=float,
                        help='stop cinder-manage after this long and scale the rest from its rate (0: no limit)')
    parser.add_argument('--fraction', type=float, default=0.01, help='injected fraction per kind for the audit clouds')
    parser.add_argument('--server', choices=('private', 'shared'), help='private: start a MariaDB of our own; '
                        'shared: the test harness server')
    parser.add_argument('--buffer-pool', help='InnoDB buffer pool of a private server')
    parser.add_argument('--release', help='schema release (default: the first in releases.tsv)')
    parser.add_argument('--collection', help='run the modules of this tree instead of the checkout')
    parser.add_argument('--json', help='also write the rows to this file')
    options = parser.parse_args(argv)
    defaults = QUICK if options.quick else FULL
    for name, value in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    if isinstance(options.audit_sizes, str):
        options.audit_sizes = [int(size) for size in options.audit_sizes.split(',') if size]
    options.only = [name.strip() for name in options.only.split(',') if name.strip()]
    unknown = [name for name in options.only if name not in SECTIONS]
    if unknown:
        parser.error('unknown section(s) %s' % ', '.join(unknown))
    if options.loop_sample > options.state_volumes:
        options.loop_sample = options.state_volumes
    return options


def main(argv=None):
    options = parse(argv)
    started = time.monotonic()
    load_before = '%.1f' % os.getloadavg()[0]
    bench = Bench(options)
    interrupted = None
    try:
        for section in options.only:
            getattr(bench, 'bench_' + section)()
    except KeyboardInterrupt:
        interrupted = 'interrupted: the rows measured so far'
    finally:
        bench.close()
    if interrupted:
        print(interrupted)
    print('stackmender bench, release %s, %s server, %d CPU(s), Python %s, %.0f s in all, '
          'load average %s at the start and %s at the end\n'
          % (bench.release, options.server, os.cpu_count() or 0, platform.python_version(),
             time.monotonic() - started, load_before, '%.1f' % os.getloadavg()[0]))
    print(bench.table.markdown())
    if options.json:
        with open(options.json, 'w') as stream:
            json.dump(bench.table.rows, stream, indent=1)
    if interrupted:
        sys.exit(130)


if __name__ == '__main__':
    main()
