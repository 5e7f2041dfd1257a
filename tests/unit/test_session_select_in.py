"""Session.select_in: one IN-list read split in chunks, each value sent once (plain data, no database)."""

import datetime

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.engine import database as db


class ListSession(db.Session):
    """A session whose reads answer from a list of rows and remember each statement."""

    def __init__(self, rows=()):
        super().__init__(db.parse_url('nova_db', 'mysql+pymysql://nova:pw@db.example/nova'))
        self.rows = list(rows)
        self.statements = []

    def query(self, sql, params=None, lock=False):
        self.statements.append((sql, list(params or ()), lock))
        if 'UTC_TIMESTAMP' in sql:
            return [dict(now=datetime.datetime(2026, 12, 7, 12, 0, len(self.statements)))]
        wanted = set(params[1:-1])  # host IN (...) between the two outer parameters
        return [dict(row) for row in self.rows if row['host'] in wanted]


SQL = 'SELECT * FROM services WHERE `binary` = %s AND host IN ({in}) AND deleted = %s ORDER BY id'


def test_values_are_read_in_chunks_with_the_parameters_around_each():
    hosts = ['compute%04d' % number for number in range(1203)]
    session = ListSession(dict(host=host) for host in hosts)
    rows = session.select_in(SQL, hosts, before=['nova-compute'], after=[0])
    assert [row['host'] for row in rows] == hosts
    assert [len(params) - 2 for _sql, params, _lock in session.statements] == [500, 500, 203]
    for sql, params, lock in session.statements:
        assert sql.count('%s') == len(params) and '{in}' not in sql and not lock
        assert params[0] == 'nova-compute' and params[-1] == 0


def test_each_value_is_sent_once_in_the_order_first_given():
    session = ListSession(dict(host=host) for host in ('a', 'b', 'c'))
    rows = session.select_in(SQL, ['c', 'a', None, 'c', 'b', 'a'], before=['nova-compute'], after=[0], size=2)
    assert [params[1:-1] for _sql, params, _lock in session.statements] == [['c', 'a'], ['b']]
    # A value in two chunks would have brought its rows twice.
    assert sorted(row['host'] for row in rows) == ['a', 'b', 'c']
    again = session.select_in(SQL, iter('cab'), ['x'], [0], size=2)
    assert [row['host'] for row in rows] == [row['host'] for row in again]


@pytest.mark.parametrize('values', [[], (), [None, None], iter([])])
def test_no_values_mean_no_query(values):
    session = ListSession([dict(host='a')])
    assert session.select_in(SQL, values, before=['nova-compute'], after=[0]) == []
    assert session.statements == []


def test_a_lock_is_passed_on_and_sql_without_its_slot_is_refused():
    session = ListSession([dict(host='a')])
    assert session.select_in(SQL, ['a'], before=['x'], after=[0], lock=True) == [dict(host='a')]
    assert session.statements[0][2] is True
    with pytest.raises(ValueError):
        session.select_in('SELECT * FROM services WHERE host IN (%s)', ['a'])


def test_the_database_clock_is_read_once_per_session():
    session = ListSession()
    first = session.utc_now()
    assert session.utc_now() == first and len(session.statements) == 1
