/*
 * nsw_observation.h - the policy's observation, built onboard exactly as the simulator builds it.
 *
 * Every index comes from the layout constants of the generated policy.h (NANOSWARM_OBS_*, the shared
 * contract), so the app follows the layout the policy was exported with and a mismatch fails to compile.
 * Units and frames are the simulator's (sim/dynamics.py): SI units, world frame z-up with the floor at
 * z = 0, body frame x-forward y-left z-up, quaternions scalar-first (w, x, y, z) rotating body to world.
 */
#ifndef NSW_OBSERVATION_H
#define NSW_OBSERVATION_H

#include <stdbool.h>

#include "policy.h"

#ifndef NANOSWARM_OBS_NUM_NEIGHBORS
#error "policy.h has no NANOSWARM_OBS_* layout: generate it from an ONNX model with nanoswarm metadata"
#endif

/* The blocks this file fills, with the sizes of sim/observation.py (SELF_FIELDS, NEIGHBOR_FIELDS). */
#if NANOSWARM_OBS_SELF_REL_GOAL_LEN != 3 || NANOSWARM_OBS_SELF_VEL_LEN != 3 || NANOSWARM_OBS_SELF_ROT_LEN != 9 \
    || NANOSWARM_OBS_SELF_OMEGA_LEN != 3 || NANOSWARM_OBS_SELF_HEIGHT_LEN != 1 || NANOSWARM_OBS_NEIGHBOR_SIZE != 6 \
    || NANOSWARM_OBS_OBSTACLES_LEN != NANOSWARM_OBS_OBSTACLE_POINTS
#error "policy.h's layout differs from the one this app builds (sim/observation.py): regenerate both"
#endif

/* Offsets inside one neighbour's block, in the order of NEIGHBOR_FIELDS: relative position, then velocity. */
#define NSW_NEIGHBOR_REL_POS 0
#define NSW_NEIGHBOR_REL_VEL 3

/** Position (m) and velocity (m/s) in the world frame. */
typedef struct {
  float pos[3];
  float vel[3];
} nsw_kinematics_t;

/** What a drone knows about itself. */
typedef struct {
  nsw_kinematics_t kin;
  float quat[4];   /* attitude, body to world, scalar first: (w, x, y, z) */
  float omega[3];  /* body rates, rad/s, body frame */
} nsw_self_state_t;

/** Row-major body-to-world rotation matrix of a quaternion (w, x, y, z), normalised first.
 *  Mirrors sim.dynamics.rotation_matrix; a zero or non-finite quaternion gives NaNs. */
void nsw_rotation_matrix(const float quat[4], float rot[9]);

/** Indices of the k drones of `others` nearest to `pos`, nearest first, ties to the lower index.
 *  Mirrors sim.interactions.nearest_indices. Returns how many were found: min(k, count). */
int nsw_nearest(const float pos[3], const nsw_kinematics_t *others, int count, int k, int *picked);

/** The observation of `self` flying to `goal` among `others` (world-frame states of the other drones).
 *  Mirrors sim.step.observe and sim.observation.build_observation for one drone, with the obstacle grid of
 *  an obstacle-free world (sim.obstacles.distance_grid with no column: every point at the sensing range).
 *  With fewer than K others, each missing neighbour is a drone `absent_distance` metres away along world +x
 *  keeping pace (zero relative velocity): a far neighbour such as the policy met in training, rather than a
 *  zero vector, which would read as a drone inside this one. */
void nsw_build_observation(const nsw_self_state_t *self, const float goal[3], const nsw_kinematics_t *others,
                           int count, float absent_distance, float obs[NANOSWARM_POLICY_N_IN]);

/** True when every one of the `count` values is finite. */
bool nsw_all_finite(const float *values, int count);

#endif /* NSW_OBSERVATION_H */
