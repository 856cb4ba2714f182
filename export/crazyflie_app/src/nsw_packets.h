/*
 * nsw_packets.h - the two wire formats of the app, byte by byte little-endian so that they read the same on
 * the Cortex-M4, on a host and in Python (nanoswarm.export.crazyflie_app mirrors both).
 *
 * State broadcast (P2P radio, drone to drone), NSW_STATE_PACKET_SIZE = 15 bytes, one per P2P packet:
 *   [0] 'N' (0x4E)   [1] version 1   [2] sender id
 *   [3..8]  position x, y, z: int16, millimetres (saturated at +-32.767 m)
 *   [9..14] velocity x, y, z: int16, millimetres per second (saturated at +-32.767 m/s)
 * Millimetres are far below the estimators' noise, and 15 bytes leave air time for larger swarms.
 *
 * Command (CRTP app channel, host to one drone), NSW_COMMAND_PACKET_SIZE = 14 bytes:
 *   [0] version 1   [1..12] goal x, y, z: float32, metres, world frame   [13] NSW_COMMAND_*
 */
#ifndef NSW_PACKETS_H
#define NSW_PACKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsw_observation.h"

/* P2P port of the broadcasts: 0, as the firmware's P2P docs advise while the API does not use ports yet;
 * receivers recognise the packets by their magic byte, version and size instead. */
#define NSW_P2P_PORT 0
#define NSW_STATE_PACKET_SIZE 15
#define NSW_STATE_MAGIC 0x4E
#define NSW_PACKET_VERSION 1
#define NSW_COMMAND_PACKET_SIZE 14

enum {
  NSW_COMMAND_DISABLE = 0,  /* stock controller, following the commander's setpoints */
  NSW_COMMAND_FLY = 1,      /* fly the policy to the goal */
  NSW_COMMAND_LAND = 2,     /* descend where the drone is and stop the motors */
};

/** Goal and mode requested by the host, with the time (ms) it last arrived. */
typedef struct {
  float goal[3];
  uint8_t enable;
  uint8_t land;
  uint32_t updated_ms;
} nsw_command_t;

/** Writes the state packet of drone `id` into `out` and returns its size, or 0 for a non-finite state. */
int nsw_pack_state(uint8_t id, const nsw_kinematics_t *kin, uint8_t out[NSW_STATE_PACKET_SIZE]);

/** Reads a state packet; false for anything that is not one (other apps' P2P traffic, other versions). */
bool nsw_unpack_state(const uint8_t *data, size_t size, uint8_t *id, nsw_kinematics_t *kin);

/** Reads a command packet into `command` (leaving updated_ms to the caller); false for a malformed packet,
 *  an unknown command or a non-finite goal, which then leaves `command` untouched. */
bool nsw_unpack_command(const uint8_t *data, size_t size, nsw_command_t *command);

#endif /* NSW_PACKETS_H */
