"""oslo_config.OsloConfig against oslo.config itself, on the layouts real deployments write.

Each layout is a set of files as devstack, kolla-ansible, OpenStack-Ansible, RDO/TripleO
(with conf.d directories) and the charms write them, plus the service's command line
(--config-file in order, then --config-dir). oslo.config from the release virtualenv
parses each layout, registers every option its parser found plus the options the
collection reads, and prints every value as JSON; our reader must give the same value
(or fail where oslo.config fails) for every one of them.
"""

import json
import os
import subprocess
import textwrap

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import oslo_config
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

pytestmark = pytest.mark.newest_release

# What the collection reads: the database URLs and the paths nova_image_cache_info resolves.
QUERIES = [('database', 'connection'), ('api_database', 'connection'), ('placement_database', 'connection'),
           ('DEFAULT', 'state_path'), ('DEFAULT', 'instances_path'), ('DEFAULT', 'transport_url')]

SAMPLE_HEADER = '\n'.join(['#', '# From oslo.db', '#', '', '# The SQLAlchemy connection string to use to connect to',
                           '# the database. (string value)', '# Deprecated group/name - [DEFAULT]/sql_connection',
                           '#connection = <None>', ''])

# Where TripleO's puppet-generated Cinder config lives inside its container.
TRIPLEO_CINDER = 'var/lib/config-data/puppet-generated/cinder/etc/cinder'
LAYOUTS = {
    # devstack: one nova.conf per service role, the cell conductor's in nova_cell1.conf.
    'devstack-nova-api': dict(files={'etc/nova/nova.conf': '''
        [DEFAULT]
        debug = True
        shutdown_timeout = 0
        state_path = /opt/stack/data/nova
        instances_path = /opt/stack/data/nova/instances
        transport_url = rabbit://stackrabbit:secretrabbit@10.0.0.10:5672/
        my_ip = 10.0.0.10

        [wsgi]
        api_paste_config = /etc/nova/api-paste.ini

        [api_database]
        connection = mysql+pymysql://root:secretdb@127.0.0.1/nova_api?charset=utf8

        [database]
        connection = mysql+pymysql://root:secretdb@127.0.0.1/nova_cell0?charset=utf8

        [keystone_authtoken]
        memcached_servers = localhost:11211
        cafile = /opt/stack/data/ca-bundle.pem
        project_domain_name = Default
        password = secretks
        '''}, config_files=['etc/nova/nova.conf']),
    'devstack-cell1-conductor': dict(files={'etc/nova/nova.conf': '''
        [DEFAULT]
        state_path = /opt/stack/data/nova
        transport_url = rabbit://stackrabbit:secretrabbit@10.0.0.10:5672/

        [api_database]
        connection = mysql+pymysql://root:secretdb@127.0.0.1/nova_api?charset=utf8

        [database]
        connection = mysql+pymysql://root:secretdb@127.0.0.1/nova_cell0?charset=utf8
        ''', 'etc/nova/nova_cell1.conf': '''
        [DEFAULT]
        transport_url = rabbit://stackrabbit:secretrabbit@10.0.0.10:5672/nova_cell1

        [database]
        connection = mysql+pymysql://root:secretdb@127.0.0.1/nova_cell1?charset=utf8
        '''}, config_files=['etc/nova/nova.conf', 'etc/nova/nova_cell1.conf']),
    'devstack-cinder': dict(files={'etc/cinder/cinder.conf': '''
        [DEFAULT]
        glance_api_servers = http://10.0.0.10/image
        default_volume_type = lvmdriver-1
        enabled_backends = lvmdriver-1
        state_path = /opt/stack/data/cinder
        transport_url = rabbit://stackrabbit:secretrabbit@10.0.0.10:5672/

        [database]
        connection = mysql+pymysql://root:secretdb@127.0.0.1/cinder?charset=utf8

        [lvmdriver-1]
        image_volume_cache_enabled = True
        volume_clear = zero
        lvm_type = auto
        target_helper = lioadm
        volume_group = stack-volumes-lvmdriver-1
        volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver
        volume_backend_name = lvmdriver-1
        '''}, config_files=['etc/cinder/cinder.conf']),
    # kolla-ansible: a merged file per service under /etc/kolla/<service>/, passed as one --config-file.
    'kolla-nova-conductor': dict(files={'etc/kolla/nova-conductor/nova.conf': '''
        [DEFAULT]
        debug = False
        log_dir = /var/log/kolla/nova
        state_path = /var/lib/nova
        allow_resize_to_same_host = true
        transport_url = rabbit://openstack:rabbitpw@10.1.0.11:5672,openstack:rabbitpw@10.1.0.12:5672,openstack:rabbitpw@10.1.0.13:5672//

        [conductor]
        workers = 5

        [database]
        connection = mysql+pymysql://nova:kollapw@10.1.0.250:3306/nova
        connection_recycle_time = 10
        max_pool_size = 1
        max_retries = -1

        [api_database]
        connection = mysql+pymysql://nova_api:kollapw@10.1.0.250:3306/nova_api
        connection_recycle_time = 10
        max_pool_size = 1
        max_retries = -1

        [oslo_messaging_notifications]
        transport_url = rabbit://openstack:rabbitpw@10.1.0.11:5672//
        driver = noop
        '''}, config_files=['etc/kolla/nova-conductor/nova.conf']),
    'kolla-cinder-volume': dict(files={'etc/kolla/cinder-volume/cinder.conf': '''
        [DEFAULT]
        debug = False
        log_dir = /var/log/kolla/cinder
        use_forwarded_for = true
        enabled_backends = rbd-1
        cluster = ceph
        transport_url = rabbit://openstack:rabbitpw@10.1.0.11:5672//

        [database]
        connection = mysql+pymysql://cinder:kollapw@10.1.0.250:3306/cinder
        connection_recycle_time = 10
        max_pool_size = 1
        max_retries = -1

        [rbd-1]
        volume_driver = cinder.volume.drivers.rbd.RBDDriver
        volume_backend_name = rbd-1
        rbd_pool = volumes
        rbd_ceph_conf = /etc/ceph/ceph.conf
        rbd_user = cinder
        rbd_secret_uuid = 3c1e1c52-0d0b-4c5c-9f4e-7d2e5b0c1a11
        backend_host = rbd:volumes
        '''}, config_files=['etc/kolla/cinder-volume/cinder.conf']),
    # OpenStack-Ansible: config_template output, TLS in the URL query, a password with $ written as $$.
    'openstack-ansible-nova': dict(files={'etc/nova/nova.conf': '''
        # Ansible managed

        [DEFAULT]
        use_journal = True
        state_path = /var/lib/nova
        instances_path = $state_path/instances
        transport_url = rabbit://nova:osapw@172.29.236.11:5671,nova:osapw@172.29.236.12:5671/nova?ssl=1

        [api_database]
        connection = mysql+pymysql://nova_api:osa$$pw@172.29.236.101/nova_api?charset=utf8&ssl_verify_cert=true
        max_overflow = 50
        max_pool_size = 5
        pool_timeout = 30
        connection_recycle_time = 600

        [database]
        connection = mysql+pymysql://nova:osa$$pw@172.29.236.101/nova?charset=utf8&ssl_verify_cert=true
        max_overflow = 50

        [placement]
        os_region_name = RegionOne
        auth_type = password
        '''}, config_files=['etc/nova/nova.conf']),
    'openstack-ansible-placement': dict(files={'etc/placement/placement.conf': '''
        [DEFAULT]
        debug = False
        state_path = /var/lib/placement

        [placement_database]
        connection = mysql+pymysql://placement:osapw@172.29.236.101/placement?charset=utf8
        max_overflow = 50

        [keystone_authtoken]
        insecure = False
        auth_type = password
        '''}, config_files=['etc/placement/placement.conf']),
    # RDO: the packaged nova-dist.conf first, then nova.conf (puppet style: no spaces, commented sample),
    # then nova.conf.d/*.conf with quoted values; the later file wins.
    'rdo-nova-conf-d': dict(files={'usr/share/nova/nova-dist.conf': '''
        [DEFAULT]
        log_dir = /var/log/nova
        state_path = /var/lib/nova
        lock_path = /var/lib/nova/tmp

        [database]
        connection = mysql://nova:nova@localhost/nova
        ''', 'etc/nova/nova.conf': '[DEFAULT]\n' + SAMPLE_HEADER + textwrap.dedent('''
        my_ip=172.17.0.20
        transport_url=rabbit://guest:rdopw@overcloud-controller-0.internalapi.localdomain:5672/?ssl=0

        [api_database]
        #connection = <None>
        connection=mysql+pymysql://nova_api:rdopw@172.17.0.10/nova_api?read_default_file=/etc/my.cnf.d/tripleo.cnf&read_default_group=tripleo

        [database]
        connection=mysql+pymysql://nova:rdopw@172.17.0.10/nova?read_default_file=/etc/my.cnf.d/tripleo.cnf&read_default_group=tripleo
        '''), 'etc/nova/nova.conf.d/50-database.conf': '''
        [database]
        connection = "mysql+pymysql://nova:rdo'quoted@172.17.0.10/nova_cell1"
        ''', 'etc/nova/nova.conf.d/90-paths.conf': '''
        [DEFAULT]
        instances_path = '${state_path}/instances-local'
        ''', 'etc/nova/nova.conf.d/README.txt': '''
        [database]
        connection = not read: only *.conf files of a config dir are read
        '''}, config_dirs=['etc/nova/nova.conf.d'],
        config_files=['usr/share/nova/nova-dist.conf', 'etc/nova/nova.conf']),
    # TripleO: puppet-generated config in the container's config dir, overrides in a conf.d.
    'tripleo-cinder': dict(files={'var/lib/config-data/puppet-generated/cinder/etc/cinder/cinder.conf': '''
        [DEFAULT]
        enabled_backends=tripleo_ceph
        host=hostgroup
        transport_url=rabbit://guest:tripleopw@overcloud-controller-0.internalapi.localdomain:5672/?ssl=0
        [database]
        connection=mysql+pymysql://cinder:tripleopw@172.17.0.10/cinder?read_default_file=/etc/my.cnf.d/tripleo.cnf&read_default_group=tripleo
        max_retries=-1
        db_max_retries=-1
        [tripleo_ceph]
        backend_host=hostgroup
        volume_backend_name=tripleo_ceph
        volume_driver=cinder.volume.drivers.rbd.RBDDriver
        ''', 'var/lib/config-data/puppet-generated/cinder/etc/cinder/cinder.conf.d/zz-override.conf': '''
        [Database]
        max_retries = 10
        '''}, config_files=[TRIPLEO_CINDER + '/cinder.conf'], config_dirs=[TRIPLEO_CINDER + '/cinder.conf.d']),
    # Charms: the Juju warning banner, [DEFAULT] keys a naive reader would leak into [database].
    'charms-nova-cloud-controller': dict(files={'etc/nova/nova.conf': '''
        ###############################################################################
        # [ WARNING ]
        # Configuration file maintained by Juju. Local changes may be overwritten.
        ###############################################################################
        [DEFAULT]
        verbose=False
        debug=False
        connection = sqlite:////var/lib/nova/leaked.sqlite
        max_pool_size = 99
        transport_url = rabbit://nova:charmpw@10.5.0.21:5672/openstack

        [api_database]
        connection = mysql+pymysql://nova:charmpw@10.5.0.30/nova_api
        max_pool_size = 4

        [database]
        connection = mysql+pymysql://nova:charmpw@10.5.0.30/nova

        [placement_database]

        [cells]
        enable = False
        '''}, config_files=['etc/nova/nova.conf']),
    'charms-cinder': dict(files={'etc/cinder/cinder.conf': '''
        ###############################################################################
        # [ WARNING ]
        # cinder configuration file maintained by Juju
        # local changes may be overwritten.
        ###############################################################################
        [DEFAULT]
        rootwrap_config = /etc/cinder/rootwrap.conf
        api_paste_confg = /etc/cinder/api-paste.ini
        iscsi_helper = tgtadm
        volume_name_template = volume-%s
        volume_group = cinder-volumes
        auth_strategy = keystone
        state_path = /var/lib/cinder
        volumes_dir = /var/lib/cinder/volumes
        enabled_backends = cinder-ceph
        [database]
        connection = mysql+pymysql://cinder:charm#pw;x@10.5.0.30/cinder
        connection_recycle_time = 600
        [cinder-ceph]
        volume_backend_name = cinder-ceph
        volume_driver = cinder.volume.drivers.rbd.RBDDriver
        rbd_pool = cinder-ceph
        rbd_user = cinder-ceph
        '''}, config_files=['etc/cinder/cinder.conf']),
    # Hand-written files: colon assignments, multi-line values, repeated sections and keys,
    # case of keys and groups, interpolation across groups, escapes.
    'hand-edited': dict(files={'etc/nova/nova.conf': '''
        [DEFAULT]
        state_path: /srv/nova
        db_host = db.example.org
        instances_path = ${state_path}/instances
        transport_url = rabbit://u:p@$db_host:5672/

        [database]
        connection = mysql+pymysql://nova:first@db/nova
        Connection = mysql+pymysql://nova:case@db/nova_wrong
        slave_connection = $connection

        [API_DATABASE]
        connection = mysql+pymysql://nova:p\\$w@$db_host/nova_api
        backend = sqlalchemy

        [database]
        connection = mysql+pymysql://nova:second@db/nova
        mysql_sql_mode = TRADITIONAL
        \tNO_ZERO_DATE

        [placement_database]
        connection = mysql+pymysql://placement:pw@${api_database.backend}/placement
        min_pool_size = '1
        quoted_single = 'it'
        quoted_mixed = "mixed'
        only_quote = "
        '''}, config_files=['etc/nova/nova.conf']),
    # Errors oslo.config raises, which must be errors here too (nothing guessed).
    'error-unset-reference': dict(files={'nova.conf': '''
        [database]
        connection = mysql+pymysql://nova:pw@$nowhere/nova
        '''}, config_files=['nova.conf']),
    'error-indented-after-blank': dict(files={'nova.conf': '''
        [database]
        connection = mysql+pymysql://nova:pw@db/nova

          indented = after a blank line
        '''}, config_files=['nova.conf']),
    'error-option-before-section': dict(files={'nova.conf': '''
        connection = mysql+pymysql://nova:pw@db/nova
        [database]
        '''}, config_files=['nova.conf']),
}

# Run with the release virtualenv's python: oslo.config parses, registers and reads.
OSLO_SCRIPT = r'''
import json, sys
from oslo_config import cfg

results = {}
for name, layout in json.load(sys.stdin).items():
    conf = cfg.ConfigOpts()
    args = []
    for path in layout['config_files']:
        args += ['--config-file', path]
    for path in layout['config_dirs']:
        args += ['--config-dir', path]
    try:
        conf(args, project='stackmender-corpus', default_config_files=[], default_config_dirs=[])
    except Exception as error:
        results[name] = {'error': type(error).__name__}
        continue
    found = set()
    for sections in conf._namespace._normalized:
        for group, options in sections.items():
            found.update((group, option) for option in options)
    wanted = found | set(tuple(query) for query in layout['queries'])
    for group, option in sorted(wanted):
        conf.register_opt(cfg.StrOpt(option), group=None if group == 'DEFAULT' else group)
    values = {}
    for group, option in sorted(wanted):
        try:
            values['%s.%s' % (group, option)] = conf[option] if group == 'DEFAULT' else conf[group][option]
        except Exception as error:
            values['%s.%s' % (group, option)] = {'error': type(error).__name__}
    results[name] = {'found': sorted('%s.%s' % item for item in found), 'values': values}
json.dump(results, sys.stdout)
'''


def write_layouts(root):
    """Every layout's files under root/<layout>/; the command line of each, with absolute paths."""
    command_lines = {}
    for name, layout in LAYOUTS.items():
        base = os.path.join(root, name)
        for relative, text in layout['files'].items():
            path = os.path.join(base, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as handle:
                handle.write(textwrap.dedent(text).lstrip('\n'))
        command_lines[name] = dict(config_files=[os.path.join(base, path) for path in layout['config_files']],
                                   config_dirs=[os.path.join(base, path) for path in layout.get('config_dirs', [])],
                                   queries=QUERIES)
    return command_lines


@pytest.fixture(scope='module')
def corpus(tmp_path_factory, openstack_venv):
    root = str(tmp_path_factory.mktemp('oslo-corpus'))
    command_lines = write_layouts(root)
    python = os.path.join(openstack_venv, 'bin', 'python')
    result = subprocess.run([python, '-c', OSLO_SCRIPT], input=json.dumps(command_lines), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return command_lines, json.loads(result.stdout)


def ours(command_line, keys):
    """What our reader gives for each 'group.option' of keys, errors as {'error': ...}."""
    try:
        config = oslo_config.OsloConfig(command_line['config_files'], command_line['config_dirs'],
                                        defaults=dict((tuple(query), None) for query in command_line['queries']))
    except InputError:
        return {'error': 'InputError'}, None
    values = {}
    for key in keys:
        group, option = key.split('.', 1)
        try:
            values[key] = config.get(group, option)
        except InputError:
            values[key] = {'error': 'InputError'}
    found = sorted('%s.%s' % (group, option) for _path, groups in config.files
                   for group, options in groups.items() for option in options)
    return values, sorted(set(found))


def compare(command_line, theirs):
    """(agreeing, total, disagreements) of one layout."""
    if 'error' in theirs:
        mine, _found = ours(command_line, [])
        agree = 'error' in mine
        return int(agree), 1, [] if agree else ['oslo.config fails (%s), ours does not' % theirs['error']]
    mine, found = ours(command_line, sorted(theirs['values']))
    if found is None:
        return 0, 1, ['ours fails to read the layout, oslo.config reads it']
    problems = [] if found == theirs['found'] else ['options found differ: ours %s, oslo %s' % (found, theirs['found'])]
    agree = 0
    for key, value in theirs['values'].items():
        if isinstance(value, dict):
            same = isinstance(mine[key], dict)
        else:
            same = mine[key] == value
        agree += same
        if not same:
            problems.append('%s: ours %r, oslo.config %r' % (key, mine[key], value))
    return agree, len(theirs['values']), problems


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_layout_reads_as_oslo_config_reads_it(corpus, name):
    command_lines, results = corpus
    agree, total, problems = compare(command_lines[name], results[name])
    assert not problems, problems
    assert agree == total


def test_agreement_figures(corpus, capsys):
    command_lines, results = corpus
    rows, agree_all, total_all = [], 0, 0
    for name in sorted(LAYOUTS):
        agree, total, _problems = compare(command_lines[name], results[name])
        agree_all += agree
        total_all += total
        rows.append('%-32s %3d/%-3d' % (name, agree, total))
    with capsys.disabled():
        print('\noslo.config agreement: %d layouts, %d/%d options agree\n  %s'
              % (len(LAYOUTS), agree_all, total_all, '\n  '.join(rows)))
    assert agree_all == total_all
    # The corpus is not trivial: every layout compares options, and the errors are real errors.
    assert total_all > 150
    assert sum('error' in results[name] or any(isinstance(v, dict) for v in results[name]['values'].values())
               for name in LAYOUTS) == 3


def test_what_the_corpus_shows_for_the_database_urls(corpus):
    # The decisive values, spelled out (on top of the comparison): no [DEFAULT] leak, the
    # conf.d file wins and is unquoted, $$ and \$ escapes, repeated sections merged.
    command_lines, results = corpus
    values = dict((name, ours(command_lines[name], [q[0] + '.' + q[1] for q in QUERIES])[0]) for name in LAYOUTS)
    assert values['charms-nova-cloud-controller']['placement_database.connection'] is None
    assert values['rdo-nova-conf-d']['database.connection'] == "mysql+pymysql://nova:rdo'quoted@172.17.0.10/nova_cell1"
    assert values['rdo-nova-conf-d']['DEFAULT.instances_path'] == '/var/lib/nova/instances-local'
    assert values['openstack-ansible-nova']['database.connection'].startswith('mysql+pymysql://nova:osa$pw@')
    assert values['hand-edited']['api_database.connection'] == 'mysql+pymysql://nova:p$w@db.example.org/nova_api'
    assert values['hand-edited']['database.connection'] == 'mysql+pymysql://nova:second@db/nova'
    assert values['devstack-cell1-conductor']['database.connection'].endswith('/nova_cell1?charset=utf8')
    assert values['charms-cinder']['database.connection'] == 'mysql+pymysql://cinder:charm#pw;x@10.5.0.30/cinder'


def test_errors_never_show_values(tmp_path):
    path = tmp_path / 'nova.conf'
    path.write_text('[database]\nconnection = mysql://nova:TopSecret@$nowhere/nova\n\n  TopSecret2\n')
    with pytest.raises(InputError) as raised:
        oslo_config.OsloConfig([str(path)], what='nova_db')
    assert 'TopSecret' not in raised.value.msg and 'line 4' in raised.value.msg
    path.write_text('[database]\nconnection = mysql://nova:TopSecret@$nowhere/nova\n')
    with pytest.raises(InputError) as raised:
        oslo_config.OsloConfig([str(path)], what='nova_db').get('database', 'connection')
    assert 'TopSecret' not in raised.value.msg and '$nowhere' in raised.value.msg
