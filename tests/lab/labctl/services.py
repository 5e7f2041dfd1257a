"""The OpenStack processes of the lab: how each is started and when it is ready."""

import dataclasses
import datetime
import json
import urllib.error
import urllib.request

from . import configs, settings

NOVA_COMPUTE = "nova-compute"
CINDER_VOLUME = "cinder-volume"


@dataclasses.dataclass
class Service:
    name: str                     # process name, also the log file name
    argv: list
    env: dict
    port: int = None              # HTTP services: the port they answer on
    # RPC services: their row in <database>.services, by binary and host
    database: str = None
    binary: str = None
    host: str = None
    # What must be ready before it starts: "rabbitmq", "keystone" (keystone
    # validates tokens) or the name of another service. See start_after().
    after: tuple = ()
    # Kept running by `reset`: they cache nothing of their database.
    # (placement is not one: it syncs its resource classes into the
    # database once at start-up and then trusts its cache.)
    stateless_api: bool = False

    @property
    def is_http(self):
        return self.port is not None


def compute_name(host):
    return "%s.%s" % (NOVA_COMPUTE, host)


def volume_name(volume_host):
    return "%s.%s" % (CINDER_VOLUME, volume_host)


class Layout:
    """Which compute hosts and cinder-volume services the lab runs now.

    Drills change it (rehost-volume-service); `reset` puts it back.
    """

    def __init__(self, lab):
        self.path = lab.path("layout.json")

    def load(self):
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        return {"computes": list(data.get("computes", settings.INITIAL_COMPUTES)),
                "volume_hosts": list(data.get("volume_hosts", settings.INITIAL_VOLUME_HOSTS))}

    def save(self, layout):
        self.path.write_text(json.dumps(layout, indent=2))

    def reset(self):
        self.path.unlink(missing_ok=True)


def catalogue(lab, layout):
    """Every OpenStack service of the lab, in start order."""
    python, runner = lab.python, str(lab.code_dir / "runners" / "wsgi_server.py")
    nova_conf = str(lab.etc / "nova" / "nova.conf")
    cinder_conf = str(lab.etc / "cinder" / "cinder.conf")

    def wsgi(name, target, port_name, env, interpreter=python, args=(), stateless=False):
        return Service(name, [interpreter, runner, target, str(lab.port(port_name)), name] + list(args),
                       env, port=lab.port(port_name), stateless_api=stateless)

    services = [
        Service("neutron-stub", [python, str(lab.code_dir / "runners" / "neutron_stub.py"),
                                 str(lab.port("neutron"))], {}, port=lab.port("neutron"), stateless_api=True),
        wsgi("keystone", "keystone.wsgi.api:application", "keystone",
             {"OS_KEYSTONE_CONFIG_FILES": str(lab.etc / "keystone" / "keystone.conf")}, stateless=True),
        wsgi("placement", "placement.wsgi.api:application", "placement",
             {"OS_PLACEMENT_CONFIG_DIR": str(lab.etc / "placement")}),
        wsgi("glance", "glance.wsgi.api:application", "glance",
             {"OS_GLANCE_CONFIG_DIR": str(lab.etc / "glance")}, interpreter=lab.glance_python, stateless=True),
        wsgi("nova-api", "nova.wsgi.osapi_compute:application", "nova-api",
             {"OS_NOVA_CONFIG_DIR": str(lab.etc / "nova")}),
        wsgi("cinder-api", "cinder.wsgi.api:application", "cinder-api", {},
             args=["--config-file", cinder_conf, "--config-file", str(lab.etc / "cinder" / "cinder-api.conf")]),
        Service("nova-conductor", [lab.bin("nova-conductor"), "--config-file", nova_conf], {},
                database="nova", binary="nova-conductor", host="controller", after=("rabbitmq",)),
        # nova-scheduler asks keystone's catalog for placement and reads placement's versions at
        # start-up, and exits if placement is not answering yet (seen under load).
        Service("nova-scheduler", [lab.bin("nova-scheduler"), "--config-file", nova_conf], {},
                database="nova", binary="nova-scheduler", host="controller",
                after=("rabbitmq", "keystone", "placement")),
        Service("cinder-scheduler", [lab.bin("cinder-scheduler"), "--config-file", cinder_conf], {},
                database="cinder", binary="cinder-scheduler", host="controller", after=("rabbitmq",)),
    ]
    for volume_host in layout["volume_hosts"]:
        services.append(Service(
            volume_name(volume_host),
            [lab.bin("cinder-volume"), "--config-file", cinder_conf,
             "--config-file", str(configs.volume_config_path(lab, volume_host))],
            {"PYTHONPATH": str(lab.code_dir / "drivers"), "STACKMENDER_LAB_HOLD_DIR": str(lab.run_dir / "hold")},
            database="cinder", binary=CINDER_VOLUME, host=volume_host,
            # A volume service announces its pools once, at start-up, to the
            # schedulers listening then; a later scheduler learns them only
            # from the next periodic report, a minute on.
            after=("rabbitmq", "cinder-scheduler")))
    for host in layout["computes"]:
        services.append(Service(
            compute_name(host),
            # Started by the lab's runner, which makes drivers/ loadable as a Nova virt driver.
            [python, str(lab.code_dir / "runners" / "nova_compute.py"), "--config-file", nova_conf,
             "--config-file", str(lab.etc / "nova" / "compute" / (host + ".conf"))],
            {}, database="nova", binary=NOVA_COMPUTE, host=host,
            # nova-compute exits at start-up if keystone or placement does not
            # answer, and waits (in 10 s steps) for a conductor.
            after=("rabbitmq", "keystone", "placement", "nova-conductor")))
    return services


def http_answers(port):
    """True when something answers HTTP on the port, whatever the status."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=3):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _token(lab, user, password, project):
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {
            "user": {"name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
    request = urllib.request.Request(lab.url("keystone", "/v3/auth/tokens"), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["X-Subject-Token"]


def keystone_validates_tokens(lab):
    """One token validation by a service user, as keystonemiddleware does.

    Run once before the services that validate tokens start: the first
    validations reaching a fresh keystone concurrently were seen to fail
    with 403 identity:validate_token (keystone still setting up its policy
    enforcer), which cost a compute its first placement report.
    """
    try:
        service_token = _token(lab, "placement", configs.service_password("placement"), "service")
        subject = _token(lab, *settings.ADMIN)
        request = urllib.request.Request(lab.url("keystone", "/v3/auth/tokens"),
                                         headers={"X-Auth-Token": service_token, "X-Subject-Token": subject})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):     # HTTPError is a URLError
        return False


def reported_since(database, service, since):
    """True when the service's row has been written at or after `since`
    (a naive UTC datetime, as the services store their timestamps)."""
    with database.connection(service.database) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(updated_at, created_at) FROM services "
            "WHERE `binary` = %s AND host = %s AND deleted = 0", (service.binary, service.host))
        row = cursor.fetchone()
    return bool(row and row[0] and row[0] >= since)


def compute_usable(database, host):
    """A compute can take servers once the cell maps its host and placement
    has the inventory of its node."""
    with database.connection() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM nova_api.host_mappings WHERE host = %s", (host,))
        mapped = cursor.fetchone()[0]
        cursor.execute(
            "SELECT COUNT(*) FROM placement.resource_providers rp "
            "JOIN placement.inventories i ON i.resource_provider_id = rp.id WHERE rp.name = %s", (host,))
        inventory = cursor.fetchone()[0]
    return mapped > 0 and inventory > 0


def utc_now():
    """Naive UTC now, truncated to whole seconds like the DATETIME columns."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
