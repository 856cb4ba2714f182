"""A second physics backend on pybullet: the independent check of the torch simulator (issue 6).

`urdf` generates the Crazyflie from `hardware/params`, `world` holds one pybullet world per environment,
`env.BulletSwarmEnv` is the swarm environment on it, and `crosscheck` compares open-loop flights of the
two simulators quantity by quantity.
"""
