/*
 * nsw_thrust.c - see nsw_thrust.h. Mirrors sim.dynamics.commanded_thrust divided by thrust_max.
 */
#include "nsw_thrust.h"

float nsw_force_fraction(float action)
{
  const float a = action > 1.0f ? 1.0f : (action < -1.0f ? -1.0f : action);
  const float f = (a + 1.0f) * 0.5f;
  return NANOSWARM_THRUST_CURVE_C0 + f * (NANOSWARM_THRUST_CURVE_C1 + f * NANOSWARM_THRUST_CURVE_C2);
}

void nsw_motor_forces(const float action[NSW_MOTORS], float normalized[NSW_MOTORS])
{
  for (int m = 0; m < NSW_MOTORS; m++) {
    normalized[m] = nsw_force_fraction(action[m]);
  }
}
