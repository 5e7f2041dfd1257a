"""Use the drill lab from tests: run its commands, read its facts, query its databases.

Runs under the collection's test venv; it needs nothing of the lab's own venvs.
"""

import json
import subprocess
from pathlib import Path

LAB_COMMAND = Path(__file__).resolve().parent / "lab"


def run(*args, check=True, capture=True, timeout=900):
    """Run `tests/lab/lab ARGS`; its progress lines go to our stderr."""
    return subprocess.run([str(LAB_COMMAND)] + list(args), check=check, text=True, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None)


def info():
    return json.loads(run("info").stdout)


def is_up():
    """True when every process of the lab runs."""
    return run("status", "--strict", check=False).returncode == 0


def connect_database(lab_info, database=None):
    import pymysql
    db = lab_info["database"]
    return pymysql.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                           database=database, autocommit=True)


def connect_cloud(lab_info, cloud):
    """An openstacksdk connection to lab-admin or lab-member, from the lab's clouds.yaml."""
    from openstack import connection
    from openstack.config import loader
    config = loader.OpenStackConfig(config_files=[lab_info["clouds_yaml"]], load_envvars=False)
    return connection.Connection(config=config.get_one(cloud=cloud))
