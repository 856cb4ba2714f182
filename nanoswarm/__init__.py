"""nanoswarm: train, export and fly decentralized Crazyflie swarm policies."""

__version__ = "0.1.0"
