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

from ansible_collections.stackmender.openstack.plugins.module_utils.errors import ApiError, InputError

# Importing openstacksdk takes about half a second, more than many a database run: it is
# imported when the API is first used, not when every module starts.
HAS_OPENSTACKSDK = importlib.util.find_spec('openstack') is not None
OPENSTACKSDK_IMPORT_ERROR = None if HAS_OPENSTACKSDK else ImportError('No module named openstack')


@functools.lru_cache(maxsize=None)
def sdk():
    """The openstacksdk package, imported on first use."""
    try:
        import openstack
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


def cloud_configured(cloud):
    """Whether an API connection can be attempted without guessing."""
    if cloud is not None:
        return True
    return any(os.environ.get(name) for name in ('OS_CLOUD', 'OS_CLIENT_CONFIG_FILE', 'OS_AUTH_URL'))


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


def connect(cloud):
    """An openstacksdk connection for a clouds.yaml name, a dict, or the single configured cloud."""
    if not HAS_OPENSTACKSDK:
        raise ApiError('openstacksdk is required for the API path')
    try:
        if cloud is None:
            connection = sdk().connect()
        elif isinstance(cloud, str):
            connection = sdk().connect(cloud=cloud)
        elif isinstance(cloud, dict):
            connection = sdk().connect(**cloud)
        else:
            raise InputError('cloud must be a clouds.yaml name or a dict of connection settings')
        connection.authorize()
    except InputError:
        raise
    except Exception as error:  # openstacksdk's and keystoneauth's own errors (e.g. no auth_url configured)
        raise ApiError('cannot connect to the cloud: %s' % _first_line(error))
    return connection


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
            raise
