/*
 * nsw_packets.c - see nsw_packets.h for the byte layouts.
 */
#include "nsw_packets.h"

#include <math.h>
#include <string.h>

#define MILLI_PER_UNIT 1000.0f
#define INT16_LIMIT 32767.0f

static void put_int16(uint8_t *out, int16_t value)
{
  const uint16_t bits = (uint16_t)value;
  out[0] = (uint8_t)(bits & 0xFFu);
  out[1] = (uint8_t)(bits >> 8);
}

static int16_t get_int16(const uint8_t *in)
{
  return (int16_t)(uint16_t)(in[0] | (in[1] << 8));
}

static float get_float(const uint8_t *in)
{
  const uint32_t bits = (uint32_t)in[0] | ((uint32_t)in[1] << 8) | ((uint32_t)in[2] << 16) | ((uint32_t)in[3] << 24);
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

/* Metres (or m/s) to saturated, rounded millimetres. */
static int16_t to_milli(float value)
{
  float milli = value * MILLI_PER_UNIT;
  milli = milli > INT16_LIMIT ? INT16_LIMIT : (milli < -INT16_LIMIT ? -INT16_LIMIT : milli);
  return (int16_t)(milli >= 0.0f ? milli + 0.5f : milli - 0.5f);
}

int nsw_pack_state(uint8_t id, const nsw_kinematics_t *kin, uint8_t out[NSW_STATE_PACKET_SIZE])
{
  if (!nsw_all_finite(kin->pos, 3) || !nsw_all_finite(kin->vel, 3)) {
    return 0;
  }
  out[0] = NSW_STATE_MAGIC;
  out[1] = NSW_PACKET_VERSION;
  out[2] = id;
  for (int i = 0; i < 3; i++) {
    put_int16(&out[3 + 2 * i], to_milli(kin->pos[i]));
    put_int16(&out[9 + 2 * i], to_milli(kin->vel[i]));
  }
  return NSW_STATE_PACKET_SIZE;
}

bool nsw_unpack_state(const uint8_t *data, size_t size, uint8_t *id, nsw_kinematics_t *kin)
{
  if (size != NSW_STATE_PACKET_SIZE || data[0] != NSW_STATE_MAGIC || data[1] != NSW_PACKET_VERSION) {
    return false;
  }
  *id = data[2];
  for (int i = 0; i < 3; i++) {
    kin->pos[i] = (float)get_int16(&data[3 + 2 * i]) / MILLI_PER_UNIT;
    kin->vel[i] = (float)get_int16(&data[9 + 2 * i]) / MILLI_PER_UNIT;
  }
  return true;
}

bool nsw_unpack_command(const uint8_t *data, size_t size, nsw_command_t *command)
{
  if (size != NSW_COMMAND_PACKET_SIZE || data[0] != NSW_PACKET_VERSION || data[13] > NSW_COMMAND_LAND) {
    return false;
  }
  float goal[3];
  for (int i = 0; i < 3; i++) {
    goal[i] = get_float(&data[1 + 4 * i]);
  }
  if (!nsw_all_finite(goal, 3)) {
    return false;
  }
  memcpy(command->goal, goal, sizeof goal);
  command->enable = data[13] == NSW_COMMAND_FLY;
  command->land = data[13] == NSW_COMMAND_LAND;
  return true;
}
