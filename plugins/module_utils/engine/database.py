# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Database connections in the form the OpenStack services configure them.

An option such as ``cinder_db`` is either the URL of ``[database] connection``
(``mysql+pymysql://user:pass@host/cinder?charset=utf8``) or a dict naming the
URL or the service's own config file, plus TLS files. Passwords never leave
this module except inside the PyMySQL connect call: everything shown to the
operator uses :meth:`DatabaseTarget.display`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import string

try:
    from urllib.parse import urlparse, urlsplit, unquote, parse_qsl
except ImportError:  # pragma: no cover
    from urlparse import urlparse, urlsplit, parse_qsl  # type: ignore
    from urllib import unquote  # type: ignore

try:
    import pymysql
    import pymysql.cursors
    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError as import_error:  # reported through missing_required_lib
    pymysql = None
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = import_error

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import (
    DatabaseError,
    InputError,
)
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.oslo_config import OsloConfig

# Which config-file section holds each service database's connection URL.
DEFAULT_SECTIONS = {
    'cinder_db': 'database',
    'nova_db': 'database',
    'nova_api_db': 'api_database',
    'placement_db': 'placement_database',
}

DATABASE_OPTION_KEYS = ('url', 'config_file', 'config_dir', 'section', 'ca_cert', 'client_cert', 'client_key',
                        'ssl_mode')
# TLS to the database, named as community.postgresql's ssl_mode: prefer (TLS when files are given,
# as the services' own URLs do) is the default; require refuses a server that does not start TLS;
# verify-ca also checks its certificate against ca_cert; verify-full also checks its host name.
SSL_MODES = ('disable', 'prefer', 'require', 'verify-ca', 'verify-full')
VERIFYING_SSL_MODES = ('require', 'verify-ca', 'verify-full')

# MariaDB/MySQL error numbers that deserve their own explanation.
_ACCESS_DENIED = 1045
_UNKNOWN_DATABASE = 1049
_LOCK_WAIT_TIMEOUT = 1205
_DEADLOCK = 1213
_CANNOT_CONNECT = (2002, 2003, 2005, 2006)
_CONNECTION_LOST = (2013, 2006, 1927)
_QUERY_INTERRUPTED = (1317,)


def database_option_spec():
    """Argument spec of one ``*_db`` option: a URL string or a dict."""
    return dict(type='raw')


class DatabaseTarget(object):
    """Where one service database lives, parsed and validated."""

    def __init__(self, option, host=None, port=3306, user=None, password=None, database=None,
                 unix_socket=None, charset='utf8', ssl=None, source=None, url=None, cell_template_source=None):
        self.option = option
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.unix_socket = unix_socket
        self.charset = charset
        self.ssl = ssl or {}
        self.source = source
        # The URL as written (it holds the password: never shown), and for nova_api_db the URL that
        # fills cell URL templates with where it came from: see format_cell_url.
        self.url = url
        self.cell_template_source = cell_template_source

    def display(self):
        """The URL with its password removed: safe for results and messages."""
        where = self.unix_socket if self.unix_socket and not self.host else '%s:%s' % (self.host, self.port)
        return 'mysql://%s@%s/%s' % (self.user or '', where, self.database)

    def identity(self):
        """What a journal records to recognise this database later."""
        return {'server': '%s:%s' % (self.host, self.port) if self.host else self.unix_socket,
                'database': self.database}

    def with_database(self, database):
        return DatabaseTarget(self.option, host=self.host, port=self.port, user=self.user,
                              password=self.password, database=database, unix_socket=self.unix_socket,
                              charset=self.charset, ssl=dict(self.ssl), source=self.source, url=self.url,
                              cell_template_source=self.cell_template_source)


def secret_forms(password):
    """The password as given and as it can be written inside a URL, so each form can be masked."""
    if not password:
        return set()
    try:
        from urllib.parse import quote
    except ImportError:  # pragma: no cover
        from urllib import quote  # type: ignore
    return set(form for form in (password, quote(password, safe=''), quote(password)) if form)


def parse_url(option, url, ssl=None, source=None):
    """Parse a ``[database] connection`` URL into a :class:`DatabaseTarget`."""
    if not isinstance(url, str) or not url.strip():
        raise InputError('%s: the database URL is empty' % option)
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed [ of an IPv6 host
        raise InputError('%s: the URL cannot be parsed (check the brackets of the host)' % option)
    scheme = parts.scheme.lower()
    if not (scheme.startswith('mysql') or scheme.startswith('mariadb')):
        raise InputError('%s: only MySQL/MariaDB databases are supported, the URL scheme is %r'
                         % (option, parts.scheme or '(none)'))
    database = parts.path.lstrip('/')
    if not database:
        raise InputError('%s: the URL names no database (expected mysql+pymysql://user:pass@host/dbname)' % option)
    if not re.match(r'^[A-Za-z0-9_$-]{1,64}$', database):
        # Not echoed: in a URL whose password holds an unquoted / or @, this "name" is part of the password.
        raise InputError('%s: the path of the URL is not a valid database name (1 to 64 letters, digits, _, $ or -); '
                         'a password holding /, @, : or # must be written URL-quoted (%%2F, %%40, %%3A, %%23)' % option)
    query = dict(parse_qsl(parts.query))
    try:
        port = parts.port or 3306
    except ValueError:
        raise InputError('%s: the URL has an invalid port' % option)
    tls = dict(ssl or {})
    for url_key, tls_key in (('ssl_ca', 'ca'), ('ssl_cert', 'cert'), ('ssl_key', 'key')):
        if query.get(url_key):
            tls.setdefault(tls_key, query[url_key])
    return DatabaseTarget(
        option,
        host=parts.hostname or (None if query.get('unix_socket') else 'localhost'),
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=database,
        unix_socket=query.get('unix_socket'),
        charset=query.get('charset', 'utf8'),
        ssl=tls,
        source=source,
        url=url.strip(),
    )


def _string_list(option, key, value):
    """A string or a list of strings, as a list; InputError otherwise."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise InputError('%s: %s must be a path or a list of paths' % (option, key))
    for item in items:
        if '\x00' in item:
            raise InputError('%s: %s contains a NUL byte' % (option, key))
    return items


def read_config_url(option, config_files, section, config_dirs=(), config=None):
    """``[section] connection`` of a service's config files, read as oslo.config reads them."""
    config = config or OsloConfig(config_files, config_dirs, what=option)
    url = config.get(section, 'connection')
    if url is None or not url.strip():
        raise InputError('%s: the config read (%s) has no [%s] connection%s'
                         % (option, config.describe(), section, '' if url is None else ' (it is empty)'))
    return url


def _parse_config_path(option, path):
    """A ``*_db`` string without ``://``: the path of the service's config file."""
    if '\x00' not in path and os.path.isfile(os.path.expanduser(path)):
        return parse_database_option(option, {'config_file': path})
    # Not echoed unless it looks like a path: it may be a mistyped URL with its password.
    shown = path if re.match(r'^[~./][A-Za-z0-9_./~+-]*$', path) else 'the value'
    raise InputError('%s: %s is neither a database URL (no ://) nor an existing config file' % (option, shown))


def parse_database_option(option, value):
    """Turn the raw value of a ``*_db`` option into a target, or None.

    A string with ``://`` is a URL; any other string is the path of the service's config file.
    """
    if value is None or value == '':
        return None
    if isinstance(value, str):
        if not value.strip():
            raise InputError('%s: the value is empty (give a database URL or the path of a config file)' % option)
        if '://' not in value:
            return _parse_config_path(option, value)
        value = {'url': value}
    if not isinstance(value, dict):
        raise InputError('%s must be a URL string, a config file path or a dict with url, config_file or config_dir'
                         % option)
    unknown = sorted(set(value) - set(DATABASE_OPTION_KEYS))
    if unknown:
        raise InputError('%s: unknown keys %s (allowed: %s)' % (option, ', '.join(unknown), ', '.join(DATABASE_OPTION_KEYS)))
    for key, item in value.items():
        if key in ('config_file', 'config_dir') and isinstance(item, list):
            continue
        if item is not None and not isinstance(item, str):
            raise InputError('%s: %s must be a string, got %s' % (option, key, type(item).__name__))
        if isinstance(item, str) and '\x00' in item:
            raise InputError('%s: %s contains a NUL byte' % (option, key))
    from_files = bool(value.get('config_file')) or bool(value.get('config_dir'))
    if bool(value.get('url')) == from_files:
        raise InputError('%s: give either url, or config_file and/or config_dir' % option)
    tls = {}
    for key, tls_key in (('ca_cert', 'ca'), ('client_cert', 'cert'), ('client_key', 'key')):
        if value.get(key):
            if not os.path.isfile(value[key]):
                raise InputError('%s: %s file %s does not exist' % (option, key, value[key]))
            tls[tls_key] = value[key]
    mode = value.get('ssl_mode')
    if mode is not None:
        if mode not in SSL_MODES:
            raise InputError('%s: ssl_mode must be one of %s, got %r' % (option, ', '.join(SSL_MODES), mode))
        tls['mode'] = mode
    if value.get('url'):
        target = parse_url(option, value['url'], ssl=tls, source='url')
        target.cell_template_source = (target.url, 'the nova_api_db URL') if option == 'nova_api_db' else None
        return _checked_tls(target)
    files = _string_list(option, 'config_file', value['config_file']) if value.get('config_file') else []
    dirs = _string_list(option, 'config_dir', value['config_dir']) if value.get('config_dir') else []
    config = OsloConfig(files, dirs, what=option)
    section = value.get('section') or DEFAULT_SECTIONS.get(option, 'database')
    url = read_config_url(option, files, section, dirs, config=config)
    source = '%s [%s]' % (config.paths[-1] if len(config.paths) == 1 else '+'.join(config.paths), section)
    target = _checked_tls(parse_url(option, url, ssl=tls, source=source))
    if option == 'nova_api_db':
        # Nova fills cell URL templates from [database] connection of its own config.
        # Read now, needed only if a cell URL is a template: its error is kept for that case.
        try:
            cell_default = config.get('database', 'connection')
        except InputError as error:
            target.cell_template_source = (None, error.msg)
        else:
            target.cell_template_source = ((cell_default, '[database] connection of %s' % config.describe())
                                           if cell_default and cell_default.strip() else
                                           (target.url, 'the nova_api_db URL ([database] connection is not set in %s)'
                                            % config.describe()))
    return target


def _checked_tls(target):
    mode = target.ssl.get('mode')
    files = sorted(key for key in ('ca', 'cert', 'key') if target.ssl.get(key))
    if mode == 'disable' and files:
        raise InputError('%s: ssl_mode=disable, yet TLS files are given (%s)' % (target.option, ', '.join(files)))
    if mode in ('verify-ca', 'verify-full') and not target.ssl.get('ca'):
        raise InputError('%s: ssl_mode=%s verifies the server against a CA: give ca_cert' % (target.option, mode))
    return target


def _no_tls(target):
    return ('%s: ssl_mode=%s, but the server of %s did not start TLS (it offers none); nothing was read'
            % (target.option, target.ssl.get('mode'), target.display()))


def tls_settings(tls):
    """PyMySQL's ``ssl`` argument for a target's TLS settings (files and ssl_mode); None for a plain connection."""
    mode = tls.get('mode') or 'prefer'
    files = dict((key, tls[key]) for key in ('ca', 'cert', 'key') if tls.get(key))
    if mode == 'disable':
        return None
    if mode == 'prefer':
        return files or None
    return dict(files, check_hostname=mode == 'verify-full', verify_mode=mode != 'require')


# Why a connection failed, from the socket or TLS error PyMySQL wraps: (words in its text, what to say).
_CONNECT_FAILURES = (
    (('timed out',), 'it did not answer in time (timed out); is it running, and does a firewall drop the packets?'),
    (('Connection refused',), 'the connection was refused: nothing listens on that host and port'),
    (('Name or service not known', 'nodename nor servname', 'Temporary failure in name resolution',
      'No address associated'), 'the host name does not resolve (DNS)'),
    (('CERTIFICATE_VERIFY_FAILED', 'certificate verify failed'), 'TLS: the server\'s certificate is not trusted '
                                                                 '(check ssl_ca)'),
    (('SSL', 'TLS', 'wrong version number'), 'the TLS handshake failed'),
    (('Network is unreachable', 'No route to host'), 'no route to the server (network unreachable)'),
)


def _connect_failure(text):
    for words, reason in _CONNECT_FAILURES:
        if any(word in text for word in words):
            return reason
    return 'is it running and reachable? (%s)' % text.strip().splitlines()[0][:200] if text.strip() else \
        'is it running and reachable?'


def describe_error(target, error):
    """An operator-facing sentence for a PyMySQL error (never the password)."""
    code = error.args[0] if getattr(error, 'args', None) else None
    where = target.display()
    if code == _ACCESS_DENIED:
        return 'access denied for %s: wrong user or password, or missing grants' % where
    if code == _UNKNOWN_DATABASE:
        return 'database %s does not exist on %s' % (target.database, where)
    if "SSL is required but the server doesn't support it" in str(error):
        return _no_tls(target)
    if code in _CANNOT_CONNECT:
        text = str(error).replace(target.password, '********') if target.password else str(error)
        return 'cannot connect to the database server of %s: %s' % (where, _connect_failure(text))
    if code == _LOCK_WAIT_TIMEOUT:
        return ('rows in %s are locked by another transaction; gave up after lock_timeout. '
                'Nothing was changed; retry when the other writer is done' % where)
    if code == _DEADLOCK:
        return 'deadlock detected in %s; the transaction was rolled back, nothing was changed' % where
    if code in _CONNECTION_LOST and 'timed out' in str(error):
        return ('the database server of %s did not answer in time (timed out); its transaction was rolled back'
                % where)
    if code in _CONNECTION_LOST or code in _QUERY_INTERRUPTED:
        return 'the connection to %s was lost or killed mid-transaction; the transaction was rolled back' % where
    text = str(error.args[1]) if len(getattr(error, 'args', ())) > 1 else str(error)
    if target.password:
        text = text.replace(target.password, '********')
    return 'database error on %s: %s' % (where, text)


# Seconds a statement may run beyond lock_timeout before its socket read gives up: a lock wait ends
# first as the server's own lock wait timeout, and a hung server still fails the run.
READ_TIMEOUT_MARGIN = 300
# Seconds a write to the server's socket may block (the server stopped reading).
WRITE_TIMEOUT = 120
# Values per IN (...) list of one read (Session.select_in): a few hundred keeps each statement small.
IN_CHUNK_SIZE = 500


class Session(object):
    """One connection to one service database, used for one transaction.

    Every wait is bounded: ``connect_timeout`` for the TCP connection and the server's
    greeting, ``lock_timeout`` for row and metadata locks (the server's own timeouts),
    ``lock_timeout + READ_TIMEOUT_MARGIN`` for any statement's answer and
    ``WRITE_TIMEOUT`` for sending one. A server that accepts and never answers fails
    the run with a message naming it.
    """

    def __init__(self, target, lock_timeout=30, connect_timeout=10, lock_rows=False):
        self.target = target
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or lock_timeout <= 0:
            raise InputError('lock_timeout must be a positive number of seconds, got %r' % (lock_timeout,))
        self.lock_timeout = int(lock_timeout) or 1
        self.connect_timeout = connect_timeout
        self.read_timeout = self.lock_timeout + READ_TIMEOUT_MARGIN
        self.write_timeout = WRITE_TIMEOUT
        # Reads asked to lock (query(..., lock=True)) take row locks held until commit or rollback.
        self.lock_rows = lock_rows
        self.connection = None
        self._utc_now = None

    def connect(self):
        if not HAS_PYMYSQL:
            raise DatabaseError('PyMySQL is required for the database path')
        target = self.target
        # The greeting is read with the read timeout: until connected, that is connect_timeout.
        kwargs = dict(user=target.user, password=target.password or '', database=target.database,
                      charset=target.charset or 'utf8', connect_timeout=self.connect_timeout,
                      read_timeout=self.connect_timeout, write_timeout=self.connect_timeout,
                      autocommit=False, cursorclass=pymysql.cursors.DictCursor)
        if target.unix_socket:
            kwargs['unix_socket'] = target.unix_socket
        else:
            kwargs['host'] = target.host
            kwargs['port'] = target.port
        tls = tls_settings(target.ssl)
        if tls:
            kwargs['ssl'] = tls
        elif target.ssl.get('mode') == 'disable':
            kwargs['ssl_disabled'] = True
        try:
            self.connection = pymysql.connect(**kwargs)
            # PyMySQL reads these before every read and write (it has no public setter).
            self.connection._read_timeout = self.read_timeout
            self.connection._write_timeout = self.write_timeout
            with self.connection.cursor() as cursor:
                if target.ssl.get('mode') in VERIFYING_SSL_MODES:
                    # PyMySQL goes on in plain text when the server offers no TLS: ask the server.
                    cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                    row = cursor.fetchone()
                    if not row or not row.get('Value'):
                        self.close()
                        raise DatabaseError(_no_tls(target))
                # Bounded waits for row locks; the module fails cleanly instead of hanging.
                cursor.execute('SET SESSION innodb_lock_wait_timeout = %s', (self.lock_timeout,))
                cursor.execute('SET SESSION lock_wait_timeout = %s', (self.lock_timeout,))
                if self.lock_rows:
                    # A locking read under REPEATABLE READ keeps every row it scanned locked, which
                    # without an index on its condition is the whole table; READ COMMITTED keeps
                    # only the rows that match.
                    cursor.execute('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED')
        except pymysql.err.MySQLError as error:
            self.connection = None
            raise DatabaseError(describe_error(target, error))
        except (ValueError, UnicodeError):
            # e.g. a host name that cannot be encoded for DNS (a label over 63 characters)
            self.connection = None
            raise DatabaseError('%s: cannot connect to %s: the host name is not valid' % (target.option, target.display()))
        return self

    def query(self, sql, params=None, lock=False):
        """Run a read; rows come back as dicts.

        ``lock``: on a session opened with ``lock_rows``, the rows read are locked
        (``FOR UPDATE``) until the transaction ends; elsewhere it reads as usual.
        """
        if lock and self.lock_rows:
            sql += ' FOR UPDATE'
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        except pymysql.err.MySQLError as error:
            raise DatabaseError(describe_error(self.target, error))

    def select_in(self, sql, values, before=(), after=(), lock=False, size=IN_CHUNK_SIZE):
        """Rows of ``sql`` for each of ``values``, which fill its ``{in}`` slot: ``... col IN ({in}) ...``.

        Each value is sent once, in the order first given (duplicates and None dropped), in chunks
        of at most ``size``; ``before`` and ``after`` are the parameters on either side of the list.
        Rows come chunk after chunk, each chunk in the order of ``sql``. No values, no query.
        For IN lists only: a NOT IN cannot be split in chunks. ``lock`` as for :meth:`query`.
        """
        if '{in}' not in sql:
            raise ValueError('select_in: the SQL has no {in} slot')
        unique, seen = [], set()
        for value in values:
            if value is not None and value not in seen:
                seen.add(value)
                unique.append(value)
        found = []
        for start in range(0, len(unique), size):
            chunk = unique[start:start + size]
            text = sql.replace('{in}', ', '.join(['%s'] * len(chunk)))
            params = list(before) + chunk + list(after)
            found.extend(self.query(text, params, lock=True) if lock else self.query(text, params))
        return found

    def utc_now(self):
        """The database server's UTC clock, read once per session.

        Nova compares report times with its own clock; the server's is the one every reader
        shares, and one reading keeps every comparison of a run on the same instant.
        """
        if self._utc_now is None:
            self._utc_now = self.query('SELECT UTC_TIMESTAMP() AS now')[0]['now']
        return self._utc_now

    def execute(self, sql, params=None):
        """Run a write; returns the number of rows it touched."""
        try:
            with self.connection.cursor() as cursor:
                return cursor.execute(sql, params)
        except pymysql.err.MySQLError as error:
            raise DatabaseError(describe_error(self.target, error))

    def commit(self):
        try:
            self.connection.commit()
        except pymysql.err.MySQLError as error:
            raise DatabaseError(describe_error(self.target, error))

    def rollback(self):
        if self.connection is None:
            return
        try:
            self.connection.rollback()
        except Exception:  # the connection may already be gone; nothing was committed
            pass

    def close(self):
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                pass
            self.connection = None

    def galera_state(self):
        """None on a plain server, else the wsrep status variables that matter."""
        rows = self.query("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")
        if not rows or str(rows[0]['Value']).upper() != 'ON':
            return None
        status = self.query("SHOW GLOBAL STATUS WHERE Variable_name IN "
                            "('wsrep_cluster_status', 'wsrep_ready', 'wsrep_local_state_comment')")
        return dict((row['Variable_name'], row['Value']) for row in status)

    def require_writable_node(self):
        """Refuse to write on a Galera node that is not Primary and ready."""
        state = self.galera_state()
        if state is None:
            return
        if state.get('wsrep_cluster_status') != 'Primary' or str(state.get('wsrep_ready')).upper() != 'ON':
            raise DatabaseError(
                'refusing to write to %s: this Galera node is not part of the Primary component '
                '(wsrep_cluster_status=%s, wsrep_ready=%s); run against a healthy node'
                % (self.target.display(), state.get('wsrep_cluster_status'), state.get('wsrep_ready')),
                galera=state)


def _template_values(url):
    """The fields Nova fills a cell URL template with (CellMapping._format_url), from ``url``."""
    parts = urlparse(url)
    values = {
        'username': parts.username,
        'password': parts.password,
        'hostname': parts.hostname,
        'port': parts.port,
        'scheme': parts.scheme,
        'query': parts.query,
        'fragment': parts.fragment,
        'path': parts.path.lstrip('/'),
    }
    # oslo.messaging-style lists of hosts (user:pass@host:port,user2:pass@host2:port) are
    # numbered from 1: username1, password1, hostname1, port1, ...
    if ',' in parts.netloc:
        for index, netloc in enumerate(parts.netloc.split(','), 1):
            userpass, _at, hostport = netloc.partition('@') if '@' in netloc else ('', '', netloc)
            user, colon, password = userpass.partition(':')
            host, port = _split_host_port(hostport)
            values.update({'username%d' % index: user, 'password%d' % index: password if colon else None,
                           'hostname%d' % index: host, 'port%d' % index: port})
    return values


def _split_host_port(hostport):
    """host and port (int or None) of ``host``, ``host:port`` or ``[v6]:port``."""
    if hostport.startswith('['):
        host, _bracket, rest = hostport[1:].partition(']')
        port = rest[1:] if rest.startswith(':') else ''
    elif hostport.count(':') == 1:
        host, _colon, port = hostport.partition(':')
    else:
        host, port = hostport, ''
    return host, int(port) if port.isdigit() else None


def format_cell_url(template, api_target):
    """Resolve a ``cell_mappings.database_connection`` that may be a template.

    Nova lets cell URLs use ``{username}``, ``{password}``, ``{hostname}``, ``{port}``,
    ``{path}``, ``{scheme}``, ``{query}`` and ``{fragment}``, filled from ``[database]
    connection`` of its own config. When ``nova_api_db`` was read from nova.conf, that is
    the URL used here; when it was given as a URL, that URL stands in for it.
    """
    if '{' not in template:
        return template
    source = getattr(api_target, 'cell_template_source', None)
    if not source:
        source = (api_target.url, 'the nova_api_db URL')
    url, where = source
    if url is None:
        raise InputError('cannot resolve the cell database URL template in nova_api.cell_mappings: %s' % where)
    try:
        values = _template_values(url)
        fields = set(field.split('.')[0].split('[')[0]
                     for _text, field, _spec, _conv in string.Formatter().parse(template) if field)
    except ValueError:
        raise InputError('cannot resolve the cell database URL template in nova_api.cell_mappings: '
                         'the template or %s cannot be parsed' % where)
    unset = sorted(field for field in fields if values.get(field, '') is None)
    unknown = sorted(field for field in fields if field not in values)
    if unknown or unset:
        raise InputError('cannot resolve the cell database URL template in nova_api.cell_mappings: %s'
                         % ('it uses %s, which Nova does not fill' % ', '.join('{%s}' % f for f in unknown)
                            if unknown else
                            '%s has no %s' % (where, ', '.join(unset))))
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise InputError('cannot resolve the cell database URL template in nova_api.cell_mappings')
