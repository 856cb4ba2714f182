/*
 * nsw_virtual.c - the nanoswarm app of N virtual Crazyflies behind one C call per control tick.
 *
 * The virtual drone runs the app's own onboard logic (nsw_app.c, nsw_observation.c, nsw_neighbors.c,
 * nsw_packets.c, nsw_thrust.c and the generated policy.c), compiled for the host; this file stands in for
 * the firmware glue (nanoswarm_controller.c) and does what it does, for every drone at once:
 *   - one stabilizer tick: estimate in, nsw_app_step, output out (nsw_swarm_step);
 *   - the app task's own-state broadcast at nanoswarm.txHz (nsw_swarm_broadcast) and the radio task's
 *     P2P callback (nsw_swarm_deliver);
 *   - app-channel commands and the command parameters' callback (nsw_swarm_command, nsw_swarm_command_set);
 *   - the nanoswarm.* parameters and logs, as a table of names, types and addresses that the virtual
 *     drone's parameter and log TOCs read and write (nsw_variable_*, nsw_swarm_variable);
 *   - the start-up self-test on the input and output of nanoswarm_selftest.h (nsw_self_test).
 * There is no firmware, no clock and no locking here: the caller passes the time and serialises calls.
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nanoswarm_selftest.h"
#include "nsw_app.h"
#include "nsw_neighbors.h"
#include "nsw_packets.h"

/* Floats per drone of the estimate nsw_swarm_step reads: position 3, velocity 3, quaternion (w, x, y, z) 4,
 * body rates (rad/s) 3, position standard deviation (m, negative for none) 1. */
#define NSW_ESTIMATE_FLOATS 14
/* Floats per drone of the output: forces M1..M4, then hold position x, y, z and yaw. */
#define NSW_OUTPUT_FLOATS 8

typedef struct {
  nsw_app_t app;
  nsw_config_t config;
  nsw_command_t command;
  nsw_neighbor_table_t neighbors;
  nsw_kinematics_t fresh[NSW_MAX_NEIGHBORS];
  nsw_kinematics_t own_state;
  bool own_state_trusted;
  uint32_t next_broadcast_ms;
  float param_goal[3];
  uint8_t param_enable;
  uint8_t param_land;
  uint8_t broadcast_hz;
  uint8_t self_id;
  uint8_t log_mode;
  uint8_t log_neighbors;
  uint32_t log_step_us;
} nsw_drone_t;

typedef struct {
  int count;
  uint32_t step;
  nsw_drone_t *drones;
} nsw_swarm_t;

/* Every function below is called through ctypes only; the prototypes keep -Wmissing-prototypes quiet. */
int nsw_self_test(float *worst_error);
nsw_swarm_t *nsw_swarm_create(int count, const uint8_t *ids, int loop_hz, int self_test_passed);
void nsw_swarm_destroy(nsw_swarm_t *swarm);
void nsw_swarm_step(nsw_swarm_t *swarm, const float *estimates, const uint8_t *active, uint32_t now_ms,
                    int32_t *kinds, float *outputs, uint8_t *modes, uint8_t *faults);
int nsw_swarm_broadcast(nsw_swarm_t *swarm, uint32_t now_ms, int32_t *senders, uint8_t *packets);
void nsw_swarm_deliver(nsw_swarm_t *swarm, const uint8_t *packets, const uint8_t *receivers, int count,
                       uint32_t now_ms);
int nsw_swarm_command(nsw_swarm_t *swarm, int drone, const uint8_t *data, size_t size, uint32_t now_ms);
void nsw_swarm_command_set(nsw_swarm_t *swarm, int drone, uint32_t now_ms);
int nsw_variable_count(void);
const char *nsw_variable_name(int index);
int nsw_variable_kind(int index);
int nsw_variable_type(int index);
void *nsw_swarm_variable(nsw_swarm_t *swarm, int drone, int index);

/* nanoswarm_controller.c's run_self_test: the policy on the embedded input, against the embedded output. */
int nsw_self_test(float *worst_error)
{
  float output[NANOSWARM_POLICY_N_OUT];
  nanoswarm_policy(nanoswarm_selftest_input, output);
  float worst = 0.0f;
  for (int i = 0; i < NANOSWARM_POLICY_N_OUT; i++) {
    const float error = fabsf(output[i] - nanoswarm_selftest_output[i]);
    worst = !(error <= worst) ? error : worst;  /* a NaN error stays NaN, and fails */
  }
  *worst_error = worst;
  return worst <= NANOSWARM_SELFTEST_TOLERANCE;
}

/* The parameter defaults of nanoswarm_controller.c, with the loop at the virtual drone's control rate. */
nsw_swarm_t *nsw_swarm_create(int count, const uint8_t *ids, int loop_hz, int self_test_passed)
{
  nsw_swarm_t *swarm = calloc(1, sizeof *swarm);
  nsw_drone_t *drones = calloc((size_t)(count > 0 ? count : 1), sizeof *drones);
  if (swarm == NULL || drones == NULL) {
    free(swarm);
    free(drones);
    return NULL;
  }
  swarm->count = count;
  swarm->drones = drones;
  for (int i = 0; i < count; i++) {
    nsw_drone_t *d = &drones[i];
    d->config.loop_hz = (uint16_t)loop_hz;
    d->config.rate_hz = 100;
    d->config.command_timeout_ms = 500;
    d->config.link_loss_land_ms = 2000;
    d->config.neighbor_timeout_ms = 500;
    d->config.max_position_std = 0.1f;
    d->config.absent_distance = 4.0f;
    d->config.land_speed = 0.3f;
    d->config.land_cut_height = 0.05f;
    d->broadcast_hz = 25;
    d->self_id = ids[i];
    nsw_app_init(&d->app, self_test_passed != 0);
  }
  return swarm;
}

void nsw_swarm_destroy(nsw_swarm_t *swarm)
{
  if (swarm != NULL) {
    free(swarm->drones);
    free(swarm);
  }
}

/* The host's microsecond clock, for nanoswarm.stepUs (host time, not the Crazyflie's). */
static uint64_t microseconds_now(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

static nsw_estimate_t estimate_from(const float *e)
{
  nsw_estimate_t estimate;
  memcpy(estimate.self.kin.pos, &e[0], 3 * sizeof(float));
  memcpy(estimate.self.kin.vel, &e[3], 3 * sizeof(float));
  memcpy(estimate.self.quat, &e[6], 4 * sizeof(float));
  memcpy(estimate.self.omega, &e[10], 3 * sizeof(float));
  estimate.position_std = e[13];
  return estimate;
}

/* One stabilizer tick of the drones whose controller is the app (`active`); the others are left alone,
 * as the firmware does not call an out-of-tree controller it has not selected. */
void nsw_swarm_step(nsw_swarm_t *swarm, const float *estimates, const uint8_t *active, uint32_t now_ms,
                    int32_t *kinds, float *outputs, uint8_t *modes, uint8_t *faults)
{
  for (int i = 0; i < swarm->count; i++) {
    nsw_drone_t *d = &swarm->drones[i];
    float *out = &outputs[i * NSW_OUTPUT_FLOATS];
    if (active[i]) {
      const nsw_estimate_t estimate = estimate_from(&estimates[i * NSW_ESTIMATE_FLOATS]);
      const int count = nsw_neighbors_fresh(&d->neighbors, d->self_id, now_ms, d->config.neighbor_timeout_ms,
                                            d->fresh);
      const uint32_t evaluations = d->app.evaluations;
      const uint64_t start_us = microseconds_now();
      const nsw_output_t step = nsw_app_step(&d->app, &d->config, &estimate, &d->command, d->fresh, count,
                                             now_ms, swarm->step);
      if (d->app.evaluations != evaluations) {
        d->log_step_us = (uint32_t)(microseconds_now() - start_us);
      }
      d->own_state = estimate.self.kin;
      d->own_state_trusted = !(d->app.faults & NSW_FAULT_STATE_STALE);
      d->log_mode = (uint8_t)d->app.mode;
      d->log_neighbors = (uint8_t)count;
      kinds[i] = (int32_t)step.kind;
      memcpy(&out[0], step.forces, sizeof step.forces);
      memcpy(&out[4], step.position, sizeof step.position);
      out[7] = step.yaw;
    } else {
      kinds[i] = (int32_t)NSW_OUTPUT_STOCK;
      memset(out, 0, NSW_OUTPUT_FLOATS * sizeof(float));
    }
    modes[i] = d->log_mode;
    faults[i] = d->app.faults;
  }
  swarm->step++;
}

/* The app task's broadcasts due at `now_ms`: sender indices and their 15-byte state packets, packed one
 * after another. A drone unsure of its own position stays silent, as in the firmware. */
int nsw_swarm_broadcast(nsw_swarm_t *swarm, uint32_t now_ms, int32_t *senders, uint8_t *packets)
{
  int sent = 0;
  for (int i = 0; i < swarm->count; i++) {
    nsw_drone_t *d = &swarm->drones[i];
    if ((int32_t)(now_ms - d->next_broadcast_ms) < 0) {
      continue;
    }
    d->next_broadcast_ms = now_ms + 1000u / (d->broadcast_hz > 0 ? d->broadcast_hz : 1u);
    uint8_t *packet = &packets[sent * NSW_STATE_PACKET_SIZE];
    if (d->own_state_trusted && nsw_pack_state(d->self_id, &d->own_state, packet) > 0) {
      senders[sent++] = i;
    }
  }
  return sent;
}

/* The radio task's P2P callback: packet p reaches drone r where receivers[p * count_of_drones + r] is set. */
void nsw_swarm_deliver(nsw_swarm_t *swarm, const uint8_t *packets, const uint8_t *receivers, int count,
                       uint32_t now_ms)
{
  for (int p = 0; p < count; p++) {
    uint8_t id;
    nsw_kinematics_t kin;
    if (!nsw_unpack_state(&packets[p * NSW_STATE_PACKET_SIZE], NSW_STATE_PACKET_SIZE, &id, &kin)) {
      continue;
    }
    for (int r = 0; r < swarm->count; r++) {
      if (receivers[p * swarm->count + r]) {
        nsw_neighbors_update(&swarm->drones[r].neighbors, id, &kin, now_ms);
      }
    }
  }
}

/* An app-channel packet; returns 1 when it was a valid command (the firmware ignores the others). */
int nsw_swarm_command(nsw_swarm_t *swarm, int drone, const uint8_t *data, size_t size, uint32_t now_ms)
{
  nsw_command_t received = {.updated_ms = 0};
  if (drone < 0 || drone >= swarm->count || !nsw_unpack_command(data, size, &received)) {
    return 0;
  }
  received.updated_ms = now_ms;
  swarm->drones[drone].command = received;
  return 1;
}

/* The callback of the command parameters (goalX/Y/Z, enable, land): they become the command, now. */
void nsw_swarm_command_set(nsw_swarm_t *swarm, int drone, uint32_t now_ms)
{
  nsw_drone_t *d = &swarm->drones[drone];
  memcpy(d->command.goal, d->param_goal, sizeof d->param_goal);
  d->command.enable = d->param_enable != 0;
  d->command.land = d->param_land != 0;
  d->command.updated_ms = now_ms;
}

/* The nanoswarm.* parameters and logs of nanoswarm_controller.c, in its order. */
enum { NSW_VAR_PARAM = 0, NSW_VAR_COMMAND_PARAM = 1, NSW_VAR_LOG = 2 };
enum { NSW_VAR_UINT8 = 0, NSW_VAR_UINT16 = 1, NSW_VAR_UINT32 = 2, NSW_VAR_FLOAT = 3 };

typedef struct {
  const char *name;
  int kind;
  int type;
  size_t offset;
} nsw_variable_t;

#define FIELD(member) offsetof(nsw_drone_t, member)
#define ELEMENT(member, index, type) (offsetof(nsw_drone_t, member) + (index) * sizeof(type))

static const nsw_variable_t variables[] = {
  {"goalX", NSW_VAR_COMMAND_PARAM, NSW_VAR_FLOAT, ELEMENT(param_goal, 0, float)},
  {"goalY", NSW_VAR_COMMAND_PARAM, NSW_VAR_FLOAT, ELEMENT(param_goal, 1, float)},
  {"goalZ", NSW_VAR_COMMAND_PARAM, NSW_VAR_FLOAT, ELEMENT(param_goal, 2, float)},
  {"enable", NSW_VAR_COMMAND_PARAM, NSW_VAR_UINT8, FIELD(param_enable)},
  {"land", NSW_VAR_COMMAND_PARAM, NSW_VAR_UINT8, FIELD(param_land)},
  {"rateHz", NSW_VAR_PARAM, NSW_VAR_UINT16, FIELD(config.rate_hz)},
  {"cmdTimeout", NSW_VAR_PARAM, NSW_VAR_UINT16, FIELD(config.command_timeout_ms)},
  {"lossLandMs", NSW_VAR_PARAM, NSW_VAR_UINT16, FIELD(config.link_loss_land_ms)},
  {"nbrTimeout", NSW_VAR_PARAM, NSW_VAR_UINT16, FIELD(config.neighbor_timeout_ms)},
  {"maxPosStd", NSW_VAR_PARAM, NSW_VAR_FLOAT, FIELD(config.max_position_std)},
  {"absentDist", NSW_VAR_PARAM, NSW_VAR_FLOAT, FIELD(config.absent_distance)},
  {"landSpeed", NSW_VAR_PARAM, NSW_VAR_FLOAT, FIELD(config.land_speed)},
  {"landCutZ", NSW_VAR_PARAM, NSW_VAR_FLOAT, FIELD(config.land_cut_height)},
  {"txHz", NSW_VAR_PARAM, NSW_VAR_UINT8, FIELD(broadcast_hz)},
  {"id", NSW_VAR_PARAM, NSW_VAR_UINT8, FIELD(self_id)},
  {"mode", NSW_VAR_LOG, NSW_VAR_UINT8, FIELD(log_mode)},
  {"faults", NSW_VAR_LOG, NSW_VAR_UINT8, FIELD(app.faults)},
  {"fallbacks", NSW_VAR_LOG, NSW_VAR_UINT32, FIELD(app.fallbacks)},
  {"evals", NSW_VAR_LOG, NSW_VAR_UINT32, FIELD(app.evaluations)},
  {"nbrs", NSW_VAR_LOG, NSW_VAR_UINT8, FIELD(log_neighbors)},
  {"stepUs", NSW_VAR_LOG, NSW_VAR_UINT32, FIELD(log_step_us)},
  {"a1", NSW_VAR_LOG, NSW_VAR_FLOAT, ELEMENT(app.action, 0, float)},
  {"a2", NSW_VAR_LOG, NSW_VAR_FLOAT, ELEMENT(app.action, 1, float)},
  {"a3", NSW_VAR_LOG, NSW_VAR_FLOAT, ELEMENT(app.action, 2, float)},
  {"a4", NSW_VAR_LOG, NSW_VAR_FLOAT, ELEMENT(app.action, 3, float)},
};

#define VARIABLE_COUNT ((int)(sizeof variables / sizeof variables[0]))

int nsw_variable_count(void)
{
  return VARIABLE_COUNT;
}

const char *nsw_variable_name(int index)
{
  return index >= 0 && index < VARIABLE_COUNT ? variables[index].name : NULL;
}

int nsw_variable_kind(int index)
{
  return index >= 0 && index < VARIABLE_COUNT ? variables[index].kind : -1;
}

int nsw_variable_type(int index)
{
  return index >= 0 && index < VARIABLE_COUNT ? variables[index].type : -1;
}

void *nsw_swarm_variable(nsw_swarm_t *swarm, int drone, int index)
{
  if (drone < 0 || drone >= swarm->count || index < 0 || index >= VARIABLE_COUNT) {
    return NULL;
  }
  return (uint8_t *)&swarm->drones[drone] + variables[index].offset;
}
