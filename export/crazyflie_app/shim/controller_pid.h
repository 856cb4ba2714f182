/* Host shim of crazyflie-firmware's controller_pid.h; shim.c's PID records what it was asked to do. */
#ifndef SHIM_CONTROLLER_PID_H
#define SHIM_CONTROLLER_PID_H

#include "stabilizer_types.h"

void controllerPidInit(void);
bool controllerPidTest(void);
void controllerPid(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors,
                   const state_t *state, const stabilizerStep_t stabilizerStep);

#endif
