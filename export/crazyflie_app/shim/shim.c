/*
 * shim.c - host implementations of the firmware functions the nanoswarm app calls, recording what the app
 * did for the tests (shim.h). Not part of the firmware build.
 */
#include "shim.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "app_channel.h"
#include "configblock.h"
#include "controller.h"
#include "controller_pid.h"
#include "debug.h"
#include "log.h"
#include "param.h"
#include "radiolink.h"
#include "usec_time.h"

#define MAX_GROUPS 8

static uint64_t time_us;
static uint64_t radio_address = 0xE7E7E7E701ull;

void shim_set_time_us(uint64_t us) { time_us = us; }
uint64_t usecTimestamp(void) { return time_us; }
void shim_set_radio_address(uint64_t address) { radio_address = address; }
uint64_t configblockGetRadioAddress(void) { return radio_address; }

/* ---- console ---- */
static char console[8192];

void shim_console_print(const char *format, ...)
{
  const size_t used = strlen(console);
  va_list args;
  va_start(args, format);
  vsnprintf(console + used, sizeof console - used, format, args);
  va_end(args);
}

const char *shim_console(void) { return console; }

/* ---- parameters and logs ---- */
static struct { const char *group; const shim_param_t *params; } param_groups[MAX_GROUPS];
static struct { const char *group; const shim_log_t *logs; } log_groups[MAX_GROUPS];
static int param_group_count, log_group_count;

void shim_register_params(const char *group, const shim_param_t *params)
{
  param_groups[param_group_count].group = group;
  param_groups[param_group_count++].params = params;
}

void shim_register_logs(const char *group, const shim_log_t *logs)
{
  log_groups[log_group_count].group = group;
  log_groups[log_group_count++].logs = logs;
}

static void store(int type, void *address, double value)
{
  switch (type) {
    case PARAM_UINT8: *(uint8_t *)address = (uint8_t)value; break;
    case PARAM_UINT16: *(uint16_t *)address = (uint16_t)value; break;
    case PARAM_UINT32: *(uint32_t *)address = (uint32_t)value; break;
    case PARAM_INT8: *(int8_t *)address = (int8_t)value; break;
    case PARAM_INT16: *(int16_t *)address = (int16_t)value; break;
    case PARAM_INT32: *(int32_t *)address = (int32_t)value; break;
    default: *(float *)address = (float)value; break;
  }
}

static double load(int type, const void *address)
{
  switch (type) {
    case LOG_UINT8: return *(const uint8_t *)address;
    case LOG_UINT16: return *(const uint16_t *)address;
    case LOG_UINT32: return *(const uint32_t *)address;
    case LOG_INT8: return *(const int8_t *)address;
    case LOG_INT16: return *(const int16_t *)address;
    case LOG_INT32: return *(const int32_t *)address;
    default: return *(const float *)address;
  }
}

int shim_param_set(const char *group, const char *name, double value)
{
  for (int g = 0; g < param_group_count; g++) {
    for (const shim_param_t *p = param_groups[g].params; p->name; p++) {
      if (strcmp(param_groups[g].group, group) == 0 && strcmp(p->name, name) == 0) {
        store(p->type, p->address, value);
        if (p->callback) {
          p->callback();
        }
        return 0;
      }
    }
  }
  return -1;
}

/* Log variable ids: group index * 256 + entry index. */
logVarId_t logGetVarId(char *group, char *name)
{
  for (int g = 0; g < log_group_count; g++) {
    for (int i = 0; log_groups[g].logs[i].name; i++) {
      if (strcmp(log_groups[g].group, group) == 0 && strcmp(log_groups[g].logs[i].name, name) == 0) {
        return (logVarId_t)(g * 256 + i);
      }
    }
  }
  return 0xffffu;
}

float logGetFloat(logVarId_t varid)
{
  const shim_log_t *entry = &log_groups[varid / 256].logs[varid % 256];
  return (float)load(entry->type, entry->address);
}

int shim_log_read(const char *group, const char *name, double *value)
{
  char g[64], n[64];
  snprintf(g, sizeof g, "%s", group);
  snprintf(n, sizeof n, "%s", name);
  const logVarId_t id = logGetVarId(g, n);
  if (!LOG_VARID_IS_VALID(id)) {
    return -1;
  }
  const shim_log_t *entry = &log_groups[id / 256].logs[id % 256];
  *value = load(entry->type, entry->address);
  return 0;
}

/* The Kalman estimator's position variances, as its log group publishes them. */
static float kalman_variance[3];

void shim_set_position_variance(float variance)
{
  for (int i = 0; i < 3; i++) {
    kalman_variance[i] = variance;
  }
}

LOG_GROUP_START(kalman)
LOG_ADD(LOG_FLOAT, varX, &kalman_variance[0])
LOG_ADD(LOG_FLOAT, varY, &kalman_variance[1])
LOG_ADD(LOG_FLOAT, varZ, &kalman_variance[2])
LOG_GROUP_STOP(kalman)

/* ---- radio and app channel ---- */
static P2PCallback p2p_callback;
static P2PPacket p2p_sent;
static int p2p_sent_count;

void p2pRegisterCB(P2PCallback cb) { p2p_callback = cb; }

bool radiolinkSendP2PPacketBroadcast(P2PPacket *p2pp)
{
  p2p_sent = *p2pp;
  p2p_sent_count++;
  return true;
}

void shim_p2p_deliver(uint8_t port, const uint8_t *data, uint8_t size)
{
  P2PPacket packet;
  memset(&packet, 0, sizeof packet);
  packet.port = port;
  packet.size = size;
  memcpy(packet.data, data, size);
  if (p2p_callback) {
    p2p_callback(&packet);
  }
}

int shim_p2p_sent(uint8_t *port, uint8_t *data)
{
  if (p2p_sent_count == 0) {
    return 0;
  }
  *port = p2p_sent.port;
  memcpy(data, p2p_sent.data, p2p_sent.size);
  return p2p_sent.size;
}

static uint8_t channel_packet[APPCHANNEL_MTU];
static size_t channel_size;

void shim_appchannel_push(const uint8_t *data, uint32_t size)
{
  channel_size = size < sizeof channel_packet ? size : sizeof channel_packet;
  memcpy(channel_packet, data, channel_size);
}

size_t appchannelReceiveDataPacket(void *buffer, size_t max_length, int timeout_ms)
{
  (void)timeout_ms;  /* a test pushes its packet before the call: nothing to wait for */
  const size_t size = channel_size < max_length ? channel_size : max_length;
  memcpy(buffer, channel_packet, size);
  channel_size = 0;
  return size;
}

/* ---- the stock PID ---- */
static int pid_calls;
static setpoint_t pid_setpoint;

void controllerPidInit(void) {}
bool controllerPidTest(void) { return true; }

void controllerPid(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors,
                   const state_t *state, const stabilizerStep_t stabilizerStep)
{
  (void)sensors;
  (void)state;
  (void)stabilizerStep;
  pid_calls++;
  pid_setpoint = *setpoint;
  memset(control, 0, sizeof *control);
  control->controlMode = controlModeLegacy;
}

int shim_pid_calls(void) { return pid_calls; }

void shim_pid_setpoint(float position[3], float *yaw_deg, int mode[3])
{
  position[0] = pid_setpoint.position.x;
  position[1] = pid_setpoint.position.y;
  position[2] = pid_setpoint.position.z;
  *yaw_deg = pid_setpoint.attitude.yaw;
  mode[0] = pid_setpoint.mode.x;
  mode[1] = pid_setpoint.mode.y;
  mode[2] = pid_setpoint.mode.z;
}

/* ---- one stabilizer tick ---- */
int shim_tick(const float pos[3], const float vel[3], const float quat_wxyz[4], const float gyro_deg[3],
              uint32_t step, float forces[4])
{
  state_t state;
  sensorData_t sensors;
  setpoint_t setpoint;
  control_t control;
  memset(&state, 0, sizeof state);
  memset(&sensors, 0, sizeof sensors);
  memset(&setpoint, 0, sizeof setpoint);
  memset(&control, 0, sizeof control);
  state.position = (point_t){.x = pos[0], .y = pos[1], .z = pos[2]};
  state.velocity = (velocity_t){.x = vel[0], .y = vel[1], .z = vel[2]};
  state.attitudeQuaternion.w = quat_wxyz[0];
  state.attitudeQuaternion.x = quat_wxyz[1];
  state.attitudeQuaternion.y = quat_wxyz[2];
  state.attitudeQuaternion.z = quat_wxyz[3];
  sensors.gyro = (Axis3f){.x = gyro_deg[0], .y = gyro_deg[1], .z = gyro_deg[2]};
  setpoint.mode.x = setpoint.mode.y = setpoint.mode.z = modeAbs;
  setpoint.position = (point_t){.x = SHIM_COMMANDER_X, .y = SHIM_COMMANDER_Y, .z = SHIM_COMMANDER_Z};
  controllerOutOfTree(&control, &setpoint, &sensors, &state, step);
  for (int m = 0; m < 4; m++) {
    forces[m] = control.normalizedForces[m];
  }
  return control.controlMode;
}
