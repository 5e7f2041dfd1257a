# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The OpenStack API side: an openstacksdk connection and planned API calls.

``cloud`` is optional: without it openstacksdk picks the only cloud of
``OS_CLIENT_CONFIG_FILE``/``clouds.yaml`` (or ``OS_CLOUD``), which is what
AWX's OpenStack credential provides. Every call a module plans is an
:class:`ApiCall` naming the service, the call, the microversion and the
arguments, so check mode can show it and apply can run exactly it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import functools
import importlib.util
import os
import time

from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import ApiError, InputError

# Importing openstacksdk takes about half a second, more than many a database run: it is
# imported when the API is first used, not when every module starts.
HAS_OPENSTACKSDK = importlib.util.find_spec('openstack') is not None
OPENSTACKSDK_IMPORT_ERROR = None if HAS_OPENSTACKSDK else ImportError('No module named openstack')
# The oldest openstacksdk the API paths are tested with (its 1.0 made the proxies' current API).
MINIMUM_OPENSTACKSDK = (1, 0, 0)


def openstacksdk_version():
    """The installed openstacksdk's version as a tuple of numbers, read without importing it; None if unknown."""
    try:
        from importlib import metadata
        text = metadata.version('openstacksdk')
    except Exception:  # not installed as a distribution (a source checkout): nothing to compare
        return None
    numbers = []
    for part in text.split('.')[:3]:
        digits = ''.join(character for character in part if character.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def openstacksdk_problem():
    """Why the API path cannot run here (missing or too old openstacksdk), or None."""
    if not HAS_OPENSTACKSDK:
        return 'openstacksdk'
    version = openstacksdk_version()
    if version is not None and version < MINIMUM_OPENSTACKSDK:
        return 'openstacksdk >= %s (found %s)' % ('.'.join(map(str, MINIMUM_OPENSTACKSDK)), '.'.join(map(str, version)))
    return None


@functools.lru_cache(maxsize=None)
def sdk():
    """The openstacksdk package, imported on first use."""
    try:
        import openstack
        import openstack.config
        import openstack.exceptions
        import openstack.utils
    except ImportError as error:
        raise ApiError('openstacksdk is installed but cannot be imported: %s' % error)
    return openstack


def __getattr__(name):
    """``cloud.openstack`` for the modules: the package, imported on first use."""
    if name == 'openstack':
        return sdk()
    raise AttributeError(name)


def clouds_yaml_files():
    """The clouds.yaml files openstacksdk reads, where they exist (checked without importing it)."""
    candidates = []
    if os.environ.get('OS_CLIENT_CONFIG_FILE'):
        candidates.append(os.environ['OS_CLIENT_CONFIG_FILE'])
    config_home = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    for directory in (os.getcwd(), os.path.join(config_home, 'openstack'), '/etc/openstack'):
        candidates.extend(os.path.join(directory, name) for name in ('clouds.yaml', 'clouds.yml'))
    return [path for path in candidates if os.path.isfile(path)]


def cloud_configured(cloud):
    """Whether an API connection can be attempted without guessing: the option cloud, OS_* or a clouds.yaml."""
    if cloud is not None:
        return True
    if any(os.environ.get(name) for name in ('OS_CLOUD', 'OS_AUTH_URL')):
        return True
    return bool(clouds_yaml_files())


def _check_cloud_name(cloud):
    """Refuse a cloud name clouds.yaml does not have, and an unnamed choice among several, listing the clouds."""
    try:
        config = sdk().config.OpenStackConfig()
    except Exception as error:  # a clouds.yaml that does not parse
        raise InputError('cannot read clouds.yaml: %s' % _first_line(error))
    names = sorted(name for name in config.cloud_config.get('clouds', {}) if name not in ('defaults', 'envvars'))
    where = config.config_filename or 'no clouds.yaml found'
    if isinstance(cloud, str) and cloud not in config.cloud_config.get('clouds', {}):
        raise InputError('cloud %r is not in clouds.yaml (%s): %s' % (
            cloud, where, 'the clouds there are ' + ', '.join(names) if names else 'it names no cloud'))
    if cloud is None and config.default_cloud is None:
        raise InputError('clouds.yaml (%s) has several clouds and none is named: name one of: %s '
                         '(the option cloud, or OS_CLOUD)' % (where, ', '.join(names)))


SECRET_KEY_PARTS = ('password', 'secret', 'token', 'passcode')


def secret_values(cloud):
    """Values of a cloud dict that are credentials (password, *_secret, token, ...), at any depth."""
    found = set()
    if isinstance(cloud, dict):
        for key, value in cloud.items():
            if isinstance(value, (dict, list)):
                found |= secret_values(value)
            elif isinstance(value, str) and value and any(part in str(key).lower() for part in SECRET_KEY_PARTS):
                found.add(value)
    elif isinstance(cloud, list):
        for value in cloud:
            found |= secret_values(value)
    return found


# Seconds an API request may wait for the socket when neither api_timeout nor clouds.yaml sets a timeout:
# without one, a service that accepts the connection and never answers holds the task forever.
DEFAULT_API_TIMEOUT = 60


# The module options of openstack.cloud's connection, and the openstacksdk settings they set.
CONNECTION_OPTIONS = (('auth', 'auth'), ('auth_type', 'auth_type'), ('region_name', 'region_name'),
                      ('interface', 'interface'), ('validate_certs', 'verify'), ('ca_cert', 'cacert'),
                      ('client_cert', 'cert'), ('client_key', 'key'))


def connection_settings(params):
    """openstacksdk settings from the connection options given (those not given leave clouds.yaml's own)."""
    return dict((setting, params[option]) for option, setting in CONNECTION_OPTIONS if params.get(option) is not None)


def enable_sdk_log(path, level):
    """openstacksdk's own log to a file, as openstack.cloud's sdk_log_path does (credentials are not logged by it)."""
    if path:
        import logging
        sdk().enable_logging(debug=level == 'DEBUG', path=path)
        logging.getLogger('keystoneauth').setLevel(logging.INFO)


def connect(cloud, api_timeout=None, settings=None):
    """An openstacksdk connection for a clouds.yaml name, a dict, or the single configured cloud.

    ``api_timeout`` (seconds) bounds every request, as the option of openstack.cloud does; when
    it is None, the cloud's own ``api_timeout`` applies, else :data:`DEFAULT_API_TIMEOUT`.
    ``settings`` are the other connection options given (connection_settings), over clouds.yaml's.
    """
    problem = openstacksdk_problem()
    if problem:
        raise InputError('the API path needs %s on the host that runs the module' % problem)
    if api_timeout is not None and api_timeout <= 0:
        raise InputError('api_timeout must be a positive number of seconds, got %s' % api_timeout)
    settings = dict(settings or {})
    if api_timeout is not None:
        settings['api_timeout'] = api_timeout
    if not isinstance(cloud, dict) and not (cloud is None and settings.get('auth')):
        _check_cloud_name(cloud)
    try:
        if cloud is None:
            connection = sdk().connect(**settings)
        elif isinstance(cloud, str):
            connection = sdk().connect(cloud=cloud, **settings)
        elif isinstance(cloud, dict):
            connection = sdk().connect(**dict(cloud, **settings))
        else:
            raise InputError('cloud must be a clouds.yaml name or a dict of connection settings')
        session = getattr(connection, 'session', None)
        if session is not None and getattr(session, 'timeout', None) is None:
            # keystoneauth passes the session's timeout to every request that sets none.
            session.timeout = float(DEFAULT_API_TIMEOUT)
        connection.authorize()
    except InputError:
        raise
    except Exception as error:  # openstacksdk's and keystoneauth's own errors (e.g. no auth_url configured)
        raise ApiError('cannot connect to the cloud: %s' % _first_line(error))
    return connection


def _is_transport_error(error):
    """keystoneauth's errors of the connection itself (timeout, refused, reset): not openstacksdk's."""
    try:
        from keystoneauth1 import exceptions as ks_exceptions
    except ImportError:
        return False
    return isinstance(error, (ks_exceptions.ConnectFailure, ks_exceptions.ConnectTimeout,
                              ks_exceptions.UnknownConnectionError))


def negotiated_microversion(proxy, client_maximum):
    """The microversion openstacksdk uses for a resource: the highest both sides support."""
    try:
        return sdk().utils.maximum_supported_microversion(proxy, client_maximum) or client_maximum
    except Exception:  # the plan still names the client's maximum; the call itself negotiates
        return client_maximum


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__


def translate(error, doing):
    """An ApiError with the HTTP status and the API's own response body."""
    details = {}
    status = getattr(error, 'status_code', None)
    response = getattr(error, 'response', None)
    if response is not None:
        details['status_code'] = response.status_code
        try:
            details['response_body'] = response.json()
        except ValueError:
            details['response_body'] = response.text[:2000]
    message = getattr(error, 'details', None) or _first_line(error)
    if status == 403:
        return ApiError('%s was refused by policy (403 Forbidden): %s. The cloud user needs the admin role '
                        'for this action' % (doing, message), **details)
    return ApiError('%s failed%s: %s' % (doing, ' (HTTP %s)' % status if status else '', message), **details)


class ApiCall(object):
    """One planned API call: shown in check mode, executed when applying."""

    def __init__(self, service, call, arguments, run, microversion=None, resource=None, note=None,
                 before=None, after=None):
        self.service = service
        self.call = call
        self.arguments = arguments
        self.microversion = microversion
        self.resource = resource
        self.note = note
        self.before = before or {}
        self.after = after or {}
        self._run = run

    def describe(self):
        entry = dict(kind='api', service=self.service, call=self.call, arguments=self.arguments,
                     microversion=self.microversion)
        if self.note:
            entry['why'] = self.note
        return entry

    def execute(self):
        try:
            return self._run()
        except ApiError:
            raise
        except Exception as error:  # openstacksdk raises its own hierarchy; keep the body
            if HAS_OPENSTACKSDK and isinstance(error, sdk().exceptions.SDKException):
                raise translate(error, '%s %s on %s' % (self.service, self.call, self.resource))
            if _is_transport_error(error):  # a timeout or a lost connection: the request's URL names the server
                raise ApiError('%s %s on %s failed: %s' % (self.service, self.call, self.resource, _first_line(error)))
            raise


# Seconds between two read-backs while waiting for the cloud.
POLL_SECONDS = 2


def wait_until(pending, timeout, what, interval=POLL_SECONDS, clock=time.monotonic, sleep=time.sleep):
    """Poll ``pending()`` until it returns nothing, for at most ``timeout`` seconds: the one wait of every module.

    ``pending()`` returns {name: state shown} of what is not finished yet. At the timeout the
    ApiError names every pending resource with its last state; the cloud keeps working on the
    requests it accepted, so a re-run plans again from what is done by then.
    """
    deadline = clock() + timeout
    while True:
        left = pending()
        if not left:
            return
        if clock() >= deadline:
            raise ApiError('%d %s within timeout (%s s): %s. The cloud keeps working on the requests it accepted; '
                           're-run to check again' % (len(left), what, timeout, ', '.join(sorted(left))),
                           pending=[dict(name=name, state=state) for name, state in sorted(left.items())])
        sleep(interval)


DONE = 'done'
FAILED = 'failed'
NOT_RUN = 'not run'


def run_calls(calls, progress=None):
    """Execute planned calls in order; a failure says which calls were done, which failed, which never ran.

    The ApiError raised carries ``calls``: every call of the plan (as in the result's ``plan``)
    with its ``outcome`` (done, failed or not run), so the operator knows what the cloud
    already holds. Returns the same list when every call was done. ``progress`` is given
    that list after each call that succeeded (the journal of the run keeps it on disk).
    """
    outcomes = [NOT_RUN] * len(calls)
    for index, call in enumerate(calls):
        try:
            call.execute()
        except ApiError as error:
            outcomes[index] = FAILED
            error.details['calls'] = _call_outcomes(calls, outcomes)
            if len(calls) > 1:
                done = [_call_name(calls[number]) for number, outcome in enumerate(outcomes) if outcome == DONE]
                skipped = [_call_name(calls[number]) for number, outcome in enumerate(outcomes) if outcome == NOT_RUN]
                error.msg = ('%s. API call %d of %d failed; done before it: %s; not run: %s. The calls done are not '
                             'undone (the journal lists them): re-run this task to plan again from the current state'
                             % (error.msg, index + 1, len(calls), ', '.join(done) or 'none',
                                ', '.join(skipped) or 'none'))
            raise
        outcomes[index] = DONE
        if progress is not None and index + 1 < len(calls):
            progress(_call_outcomes(calls, outcomes))
    return _call_outcomes(calls, outcomes)


def _call_name(call):
    return '%s %s' % (call.service, call.call)


def _call_outcomes(calls, outcomes):
    return [dict(call.describe(), outcome=outcome) for call, outcome in zip(calls, outcomes)]
