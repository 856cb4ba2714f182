/*
 * nsw_thrust.h - policy actions to the firmware's per-motor force commands.
 *
 * The policy's action a in [-1, 1] per motor (M1..M4, the Crazyflie's numbering, as in the simulator) is a
 * command fraction f = (a + 1) / 2; the simulator turns it into thrust_max * (c0 + c1 f + c2 f^2) newtons
 * (sim.dynamics.commanded_thrust) with the curve of hardware/params, identified against the motor
 * command. The firmware's force mode (controlModeForce) takes per-motor forces normalised by the motor's
 * maximum, normalizedForces in [0, 1], and owns the rest of the way to PWM (battery-voltage compensation
 * on brushed motors, capping). So the app hands it thrust / thrust_max = c0 + c1 f + c2 f^2: the force the
 * simulator would have produced, not the raw fraction f, which the firmware would treat as a force and
 * so mis-scale along the curve. The constants come from the generated nanoswarm_thrust_curve.h.
 */
#ifndef NSW_THRUST_H
#define NSW_THRUST_H

#include "nanoswarm_thrust_curve.h"

#define NSW_MOTORS 4

/** Normalised force (thrust / thrust_max) of one motor for action `action`, clamped to [-1, 1] first. */
float nsw_force_fraction(float action);

/** nsw_force_fraction for the four motors M1..M4. */
void nsw_motor_forces(const float action[NSW_MOTORS], float normalized[NSW_MOTORS]);

#endif /* NSW_THRUST_H */
