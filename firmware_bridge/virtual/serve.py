"""`nanoswarm virtual-swarm`: serve N virtual Crazyflies until Ctrl-C."""

from __future__ import annotations

import time
from pathlib import Path

from nanoswarm.firmware_bridge.virtual.swarm import VirtualSwarm

STATUS_EVERY_S = 1.0


def serve_main(n: int, policy_dir: Path | None = None, arena: str = "lab4x3", host: str = "127.0.0.1") -> int:
    """Serve `n` virtual Crazyflies on udp://host:19850+i, print their URIs, and block until Ctrl-C."""
    with VirtualSwarm(n, policy_dir=policy_dir, arena=arena, host=host) as swarm:
        flying = f"the nanoswarm app with the policy in {policy_dir}" if policy_dir else "the stock controller"
        print(f"{n} virtual Crazyflies in arena {arena}, flying {flying}; connect cflib to:")
        for uri in swarm.uris:
            print(f"  {uri}")
        print("Ctrl-C stops them.", flush=True)
        try:
            while True:
                time.sleep(STATUS_EVERY_S)
                swarm.counters()   # raises if the simulation stopped on an error
        except KeyboardInterrupt:
            print("stopped")
    return 0
