"""The registry of modules the fault, security and privilege tests run.

Every entry of ``CASES`` is one way of running one module: a function that
builds a broken state with the CloudBuilder and returns the arguments that
repair it, the tables the run may write, and the grants it needs. The
secrets, SQL-template, hostile-input and least-privilege tests run every
entry, so a new module is covered by appending one entry.

To add a module:

1. write ``build_<module>(ctx)`` returning a :class:`Scenario`: the
   arguments without the ``*_db`` options and ``journal_dir`` (set ``method``
   explicitly), the logical databases whose options it needs (the first one
   gets the hostile URLs), the tables to snapshot, optionally ``verify``.
   It may be called more than once on the same databases;
2. write ``refuse_<module>(ctx)``: a state the module refuses with a guard
   (the result carries ``guards``);
3. append ``ModuleCase(...)`` to ``CASES`` with the grants of
   docs/privileges.md: ``grants`` to run it, ``undo_grants`` what
   journal_undo additionally needs to revert its journal, ``unexercised``
   for grants the scenario cannot reach, and ``hostile_options``: the
   options that take ids, statuses, paths or free text.

``ctx`` (:class:`CaseContext`) gives the builder (``ctx.cloud``), the
databases (``ctx.dbs``), Ansible (``ctx.ansible``) and administrator
database options (``ctx.admin_args``) for set-up runs.
"""

import dataclasses
import typing
import uuid

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.journal import load_journal

from tests.integration.helpers import CINDER_TABLES, NOVA_TABLES

CELL0_TABLES = [('nova_cell0', 'block_device_mapping'), ('nova_cell0', 'instances')]
LOGICAL_OPTIONS = {'cinder': 'cinder_db', 'nova': 'nova_db', 'nova_api': 'nova_api_db', 'placement': 'placement_db'}
OPTION_LOGICALS = dict((option, logical) for logical, option in LOGICAL_OPTIONS.items())


@dataclasses.dataclass
class Scenario:
    """What one run of a module gets, and what it may touch."""

    args: dict
    databases: tuple
    tables: list
    verify: typing.Optional[typing.Callable[[], None]] = None


@dataclasses.dataclass
class CaseContext:
    cloud: typing.Any
    dbs: typing.Any
    ansible: typing.Any
    journal_dir: str
    # Called after each scenario is built and before a builder applies a module to it (the canary
    # sweep plants its canaries there, so the journals the builders make hold them too).
    after_build: typing.Optional[typing.Callable[[], None]] = None

    def built(self):
        if self.after_build is not None:
            self.after_build()

    def admin_args(self, *logicals):
        return dict((LOGICAL_OPTIONS[logical], self.dbs.url(logical)) for logical in logicals)


@dataclasses.dataclass
class ModuleCase:
    name: str
    module: str
    build: typing.Callable[[CaseContext], Scenario]
    refusal: typing.Callable[[CaseContext], Scenario]
    # {logical: {privilege: [table, ...]}}; 'nova' means every cell database, cell0 included.
    grants: dict
    undo_grants: dict
    # option -> kind of hostile values to try: 'uuid_list', 'choice_list' and 'host' (a service
    # or compute host name) must be refused naming the option, 'path' must be refused as a file
    # that does not exist, 'free_text'
    # (force_reason) is accepted and stored verbatim.
    hostile_options: dict
    # Grants the scenario does not reach (with the reason in a comment): the
    # least-privilege test removes every other grant and expects a failure.
    unexercised: tuple = ()
    # The module has an API path: the secrets test also runs it against a cloud that does not answer.
    api: bool = False
    # The scenario's arguments turned into a run that takes the API (by default, method=api).
    api_args: typing.Optional[typing.Callable[[dict], dict]] = None

    def arguments_for_api(self, args):
        return self.api_args(args) if self.api_args else dict(args, method='api')

    def full_cycle_grants(self):
        return merge_grants(self.grants, self.undo_grants)

    def grant_list(self):
        """Every (logical, privilege, table) of ``grants``, sorted."""
        return sorted((logical, privilege, table) for logical, privileges in self.grants.items()
                      for privilege, tables in privileges.items() for table in tables)


def merge_grants(*many):
    merged = {}
    for grants in many:
        for logical, privileges in grants.items():
            for privilege, tables in privileges.items():
                known = merged.setdefault(logical, {}).setdefault(privilege, [])
                known.extend(table for table in tables if table not in known)
    return merged


def without_grant(grants, logical, privilege, table):
    reduced = merge_grants(grants)
    reduced[logical][privilege] = [name for name in reduced[logical][privilege] if name != table]
    return reduced


CELLS = {'nova_api': {'SELECT': ['cell_mappings']}}
NOVA_GUARD_READS = {'nova': {'SELECT': ['block_device_mapping', 'instances']}}


# --------------------------------------------------------------------------
# cinder_volume_state: volumes stuck detaching (reset), error_deleting (retire)


def _compute(cloud, host='compute1'):
    if not cloud.rows('nova', 'services', host=host):
        cloud.nova_service(host)
    return host


def build_cinder_volume_state(ctx, count=3, one_instance=False):
    """Volumes stuck detaching after Nova let go: attachment, attached_mode and worker rows remain."""
    cloud = ctx.cloud
    host = _compute(cloud)
    volumes = []
    instance = cloud.instance(host=host) if one_instance else None
    for _number in range(count):
        if not one_instance:
            instance = cloud.instance(host=host)
        volume = cloud.volume(status='detaching', attach_status='attached')
        cloud.attachment(volume, instance_uuid=instance, attached_host=host)
        cloud.worker('Volume', volume, 'detaching')
        volumes.append(volume)

    def verify():
        rows = ctx.dbs.query('cinder', 'SELECT status, attach_status FROM volumes WHERE id IN (%s)'
                             % ', '.join(['%s'] * len(volumes)), volumes)
        assert [(row['status'], row['attach_status']) for row in rows] == [('available', 'detached')] * count

    return Scenario(args=dict(volume=volumes, status='available', from_status=['detaching'], method='db'),
                    databases=('cinder', 'nova_api'), tables=CINDER_TABLES + NOVA_TABLES, verify=verify)


def refuse_cinder_volume_state(ctx):
    """A volume stuck detaching whose BDM Nova still has on a live instance."""
    cloud = ctx.cloud
    instance = cloud.instance(host=_compute(cloud))
    volume = cloud.volume(status='detaching', attach_status='attached')
    attachment = cloud.attachment(volume, instance_uuid=instance, attached_host='compute1')
    cloud.bdm(instance, volume, attachment_id=attachment)
    return Scenario(args=dict(volume=[volume], status='available', method='db'),
                    databases=('cinder', 'nova_api'), tables=CINDER_TABLES + NOVA_TABLES)


def build_cinder_volume_retire(ctx, count=2):
    """error_deleting leftovers with metadata, a worker row and the quota usage they hold."""
    cloud = ctx.cloud
    # A project of its own, so that the set can be built more than once in one cloud.
    project = uuid.uuid4().hex
    volumes = []
    for _number in range(count):
        volume = cloud.volume(status='error_deleting', size=2, project_id=project)
        cloud.volume_metadata(volume, 'purpose', 'scratch')
        cloud.admin_metadata(volume, 'readonly', 'False')
        cloud.insert('cinder', 'volume_glance_metadata', cloud._timestamps(
            {'volume_id': volume, 'key': 'image_name', 'value': 'cirros'}))
        cloud.worker('Volume', volume, 'deleting')
        volumes.append(volume)
    for resource, in_use in (('volumes', count + 1), ('gigabytes', 2 * count + 1),
                             ('volumes___DEFAULT__', count + 1), ('gigabytes___DEFAULT__', 2 * count + 1)):
        cloud.quota_usage(project, resource, in_use)

    def verify():
        rows = ctx.dbs.query('cinder', 'SELECT deleted FROM volumes WHERE id IN (%s)' % ', '.join(['%s'] * count), volumes)
        assert [row['deleted'] for row in rows] == [1] * count

    return Scenario(args=dict(volume=volumes, status='deleted', method='db'), databases=('cinder', 'nova_api'),
                    tables=CINDER_TABLES + NOVA_TABLES, verify=verify)


def refuse_cinder_volume_retire(ctx):
    volume = ctx.cloud.volume(status='error_deleting')
    ctx.cloud.snapshot(volume)
    return Scenario(args=dict(volume=[volume], status='deleted', method='db'), databases=('cinder', 'nova_api'),
                    tables=CINDER_TABLES + NOVA_TABLES)


CINDER_RESET_TABLES = ['volumes', 'volume_attachment', 'volume_admin_metadata', 'workers']
CINDER_RETIRE_TABLES = ['volumes', 'volume_attachment', 'volume_admin_metadata', 'volume_metadata', 'snapshots',
                        'transfers', 'volume_glance_metadata', 'workers', 'quota_usages', 'volume_types']

# --------------------------------------------------------------------------
# nova_bdm_purge: BDMs Nova kept after Cinder let the volume go


def build_nova_bdm_purge(ctx, count=2, purge=False):
    cloud = ctx.cloud
    host = _compute(cloud)
    instance = cloud.instance(host=host)
    bdms = []
    volumes = []
    for number in range(count):
        volume = cloud.volume(status='available', attach_status='detached')
        attachment = cloud.attachment(volume, instance_uuid=instance, attached_host=host, deleted=True,
                                      attach_status='detached')
        bdms.append(cloud.bdm(instance, volume, attachment_id=attachment, device_name='/dev/vd%s' % 'bcdefgh'[number]))
        volumes.append(volume)

    def verify():
        rows = ctx.dbs.query('nova', 'SELECT id, deleted FROM block_device_mapping WHERE id IN (%s)'
                             % ', '.join(['%s'] * count), bdms)
        if purge:
            assert rows == []
        else:
            assert [row['deleted'] for row in rows] == [row['id'] for row in rows] and len(rows) == count

    args = dict(instance=[instance], volume=volumes, method='db')
    if purge:
        args['purge'] = True
    return Scenario(args=args, databases=('nova_api', 'cinder'), tables=NOVA_TABLES + CELL0_TABLES + CINDER_TABLES,
                    verify=verify)


def build_nova_bdm_purge_rows(ctx):
    return build_nova_bdm_purge(ctx, purge=True)


def refuse_nova_bdm_purge(ctx):
    """Cinder still attaches the volume: the BDM is not stale."""
    cloud = ctx.cloud
    instance = cloud.instance(host=_compute(cloud))
    attached = cloud.attach_volume(instance)
    return Scenario(args=dict(instance=[instance], volume=[attached['volume_id']], method='db'),
                    databases=('nova_api', 'cinder'), tables=NOVA_TABLES + CELL0_TABLES + CINDER_TABLES)


# --------------------------------------------------------------------------
# journal_undo: revert what another module's run wrote


def _journal_of(ctx, case):
    """Apply ``case`` with administrator options; returns (journal path, its scenario)."""
    scenario = case.build(ctx)
    ctx.built()
    applied = ctx.ansible(case.module, dict(scenario.args, journal_dir=ctx.journal_dir,
                                            **ctx.admin_args(*scenario.databases)))
    assert not applied.failed and applied.changed, applied
    return applied['journal'], scenario


def _undo_builder(case_name):
    def build(ctx):
        journal, scenario = _journal_of(ctx, case(case_name))
        return Scenario(args=dict(journal=journal), databases=scenario.databases, tables=scenario.tables)
    build.__name__ = 'build_journal_undo_of_%s' % case_name.replace(':', '_')
    return build


def _undo_refusal(case_name):
    def refuse(ctx):
        journal, scenario = _journal_of(ctx, case(case_name))
        entries = load_journal(journal)['entries']
        # Someone changed a row the run wrote: the undo must not overwrite it.
        if case(case_name).module == 'cinder_volume_state':
            ctx.dbs.execute('cinder', "UPDATE volumes SET status = 'error' WHERE id = %s", (scenario.args['volume'][0],))
        else:
            purged = [entry['key']['id'] for entry in entries if entry['table'] == 'block_device_mapping']
            ctx.cloud.bdm(scenario.args['instance'][0], scenario.args['volume'][0], id=purged[0], device_name='/dev/vdz')
        return Scenario(args=dict(journal=journal), databases=scenario.databases, tables=scenario.tables)
    refuse.__name__ = 'refuse_journal_undo_of_%s' % case_name.replace(':', '_')
    return refuse


# --------------------------------------------------------------------------
# The registry

CASES = [
    ModuleCase(
        name='cinder_volume_state', module='cinder_volume_state',
        build=build_cinder_volume_state, refusal=refuse_cinder_volume_state,
        grants={'cinder': {'SELECT': CINDER_RESET_TABLES,
                           'UPDATE': ['volumes', 'volume_attachment', 'volume_admin_metadata'],
                           'DELETE': ['workers']},
                **NOVA_GUARD_READS, **CELLS},
        undo_grants={'cinder': {'INSERT': ['workers']}},
        api=True,
        hostile_options={'volume': 'uuid_list', 'from_status': 'choice_list', 'force_reason': 'free_text'},
    ),
    ModuleCase(
        name='cinder_volume_state:retire', module='cinder_volume_state',
        build=build_cinder_volume_retire, refusal=refuse_cinder_volume_retire,
        grants={'cinder': {'SELECT': CINDER_RETIRE_TABLES,
                           'UPDATE': ['volumes', 'volume_attachment', 'volume_admin_metadata', 'volume_metadata',
                                      'snapshots', 'transfers', 'volume_glance_metadata', 'quota_usages'],
                           'DELETE': ['workers']},
                **NOVA_GUARD_READS, **CELLS},
        undo_grants={'cinder': {'INSERT': ['workers']}},
        hostile_options={'volume': 'uuid_list'},
        # Attached volumes and volumes with snapshots are refused; transfers do not outlive error_deleting.
        unexercised=(('cinder', 'UPDATE', 'volume_attachment'), ('cinder', 'UPDATE', 'snapshots'),
                     ('cinder', 'UPDATE', 'transfers')),
    ),
    ModuleCase(
        name='nova_bdm_purge', module='nova_bdm_purge',
        build=build_nova_bdm_purge, refusal=refuse_nova_bdm_purge,
        grants={'nova': {'SELECT': ['block_device_mapping', 'instances'], 'UPDATE': ['block_device_mapping']},
                'cinder': {'SELECT': ['volume_attachment']}, **CELLS},
        undo_grants={},
        api=True,
        hostile_options={'instance': 'uuid_list', 'volume': 'uuid_list', 'force_reason': 'free_text'},
    ),
    ModuleCase(
        name='nova_bdm_purge:purge', module='nova_bdm_purge',
        build=build_nova_bdm_purge_rows, refusal=refuse_nova_bdm_purge,
        grants={'nova': {'SELECT': ['block_device_mapping', 'instances'], 'DELETE': ['block_device_mapping']},
                'cinder': {'SELECT': ['volume_attachment']}, **CELLS},
        undo_grants={'nova': {'INSERT': ['block_device_mapping']}},
        hostile_options={'instance': 'uuid_list'},
    ),
]


def case(name):
    for entry in CASES:
        if entry.name == name:
            return entry
    raise KeyError(name)


CINDER_RETIRE_WRITTEN = ['volumes', 'volume_metadata', 'volume_admin_metadata', 'volume_glance_metadata',
                         'quota_usages']
CASES += [
    ModuleCase(
        name='journal_undo:cinder_volume_state', module='journal_undo',
        build=_undo_builder('cinder_volume_state:retire'), refusal=_undo_refusal('cinder_volume_state:retire'),
        # Reads and restores the rows the retire wrote; re-inserts the worker rows it deleted.
        grants={'cinder': {'SELECT': CINDER_RETIRE_WRITTEN + ['workers'], 'UPDATE': CINDER_RETIRE_WRITTEN,
                           'INSERT': ['workers']}},
        # Undoing the undo deletes the re-inserted rows again.
        undo_grants={'cinder': {'DELETE': ['workers']}},
        hostile_options={'journal': 'path', 'force_reason': 'free_text'},
    ),
    ModuleCase(
        name='journal_undo:nova_bdm_purge', module='journal_undo',
        build=_undo_builder('nova_bdm_purge:purge'), refusal=_undo_refusal('nova_bdm_purge:purge'),
        grants={'nova': {'SELECT': ['block_device_mapping'], 'INSERT': ['block_device_mapping']}, **CELLS},
        undo_grants={'nova': {'DELETE': ['block_device_mapping']}},
        hostile_options={'journal': 'path'},
    ),
]


def _cases_of_later_modules():
    """Entries kept beside this file, one file per module: tests/security/cases/<module>.py with ``CASES``."""
    import importlib
    import pkgutil

    from tests.security import cases as package
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        found.extend(importlib.import_module('%s.%s' % (package.__name__, info.name)).CASES)
    return found


CASES += _cases_of_later_modules()
CASE_IDS = [entry.name for entry in CASES]
