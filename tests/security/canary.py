"""Canaries: a distinctive string in every column that can hold a secret, and in every credential.

``Canaries`` holds two random cores. The column core goes into every
secret-bearing column of the test databases (``plant``): the iSCSI CHAP
``auth_password`` inside ``connection_info`` (Cinder attachments and Nova
BDMs), the ``connector``, ``provider_auth`` of volumes and snapshots,
``instances.user_data``, Nova's ``password_0`` .. ``password_3`` system
metadata, transfers' ``salt``/``crypt_hash``, the serialized build requests.
A journal may keep those (undo needs whole rows): the column core may appear
in the private journal and nowhere else. The credential core is in the
database password (so in every cell URL of ``cell_mappings``), in the cells'
``transport_url`` and in the cloud password: it may appear nowhere, journals
included.
"""

import base64
import json
import os
import secrets
import stat

# The text sources of a run (see channels_of); 'journal' is the only one that may hold a column canary.
CHANNELS = ('result', 'diff', 'stdout', 'stderr', 'log', 'journal')
NOVA_CELLS = ('nova', 'nova_cell0')
PASSWORD_KEYS = ('password_0', 'password_1', 'password_2', 'password_3')


class Canaries:

    def __init__(self):
        self.column_core = secrets.token_hex(8)
        self.credential_core = secrets.token_hex(8)
        self.column = 'CANARY%s' % self.column_core
        # URL metacharacters too, so every quoting of the password is exercised.
        self.db_password = 'Db#%s@:x/y' % self.credential_core
        self.cloud_password = 'Cl#%s' % self.credential_core

    def hits(self, text, journal_allowed=False):
        """The cores found in ``text`` (the column core is allowed in a journal)."""
        found = []
        if self.credential_core in text:
            found.append('credential')
        if self.column_core in text and not journal_allowed:
            found.append('column')
        return found

    def cloud(self):
        # Nothing listens on port 9 of loopback: the API path fails to connect, after reading the password.
        return {'auth': {'auth_url': 'http://127.0.0.1:9/v3', 'username': 'admin', 'password': self.cloud_password,
                         'project_name': 'admin', 'user_domain_name': 'Default', 'project_domain_name': 'Default'},
                'region_name': 'RegionOne'}

    # ------------------------------------------------------------- planting

    def _chap(self, text):
        """connection_info with the CHAP password (and a discovery one) set to the canary, its shape kept."""
        try:
            info = json.loads(text) if text else None
        except ValueError:
            info = None
        if not isinstance(info, dict):
            info = {'driver_volume_type': 'iscsi', 'data': {}}
        data = info.setdefault('data', {})
        if not isinstance(data, dict):
            info['data'] = data = {}
        data.update(auth_method='CHAP', auth_username='chapuser', auth_password='%s-chap' % self.column,
                    discovery_auth_password='%s-discovery' % self.column)
        return json.dumps(info)

    def _connector(self, text):
        try:
            connector = json.loads(text) if text else None
        except ValueError:
            connector = None
        if not isinstance(connector, dict):
            connector = {}
        connector['initiator'] = 'iqn.2004-10.org.canary:%s' % self.column
        return json.dumps(connector)

    def plant(self, dbs, has_column):
        """Put the canaries in every secret-bearing row there is now (idempotent: run it after each build)."""
        for row in dbs.query('cinder', 'SELECT id, connection_info, connector FROM volume_attachment'):
            dbs.execute('cinder', 'UPDATE volume_attachment SET connection_info = %s, connector = %s WHERE id = %s',
                        (self._chap(row['connection_info']), self._connector(row['connector']), row['id']))
        for table in ('volumes', 'snapshots'):
            dbs.execute('cinder', 'UPDATE %s SET provider_auth = %%s' % table, ('CHAP chapuser %s-auth' % self.column,))
        dbs.execute('cinder', 'UPDATE transfers SET salt = %s, crypt_hash = %s',
                    ('%s-salt' % self.column, '%s-hash' % self.column))
        user_data = base64.b64encode(('#cloud-config\npassword: %s-userdata\n' % self.column).encode()).decode()
        for cell in NOVA_CELLS:
            for row in dbs.query(cell, 'SELECT id, connection_info FROM block_device_mapping'):
                dbs.execute(cell, 'UPDATE block_device_mapping SET connection_info = %s WHERE id = %s',
                            (self._chap(row['connection_info']), row['id']))
            dbs.execute(cell, 'UPDATE instances SET user_data = %s', (user_data,))
            # Where the metadata service keeps the instance password, in four chunks.
            for instance in dbs.query(cell, 'SELECT uuid, deleted FROM instances'):
                for key in PASSWORD_KEYS:
                    if not dbs.query(cell, 'SELECT id FROM instance_system_metadata WHERE instance_uuid = %s '
                                           'AND `key` = %s', (instance['uuid'], key)):
                        dbs.execute(cell, 'INSERT INTO instance_system_metadata (created_at, instance_uuid, `key`, '
                                          '`value`, deleted) VALUES (UTC_TIMESTAMP(), %s, %s, %s, 0)',
                                    (instance['uuid'], key, '%s-%s' % (self.column, key)))
        if has_column('nova_api', 'build_requests', 'instance'):
            dbs.execute('nova_api', 'UPDATE build_requests SET instance = %s',
                        (json.dumps({'nova_object.data': {'user_data': user_data}}),))
        dbs.execute('nova_api', 'UPDATE cell_mappings SET transport_url = %s',
                    ('rabbit://nova:%s@127.0.0.1:5672/' % self.credential_core,))


def channels_of(result, journal_dir=None, log_path=None, files=()):
    """{channel: text} of one run as an operator, AWX or a log collector could see it.

    ``files``: more files the run wrote (reports), each its own channel.
    """
    shown = dict(result)
    diff = shown.pop('diff', None)
    channels = {'result': json.dumps(shown, default=str, sort_keys=True) + repr(shown),
                'diff': json.dumps(diff, default=str), 'stdout': getattr(result, 'stdout', ''),
                'stderr': getattr(result, 'stderr', '')}
    if log_path:
        channels['log'] = _read(log_path)
    if journal_dir and os.path.isdir(journal_dir):
        channels['journal'] = '\n'.join(_read(os.path.join(journal_dir, name))
                                        for name in sorted(os.listdir(journal_dir)))
    for path in files:
        channels['file:%s' % os.path.basename(path)] = _read(path)
    return channels


def _read(path):
    if not os.path.exists(path):
        return ''
    with open(path, errors='replace') as stream:
        return stream.read()


def private_journals(journal_dir):
    """Problems with the journals' privacy: a directory others can write, a file others can read."""
    problems = []
    if not os.path.isdir(journal_dir):
        return problems
    status = os.stat(journal_dir)
    if status.st_uid != os.geteuid() or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append('journal_dir %s has mode %o' % (journal_dir, stat.S_IMODE(status.st_mode)))
    for name in os.listdir(journal_dir):
        mode = stat.S_IMODE(os.stat(os.path.join(journal_dir, name)).st_mode)
        if mode & 0o077:
            problems.append('journal %s has mode %o' % (name, mode))
    return problems
