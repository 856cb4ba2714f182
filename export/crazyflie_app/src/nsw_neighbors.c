/*
 * nsw_neighbors.c - see nsw_neighbors.h. Times are uint32 milliseconds; differences are taken unsigned, so
 * they stay right across the counter's wrap-around.
 */
#include "nsw_neighbors.h"

void nsw_neighbors_update(nsw_neighbor_table_t *table, uint8_t id, const nsw_kinematics_t *kin, uint32_t now_ms)
{
  nsw_neighbor_t *slot = 0;
  for (int i = 0; i < NSW_MAX_NEIGHBORS && slot == 0; i++) {
    nsw_neighbor_t *entry = &table->entries[i];
    slot = entry->used && entry->id == id ? entry : 0;
  }
  for (int i = 0; i < NSW_MAX_NEIGHBORS && slot == 0; i++) {
    slot = table->entries[i].used ? 0 : &table->entries[i];
  }
  if (slot == 0) {
    slot = &table->entries[0];
    for (int i = 1; i < NSW_MAX_NEIGHBORS; i++) {
      nsw_neighbor_t *entry = &table->entries[i];
      slot = now_ms - entry->received_ms > now_ms - slot->received_ms ? entry : slot;
    }
  }
  slot->used = true;
  slot->id = id;
  slot->received_ms = now_ms;
  slot->kin = *kin;
}

int nsw_neighbors_fresh(nsw_neighbor_table_t *table, uint8_t self_id, uint32_t now_ms, uint32_t timeout_ms,
                        nsw_kinematics_t out[NSW_MAX_NEIGHBORS])
{
  int count = 0;
  for (int i = 0; i < NSW_MAX_NEIGHBORS; i++) {
    nsw_neighbor_t *entry = &table->entries[i];
    const uint32_t age_ms = now_ms - entry->received_ms;
    if (entry->used && (age_ms > timeout_ms || entry->id == self_id)) {
      entry->used = false;
    }
    if (entry->used) {
      const float age_s = (float)age_ms * 0.001f;
      for (int a = 0; a < 3; a++) {
        out[count].pos[a] = entry->kin.pos[a] + entry->kin.vel[a] * age_s;
        out[count].vel[a] = entry->kin.vel[a];
      }
      count++;
    }
  }
  return count;
}
