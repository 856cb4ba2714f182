"""Batched Crazyflie swarm simulator in PyTorch."""
