"""nova-compute, able to load the lab's virt driver from drivers/.

Usage: python nova_compute.py --config-file nova.conf --config-file HOST.conf

Nova loads its compute_driver only as nova.virt.<compute_driver>
(nova/virt/driver.py, load_compute_driver), so a driver outside the nova
package cannot be named there. This starts nova-compute as its console
script does, after adding the lab's drivers/ directory to the nova.virt
package's search path: `compute_driver = stackmender_lab_compute_driver.X`
then loads drivers/stackmender_lab_compute_driver.py.
"""

import os
import sys

# First, as the console script does: nova.cmd.compute sets up Nova's concurrency before anything else.
from nova.cmd import compute
import nova.virt

nova.virt.__path__.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "drivers"))

if __name__ == "__main__":
    sys.argv[0] = "nova-compute"
    sys.exit(compute.main())
