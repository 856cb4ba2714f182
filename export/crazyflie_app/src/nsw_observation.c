/*
 * nsw_observation.c - see nsw_observation.h. Every function says which Python function it mirrors; change
 * both together (tests/test_crazyflie_app.py compares them to 1e-5).
 */
#include "nsw_observation.h"

#include <math.h>

#include "nanoswarm_sensing.h"

void nsw_rotation_matrix(const float quat[4], float rot[9])
{
  /* sim.dynamics.rotation_matrix assumes a unit quaternion; the estimator's is unit only up to rounding. */
  const float scale = 1.0f / sqrtf(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
  const float w = quat[0] * scale, x = quat[1] * scale, y = quat[2] * scale, z = quat[3] * scale;
  const float xx = x * x, yy = y * y, zz = z * z;
  const float xy = x * y, xz = x * z, yz = y * z;
  const float wx = w * x, wy = w * y, wz = w * z;
  rot[0] = 1.0f - 2.0f * (yy + zz);
  rot[1] = 2.0f * (xy - wz);
  rot[2] = 2.0f * (xz + wy);
  rot[3] = 2.0f * (xy + wz);
  rot[4] = 1.0f - 2.0f * (xx + zz);
  rot[5] = 2.0f * (yz - wx);
  rot[6] = 2.0f * (xz - wy);
  rot[7] = 2.0f * (yz + wx);
  rot[8] = 1.0f - 2.0f * (xx + yy);
}

static float distance(const float a[3], const float b[3])
{
  /* sim.interactions.pairwise: sqrt(dx^2 + dy^2 + dz^2) of p_j - p_i. */
  const float dx = b[0] - a[0], dy = b[1] - a[1], dz = b[2] - a[2];
  return sqrtf(dx * dx + dy * dy + dz * dz);
}

int nsw_nearest(const float pos[3], const nsw_kinematics_t *others, int count, int k, int *picked)
{
  /* k rounds of (minimum, its first index, mask it out), as sim.interactions.nearest_indices does. */
  int found = 0;
  for (; found < k && found < count; found++) {
    int best = -1;
    float best_distance = INFINITY;
    for (int j = 0; j < count; j++) {
      bool taken = false;
      for (int p = 0; p < found; p++) {
        taken = taken || picked[p] == j;
      }
      const float d = distance(pos, others[j].pos);
      if (!taken && (best < 0 || d < best_distance)) {
        best = j;
        best_distance = d;
      }
    }
    picked[found] = best;
  }
  return found;
}

void nsw_build_observation(const nsw_self_state_t *self, const float goal[3], const nsw_kinematics_t *others,
                           int count, float absent_distance, float obs[NANOSWARM_POLICY_N_IN])
{
  const float *pos = self->kin.pos, *vel = self->kin.vel;
  for (int i = 0; i < 3; i++) {
    obs[NANOSWARM_OBS_SELF_REL_GOAL_START + i] = pos[i] - goal[i];
    obs[NANOSWARM_OBS_SELF_VEL_START + i] = vel[i];
    obs[NANOSWARM_OBS_SELF_OMEGA_START + i] = self->omega[i];
  }
  nsw_rotation_matrix(self->quat, &obs[NANOSWARM_OBS_SELF_ROT_START]);
  obs[NANOSWARM_OBS_SELF_HEIGHT_START] = pos[2];  /* height above the floor at z = 0, as sim.step.observe */

  int picked[NANOSWARM_OBS_NUM_NEIGHBORS + 1];
  const int found = nsw_nearest(pos, others, count, NANOSWARM_OBS_NUM_NEIGHBORS, picked);
  for (int n = 0; n < NANOSWARM_OBS_NUM_NEIGHBORS; n++) {
    float *slot = &obs[NANOSWARM_OBS_NEIGHBORS_START + n * NANOSWARM_OBS_NEIGHBOR_SIZE];
    for (int i = 0; i < 3; i++) {
      if (n < found) {
        /* sim.interactions.nearest_neighbors: values_j - values_i in the world frame. */
        slot[NSW_NEIGHBOR_REL_POS + i] = others[picked[n]].pos[i] - pos[i];
        slot[NSW_NEIGHBOR_REL_VEL + i] = others[picked[n]].vel[i] - vel[i];
      } else {
        slot[NSW_NEIGHBOR_REL_POS + i] = i == 0 ? absent_distance : 0.0f;
        slot[NSW_NEIGHBOR_REL_VEL + i] = 0.0f;
      }
    }
  }
  for (int p = 0; p < NANOSWARM_OBS_OBSTACLE_POINTS; p++) {
    obs[NANOSWARM_OBS_OBSTACLES_START + p] = NANOSWARM_OBSTACLE_SENSE_RANGE;
  }
}

bool nsw_all_finite(const float *values, int count)
{
  for (int i = 0; i < count; i++) {
    if (!isfinite(values[i])) {
      return false;
    }
  }
  return true;
}
