/*
 * nsw_neighbors.h - the table of the other drones' latest broadcast states, with their arrival times.
 *
 * The radio task writes it (nsw_neighbors_update, from the P2P callback) and the stabilizer task reads it
 * (nsw_neighbors_fresh); the caller guards both with a critical section. Plain data, no locking inside, so
 * that the same code runs in the firmware, in host tests and in the virtual Crazyflie.
 */
#ifndef NSW_NEIGHBORS_H
#define NSW_NEIGHBORS_H

#include <stdbool.h>
#include <stdint.h>

#include "nsw_observation.h"

/* Drones tracked at once; a full table replaces the entry heard from longest ago. */
#define NSW_MAX_NEIGHBORS 16

typedef struct {
  bool used;
  uint8_t id;
  uint32_t received_ms;
  nsw_kinematics_t kin;
} nsw_neighbor_t;

typedef struct {
  nsw_neighbor_t entries[NSW_MAX_NEIGHBORS];
} nsw_neighbor_table_t;

/** Records the state drone `id` broadcast, heard at `now_ms`. */
void nsw_neighbors_update(nsw_neighbor_table_t *table, uint8_t id, const nsw_kinematics_t *kin, uint32_t now_ms);

/** Drops the entries older than `timeout_ms` (and any carrying `self_id`, an echo of our own id), and
 *  writes the others into `out` with their positions extrapolated to `now_ms` at their broadcast velocity,
 *  which makes up for the radio's delay. Returns how many it wrote (at most NSW_MAX_NEIGHBORS). */
int nsw_neighbors_fresh(nsw_neighbor_table_t *table, uint8_t self_id, uint32_t now_ms, uint32_t timeout_ms,
                        nsw_kinematics_t out[NSW_MAX_NEIGHBORS]);

#endif /* NSW_NEIGHBORS_H */
