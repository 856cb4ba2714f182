/*
 * nsw_app.h - what the controller does on each tick, as a plain function of its inputs.
 *
 * No firmware types and no clock: the firmware glue (nanoswarm_controller.c) converts the estimator's state,
 * reads the time and applies the output, so this logic runs the same in the firmware, in host tests and in
 * the virtual Crazyflie.
 *
 * Modes and what the motors get:
 *   IDLE    not enabled: the stock PID follows the commander's setpoints, as without this app;
 *   POLICY  enabled, every input fresh: the policy's last action, through the thrust curve;
 *   HOLD    enabled but an input is stale or not finite (faults say which): the stock PID holds the position
 *           where the fault began, or the motors stop if that is on the floor; the policy resumes by itself
 *           once the faults clear;
 *   LAND    commanded, or the command stale for link_loss_land_ms beyond its timeout (a lost link): the
 *           stock PID descends at land_speed from where the landing began;
 *   LANDED  the landing reached the floor: motors off until the land command is withdrawn.
 */
#ifndef NSW_APP_H
#define NSW_APP_H

#include <stdbool.h>
#include <stdint.h>

#include "nsw_observation.h"
#include "nsw_packets.h"
#include "nsw_thrust.h"

typedef enum {
  NSW_MODE_IDLE = 0,
  NSW_MODE_POLICY = 1,
  NSW_MODE_HOLD = 2,
  NSW_MODE_LAND = 3,
  NSW_MODE_LANDED = 4,
} nsw_mode_t;

/* Bits of nsw_app_t.faults. */
enum {
  NSW_FAULT_COMMAND_STALE = 1u << 0,  /* no goal/enable for longer than command_timeout_ms */
  NSW_FAULT_STATE_STALE = 1u << 1,    /* state estimate not finite, or less certain than max_position_std */
  NSW_FAULT_OBSERVATION = 1u << 2,    /* the observation built from them is not finite */
  NSW_FAULT_ACTION = 1u << 3,         /* the policy's action is not finite */
  NSW_FAULT_SELF_TEST = 1u << 4,      /* the policy failed its self-test at start-up: never flown */
};

/** Tuning, exposed as firmware parameters by the glue. */
typedef struct {
  uint16_t loop_hz;               /* rate of the tick counter (the stabilizer loop) */
  uint16_t rate_hz;               /* policy evaluations per second, decimated from the loop */
  uint16_t command_timeout_ms;    /* 0: the command never goes stale (bench tests only) */
  uint16_t link_loss_land_ms;     /* stale this much longer: the link is lost and the drone lands; 0: holds */
  uint16_t neighbor_timeout_ms;   /* used by the glue for nsw_neighbors_fresh */
  float max_position_std;         /* m; 0: only finiteness is checked */
  float absent_distance;          /* m, see nsw_build_observation */
  float land_speed;               /* m/s */
  float land_cut_height;          /* m: below this the drone counts as on the floor */
} nsw_config_t;

/** The drone's state estimate. */
typedef struct {
  nsw_self_state_t self;
  float position_std;             /* m, largest axis; negative when the estimator reports none */
} nsw_estimate_t;

typedef enum {
  NSW_OUTPUT_STOCK,       /* run the stock PID on the commander's setpoint */
  NSW_OUTPUT_FORCES,      /* normalised per-motor forces, controlModeForce */
  NSW_OUTPUT_SETPOINT,    /* run the stock PID on a position-hold setpoint */
  NSW_OUTPUT_MOTORS_OFF,  /* all forces zero */
} nsw_output_kind_t;

typedef struct {
  nsw_output_kind_t kind;
  float forces[NSW_MOTORS];  /* NSW_OUTPUT_FORCES: M1..M4 */
  float position[3];         /* NSW_OUTPUT_SETPOINT: m, world frame */
  float yaw;                 /* NSW_OUTPUT_SETPOINT: rad */
} nsw_output_t;

typedef struct {
  nsw_mode_t mode;
  uint8_t faults;             /* NSW_FAULT_* bits of the last tick */
  uint8_t policy_faults;      /* faults of the last policy evaluation, held until the next one */
  bool self_test_passed;
  bool have_action;
  float action[NSW_MOTORS];   /* the last finite action, held between evaluations */
  float obs[NANOSWARM_POLICY_N_IN];
  nsw_kinematics_t last_good; /* the last finite own state, where a HOLD or LAND starts */
  float last_good_yaw;
  float anchor[3];            /* HOLD: the held position; LAND: where the descent began */
  float anchor_yaw;
  uint32_t land_start_ms;
  uint32_t evaluations;       /* policy evaluations so far */
  uint32_t fallbacks;         /* entries into HOLD so far */
} nsw_app_t;

/** Starts in IDLE; `self_test_passed` is the result of the start-up self-test. */
void nsw_app_init(nsw_app_t *app, bool self_test_passed);

/** One tick at time `now_ms` and stabilizer step `step`, with the `count` fresh neighbour states. */
nsw_output_t nsw_app_step(nsw_app_t *app, const nsw_config_t *config, const nsw_estimate_t *estimate,
                          const nsw_command_t *command, const nsw_kinematics_t *neighbors, int count,
                          uint32_t now_ms, uint32_t step);

/** A short name of a mode, for the console. */
const char *nsw_mode_name(nsw_mode_t mode);

#endif /* NSW_APP_H */
