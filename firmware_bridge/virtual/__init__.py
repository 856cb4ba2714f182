"""Virtual Crazyflies: a swarm that stock cflib reaches over `udp://127.0.0.1:19850+i` as it reaches real ones,
flown by the project's simulator and, with a policy, by the nanoswarm app's own onboard C code.

`VirtualSwarm` is the entry point (see swarm.py for how it runs); `LinkFaults` describes a link's losses,
delays and duplicates; `serve_main` is the `nanoswarm virtual-swarm` verb.
"""

from nanoswarm.firmware_bridge.virtual.errors import VirtualSwarmError, VirtualSwarmStopped
from nanoswarm.firmware_bridge.virtual.link import LinkFaults
from nanoswarm.firmware_bridge.virtual.serve import serve_main
from nanoswarm.firmware_bridge.virtual.swarm import DroneStatus, VirtualSwarm

__all__ = ["DroneStatus", "LinkFaults", "VirtualSwarm", "VirtualSwarmError", "VirtualSwarmStopped", "serve_main"]
