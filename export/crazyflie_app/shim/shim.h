/*
 * shim.h - what host tests call (through ctypes) to play the firmware around the nanoswarm app: the clock,
 * the radio, the app channel, parameters and logs, the stock PID, and one stabilizer tick.
 */
#ifndef SHIM_H
#define SHIM_H

#include <stdint.h>

/* The commander's setpoint that shim_tick hands the controller: a position the app itself never holds,
 * so a PID call carrying it is the stock controller following the commander. */
#define SHIM_COMMANDER_X 7.0f
#define SHIM_COMMANDER_Y 8.0f
#define SHIM_COMMANDER_Z 9.0f

void shim_set_time_us(uint64_t us);
void shim_set_radio_address(uint64_t address);
void shim_set_position_variance(float variance);  /* the Kalman estimator's kalman.varX/Y/Z */

/* 0 on success, -1 for an unknown group or name. */
int shim_param_set(const char *group, const char *name, double value);
int shim_log_read(const char *group, const char *name, double *value);

void shim_p2p_deliver(uint8_t port, const uint8_t *data, uint8_t size);
int shim_p2p_sent(uint8_t *port, uint8_t *data);  /* size of the last broadcast (0: none yet), and it */
void shim_appchannel_push(const uint8_t *data, uint32_t size);

const char *shim_console(void);  /* everything DEBUG_PRINTed so far */

int shim_pid_calls(void);
void shim_pid_setpoint(float position[3], float *yaw_deg, int mode[3]);  /* the last one the PID got */

/* One stabilizer tick with this state estimate and gyro (deg/s): returns the control mode the controller
 * set (controlModeLegacy when it ran the PID) and copies normalizedForces into `forces`. */
int shim_tick(const float pos[3], const float vel[3], const float quat_wxyz[4], const float gyro_deg[3],
              uint32_t step, float forces[4]);

#endif
