"""The lab's configuration files, written into <lab>/etc.

oslo.config reads `$name` as a reference to another option, so every path
here is written out in full rather than through variables.
"""

import os
import shutil

from . import settings


def render(sections):
    """INI text from {section: {key: value}}; None values are left out."""
    lines = []
    for section, options in sections.items():
        lines.append("[%s]" % section)
        for key, value in options.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            lines.append("%s = %s" % (key, value))
        lines.append("")
    return "\n".join(lines)


def write(path, sections):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(sections))


def _password_auth(lab, user):
    """keystoneauth password options for one of the lab's service users."""
    return {
        "auth_type": "password",
        "auth_url": lab.auth_url,
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": user,
        "password": service_password(user),
        "region_name": settings.REGION,
    }


def _authtoken(lab, user):
    """[keystone_authtoken]: real token validation against the lab keystone."""
    options = _password_auth(lab, user)
    options["www_authenticate_uri"] = lab.url("keystone")
    # Service tokens sent along with user tokens (nova -> cinder) must carry
    # the service role, as in a production deployment.
    options["service_token_roles_required"] = True
    return options


def service_password(user):
    return "%s-lab-secret" % user


def _common_default(lab, debug):
    return {
        "debug": debug,
        "transport_url": lab.transport_url,
        "my_ip": "127.0.0.1",
        "report_interval": settings.REPORT_INTERVAL,
        "service_down_time": settings.SERVICE_DOWN_TIME,
        # By default periodic tasks start after a random delay of up to 60 s;
        # the scheduler's host discovery is one, and a compute is not usable
        # before it ran.
        "periodic_fuzzy_delay": 0,
    }


def write_shared(lab):
    """Every config file but the per-host ones (write_compute and
    write_volume_service). STACKMENDER_LAB_DEBUG=1 turns on debug logging."""
    debug = os.environ.get("STACKMENDER_LAB_DEBUG") == "1"
    write_keystone(lab, debug)
    write_placement(lab, debug)
    write_glance(lab, debug)
    write_nova(lab, debug)
    write_cinder(lab, debug)


def write_keystone(lab, debug):
    write(lab.etc / "keystone" / "keystone.conf", {
        "DEFAULT": {"debug": debug},
        "database": {"connection": lab.db_url("keystone")},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": lab.state / "keystone" / "fernet-keys"},
        "credential": {"key_repository": lab.state / "keystone" / "credential-keys"},
        # The fewest bcrypt rounds: every token request checks a password,
        # and the default 12 rounds cost half a second of CPU each here.
        "identity": {"password_hash_rounds": 4},
        "oslo_messaging_notifications": {"driver": "noop"},
    })


def write_placement(lab, debug):
    write(lab.etc / "placement" / "placement.conf", {
        "DEFAULT": {"debug": debug},
        "placement_database": {"connection": lab.db_url("placement")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": _authtoken(lab, "placement"),
    })


def write_glance(lab, debug):
    etc = lab.etc / "glance"
    store = lab.state / "glance"
    write(etc / "glance-api.conf", {
        "DEFAULT": {"debug": debug, "workers": 1, "enabled_backends": "file:file"},
        "database": {"connection": lab.db_url("glance")},
        "paste_deploy": {"flavor": "keystone", "config_file": etc / "glance-api-paste.ini"},
        "glance_store": {"default_backend": "file"},
        "file": {"filesystem_store_datadir": store / "images"},
        "os_glance_staging_store": {"filesystem_store_datadir": store / "staging"},
        "os_glance_tasks_store": {"filesystem_store_datadir": store / "tasks"},
        "oslo_concurrency": {"lock_path": lab.state / "locks" / "glance"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "keystone_authtoken": _authtoken(lab, "glance"),
    })
    shutil.copyfile(lab.glance_venv / "etc" / "glance" / "glance-api-paste.ini",
                    etc / "glance-api-paste.ini")


def write_nova(lab, debug):
    etc = lab.etc / "nova"
    default = _common_default(lab, debug)
    default.update({"host": "controller", "state_path": lab.state / "nova"})
    cinder = _password_auth(lab, "nova")
    cinder["os_region_name"] = settings.REGION
    write(etc / "nova.conf", {
        "DEFAULT": default,
        "wsgi": {"api_paste_config": etc / "api-paste.ini"},
        "database": {"connection": lab.db_url("nova")},
        "api_database": {"connection": lab.db_url("nova_api")},
        "oslo_concurrency": {"lock_path": lab.state / "locks" / "nova"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "conductor": {"workers": 1},
        # The scheduler maps new compute hosts into the cell by itself, so
        # a compute started by a drill becomes usable without nova-manage.
        "scheduler": {"workers": 1, "discover_hosts_in_cells_interval": 5},
        "cinder": cinder,
        "placement": _password_auth(lab, "placement"),
        "neutron": _password_auth(lab, "neutron"),
        "glance": {"region_name": settings.REGION},
        "service_user": dict(_password_auth(lab, "nova"), send_service_user_token=True),
        "keystone_authtoken": _authtoken(lab, "nova"),
    })
    # nova-api reads its paste file from the same directory as nova.conf.
    shutil.copyfile(lab.openstack_venv / "etc" / "nova" / "api-paste.ini", etc / "api-paste.ini")


def write_compute(lab, host):
    """The per-host part of a nova-compute, read after nova.conf."""
    state = lab.state / "compute" / host
    (state / "instances").mkdir(parents=True, exist_ok=True)
    write(lab.etc / "nova" / "compute" / (host + ".conf"), {
        "DEFAULT": {
            "host": host,
            # The node identity file (compute_id) lives in state_path; each
            # host needs its own, or two computes would claim one node.
            "state_path": state,
            "instances_path": state / "instances",
            # Nova's FakeDriverWithoutFakeNodes, which persists its node
            # uuid, so a killed compute can be started again (plain
            # FakeDriver cannot), with the lab's addition: a drill can hold
            # a server's live migration open (drivers/, loaded by
            # runners/nova_compute.py).
            "compute_driver": "stackmender_lab_compute_driver.HoldingLiveMigrationDriver",
        },
    })


def write_cinder(lab, debug):
    etc = lab.etc / "cinder"
    venv_etc = lab.openstack_venv / "etc" / "cinder"
    default = _common_default(lab, debug)
    default.update({
        "host": "controller",
        "state_path": lab.state / "cinder",
        "auth_strategy": "keystone",
        "api_paste_config": venv_etc / "api-paste.ini",
        # Without the shipped filter list, `?name=` queries answer 400.
        "resource_query_filters_file": venv_etc / "resource_filters.json",
    })
    write(etc / "cinder.conf", {
        "DEFAULT": default,
        "database": {"connection": lab.db_url("cinder")},
        "oslo_concurrency": {"lock_path": lab.state / "locks" / "cinder"},
        "oslo_messaging_notifications": {"driver": "noop"},
        "nova": _password_auth(lab, "cinder"),
        "service_user": dict(_password_auth(lab, "cinder"), send_service_user_token=True),
        "keystone_authtoken": _authtoken(lab, "cinder"),
    })
    # Read only by cinder-api, after cinder.conf.
    write(etc / "cinder-api.conf", {
        "DEFAULT": {"rpc_response_timeout": settings.CINDER_API_RPC_TIMEOUT},
    })


def split_volume_host(volume_host):
    """'volume1@fake' -> ('volume1', 'fake')."""
    host, separator, backend = volume_host.partition("@")
    if not (host and separator and backend) or "/" in volume_host or "#" in volume_host:
        raise ValueError(
            "a cinder-volume service is HOST@BACKEND, not %r: cinder-volume refuses to start without "
            "enabled_backends (backends in [DEFAULT] are unsupported since Ocata)" % volume_host)
    return host, backend


def volume_config_path(lab, volume_host):
    return lab.etc / "cinder" / "volume" / (volume_host + ".conf")


def write_volume_service(lab, volume_host):
    """The per-service part of a cinder-volume, read after cinder.conf:
    service host HOST with the one backend BACKEND."""
    host, backend = split_volume_host(volume_host)
    write(volume_config_path(lab, volume_host), {
        "DEFAULT": {"host": host, "enabled_backends": backend},
        backend: {
            # The fake driver shipped in the cinder wheel, wrapped by the lab
            # so a drill can hold it inside terminate_connection (drivers/).
            "volume_driver": "stackmender_lab_volume_driver.HoldableFakeVolumeDriver",
            "volume_backend_name": backend,
            "target_helper": "fake",
        },
    })


def clouds_yaml(lab):
    """clouds.yaml text with lab-admin and lab-member."""
    def cloud(name, user, password, project):
        return "\n".join([
            "  %s:" % name,
            "    auth:",
            "      auth_url: %s" % lab.auth_url,
            "      username: %s" % user,
            "      password: %s" % password,
            "      project_name: %s" % project,
            "      user_domain_name: Default",
            "      project_domain_name: Default",
            "    region_name: %s" % settings.REGION,
            "    identity_api_version: 3",
            "    interface: public",
        ])
    return "clouds:\n%s\n%s\n" % (cloud("lab-admin", *settings.ADMIN), cloud("lab-member", *settings.MEMBER))
