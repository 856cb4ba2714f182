"""`nanoswarm virtual-swarm`: serve N virtual Crazyflies until Ctrl-C."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from nanoswarm.firmware_bridge.virtual.link import LinkFaults
from nanoswarm.firmware_bridge.virtual.swarm import VirtualSwarm

CHECK_EVERY_S = 1.0


def serve_main(n: int, policy_dir: Path | None = None, arena: str = "lab4x3", host: str = "127.0.0.1",
               base_port: int = 19850, faults: LinkFaults = LinkFaults()) -> int:
    """Serve `n` virtual Crazyflies on udp://host:base_port+i, print their URIs, and block until Ctrl-C.

    faults: what every CRTP link suffers both ways, to rehearse a flight over a poor radio.
    """
    torch.set_num_threads(1)   # the drones' tensors are tiny: a second thread per operation only contends
    with VirtualSwarm(n, policy_dir=policy_dir, arena=arena, host=host, base_port=base_port, faults=faults) as swarm:
        flying = f"the nanoswarm app with the policy in {policy_dir}" if policy_dir else "the stock controller"
        print(f"{n} virtual Crazyflies in arena {arena}, flying {flying}; connect cflib to:")
        for uri in swarm.uris:
            print(f"  {uri}")
        print("Ctrl-C stops them.", flush=True)
        try:
            while True:
                time.sleep(CHECK_EVERY_S)
                swarm.counters()   # raises if the simulation stopped on an error
        except KeyboardInterrupt:
            print("stopped")
    return 0
