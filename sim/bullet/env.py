"""`BulletSwarmEnv`: the swarm environment with pybullet as its physics, for sim-to-sim checks of policies.

It is a `SwarmEnv` whose control step swaps two things for pybullet: the rigid-body integration and the
collisions (drone-drone, drone-column, walls, floor: detected and resolved by pybullet's contact solver on
the URDF's collision sphere, the columns' cylinders and the room's planes). Everything else is the torch
environment's own code, so a difference in a policy's score is a difference in physics:
- episodes (same seed: same starts, goals, columns, domain randomisation), auto-reset, snapshots;
- action latency, motor lag and motor noise (`dynamics.motor_response`), downwash (as an external force);
- observation (sensor noise, neighbours, the obstacle distance grid), reward and episode metrics.

The environment's tensors stay the source of truth: before a step, every world whose drones are not where
the previous step left them (a new episode, a restored snapshot) is set from the tensors.

Not modelled: the collision spin kick (pybullet's contact response replaces ours) and body drag (refused,
as no shipped parameter set has any). Both engines' contacts carry Coulomb friction with the same default
coefficient (`EnvConfig.contact_friction`, default `sim.config.CONTACT_FRICTION`): a glancing contact spins the drones alike
(within 9 %, `tests/test_bullet.py`). Differences that remain, by design or as pybullet has them:
- pybullet solves every contact at every physics step, sequentially; ours solves the floor at every physics
  step, the drones', columns' and walls' contacts once per control step, after the spheres overlap, all
  pairs at once (a pile-up spins drones less: 8 drones meeting on a ring at 1.5 m/s peak at 3.5-5 rad/s
  on average, against 10-11 rad/s in pybullet);
- pybullet's speculative contacts stop a body a few millimetres short and return less of the approach
  speed (measured: 0.23 of it against a column at restitution 0.5, where ours returns 0.5);
- the floor touches the collision sphere, so a landed drone rests with its centre one collision radius up
  (ours at z = 0);
- an impact is a contact that begins, where ours is a touching pair that closes;
- pybullet integrates rotation to first order (ours: implicit midpoint), so tumbling flight about several
  axes drifts apart by O(dt): 0.1 rad/s after 1 s of a 5.4 rad/s spin at 200 Hz (`tests/test_bullet.py`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from nanoswarm.config import ConfigError
from nanoswarm.sim import tensor_struct
from nanoswarm.sim.bullet.urdf import write_urdf
from nanoswarm.sim.bullet.world import BulletWorld, Touching, bullet_substep, read_state
from nanoswarm.sim.config import EnvConfig
from nanoswarm.sim.delay import DelayLine
from nanoswarm.sim.draws import split_draws
from nanoswarm.sim.dynamics import DroneState, commanded_thrust
from nanoswarm.sim.env import SwarmEnv
from nanoswarm.sim.interactions import pairwise
from nanoswarm.sim.obstacles import distance_grid
from nanoswarm.sim.params import DroneParams
from nanoswarm.sim.step import Contacts, EpisodeStats, StepConstants, StepOutput, delayed_commands, finish_step


class BulletSwarmEnv(SwarmEnv):
    """`SwarmEnv` on pybullet: one DIRECT world per environment, same interface and observation layout.

    Every contact's Coulomb friction is the config's `contact_friction`, as in the torch simulator; 0 gives
    contacts that cannot spin a drone (the ablation that measures what contact friction costs a policy).
    """

    def __init__(self, config: EnvConfig):
        if config.device != "cpu":
            raise ConfigError(f"config field 'device': the pybullet backend runs on the CPU, got '{config.device}'; "
                              "use device: cpu (nanoswarm eval --backend pybullet --device cpu)")
        super().__init__(config)
        if self.constants.drag:
            raise ConfigError(f"config field 'drag': the pybullet backend does not model body drag, and parameter "
                              f"set '{self.quad.name}' has some; set drag: false or use a set without drag")
        self._urdf_dir = tempfile.TemporaryDirectory(prefix="nanoswarm_bullet_")
        urdf = write_urdf(self.quad, Path(self._urdf_dir.name))
        self.worlds = [BulletWorld(urdf, self.drones, self.arena.room, self.physics_dt, config.restitution,
                                  config.contact_friction)
                       for _ in range(self.num_envs)]
        self._touching = [Touching() for _ in self.worlds]  # contacts after the last physics step
        self._stepped: DroneState | None = None              # the drones as the last step left them
        self._control_step = self._bullet_step

    def _out_of_sync(self, drones: DroneState) -> list[int]:
        """Environments whose drones differ from what their world holds (new episodes, restored snapshots)."""
        if self._stepped is None:
            return list(range(self.num_envs))
        differs = torch.zeros(self.num_envs, dtype=torch.bool)
        for name in ("pos", "vel", "quat", "omega"):
            differs |= (getattr(drones, name) != getattr(self._stepped, name)).flatten(1).any(1)
        return differs.nonzero().flatten().tolist()

    def _sync(self, rows: list[int], drones: DroneState, params: DroneParams, occupancy: torch.Tensor,
              obstacle_radius: torch.Tensor) -> None:
        centres = self.obstacle_grid.centres()
        for e in rows:
            self.worlds[e].set_drones(tensor_struct.select(drones, e), params.mass[e], params.inertia[e])
            self.worlds[e].set_columns(centres[occupancy[e]], float(obstacle_radius[e]))
            self._touching[e] = Touching()

    def _bullet_step(self, drones: DroneState, params: DroneParams, action_delay: DelayLine, downwash: torch.Tensor,
                     goals: torch.Tensor, occupancy: torch.Tensor, obstacle_radius: torch.Tensor, stats: EpisodeStats,
                     steps: torch.Tensor, action: torch.Tensor, uniforms: torch.Tensor, penalty_scale: torch.Tensor,
                     k: StepConstants) -> StepOutput:
        """`step.control_step` with pybullet's physics and contacts (same arguments and result)."""
        self._sync(self._out_of_sync(drones), drones, params, occupancy, obstacle_radius)
        motor_draw, sensing_draw, _ = split_draws(uniforms, k.draws)
        action = action.clamp(-1.0, 1.0)
        delayed, history = delayed_commands(commanded_thrust(action, params), action_delay, k.substeps)
        force = params.mass.unsqueeze(-1) * downwash if k.downwash.enabled else None
        shape = drones.pos.shape[:2]
        drone_impacts = torch.zeros(shape, dtype=torch.int64)
        obstacle_impacts = torch.zeros(shape, dtype=torch.bool)
        touching_wall = torch.zeros(shape, dtype=torch.bool)
        for i, cmd in enumerate(delayed):
            noise = motor_draw[i] if motor_draw is not None else None
            drones, touching = bullet_substep(self.worlds, drones, cmd, params, k.physics_dt, noise, force)
            for e, (now, before) in enumerate(zip(touching, self._touching)):
                for pair in now.drone_pairs - before.drone_pairs:
                    drone_impacts[e, list(pair)] += 1
                obstacle_impacts[e, [d for d, _ in now.columns - before.columns]] = True
                touching_wall[e, list(now.walls)] = True
            self._touching = touching
        on_floor = torch.zeros(shape, dtype=torch.bool)
        for e, now in enumerate(self._touching):
            on_floor[e, list(now.floor)] = True
        drones = read_state(self.worlds, drones)
        self._stepped = tensor_struct.clone(drones)
        pw = pairwise(drones.pos, drones.vel)
        grid = distance_grid(k.obstacles, occupancy, obstacle_radius, drones.pos[..., :2])[0]
        contacts = Contacts(drone_impacts=drone_impacts, obstacle_impacts=obstacle_impacts,
                            touching_wall=touching_wall, on_floor=on_floor)
        return finish_step(drones, pw, grid, contacts, action, history, downwash, goals, stats, steps, sensing_draw,
                           penalty_scale, k)
