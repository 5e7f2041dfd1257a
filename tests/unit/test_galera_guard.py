"""The Galera guard: writes only on a Primary, ready node."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import DatabaseError


class StatusSession(db.Session):
    """A session whose server answers with fixed variables (no connection)."""

    def __init__(self, variables, status):
        super().__init__(db.parse_url('cinder_db', 'mysql+pymysql://cinder:pw@galera1/cinder'))
        self.variables = variables
        self.status = status

    def query(self, sql, params=None):
        source = self.variables if 'VARIABLES' in sql else self.status
        return [{'Variable_name': name, 'Value': value} for name, value in source.items()]


def test_plain_server_is_writable():
    StatusSession({'wsrep_on': 'OFF'}, {'wsrep_cluster_status': 'Disconnected', 'wsrep_ready': 'OFF'}).require_writable_node()


def test_primary_ready_node_is_writable():
    StatusSession({'wsrep_on': 'ON'}, {'wsrep_cluster_status': 'Primary', 'wsrep_ready': 'ON'}).require_writable_node()


@pytest.mark.parametrize('status', [
    {'wsrep_cluster_status': 'non-Primary', 'wsrep_ready': 'OFF'},
    {'wsrep_cluster_status': 'Primary', 'wsrep_ready': 'OFF'},
    {'wsrep_cluster_status': 'Disconnected', 'wsrep_ready': 'OFF'},
])
def test_non_primary_or_unready_node_is_refused(status):
    with pytest.raises(DatabaseError) as raised:
        StatusSession({'wsrep_on': 'ON'}, status).require_writable_node()
    assert 'not part of the Primary component' in raised.value.msg
    assert 'pw' not in raised.value.msg.replace('mysql://cinder@galera1', '')
    assert raised.value.details['galera'] == status
