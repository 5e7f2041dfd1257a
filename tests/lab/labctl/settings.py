"""Where the lab lives, which ports it uses and the fixed lab credentials.

Everything is derived from a few environment variables that the `lab`
wrapper sets, so every command of one lab agrees on the same paths.
"""

import dataclasses
import hashlib
import os
from pathlib import Path

# The release the lab runs. The wrapper builds the venvs of this release.
RELEASE = "2026.2"

# Bump when the content of the cached baseline (the freshly migrated
# databases plus the lab's users, catalog and image) changes meaning.
BASELINE_FORMAT = 2

# The lab's accounts. They are throwaway credentials of a loopback-only
# lab, written into the lab directory's config files and clouds.yaml.
DB_USER = "openstack"
DB_PASSWORD = "lab-db-secret"
ADMIN = ("admin", "lab-admin-secret", "admin")      # user, password, project
MEMBER = ("demo", "lab-demo-secret", "demo")
SERVICE_USERS = ("nova", "cinder", "placement", "glance", "neutron")
REGION = "RegionOne"

DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "cinder")

# Initial layout: two compute hosts and two cinder-volume services.
# A volume service is named by the host it registers as, HOST@BACKEND.
INITIAL_COMPUTES = ("compute1", "compute2")
INITIAL_VOLUME_HOSTS = ("volume1@backend1", "volume2@backend2")

FLAVOR = {"id": "lab.tiny", "name": "lab.tiny", "ram": 512, "vcpus": 1, "disk": 1}
IMAGE_NAME = "lab-image"

# Offsets from the port base; every listener binds 127.0.0.1.
PORT_OFFSETS = {
    "mariadb": 1,
    "rabbitmq": 2,
    "rabbitmq-dist": 3,
    "epmd": 4,
    "keystone": 10,
    "nova-api": 11,
    "cinder-api": 12,
    "placement": 13,
    "glance": 14,
    "neutron": 15,
}
DEFAULT_PORT_BASE = 26100

# Shorter than the defaults (10 s / 60 s) so a dead service is seen as down
# within half a minute, which keeps drills short.
REPORT_INTERVAL = 5
SERVICE_DOWN_TIME = 30

# How long cinder-api waits for a cinder-volume reply. The default is 60 s;
# with nova's five attempts a detach against a dead backend would take five
# minutes before nova gives up. 10 s keeps the same sequence to about a minute.
CINDER_API_RPC_TIMEOUT = 10


def _default_cache():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("STACKMENDER_CACHE") or os.path.join(base, "stackmender")


@dataclasses.dataclass(frozen=True)
class Lab:
    root: Path
    cache: Path
    openstack_venv: Path
    glance_venv: Path
    port_base: int
    code_dir: Path            # tests/lab in the clone, for the runner scripts

    @classmethod
    def from_environment(cls):
        cache = Path(_default_cache())
        root = Path(os.environ.get("STACKMENDER_LAB_DIR") or cache / "lab")
        return cls(
            root=root.resolve(),
            cache=cache,
            openstack_venv=Path(os.environ.get("STACKMENDER_LAB_OPENSTACK_VENV", "")),
            glance_venv=Path(os.environ.get("STACKMENDER_LAB_GLANCE_VENV", "")),
            port_base=int(os.environ.get("STACKMENDER_LAB_PORT_BASE", DEFAULT_PORT_BASE)),
            code_dir=Path(__file__).resolve().parent.parent,
        )

    # -- ports and URLs -------------------------------------------------
    def port(self, name):
        return self.port_base + PORT_OFFSETS[name]

    def url(self, name, path=""):
        return "http://127.0.0.1:%d%s" % (self.port(name), path)

    @property
    def auth_url(self):
        return self.url("keystone", "/v3")

    def db_url(self, database):
        return "mysql+pymysql://%s:%s@127.0.0.1:%d/%s?charset=utf8" % (
            DB_USER, DB_PASSWORD, self.port("mariadb"), database)

    @property
    def transport_url(self):
        return "rabbit://guest:guest@127.0.0.1:%d/" % self.port("rabbitmq")

    # -- directories -----------------------------------------------------
    def path(self, *parts):
        return self.root.joinpath(*parts)

    @property
    def etc(self):
        return self.root / "etc"

    @property
    def log_dir(self):
        return self.root / "log"

    @property
    def run_dir(self):
        return self.root / "run"

    @property
    def state(self):
        return self.root / "state"

    # -- venvs -------------------------------------------------------------
    def bin(self, name):
        return str(self.openstack_venv / "bin" / name)

    @property
    def python(self):
        return self.bin("python")

    @property
    def glance_python(self):
        return str(self.glance_venv / "bin" / "python")

    # -- cached baseline -----------------------------------------------------
    @property
    def baseline_dir(self):
        """Cache of the freshly set-up databases for this exact lab shape.

        The dump holds URLs with the lab's ports (keystone endpoints, nova
        cell mappings), so the port base is part of the key.
        """
        key = hashlib.sha256(repr((
            BASELINE_FORMAT, self.openstack_venv.name, self.glance_venv.name, self.port_base,
            DB_PASSWORD, ADMIN, MEMBER, SERVICE_USERS)).encode()).hexdigest()[:12]
        return self.cache / ("lab-baseline-%s-%s" % (RELEASE, key))
