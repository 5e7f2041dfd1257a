"""MariaDB accounts of their own for tests: exact grants, known passwords.

A module run under its own account can be told apart from the test's own
connections (processlist ``USER``), can be given exactly the privileges the
docs list, and carries a password the secrets tests look for.
"""

import secrets
import urllib.parse

# Nova's grants apply to every cell database a module reaches through nova_api.
CELL_LOGICALS = {'nova': ('nova', 'nova_cell0', 'nova_cell2')}


def new_password(tag='pw'):
    """A password with URL metacharacters, so quoting is exercised too."""
    return 'Sm#%s@%s:x/y' % (tag, secrets.token_hex(6))


class DatabaseUser:
    """One account on the test server, dropped by ``drop()``."""

    def __init__(self, dbs, name=None, password=None):
        self.dbs = dbs
        self.server = dbs.server
        self.name = name or 'smu_' + secrets.token_hex(5)
        self.password = password or new_password()
        self._admin('CREATE USER %s@%s IDENTIFIED BY %s', (self.name, '%', self.password))

    def _admin(self, sql, params=None):
        conn = self.server.admin_connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
        finally:
            conn.close()

    def url(self, logical, password=None):
        """The service-style URL of ``logical`` with this account's credentials."""
        credentials = '%s:%s' % (urllib.parse.quote(self.name, safe=''),
                                 urllib.parse.quote(self.password if password is None else password, safe=''))
        return 'mysql+pymysql://%s@%s:%s/%s?charset=utf8' % (credentials, self.server.host, self.server.port,
                                                             self.dbs.name(logical))

    def args(self, *logicals):
        """Module database options for ``logicals`` under this account."""
        names = {'cinder': 'cinder_db', 'nova': 'nova_db', 'nova_api': 'nova_api_db', 'placement': 'placement_db'}
        return dict((names[logical], self.url(logical)) for logical in logicals)

    def grant(self, grants):
        """Apply ``{logical: {privilege: [table, ...]}}`` table by table."""
        per_table = {}
        for logical, privileges in grants.items():
            for privilege, tables in privileges.items():
                for database in CELL_LOGICALS.get(logical, (logical,)):
                    for table in tables:
                        per_table.setdefault((database, table), set()).add(privilege)
        for (logical, table), privileges in sorted(per_table.items()):
            # Identifiers come from the registry's constants, never from module input.
            self._admin('GRANT %s ON `%s`.`%s` TO %%s@%%s' % (', '.join(sorted(privileges)), self.dbs.name(logical), table),
                        (self.name, '%'))

    def grant_all(self, logicals=('nova_api', 'nova', 'nova_cell0', 'nova_cell2', 'cinder', 'placement')):
        for logical in logicals:
            self._admin('GRANT ALL ON `%s`.* TO %%s@%%s' % self.dbs.name(logical), (self.name, '%'))

    def point_cells_here(self, password=None):
        """Rewrite nova_api.cell_mappings so cells are reached with this account, as deployments store them."""
        for logical, where in (('nova_cell0', "uuid = '00000000-0000-0000-0000-000000000000'"),
                               ('nova', "name = 'cell1'"), ('nova_cell2', "name = 'cell2'")):
            self.dbs.execute('nova_api', 'UPDATE cell_mappings SET database_connection = %%s WHERE %s' % where,
                             (self.url(logical, password),))

    def processlist(self):
        """This account's connections: id, db, command, state, info."""
        return self.dbs.query('nova_api', 'SELECT ID AS id, DB AS db, COMMAND AS command, STATE AS state, '
                                          'INFO AS info FROM information_schema.PROCESSLIST WHERE USER = %s',
                              (self.name,))

    def drop(self):
        conn = self.server.admin_connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute('SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s', (self.name,))
                for (thread_id,) in cursor.fetchall():
                    try:
                        cursor.execute('KILL %s', (thread_id,))
                    except Exception:  # already gone
                        pass
                cursor.execute('DROP USER IF EXISTS %s@%s', (self.name, '%'))
        finally:
            conn.close()
