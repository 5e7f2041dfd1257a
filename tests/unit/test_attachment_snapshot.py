"""attachment_snapshot_info's pure logic: iSCSI targets, relations from both sides, comparison and repair plan."""

from ansible_collections.stackmender.openstack.plugins.modules import attachment_snapshot_info as snap

S1, S2 = 'server-1', 'server-2'
V1, V2, V3, V4, ROOT = 'vol-1', 'vol-2', 'vol-3', 'vol-4', 'vol-root'


def server(server_id, host='compute1'):
    return dict(id=server_id, name=server_id, project_id='p', compute_host=host, status='ACTIVE', vm_state='active',
                task_state=None, power_state=1, root_device_name='/dev/vda')


def attachment(attachment_id, volume_id, instance, status='attached'):
    return dict(id=attachment_id, volume_id=volume_id, instance=instance, status=status, attached_host='compute1')


def healthy():
    servers = {S1: server(S1), S2: server(S2, 'compute2')}
    nova = {S1: [dict(volume_id=V1, device='/dev/vdb', attachment_id='a1'),
                 dict(volume_id=V2, device='/dev/vdc', attachment_id='a2'),
                 dict(volume_id=ROOT, device='/dev/vda', attachment_id='ar')],
            S2: [dict(volume_id=V3, device='/dev/vdb', attachment_id='a3'),
                 dict(volume_id=V4, device='/dev/vdc', attachment_id='a4')]}
    cinder = [attachment('a1', V1, S1), attachment('a2', V2, S1), attachment('ar', ROOT, S1),
              attachment('a3', V3, S2), attachment('a4', V4, S2), attachment('old', V1, S1, 'detached')]
    volumes = dict((v, dict(status='in-use', name=v, multiattach=False)) for v in (V1, V2, V3, V4, ROOT))
    return servers, nova, cinder, volumes


def test_relations_come_from_both_sides_and_ignore_detached_attachments():
    servers, nova, cinder, volumes = healthy()
    cinder.append(attachment('a9', 'vol-cinder-only', S2, 'reserved'))
    volumes['vol-cinder-only'] = dict(status='reserved', name='x', multiattach=False)
    relations = snap.build_relations(servers, nova, cinder, volumes)
    by_pair = dict(((r['server_id'], r['volume_id']), r) for r in relations)
    assert len(relations) == 6
    assert by_pair[(S1, V1)]['cinder_attachments'] == [dict(id='a1', status='attached', attached_host='compute1')]
    assert by_pair[(S1, ROOT)]['root'] is True and by_pair[(S1, V1)]['root'] is False
    only = by_pair[(S2, 'vol-cinder-only')]
    assert only['in_nova'] is False and only['device'] is None and only['cinder_attachments'][0]['status'] == 'reserved'


def test_an_unchanged_cloud_is_restored_with_nothing_to_repair():
    servers, nova, cinder, volumes = healthy()
    relations = snap.build_relations(servers, nova, cinder, volumes)
    result = snap.compare({'relations': relations}, relations, servers, volumes)
    assert result['restored'] and not result['broken'] and len(result['intact']) == 5
    assert result['repair'] == dict(reset_in_use=[], purge_bdms=[], reset_available=[], reattach=[], servers=[])


def test_power_loss_states_give_the_repair_plan():
    servers, nova, cinder, volumes = healthy()
    recorded = snap.build_relations(servers, nova, cinder, volumes)
    # V2 detaching, V3 attaching (both sides still know them); V4: Cinder lost its attachment, Nova kept the BDM.
    volumes[V2]['status'] = 'detaching'
    volumes[V3]['status'] = 'attaching'
    cinder = [a for a in cinder if a['volume_id'] != V4]
    cinder = [dict(a, status='attaching') if a['volume_id'] == V3 else a for a in cinder]
    now = snap.build_relations(servers, nova, cinder, volumes)
    result = snap.compare({'relations': recorded}, now, servers, volumes)
    assert not result['restored']
    assert sorted(entry['volume_id'] for entry in result['broken']) == [V2, V3, V4]
    problems = dict((entry['volume_id'], entry['problems']) for entry in result['broken'])
    assert problems[V2] == ['volume vol-2 is detaching']
    assert 'Cinder has no attached attachment of volume vol-3 to server server-2' in problems[V3]
    assert 'Cinder holds 1 other attachment(s) of the pair (a3 attaching)' in problems[V3]
    assert problems[V4] == ['Cinder has no attached attachment of volume vol-4 to server server-2']
    repair = result['repair']
    assert repair['reset_in_use'] == [V2, V3], 'V4 has no Cinder attachment, so a reset to in-use cannot hold'
    assert repair['purge_bdms'] == [dict(instance=S1, volume=V2), dict(instance=S2, volume=V3),
                                    dict(instance=S2, volume=V4)]
    assert repair['reset_available'] == [V2, V3, V4]
    assert repair['reattach'] == [dict(server_id=S1, volume_id=V2, device='/dev/vdc'),
                                  dict(server_id=S2, volume_id=V3, device='/dev/vdb'),
                                  dict(server_id=S2, volume_id=V4, device='/dev/vdc')]
    assert repair['servers'] == [S1, S2]


def test_after_detach_the_relation_is_reattached_at_the_recorded_device():
    servers, nova, cinder, volumes = healthy()
    recorded = snap.build_relations(servers, nova, cinder, volumes)
    nova[S1] = [a for a in nova[S1] if a['volume_id'] != V2]
    cinder = [a for a in cinder if a['volume_id'] != V2]
    volumes[V2]['status'] = 'available'
    result = snap.compare({'relations': recorded}, snap.build_relations(servers, nova, cinder, volumes), servers,
                          volumes)
    assert result['repair']['purge_bdms'] == [] and result['repair']['reset_in_use'] == []
    assert result['repair']['reattach'] == [dict(server_id=S1, volume_id=V2, device='/dev/vdc')]


def test_a_wrong_device_is_broken():
    servers, nova, cinder, volumes = healthy()
    recorded = snap.build_relations(servers, nova, cinder, volumes)
    nova[S2] = [dict(a, device='/dev/vdd') if a['volume_id'] == V4 else a for a in nova[S2]]
    result = snap.compare({'relations': recorded}, snap.build_relations(servers, nova, cinder, volumes), servers,
                          volumes)
    broken, = result['broken']
    assert broken['problems'] == ['Nova lists volume vol-4 at /dev/vdd, recorded at /dev/vdc']
    assert result['repair']['purge_bdms'] == [dict(instance=S2, volume=V4)]


def test_multiattach_volume_is_repaired_on_every_server_together():
    servers, nova, cinder, volumes = healthy()
    nova[S2].append(dict(volume_id=V1, device='/dev/vdd', attachment_id='a5'))
    cinder.append(attachment('a5', V1, S2))
    volumes[V1]['multiattach'] = True
    recorded = snap.build_relations(servers, nova, cinder, volumes)
    nova[S2] = [a for a in nova[S2] if a['volume_id'] != V1]
    cinder = [a for a in cinder if a['id'] != 'a5']
    result = snap.compare({'relations': recorded}, snap.build_relations(servers, nova, cinder, volumes), servers,
                          volumes)
    assert [(e['server_id'], e['volume_id']) for e in result['broken']] == [(S2, V1)]
    assert result['repair']['purge_bdms'] == [dict(instance=S1, volume=V1)]
    assert [(r['server_id'], r['device']) for r in result['repair']['reattach']] == [(S1, '/dev/vdb'), (S2, '/dev/vdd')]


def test_root_volumes_and_vanished_resources_are_unrepairable():
    servers, nova, cinder, volumes = healthy()
    recorded = snap.build_relations(servers, nova, cinder, volumes)
    volumes[ROOT]['status'] = 'detaching'
    del volumes[V3]
    now = snap.build_relations(servers, nova, [a for a in cinder if a['volume_id'] != V3], volumes)
    result = snap.compare({'relations': recorded}, now, servers, volumes)
    reasons = dict((e['volume_id'], e['reason']) for e in result['unrepairable'])
    assert reasons[ROOT].startswith('root volume')
    assert reasons[V3] == 'volume vol-3 no longer exists'
    assert ROOT not in result['repair']['reset_available'] and V3 not in result['repair']['reset_available']
    gone = snap.compare({'relations': recorded}, [], {}, volumes)
    assert all(e['reason'].startswith('server ') and e['reason'].endswith('no longer exists')
               for e in gone['unrepairable'])


def test_iscsi_targets_never_carry_secrets_unless_asked():
    info = {'driver_volume_type': 'iscsi', 'data': {
        'target_portals': ['192.0.2.10:3260', '[2001:db8::1]:3261'], 'target_iqns': ['iqn.a', 'iqn.b'],
        'target_luns': [1, 2], 'auth_method': 'CHAP', 'auth_username': 'user', 'auth_password': 'secret'}}
    targets = snap.iscsi_targets(info)
    assert targets == [dict(portal='192.0.2.10', port=3260, iqn='iqn.a', lun=1, chap=True),
                       dict(portal='2001:db8::1', port=3261, iqn='iqn.b', lun=2, chap=True)]
    assert 'secret' not in repr(targets)
    assert snap.iscsi_targets(info, include_credentials=True)[0]['chap_secret'] == 'secret'
    single = {'driver_volume_type': 'iscsi', 'data': {'target_portal': '192.0.2.11', 'target_iqn': 'iqn.c',
                                                      'target_lun': 0}}
    assert snap.iscsi_targets(single) == [dict(portal='192.0.2.11', port=3260, iqn='iqn.c', lun=0, chap=False)]
    # The lab's fake backend, and other transports, name no portal.
    assert snap.iscsi_targets({'driver_volume_type': 'iscsi', 'access_mode': 'rw'}) == []
    assert snap.iscsi_targets({'driver_volume_type': 'rbd', 'data': {'name': 'volumes/x'}}) == []
    assert snap.iscsi_targets(None) == []
