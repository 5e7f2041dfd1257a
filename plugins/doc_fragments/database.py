# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The service database options, the same in every module.
    DOCUMENTATION = r'''
options:
  cinder_db:
    description:
      - The Cinder database, in one of three forms.
      - The URL exactly as in C([database] connection) of C(cinder.conf), for example
        V(mysql+pymysql://cinder:secret@db.example.org/cinder?charset=utf8).
      - The path of the service's own config file, for example V(/etc/cinder/cinder.conf). A string
        without C(://) is a path. The connection is read from the option's default section (C(database)
        here).
      - A dict with either C(url), or C(config_file) and/or C(config_dir), plus optionally C(section)
        (the section that holds C(connection)), the TLS files C(ca_cert), C(client_cert) and C(client_key),
        and C(ssl_mode).
      - C(ssl_mode), named as in community.postgresql, says how much TLS the connection must have. V(prefer), the
        default, is PyMySQL's own, that is the TLS files when given (C(ssl_ca) in the URL counts), and TLS whenever the
        server offers it (PyMySQL 1.2 and later).
        V(require) refuses a server that does not start TLS. V(verify-ca) also checks the server's certificate
        against C(ca_cert). V(verify-full) also checks that the certificate names the host. V(disable) never uses
        TLS. It applies to the cell databases reached through O(nova_api_db) too.
        C(config_file) is a path or a list of paths, read in order as the service's C(--config-file)
        options, a later file winning. C(config_dir) is a directory or a list of them, whose C(*.conf)
        files are read after the files in sorted order, as the service's C(--config-dir) (for example
        C(/etc/nova/nova.conf.d)).
      - Config files are read as oslo.config reads them, the same values the service sees
        (quotes stripped, C([DEFAULT]) not mixed into other sections, C($option) substitution, repeated
        sections merged).
      - The password is never shown in results, diffs, journals, warnings or error messages.
      - When the option is not given, the environment variable C(STACKMENDER_CINDER_DB) is read (a URL or a config
        file path), as the AWX credential type C(stackmender databases) sets it.
      - Modules that do not need this database ignore it, so O(cinder_db), O(nova_db),
        O(nova_api_db) and O(placement_db) can be set once for the whole collection
        through C(module_defaults) with the action group C(group/stackmender.openstack.openstack).
    type: raw
    version_added: 0.1.0
  nova_db:
    description:
      - The Nova cell database (C([database] connection) of C(nova.conf)), in the same forms as O(cinder_db).
      - With O(nova_db) alone one cell is read. The result says so (C(nova_cells.complete) is false), and
        nothing is called missing, orphaned or purgeable because it is absent from that cell.
      - Given together with O(nova_api_db), it must be one of the cells of C(cell_mappings) (same server
        and database), else the run refuses. Every cell is then read, and this one is reached with the
        credentials of O(nova_db).
      - When not given, the environment variable C(STACKMENDER_NOVA_DB) is read, as for O(cinder_db).
    type: raw
    version_added: 0.1.0
  nova_api_db:
    description:
      - The Nova API database (C([api_database] connection) of C(nova.conf); the default config
        section for config files is C(api_database)), in the same forms as O(cinder_db).
      - Every cell database of C(cell_mappings) is read, also when O(nova_db) is given. Cells are told
        apart by uuid; results name a cell C(nova:<name>), or C(nova:<uuid>) where names repeat.
        Cell0 is read but never written.
      - Cell URLs stored as templates (C({username}), C({password}), C({hostname}), C({port}),
        C({path}), C({scheme}), C({query}), C({fragment})) are filled as Nova fills them, from
        C([database] connection) of the same config files. When O(nova_api_db) is a URL, or its
        config files have no C([database] connection), the O(nova_api_db) URL stands in for it.
      - When not given, the environment variable C(STACKMENDER_NOVA_API_DB) is read, as for O(cinder_db).
    type: raw
    version_added: 0.1.0
  placement_db:
    description:
      - The Placement database (C([placement_database] connection) of C(placement.conf); the default
        config section for C(config_file) is C(placement_database)), in the same forms as O(cinder_db).
      - When not given, the environment variable C(STACKMENDER_PLACEMENT_DB) is read, as for O(cinder_db).
    type: raw
    version_added: 0.1.0
  cloud:
    description:
      - The cloud for API calls, a name in C(clouds.yaml) or a dict of connection settings.
      - When absent, the single cloud of C(OS_CLIENT_CONFIG_FILE)/C(clouds.yaml) is used,
        as AWX's OpenStack credential provides it.
      - Its credentials (C(password), secrets, tokens) are masked in every result, diff, warning and log line,
        from the start of the run; names, regions and domains stay readable.
    type: raw
    version_added: 0.1.0
  api_timeout:
    description:
      - How long should the socket layer wait before timing out for API calls (seconds), as in
        the openstack.cloud collection.
      - If this is omitted, the cloud's own C(api_timeout) from C(clouds.yaml) applies, and when
        that is not set either, 60 seconds. A service that accepts the connection and never answers
        then fails the task with a message naming its URL, instead of holding it forever.
    type: int
    version_added: 0.1.0
  auth:
    description:
      - Dictionary of authentication values, as in the openstack.cloud collection (C(auth_url), C(username),
        C(password), C(project_name), the domains). It completes or overrides the cloud's C(auth) from
        C(clouds.yaml); without O(cloud), it alone describes the cloud. Its secrets are masked like O(cloud)'s.
    type: dict
    version_added: 0.1.0
  auth_type:
    description:
      - Name of the keystoneauth plugin, for example C(password), C(token) or C(v3applicationcredential).
    type: str
    version_added: 0.1.0
  region_name:
    description:
      - Name of the region.
    type: str
    version_added: 0.1.0
  interface:
    description:
      - Endpoint URL type to fetch from the service catalog. When omitted, the cloud's own setting applies
        (C(public) unless C(clouds.yaml) says otherwise).
    type: str
    choices: [admin, internal, public]
    aliases: [endpoint_type]
    version_added: 0.1.0
  validate_certs:
    description:
      - Whether to verify the TLS certificates of the API endpoints. When omitted, the cloud's own setting
        applies (verify).
    type: bool
    aliases: [verify]
    version_added: 0.1.0
  ca_cert:
    description:
      - A path to a CA certificate bundle that verifies the API endpoints' certificates.
    type: str
    aliases: [cacert]
    version_added: 0.1.0
  client_cert:
    description:
      - A path to a client certificate for the API endpoints (with O(client_key) when it is separate).
    type: str
    aliases: [cert]
    version_added: 0.1.0
  client_key:
    description:
      - A path to the client key of O(client_cert).
    type: str
    aliases: [key]
    version_added: 0.1.0
  sdk_log_path:
    description:
      - Path of a file that openstacksdk writes its log to (requests and responses at V(DEBUG)).
    type: str
    version_added: 0.1.0
  sdk_log_level:
    description:
      - Level of the openstacksdk log in O(sdk_log_path).
    type: str
    default: INFO
    choices: [INFO, DEBUG]
    version_added: 0.1.0
  method:
    description:
      - How to make the change. V(api) uses the OpenStack APIs. V(db) changes the service
        databases directly.
      - V(auto) uses the API where it can express the change and a cloud is configured, and
        the database otherwise. The result's RV(method) and RV(method_reason) say which path
        was taken and why.
    type: str
    choices: [auto, api, db]
    default: auto
    version_added: 0.1.0
  lock_timeout:
    description:
      - Seconds to wait for row locks held by another transaction before failing cleanly,
        with nothing changed. A positive number; V(0) or less is refused.
      - Every other wait on a database is bounded too. Connecting, and the server's greeting, may
        take 10 seconds. A statement's answer may take O(lock_timeout) plus 300 seconds, so a lock
        wait still ends as a lock wait. A server that accepts the connection and never answers
        fails the task with a message naming the server (never its password).
    type: int
    default: 30
    version_added: 0.1.0
requirements:
  - PyMySQL (for the database path, and for guards that read a database given; a run that only uses the API needs none)
'''
