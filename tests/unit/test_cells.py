"""The cell model's pure rules: options by name or uuid, the views, and when an instance counts as gone."""

import pytest

from ansible_collections.stackmender.openstack.plugins.module_utils.services import cells as nova_cells
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.database import parse_url
from ansible_collections.stackmender.openstack.plugins.module_utils.engine.errors import InputError

CELL1 = '8a6b1f0e-1111-4c3d-9e8f-000000000001'
CELL2 = '8a6b1f0e-2222-4c3d-9e8f-000000000002'


class FakeSession:
    """Answers the few queries of the cell model from lists of rows (pure logic, no database)."""

    def __init__(self, mappings=(), instance_mappings=(), build_requests=()):
        self.mappings = list(mappings)
        self.instance_mappings = list(instance_mappings)
        self.build_requests = list(build_requests)

    def query(self, sql, params=None):
        if 'FROM cell_mappings' in sql:
            return [dict(row) for row in self.mappings]
        rows = self.instance_mappings if 'FROM instance_mappings' in sql else self.build_requests
        return [dict(row) for row in rows if row['instance_uuid'] in params]

    def select_in(self, sql, values, before=(), after=()):
        return self.query(sql, list(before) + list(values) + list(after))


def mapping(mapping_id, uuid, name, database):
    return dict(id=mapping_id, uuid=uuid, name=name,
                database_connection='mysql+pymysql://nova:s3cret@db.example/%s?charset=utf8' % database)


def api_target():
    return parse_url('nova_api_db', 'mysql+pymysql://nova:s3cret@db.example/nova_api?charset=utf8')


MAPPINGS = [mapping(1, nova_cells.CELL0_UUID, 'cell0', 'nova_cell0'), mapping(2, CELL1, 'cell1', 'nova'),
            mapping(3, CELL2, 'cell2', 'nova_cell2')]


def test_every_cell_of_nova_api_is_read_and_the_view_is_complete():
    registered = []
    found = nova_cells.resolve_cells({'nova_api_db': api_target()}, lambda: FakeSession(MAPPINGS), registered.append)
    assert found.complete
    assert [cell.option for cell in found] == ['nova:cell0', 'nova:cell1', 'nova:cell2']
    assert [cell.option for cell in found.with_hosts()] == ['nova:cell1', 'nova:cell2']
    assert found.by_uuid[CELL2].target.database == 'nova_cell2'
    assert set(registered) == {'s3cret'}


def test_nova_db_alone_is_a_partial_view():
    target = parse_url('nova_db', 'mysql+pymysql://nova:pw@db.example/nova?charset=utf8')
    found = nova_cells.resolve_cells({'nova_db': target})
    assert not found.complete and [cell.option for cell in found] == ['nova_db']
    assert found.describe() == dict(complete=False, read=['nova_db'])
    assert nova_cells.resolve_cells({}) is None


def test_nova_db_with_nova_api_db_must_be_one_of_its_cells():
    given = parse_url('nova_db', 'mysql+pymysql://admin:other@db.example:3306/nova?charset=utf8')
    found = nova_cells.resolve_cells({'nova_api_db': api_target(), 'nova_db': given}, lambda: FakeSession(MAPPINGS))
    assert found.complete and found.by_uuid[CELL1].target is given
    stray = parse_url('nova_db', 'mysql+pymysql://admin:other@db.example/nova_old?charset=utf8')
    with pytest.raises(InputError) as refused:
        nova_cells.resolve_cells({'nova_api_db': api_target(), 'nova_db': stray}, lambda: FakeSession(MAPPINGS))
    assert 'nova_db (mysql://admin@db.example:3306/nova_old) is none of the cells' in refused.value.msg
    assert 'other' not in refused.value.msg and 's3cret' not in refused.value.msg


def test_cells_sharing_a_name_are_named_by_uuid():
    twins = [mapping(2, CELL1, 'cell1', 'nova'), mapping(3, CELL2, 'cell1', 'nova_cell2'),
             mapping(4, '8a6b1f0e-3333-4c3d-9e8f-000000000003', '', 'nova_cell3')]
    found = nova_cells.resolve_cells({'nova_api_db': api_target()}, lambda: FakeSession(twins))
    expected = ['nova:%s' % CELL1, 'nova:%s' % CELL2, 'nova:8a6b1f0e-3333-4c3d-9e8f-000000000003']
    assert [cell.option for cell in found] == expected
    assert len(set(cell.target.database for cell in found)) == 3


def test_an_instance_is_gone_only_with_every_cell_read_and_no_trace_in_nova_api():
    uuids = ['i-mapped', 'i-building', 'i-unscheduled', 'i-gone']
    api = FakeSession(MAPPINGS, instance_mappings=[
        dict(id=1, instance_uuid='i-mapped', cell_id=3, cell_uuid=CELL2, cell_name='cell2', queued_for_delete=0),
        dict(id=2, instance_uuid='i-unscheduled', cell_id=None, cell_uuid=None, cell_name=None, queued_for_delete=0)],
        build_requests=[dict(id=7, instance_uuid='i-building', project_id='p', created_at=None)])
    complete = nova_cells.resolve_cells({'nova_api_db': api_target()}, lambda: api)
    kinds = dict((uuid, absence.kind) for uuid, absence in nova_cells.classify_absent(complete, uuids, api).items())
    assert kinds == {'i-mapped': 'mapped', 'i-building': 'building', 'i-unscheduled': 'building', 'i-gone': 'gone'}
    partial = nova_cells.NovaCells([nova_cells.Cell('nova_db')], complete=False)
    assert set(absence.kind for absence in nova_cells.classify_absent(partial, uuids, api).values()) == {'unverifiable'}
    # A complete view without the nova_api session to ask cannot call anything gone either.
    assert set(absence.kind for absence in nova_cells.classify_absent(complete, uuids).values()) == {'unverifiable'}


def test_each_absence_explains_itself():
    for kind, words in (('unverifiable', 'other cells were not read'), ('building', 'still a build request'),
                        ('gone', 'no mapping and no build request')):
        assert words in nova_cells.Absence('i-1', kind).explain()
    mapped = nova_cells.Absence('i-1', 'mapped', [dict(cell_name='cell2', cell_id=3)])
    assert 'maps it to cell cell2' in mapped.explain() and not mapped.gone
