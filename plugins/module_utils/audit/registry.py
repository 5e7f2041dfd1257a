# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every class of inconsistency the audit knows, in one list, in the order the audit runs them.

Each entry names the class, its severity (a finding may raise or lower its own), its family (the
detectors module that holds its function), the databases it needs, whether it takes a stuck_after
threshold, and what repairs it: the modules its findings may propose as ``repair`` (none: a hint
only), and the roles whose runbook acts on it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import attachments
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import info_caches
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import nova_instances
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import placement
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import services
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import soft_delete
from ansible_collections.stackmender.openstack.plugins.module_utils.audit.detectors import volumes

COLLECTION = 'stackmender.openstack.'
SEVERITIES = ('critical', 'error', 'warning', 'info')
# What a class needs: the databases of consistency_info ('any': Cinder or Nova).
NEEDS = ('cinder', 'nova', 'nova_api', 'placement', 'any')


class AuditClass(object):
    """One class of inconsistency: its detector, what it needs and what repairs it."""

    def __init__(self, name, function, needs, severity, title, thresholded=False, repairs=(), roles=()):
        if severity not in SEVERITIES or not set(needs) <= set(NEEDS):
            raise ValueError('class %s: bad severity %r or needs %r' % (name, severity, needs))
        self.name = name
        self.function = function
        self.family = function.__module__.rsplit('.', 1)[-1]
        self.needs = needs
        self.severity = severity
        self.title = title
        self.thresholded = thresholded
        self.repairs = tuple(repairs)
        self.roles = tuple(roles)

    def repair(self, module, **args):
        """A finding's ``repair``: a call of one of the modules this class declares."""
        if module not in self.repairs:
            raise ValueError('class %s does not declare %s among its repairs (%s)'
                             % (self.name, module, ', '.join(self.repairs) or 'none'))
        return dict(module=COLLECTION + module, args=args)


CLASSES = [
    AuditClass('volume_attached_without_bdm', attachments.volume_attached_without_bdm, ('cinder', 'nova'), 'error',
               'Volumes in-use/attached with no live Nova block device mapping',
               repairs=('cinder_volume_state',), roles=('cinder_multibackend_migration',)),
    AuditClass('bdm_without_attachment', attachments.bdm_without_attachment, ('cinder', 'nova'), 'error',
               'Nova block device mappings whose Cinder volume or attachment is gone or detached',
               repairs=('nova_bdm_purge',)),
    AuditClass('volume_stuck', volumes.volume_stuck, ('cinder',), 'warning',
               'Volumes stuck in a transitional status', thresholded=True, repairs=('cinder_volume_state',)),
    AuditClass('snapshot_stuck', volumes.snapshot_stuck, ('cinder',), 'warning',
               'Snapshots stuck in a transitional status', thresholded=True),
    AuditClass('attachment_of_deleted_volume', attachments.attachment_of_deleted_volume, ('cinder',), 'warning',
               'Live attachments of deleted volumes'),
    AuditClass('attachment_of_deleted_instance', attachments.attachment_of_deleted_instance, ('cinder', 'nova'),
               'error', 'Live attachments of deleted instances', repairs=('cinder_volume_state',)),
    AuditClass('volume_service_unavailable', services.volume_service_unavailable, ('cinder',), 'error',
               'Volumes whose cinder-volume service is missing, down or disabled',
               repairs=('cinder_service_rehost',), roles=('cinder_multibackend_migration',)),
    AuditClass('instance_on_unavailable_host', services.instance_on_unavailable_host, ('nova',), 'error',
               'Instances on a compute host whose service is missing or down'),
    AuditClass('instance_task_stuck', nova_instances.instance_task_stuck, ('nova',), 'warning',
               'Instances stuck in a task_state', thresholded=True, repairs=('nova_task_state',)),
    AuditClass('migration_unfinished', nova_instances.migration_unfinished, ('nova',), 'warning',
               'Migrations unfinished for too long', thresholded=True, repairs=('nova_task_state',)),
    AuditClass('info_cache_binding_failed', info_caches.info_cache_binding_failed, ('nova',), 'error',
               'Network info caches with binding_failed or unbound ports', repairs=('nova_network_info_cache',)),
    AuditClass('info_cache_vif_without_network', info_caches.info_cache_vif_without_network, ('nova',), 'critical',
               'Network info caches with a VIF without a network (the Compute API answers 500)',
               repairs=('nova_network_info_cache',)),
    AuditClass('info_cache_migrating_to', info_caches.info_cache_migrating_to, ('nova',), 'warning',
               'Network info caches with a leftover migrating_to profile', repairs=('nova_network_info_cache',)),
    AuditClass('info_cache_empty', info_caches.info_cache_empty, ('nova',), 'warning',
               'Missing, NULL or empty network info caches'),
    AuditClass('instance_node_unknown', nova_instances.instance_node_unknown, ('nova',), 'error',
               'Instances whose host/node pair is not a live compute node'),
    AuditClass('instance_mapping_missing', nova_instances.instance_mapping_missing, ('nova', 'nova_api'), 'error',
               'Instances with a missing, NULL or wrong instance mapping'),
    AuditClass('live_child_of_deleted_parent', soft_delete.live_child_of_deleted_parent, ('any',), 'info',
               'Live rows of soft-deleted parents'),
    AuditClass('deleted_without_deleted_at', soft_delete.deleted_without_deleted_at, ('any',), 'info',
               'Soft-deleted rows without deleted_at'),
    AuditClass('allocation_wrong_provider', placement.allocation_wrong_provider, ('nova', 'placement'), 'error',
               'Placement allocations on a provider other than the instance\'s compute node'),
]

CLASS_NAMES = [spec.name for spec in CLASSES]
CLASS_TITLES = dict((spec.name, spec.title) for spec in CLASSES)
BY_NAME = dict((spec.name, spec) for spec in CLASSES)
THRESHOLDED = [spec.name for spec in CLASSES if spec.thresholded]
