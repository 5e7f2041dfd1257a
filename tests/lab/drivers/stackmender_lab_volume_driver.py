"""The cinder fake volume driver with two lab additions.

1. It reports the configured volume_backend_name (the shipped fake driver
   always says "fake"), so each lab backend is its own pool and a volume
   type can pick one.
2. A drill can hold it inside terminate_connection: while the file
   <STACKMENDER_LAB_HOLD_DIR>/terminate_connection exists (empty, or holding
   one volume id), the call waits, after writing terminate_connection.reached
   with the volume id. The drill then kills this cinder-volume, which is a
   backend dying in the middle of a detach.
"""

import os
import time

from oslo_log import log as logging

from cinder.tests import fake_driver

LOG = logging.getLogger(__name__)


class HoldableFakeVolumeDriver(fake_driver.FakeLoggingVolumeDriver):

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "fake"

    def terminate_connection(self, volume, connector, **kwargs):
        self._hold("terminate_connection", volume.id)
        return super().terminate_connection(volume, connector, **kwargs)

    @staticmethod
    def _hold(point, volume_id):
        hold_dir = os.environ.get("STACKMENDER_LAB_HOLD_DIR")
        if not hold_dir:
            return
        request = os.path.join(hold_dir, point)
        try:
            with open(request) as handle:
                wanted = handle.read().strip()
        except FileNotFoundError:
            return
        if wanted and wanted != volume_id:
            return
        with open(request + ".reached", "w") as handle:
            handle.write(volume_id)
        LOG.warning("lab hold: %s for volume %s waits while %s exists", point, volume_id, request)
        while os.path.exists(request):
            time.sleep(0.2)     # a green sleep: cinder-volume runs under eventlet
        LOG.warning("lab hold: %s for volume %s released", point, volume_id)
