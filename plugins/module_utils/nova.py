# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reads of Nova state that several modules need (guards and audits)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.validation import chunks, placeholders


def live_volume_bdms(cells, volume_ids):
    """Live BDMs of live instances that reference any of ``volume_ids``.

    Nova marks live rows ``deleted = 0`` (a deleted row holds its own id).
    Each row names the cell it came from.
    """
    found = []
    for cell in cells:
        for chunk in chunks(list(volume_ids)):
            rows = cell.session.query(
                'SELECT b.id AS bdm_id, b.volume_id, b.instance_uuid, b.device_name, b.attachment_id, '
                'b.boot_index, i.host AS instance_host, i.vm_state, i.task_state '
                'FROM block_device_mapping b JOIN instances i ON i.uuid = b.instance_uuid '
                'WHERE b.deleted = 0 AND i.deleted = 0 AND b.volume_id IN (%s) ORDER BY b.id' % placeholders(len(chunk)),
                chunk)
            for row in rows:
                row['cell'] = cell.name
                found.append(row)
    return found
