/*
 * nanoswarm_controller.c - the Crazyflie out-of-tree controller that flies the generated swarm policy.
 *
 * Firmware glue only; the decisions are nsw_app_step's (nsw_app.h). This file converts the firmware's state
 * to the simulator's units, keeps the command and the neighbour table that other tasks write, exposes the
 * parameters and logs, and applies the step's output to control_t. Four tasks touch it:
 *   stabilizer (controllerOutOfTree, every 1 kHz tick), radio (P2P callback), param (param callbacks) and
 *   app (appMain: own-state broadcasts and app-channel commands).
 * What they share is copied under a critical section, a few dozen bytes at a time.
 */
#include "nanoswarm_controller.h"

#include <math.h>
#include <string.h>

#include "app.h"
#include "app_channel.h"
#include "configblock.h"
#include "controller.h"
#include "controller_pid.h"
#include "FreeRTOS.h"
#include "log.h"
#include "param.h"
#include "radiolink.h"
#include "task.h"
#include "usec_time.h"

#define DEBUG_MODULE "NANOSWARM"
#include "debug.h"

#include "nanoswarm_selftest.h"
#include "nsw_app.h"
#include "nsw_neighbors.h"
#include "nsw_packets.h"

#define RAD_PER_DEG 0.0174532925f
#define DEG_PER_RAD 57.2957795f

/* Defaults of the nanoswarm.* parameters (README.md lists them). */
static nsw_config_t config = {
  .loop_hz = RATE_MAIN_LOOP,
  .rate_hz = 100,
  .command_timeout_ms = 500,
  .link_loss_land_ms = 2000,
  .neighbor_timeout_ms = 500,
  .max_position_std = 0.1f,
  .absent_distance = 4.0f,
  .land_speed = 0.3f,
  .land_cut_height = 0.05f,
};
static uint8_t broadcast_hz = 25;
static uint8_t self_id;

static nsw_app_t app;
static nsw_command_t command;           /* written by the param and app tasks */
static nsw_neighbor_table_t neighbors;  /* written by the radio task */
static nsw_kinematics_t fresh_neighbors[NSW_MAX_NEIGHBORS];  /* the stabilizer's copy; static: its stack is small */
static nsw_kinematics_t own_state;      /* written by the stabilizer, broadcast by the app task */
static bool own_state_trusted;

static float param_goal[3];
static uint8_t param_enable;
static uint8_t param_land;

static logVarId_t variance_ids[3];
static bool variance_ids_resolved;

static uint8_t log_mode;
static uint8_t log_neighbors;
static uint32_t log_step_us;

static uint32_t now_ms(void)
{
  return (uint32_t)(usecTimestamp() / 1000u);
}

/* Runs the policy on the input embedded at export time and compares with the output computed then. */
static bool run_self_test(void)
{
  float output[NANOSWARM_POLICY_N_OUT];
  nanoswarm_policy(nanoswarm_selftest_input, output);
  float worst = 0.0f;
  for (int i = 0; i < NANOSWARM_POLICY_N_OUT; i++) {
    const float error = fabsf(output[i] - nanoswarm_selftest_output[i]);
    worst = !(error <= worst) ? error : worst;  /* a NaN error stays NaN, and fails */
  }
  const bool passed = worst <= NANOSWARM_SELFTEST_TOLERANCE;
  const int micro = worst < 1000.0f ? (int)(worst * 1e6f) : -1;
  DEBUG_PRINT("policy self-test %s: largest error %d e-6 (tolerance %d e-6)\n", passed ? "passed" : "FAILED",
              micro, (int)(NANOSWARM_SELFTEST_TOLERANCE * 1e6f));
  return passed;
}

/* Largest standard deviation of the Kalman estimator's position, or -1 without that estimator's logs. */
static float position_std(void)
{
  if (!variance_ids_resolved) {
    variance_ids[0] = logGetVarId("kalman", "varX");
    variance_ids[1] = logGetVarId("kalman", "varY");
    variance_ids[2] = logGetVarId("kalman", "varZ");
    variance_ids_resolved = true;
  }
  float largest = 0.0f;
  for (int i = 0; i < 3; i++) {
    if (!LOG_VARID_IS_VALID(variance_ids[i])) {
      return -1.0f;
    }
    const float variance = logGetFloat(variance_ids[i]);
    largest = !(variance <= largest) ? variance : largest;
  }
  return sqrtf(largest);
}

static nsw_estimate_t estimate_from(const state_t *state, const sensorData_t *sensors)
{
  const nsw_estimate_t estimate = {
    .self = {
      .kin = {
        .pos = {state->position.x, state->position.y, state->position.z},
        .vel = {state->velocity.x, state->velocity.y, state->velocity.z},
      },
      /* quaternion_t names its components (its storage order is x, y, z, w); the simulator's order is
       * scalar first, (w, x, y, z), body to world, which is what the estimators write. */
      .quat = {state->attitudeQuaternion.w, state->attitudeQuaternion.x, state->attitudeQuaternion.y,
               state->attitudeQuaternion.z},
      /* The gyro is in the body frame (x forward, y left, z up) like the simulator's rates, but in deg/s. */
      .omega = {sensors->gyro.x * RAD_PER_DEG, sensors->gyro.y * RAD_PER_DEG, sensors->gyro.z * RAD_PER_DEG},
    },
    .position_std = position_std(),
  };
  return estimate;
}

static void report_mode_change(nsw_mode_t before)
{
  const uint8_t f = app.faults;
  DEBUG_PRINT("%s -> %s%s%s%s%s%s\n", nsw_mode_name(before), nsw_mode_name(app.mode),
              f & NSW_FAULT_COMMAND_STALE ? " [command stale]" : "",
              f & NSW_FAULT_STATE_STALE ? " [state estimate stale]" : "",
              f & NSW_FAULT_OBSERVATION ? " [observation not finite]" : "",
              f & NSW_FAULT_ACTION ? " [action not finite]" : "",
              f & NSW_FAULT_SELF_TEST ? " [policy failed its self-test]" : "");
}

static setpoint_t hold_setpoint(const nsw_output_t *out)
{
  setpoint_t setpoint;
  memset(&setpoint, 0, sizeof setpoint);
  setpoint.mode.x = modeAbs;
  setpoint.mode.y = modeAbs;
  setpoint.mode.z = modeAbs;
  setpoint.position.x = out->position[0];
  setpoint.position.y = out->position[1];
  setpoint.position.z = out->position[2];
  setpoint.mode.yaw = modeAbs;
  setpoint.attitude.yaw = out->yaw * DEG_PER_RAD;
  return setpoint;
}

static void apply(const nsw_output_t *out, control_t *control, const setpoint_t *setpoint,
                  const sensorData_t *sensors, const state_t *state, stabilizerStep_t step)
{
  switch (out->kind) {
    case NSW_OUTPUT_STOCK:
      controllerPid(control, setpoint, sensors, state, step);
      break;
    case NSW_OUTPUT_SETPOINT: {
      const setpoint_t hold = hold_setpoint(out);
      controllerPid(control, &hold, sensors, state, step);
      break;
    }
    case NSW_OUTPUT_FORCES:
    case NSW_OUTPUT_MOTORS_OFF:
      control->controlMode = controlModeForce;
      for (int m = 0; m < NSW_MOTORS; m++) {
        control->normalizedForces[m] = out->forces[m];
      }
      break;
  }
}

static void on_command_param(void)
{
  const uint32_t now = now_ms();
  taskENTER_CRITICAL();
  memcpy(command.goal, param_goal, sizeof param_goal);
  command.enable = param_enable != 0;
  command.land = param_land != 0;
  command.updated_ms = now;
  taskEXIT_CRITICAL();
}

static void on_p2p_packet(P2PPacket *packet)
{
  uint8_t id;
  nsw_kinematics_t kin;
  if (!nsw_unpack_state(packet->data, packet->size, &id, &kin)) {
    return;
  }
  const uint32_t now = now_ms();
  taskENTER_CRITICAL();
  nsw_neighbors_update(&neighbors, id, &kin, now);
  taskEXIT_CRITICAL();
}

static void broadcast_own_state(void)
{
  nsw_kinematics_t kin;
  bool trusted;
  taskENTER_CRITICAL();
  kin = own_state;
  trusted = own_state_trusted;
  taskEXIT_CRITICAL();
  /* A drone unsure of its own position stays silent: its neighbours drop it after their timeout rather
   * than steer around a wrong position. */
  P2PPacket packet;
  packet.port = NSW_P2P_PORT;
  const int size = trusted ? nsw_pack_state(self_id, &kin, packet.data) : 0;
  if (size > 0) {
    packet.size = (uint8_t)size;
    radiolinkSendP2PPacketBroadcast(&packet);
  }
}

void nanoswarmServiceLinks(void)
{
  static uint32_t next_broadcast_ms;
  const uint32_t now = now_ms();
  if ((int32_t)(now - next_broadcast_ms) >= 0) {
    broadcast_own_state();
    next_broadcast_ms = now + 1000u / (broadcast_hz > 0 ? broadcast_hz : 1u);
  }
  uint8_t packet[APPCHANNEL_MTU];
  const size_t size = appchannelReceiveDataPacket(packet, sizeof packet, (int)(next_broadcast_ms - now));
  nsw_command_t received = {.updated_ms = 0};
  if (size > 0 && nsw_unpack_command(packet, size, &received)) {
    received.updated_ms = now_ms();
    taskENTER_CRITICAL();
    command = received;
    taskEXIT_CRITICAL();
  }
}

void appMain(void)
{
  DEBUG_PRINT("ready; fly it with stabilizer.controller = out-of-tree\n");
  for (;;) {
    nanoswarmServiceLinks();
  }
}

void controllerOutOfTreeInit(void)
{
  controllerPidInit();  /* the fallback and idle controller */
  self_id = (uint8_t)(configblockGetRadioAddress() & 0xFFu);
  nsw_app_init(&app, run_self_test());
  p2pRegisterCB(on_p2p_packet);
}

bool controllerOutOfTreeTest(void)
{
  return run_self_test() && controllerPidTest();
}

void controllerOutOfTree(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors,
                         const state_t *state, const stabilizerStep_t stabilizerStep)
{
  const uint32_t now = now_ms();
  const nsw_estimate_t estimate = estimate_from(state, sensors);
  nsw_command_t current;
  taskENTER_CRITICAL();
  current = command;
  const int count = nsw_neighbors_fresh(&neighbors, self_id, now, config.neighbor_timeout_ms, fresh_neighbors);
  taskEXIT_CRITICAL();

  const nsw_mode_t before = app.mode;
  const uint32_t evaluations = app.evaluations;
  const uint64_t start_us = usecTimestamp();
  const nsw_output_t out = nsw_app_step(&app, &config, &estimate, &current, fresh_neighbors, count, now,
                                        stabilizerStep);
  if (app.evaluations != evaluations) {
    log_step_us = (uint32_t)(usecTimestamp() - start_us);
  }
  if (app.mode != before) {
    report_mode_change(before);
  }

  taskENTER_CRITICAL();
  own_state = estimate.self.kin;
  own_state_trusted = !(app.faults & NSW_FAULT_STATE_STALE);
  taskEXIT_CRITICAL();
  log_mode = (uint8_t)app.mode;
  log_neighbors = (uint8_t)count;

  apply(&out, control, setpoint, sensors, state, stabilizerStep);
}

/**
 * The host's command (README.md): goal in metres, world frame; enable flies the policy; land descends.
 * Setting any of them refreshes the command's timestamp, like an app-channel packet.
 */
PARAM_GROUP_START(nanoswarm)
PARAM_ADD_WITH_CALLBACK(PARAM_FLOAT, goalX, &param_goal[0], on_command_param)
PARAM_ADD_WITH_CALLBACK(PARAM_FLOAT, goalY, &param_goal[1], on_command_param)
PARAM_ADD_WITH_CALLBACK(PARAM_FLOAT, goalZ, &param_goal[2], on_command_param)
PARAM_ADD_WITH_CALLBACK(PARAM_UINT8, enable, &param_enable, on_command_param)
PARAM_ADD_WITH_CALLBACK(PARAM_UINT8, land, &param_land, on_command_param)
PARAM_ADD(PARAM_UINT16, rateHz, &config.rate_hz)
PARAM_ADD(PARAM_UINT16, cmdTimeout, &config.command_timeout_ms)
PARAM_ADD(PARAM_UINT16, lossLandMs, &config.link_loss_land_ms)
PARAM_ADD(PARAM_UINT16, nbrTimeout, &config.neighbor_timeout_ms)
PARAM_ADD(PARAM_FLOAT, maxPosStd, &config.max_position_std)
PARAM_ADD(PARAM_FLOAT, absentDist, &config.absent_distance)
PARAM_ADD(PARAM_FLOAT, landSpeed, &config.land_speed)
PARAM_ADD(PARAM_FLOAT, landCutZ, &config.land_cut_height)
PARAM_ADD(PARAM_UINT8, txHz, &broadcast_hz)
PARAM_ADD(PARAM_UINT8, id, &self_id)
PARAM_GROUP_STOP(nanoswarm)

LOG_GROUP_START(nanoswarm)
LOG_ADD(LOG_UINT8, mode, &log_mode)
LOG_ADD(LOG_UINT8, faults, &app.faults)
LOG_ADD(LOG_UINT32, fallbacks, &app.fallbacks)
LOG_ADD(LOG_UINT32, evals, &app.evaluations)
LOG_ADD(LOG_UINT8, nbrs, &log_neighbors)
LOG_ADD(LOG_UINT32, stepUs, &log_step_us)
LOG_ADD(LOG_FLOAT, a1, &app.action[0])
LOG_ADD(LOG_FLOAT, a2, &app.action[1])
LOG_ADD(LOG_FLOAT, a3, &app.action[2])
LOG_ADD(LOG_FLOAT, a4, &app.action[3])
LOG_GROUP_STOP(nanoswarm)
