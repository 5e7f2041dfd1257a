# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one rule for database values that can hold a secret.

Rows leave a module in evidence, ``before``/``after``, diffs, warnings,
reports and info results. None of them may carry a credential, so every one
passes through this module. The journal is the only place that keeps whole
rows (undo needs them), and it is private (see journal.py).

A secret value is replaced by a stand-in that gives its length and a short
hash, ``<secret: 412 chars, sha256 1a2b3c4d>``: two stand-ins are equal when
the values are, so an operator can still see that a value changed, or that
two rows hold the same one. ``None`` stays ``None``.

Which columns, from the services' own models:

- Cinder: ``volume_attachment.connection_info`` (the iSCSI CHAP
  ``auth_password``, RBD keys) and ``connector``; ``volumes.provider_auth``
  and ``snapshots.provider_auth`` (``CHAP user password``);
  ``transfers.crypt_hash`` and ``salt`` (the hash of a transfer's auth key).
  ``provider_location`` holds a portal, a target and a LUN, no credential, and
  stays visible.
- Nova: ``block_device_mapping.connection_info``, ``instances.user_data``,
  ``instance_system_metadata`` rows whose key is ``password_0`` ..
  ``password_3`` (where the metadata service keeps the instance password),
  ``console_auth_tokens.token_hash``; nova_api ``build_requests.instance``
  and ``block_device_mappings`` (serialized objects holding user_data and
  connection_info), ``cell_mappings.database_connection`` and
  ``transport_url`` (URLs with passwords).
- Any nested structure: a key that names a credential (``auth_password``,
  ``secret``, ``token`` ...), which is how connection_info reads once decoded.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import re

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.cloud import secret_values

# Columns that hold a secret in whichever table they appear (their names are unique to such tables).
SECRET_COLUMNS = frozenset((
    'connection_info', 'connector', 'provider_auth', 'user_data', 'crypt_hash', 'token_hash',
    'database_connection', 'transport_url',
))
# Columns that are secret in one table only (elsewhere the name means something harmless).
SECRET_TABLE_COLUMNS = {
    'transfers': frozenset(('salt',)),
    'build_requests': frozenset(('instance', 'block_device_mappings')),
    'shadow_build_requests': frozenset(('instance', 'block_device_mappings')),
}
# instance_system_metadata (and any key/value metadata row): these keys hold a secret in ``value``.
SECRET_METADATA_KEY = re.compile(r'password|secret|token|passcode|private_key', re.IGNORECASE)
# Keys of nested structures (decoded connection_info, API bodies) whose value is a credential.
SECRET_NESTED_KEY = re.compile(r'password|secret|token|passcode|private_key|keyring', re.IGNORECASE)
STAND_IN = re.compile(r'^<secret: \d+ chars, sha256 [0-9a-f]{8}>$')


def stand_in(value):
    """The redacted form of one value: its length and a short hash; None stays None."""
    if value is None:
        return None
    if isinstance(value, str) and STAND_IN.match(value):
        return value
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode('utf-8', 'surrogateescape')
    else:
        # A decoded structure (connection_info as a dict): hashed in a stable text form.
        data = repr(_stable(value)).encode('utf-8', 'surrogateescape')
    if isinstance(value, (str, bytes)):
        size = len(value)
    else:
        size = len(data)
    return '<secret: %d chars, sha256 %s>' % (size, hashlib.sha256(data).hexdigest()[:8])


def _stable(value):
    if isinstance(value, dict):
        return sorted((str(key), _stable(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_stable(item) for item in value]
    return value


def is_secret_column(column, table=None):
    """Whether ``column`` (of ``table``, when known) can hold a secret."""
    name = str(column)
    if name in SECRET_COLUMNS:
        return True
    if table is not None:
        bare = str(table).rsplit('.', 1)[-1]
        return name in SECRET_TABLE_COLUMNS.get(bare, ())
    return False


def _secret_metadata_row(row):
    key = row.get('key')
    return isinstance(key, str) and 'value' in row and bool(SECRET_METADATA_KEY.search(key))


def redact_row(row, table=None):
    """A copy of a row (column -> value) with every secret value replaced by its stand-in."""
    if not isinstance(row, dict):
        return row
    secret_value = _secret_metadata_row(row)
    redacted = {}
    for column, value in row.items():
        if is_secret_column(column, table) or (secret_value and column == 'value'):
            redacted[column] = stand_in(value)
        elif isinstance(value, (dict, list, tuple)):
            redacted[column] = redact(value)
        else:
            redacted[column] = value
    return redacted


def redact_value(column, value, table=None, row=None):
    """One value of ``column``: its stand-in when the column can hold a secret.

    ``row`` (the rest of the row, when known) tells a password metadata value from any other.
    """
    if is_secret_column(column, table) or (column == 'value' and row is not None and _secret_metadata_row(row)):
        return stand_in(value)
    if isinstance(value, (dict, list, tuple)):
        return redact(value)
    return value


def redact(value, table=None):
    """Any structure of rows, results or decoded JSON, redacted at every depth.

    A dict is a row (``redact_row``) and more: a key naming a credential
    (``auth_password``, ``secret``, ``token`` ...) is redacted too, as is a
    dict that is the value of a secret column.
    """
    if isinstance(value, dict):
        secret_value = _secret_metadata_row(value)
        redacted = {}
        for key, item in value.items():
            if (is_secret_column(key, table) or (secret_value and key == 'value')
                    or (isinstance(key, str) and SECRET_NESTED_KEY.search(key) and item is not None
                        and not isinstance(item, (bool, int, float)) and not _is_safe_nested(key))):
                redacted[key] = stand_in(item)
            else:
                redacted[key] = redact(item)
        return redacted
    if isinstance(value, (list, tuple)):
        return [redact(item, table) for item in value]
    return value


# Keys matching SECRET_NESTED_KEY that name something harmless (ids, references, flags).
_SAFE_NESTED = re.compile(r'_id$|_uuid$|_ref$|^token_type$|_method$', re.IGNORECASE)


def _is_safe_nested(key):
    return bool(_SAFE_NESTED.search(key))


def redact_rows(rows, table=None):
    return [redact_row(row, table) for row in rows]


# ----------------------------------------------------------------- options

def url_password_forms(url):
    """Every form the password of a database URL can be shown in, read without validating the URL.

    Runs before any parsing that can fail: a URL too malformed for urlsplit (an unclosed ``[``, a
    bad port, no scheme) still has its password found, taken as the text between the first ``:``
    of the user part and the last ``@`` before the path.
    """
    try:
        from urllib.parse import quote, unquote
    except ImportError:  # pragma: no cover
        from urllib import quote, unquote  # type: ignore
    if not isinstance(url, str):
        return set()
    text = url.strip()
    rest = text.split('://', 1)[1] if '://' in text else text
    # The user part ends at the last @ before the query; a password may hold unquoted / or @.
    head = rest.split('?', 1)[0]
    if '@' not in head:
        return set()
    userinfo = head.rsplit('@', 1)[0]
    if ':' not in userinfo:
        return set()
    written = userinfo.split(':', 1)[1]
    forms = set()
    for password in (written, unquote(written)):
        if password:
            forms.update((password, quote(password, safe=''), quote(password)))
    return set(form for form in forms if form)


def database_option_secrets(value):
    """The password forms in the raw value of a ``*_db`` option (a URL, or a dict with ``url``)."""
    if isinstance(value, str):
        return url_password_forms(value)
    if isinstance(value, dict):
        return url_password_forms(value.get('url'))
    return set()


def _leaves(value):
    """Every leaf of an option value as Ansible registers the leaves of a no_log option."""
    if isinstance(value, dict):
        return set().union(set(), *(_leaves(item) for item in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(set(), *(_leaves(item) for item in value))
    if value is None or isinstance(value, bool):
        return set()
    if isinstance(value, (int, float)):
        return {str(value)}
    return {value} if isinstance(value, str) and value else set()


def register_option_secrets(module, database_options, cloud_option='cloud', auth_option='auth'):
    """Mask exactly the credentials of the connection options, before anything parses them.

    The options are ``no_log``, so Ansible registered every leaf of them: the
    cloud name, its region and user names, the config file paths. Masked
    everywhere, ``admin`` or ``database`` would vanish from every message; only
    the credentials are kept: each database URL's password (in every form a URL
    may write it) and the cloud's password, secret and token values.
    """
    params = module.params
    cloud_options = tuple(option for option in (cloud_option, auth_option) if option)
    options = tuple(database_options) + cloud_options
    leaves = set()
    keep = set()
    for option in options:
        leaves |= _leaves(params.get(option))
    for option in database_options:
        keep |= database_option_secrets(params.get(option))
    for option in cloud_options:
        keep |= secret_values(params.get(option))
    module.no_log_values.difference_update(leaves - keep)
    module.no_log_values.update(keep)
    return keep
