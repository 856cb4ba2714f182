"""One control step of the swarm as a pure function, and the observation builder it shares with resets.

Everything here maps tensors to tensors with no Python control flow that depends on data and no RNG of
its own (random draws come in as arguments), so `torch.compile` can fuse the whole step into a few loops;
compiled and eager steps agree to float rounding (tested to 1e-4). `SwarmEnv` calls `control_step` and keeps the
parts that must branch on data: auto-resets, goal changes and error checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nanoswarm.sim.config import RewardConfig
from nanoswarm.sim.delay import DelayLine
from nanoswarm.sim.draws import DrawLayout, split_draws
from nanoswarm.sim.dynamics import DroneState, commanded_thrust, physics_step, quat_from_rotvec, rotation_matrix
from nanoswarm.sim.interactions import (CollisionResponse, ContactBodies, DownwashModel, Pairwise, downwash_accel,
                                        nearest_neighbors, pairwise, resolve_drone_collisions,
                                        static_contact_friction)
from nanoswarm.sim.observation import OBSTACLE_POINTS, build_observation
from nanoswarm.sim.obstacles import CENTRE_POINT, ObstacleGrid, distance_grid, resolve_obstacle_collisions
from nanoswarm.sim.params import GRAVITY, DroneParams
from nanoswarm.sim.rewards import step_reward
from nanoswarm.sim.tensor_struct import component_major

FLOOR_CONTACT_HEIGHT = 1e-3  # m; the physics clamps grounded drones to z = 0 exactly


@dataclass(frozen=True)
class StepConstants:
    """Everything static that a step needs; a compiled step specialises on these values."""

    substeps: int
    physics_dt: float
    control_dt: float
    num_neighbors: int
    room_high: tuple[float, float, float]   # largest x, y, z of a drone centre (walls, ceiling)
    contact_distance: float                 # centre distance of two touching drones
    collision_radius: float
    restitution: float
    grace_s: float
    draws: DrawLayout                       # what the step's block of uniforms holds
    sensor_sigma: tuple[float, float, float, float]  # position, velocity, attitude, rates
    drag: bool                              # the parameter set has non-zero drag and drag is on
    has_obstacles: bool                     # False: skip the column grid (it reads the sensing range)
    collision: CollisionResponse
    downwash: DownwashModel
    obstacles: ObstacleGrid
    rewards: RewardConfig


@dataclass
class EpisodeStats:
    """Running per-drone counts of the current episode (E, M)."""

    collisions: torch.Tensor           # drone and column impacts after the grace period
    drone_collisions: torch.Tensor     # drone-drone impacts after the grace period
    obstacle_collisions: torch.Tensor  # column impacts after the grace period
    wall_hits: torch.Tensor            # steps touching a wall or the ceiling, whole episode
    air_steps: torch.Tensor            # control steps off the floor


@dataclass
class Sensing:
    """Per-step errors of the sensors, (E, M, 3) each."""

    position: torch.Tensor
    velocity: torch.Tensor
    attitude: torch.Tensor
    rates: torch.Tensor

    @staticmethod
    def from_normals(normals: torch.Tensor | None, sigma: tuple[float, float, float, float]) -> "Sensing | None":
        """Scale standard normals (E, M, 12) by the standard deviations of the four sensors."""
        if normals is None:
            return None
        return Sensing(*(normals[..., 3 * i:3 * i + 3] * s for i, s in enumerate(sigma)))


@dataclass
class StepOutput:
    drones: DroneState
    action_history: torch.Tensor
    downwash: torch.Tensor
    stats: EpisodeStats
    steps: torch.Tensor
    reward: torch.Tensor       # (E, M)
    observation: torch.Tensor  # (E, M, obs), before observation latency
    observation_sum: torch.Tensor  # () sum of all observations: non-finite iff one of them is
    distance: torch.Tensor     # (E, M) to the goal


def observe(drones: DroneState, goals: torch.Tensor, pw: Pairwise, grid: torch.Tensor, num_neighbors: int,
            sensing: Sensing | None) -> torch.Tensor:
    """Observations (E, M, obs) in the layout of `observation.ObservationLayout`.

    With sensing noise, each drone's own estimate is noisy and neighbours are seen through their own
    noisy estimates (as when drones broadcast their state), so relative terms carry both errors. Which
    drones are nearest is decided by the true geometry `pw`.
    """
    rot = rotation_matrix(drones.quat)
    pos, vel, omega = drones.pos, drones.vel, drones.omega
    if sensing is not None:
        pos, vel, omega = pos + sensing.position, vel + sensing.velocity, omega + sensing.rates
        error = rotation_matrix(quat_from_rotvec(sensing.attitude))
        rot = (rot.unsqueeze(-1) * error.unsqueeze(-3)).sum(-2)      # rot @ error, fused when compiled
    _, nb_pos, nb_vel = nearest_neighbors(pw, pos, vel, num_neighbors)
    return build_observation(pos - goals, vel, rot, omega, pos[..., 2:3], nb_pos, nb_vel, grid)


def keep_in_room(pos: torch.Tensor, vel: torch.Tensor, high: tuple[float, float, float], restitution: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clip drones to the walls and ceiling, bouncing them back; returns pos, vel and touching (E, M)."""
    hi = torch.tensor(high, dtype=pos.dtype, device=pos.device)
    lo = torch.tensor((-high[0], -high[1], -float("inf")), dtype=pos.dtype, device=pos.device)
    above, below = pos > hi, pos < lo
    into = (above & (vel > 0)) | (below & (vel < 0))
    vel = torch.where(into, -restitution * vel, vel)
    return torch.minimum(torch.maximum(pos, lo), hi), vel, (above | below).any(-1)


@dataclass
class Contacts:
    """What the drones touched during one control step, (E, M) each: what a collision model hands to the
    shared scoring (`finish_step`), so that another physics backend reports contacts the same way."""

    drone_impacts: torch.Tensor     # int64, new drone-drone impacts per drone
    obstacle_impacts: torch.Tensor  # bool, a new column impact
    touching_wall: torch.Tensor     # bool, touching a wall or the ceiling
    on_floor: torch.Tensor          # bool, resting on the floor


def delayed_commands(cmd: torch.Tensor, action_delay: DelayLine, substeps: int
                     ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The motor command (E, M, 4) of each physics substep after the action latency, and the delay
    line's new history: the command is pushed once per substep, as the latency is in physics steps."""
    history = action_delay.history
    delayed = []
    for _ in range(substeps):
        line = DelayLine(history=history, delay=action_delay.delay)
        delayed.append(line.push(cmd))
        history = line.history
    return delayed, history


def floor_friction(before: DroneState, after: DroneState, params: DroneParams, downwash: torch.Tensor,
                   k: StepConstants) -> DroneState:
    """Coulomb friction of the floor on the drones that `physics_step` left grounded (z = 0), after it.

    `physics_step` stops a grounded drone's downward motion and brakes its sliding and spinning (it halves
    them every physics step, which keeps a drone resting on the floor at rest: the collision sphere alone
    would roll away under the idling rotors' noise). The floor's normal impulse per unit mass is the
    vertical speed it removed, the clamped speed minus the free-flight one, v_z + dt (T_z / m - g + a_dw),
    with the collective thrust T of the substep (the rotors' thrusts as `motor_response` delivered them)
    along the body z axis at the start of the substep (body drag, zero in every shipped parameter set, is
    left out of this estimate). The contact point is the bottom of the collision sphere, r below the
    centre, so friction there resists a grounded drone's turning about a horizontal axis as much as its
    sliding (`interactions.static_contact_friction`), as pybullet's floor does: a drone that falls on the
    floor tilted cannot right itself in place and take off again. Measured with the geometric controller
    on a drone at rest on the floor, the control step at which it is 0.3 m up after 20 / 45 / 60 / 90 / 135
    degrees of tilt: torch 54 / never / never / never / never, pybullet 58 / never / 195 / 287 / never (it
    rolls upright); the brake alone, without friction: 54 / 98 / 137 / 211 / never.
    """
    grounded = after.pos[..., 2] <= 0.0
    actual = (after.thrust * (1.0 + after.motor_noise)).clamp_min(0.0).sum(-1)
    qx, qy = before.quat[..., 1], before.quat[..., 2]
    free_vz = before.vel[..., 2] + k.physics_dt * (actual / params.mass * (1.0 - 2.0 * (qx * qx + qy * qy))
                                                    - GRAVITY + downwash[..., 2])
    absorbed = torch.where(grounded, (after.vel[..., 2] - free_vz).clamp_min(0.0), 0.0)
    zero = torch.zeros_like(absorbed)
    bodies = ContactBodies(mass=params.mass, inertia=params.inertia, rot=rotation_matrix(after.quat),
                           radius=k.collision_radius)
    vel, omega = static_contact_friction(after.vel - component_major(zero, zero, absorbed), after.vel, after.omega,
                                         bodies, k.collision.friction)
    return after.replace(vel=vel, omega=omega)


def control_step(
    drones: DroneState, params: DroneParams, action_delay: DelayLine, downwash: torch.Tensor,
    goals: torch.Tensor, occupancy: torch.Tensor, obstacle_radius: torch.Tensor, stats: EpisodeStats,
    steps: torch.Tensor, action: torch.Tensor, uniforms: torch.Tensor, penalty_scale: torch.Tensor,
    k: StepConstants,
) -> StepOutput:
    """Advance E swarms by one control step for finite actions (E, M, 4), clipped here to [-1, 1].

    uniforms: (E, M, k.draws.size) uniforms in [0, 1), all the randomness of the step.
    """
    motor_draw, sensing_draw, kick_draw = split_draws(uniforms, k.draws)
    action = action.clamp(-1.0, 1.0)
    delayed, history = delayed_commands(commanded_thrust(action, params), action_delay, k.substeps)
    # Contacts carry Coulomb friction (k.collision.friction): a tangential impulse at the rim of the
    # collision sphere that slows the sliding and spins the drone, as pybullet's contacts do.
    friction = k.collision.friction > 0.0
    for i, cmd in enumerate(delayed):
        noise = motor_draw[i] if motor_draw is not None else None
        before = drones
        drones = physics_step(drones, cmd, params, k.physics_dt, noise, downwash, k.drag)
        if friction:
            drones = floor_friction(before, drones, params, downwash, k)
    pw = pairwise(drones.pos, drones.vel)
    bodies = ContactBodies(mass=params.mass, inertia=params.inertia, rot=rotation_matrix(drones.quat),
                           radius=k.collision_radius) if friction else None
    vel, pos_fix, omega, drone_impacts = resolve_drone_collisions(
        pw, drones.vel, drones.omega, k.contact_distance, k.collision, kick_draw, bodies)
    pos = drones.pos + pos_fix
    before_fixed = vel                      # the columns' and walls' normal responses start from here
    if k.has_obstacles:
        grid, nearest = distance_grid(k.obstacles, occupancy, obstacle_radius, pos[..., :2])
        pos, vel, obstacle_impacts = resolve_obstacle_collisions(
            grid[..., CENTRE_POINT], nearest, pos, vel, k.collision_radius, k.restitution)
    else:
        grid = torch.full((*pos.shape[:2], OBSTACLE_POINTS), k.obstacles.sense_range, device=pos.device)
        obstacle_impacts = torch.zeros(pos.shape[:2], dtype=torch.bool, device=pos.device)
    # Walls and ceiling last, so that no push out of a drone or a column leaves a drone outside the room.
    pos, vel, touching_wall = keep_in_room(pos, vel, k.room_high, k.restitution)
    if bodies is not None:
        vel, omega = static_contact_friction(before_fixed, vel, omega, bodies, k.collision.friction)
    drones = drones.replace(pos=pos, vel=vel, omega=omega)
    contacts = Contacts(drone_impacts=drone_impacts, obstacle_impacts=obstacle_impacts, touching_wall=touching_wall,
                        on_floor=pos[..., 2] <= FLOOR_CONTACT_HEIGHT)
    return finish_step(drones, pw, grid, contacts, action, history, downwash, goals, stats, steps, sensing_draw,
                       penalty_scale, k)


def finish_step(
    drones: DroneState, pw: Pairwise, grid: torch.Tensor, contacts: Contacts, action: torch.Tensor,
    action_history: torch.Tensor, downwash: torch.Tensor, goals: torch.Tensor, stats: EpisodeStats,
    steps: torch.Tensor, sensing_draw: torch.Tensor | None, penalty_scale: torch.Tensor, k: StepConstants,
) -> StepOutput:
    """Everything of a control step after the physics: the next downwash, reward, episode counts and
    observation of drones that have moved and collided (pw: their pairwise geometry, grid: their
    obstacle distance grid). Shared by every physics backend, so they score and observe identically."""
    wake = downwash_accel(pw, k.downwash) if k.downwash.enabled else downwash
    distance = torch.linalg.vector_norm(drones.pos - goals, dim=-1)
    up_z = 1.0 - 2.0 * (drones.quat[..., 1] ** 2 + drones.quat[..., 2] ** 2)   # R[2, 2]
    reward = step_reward(k.rewards, k.control_dt, penalty_scale, distance, action, contacts.on_floor,
                         contacts.touching_wall, up_z, drones.vel, drones.omega, contacts.drone_impacts.float(),
                         contacts.obstacle_impacts.float(), pw.dist)

    steps = steps + 1
    counted = (steps.float() * k.control_dt > k.grace_s).unsqueeze(1)
    drone_counted = contacts.drone_impacts * counted
    obstacle_counted = contacts.obstacle_impacts.long() * counted
    stats = EpisodeStats(
        collisions=stats.collisions + drone_counted + obstacle_counted,
        drone_collisions=stats.drone_collisions + drone_counted,
        obstacle_collisions=stats.obstacle_collisions + obstacle_counted,
        wall_hits=stats.wall_hits + contacts.touching_wall.long(),
        air_steps=stats.air_steps + (~contacts.on_floor).long(),
    )
    observation = observe(drones, goals, pw, grid, k.num_neighbors, Sensing.from_normals(sensing_draw, k.sensor_sigma))
    return StepOutput(drones=drones, action_history=action_history, downwash=wake, stats=stats, steps=steps,
                      reward=reward, observation=observation, observation_sum=observation.sum(), distance=distance)
