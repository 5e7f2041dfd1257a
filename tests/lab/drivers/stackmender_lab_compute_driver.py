"""Nova's fake virt driver, able to hold one server's live migration open.

The lab's computes run FakeDriverWithoutFakeNodes because it keeps its node
uuid across a restart (drills kill and restart computes). Its live migration
completes at once, so Nova never shows a migration `running`, and the
Compute API's abort and force-complete, which need one, cannot be drilled.
Nova's own FakeLiveMigrateDriver holds every live migration for 5 s with
one flag for all instances: too short for a drill, and it would slow every
other drill's migrations.

This driver holds only the live migrations of servers whose metadata has
HOLD_KEY, for at most HOLD_SECONDS. Nova's compute manager calls
live_migration_abort or live_migration_force_complete on the source's
driver (DELETE /servers/{id}/migrations/{mid}, or its force_complete
action); either ends the hold at once. Aborted, the migration is rolled
back as a hypervisor's cancelled job is (it ends `cancelled`, the server
stays on the source); forced, or held long enough, it completes normally.
Every other server migrates at once, as before.

nova-compute imports its driver only as nova.virt.<compute_driver>, so
runners/nova_compute.py adds this directory to that package's path, and
compute_driver is stackmender_lab_compute_driver.HoldingLiveMigrationDriver.
"""

import threading

from oslo_log import log as logging

from nova.virt import fake

LOG = logging.getLogger(__name__)

HOLD_KEY = "stackmender_hold_live_migration"
HOLD_SECONDS = 120
ABORT = "abort"
FORCE_COMPLETE = "force_complete"


class _Hold:
    """One held live migration: released by an abort or a force-complete."""

    def __init__(self):
        self.released = threading.Event()
        self.outcome = None


class HoldingLiveMigrationDriver(fake.FakeDriverWithoutFakeNodes):

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self._holds = {}        # instance uuid -> _Hold of its running live migration

    def live_migration(self, context, instance, dest, post_method, recover_method, block_migration=False,
                       migrate_data=None):
        # The manager has set the migration `running` before it calls this, in a thread of its own, so
        # the abort and force-complete requests (RPC casts to this compute) arrive while this waits.
        if HOLD_KEY in (instance.metadata or {}):
            hold = self._holds[instance.uuid] = _Hold()
            LOG.warning("lab hold: live migration to %s held for up to %d s", dest, HOLD_SECONDS, instance=instance)
            try:
                hold.released.wait(HOLD_SECONDS)
            finally:
                self._holds.pop(instance.uuid, None)
            LOG.warning("lab hold: live migration to %s released (%s)", dest, hold.outcome or "timeout",
                        instance=instance)
            if hold.outcome == ABORT:
                # What a hypervisor's cancelled job leads to: Nova's rollback on the source.
                recover_method(context, instance, dest, migrate_data, migration_status="cancelled")
                return
        super().live_migration(context, instance, dest, post_method, recover_method, block_migration, migrate_data)

    def live_migration_abort(self, instance):
        self._release(instance, ABORT)

    def live_migration_force_complete(self, instance):
        self._release(instance, FORCE_COMPLETE)

    def _release(self, instance, outcome):
        hold = self._holds.get(instance.uuid)
        if hold is not None:        # nothing held: ignored, as the plain fake driver does
            hold.outcome = outcome
            hold.released.set()
