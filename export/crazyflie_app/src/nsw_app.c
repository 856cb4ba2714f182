/*
 * nsw_app.c - see nsw_app.h for the modes.
 */
#include "nsw_app.h"

#include <math.h>
#include <string.h>

#if NANOSWARM_POLICY_N_OUT != NSW_MOTORS
#error "the policy must output one action per motor (4); this policy.h declares a different NANOSWARM_POLICY_N_OUT"
#endif

void nsw_app_init(nsw_app_t *app, bool self_test_passed)
{
  memset(app, 0, sizeof *app);
  app->mode = NSW_MODE_IDLE;
  app->self_test_passed = self_test_passed;
}

const char *nsw_mode_name(nsw_mode_t mode)
{
  static const char *const names[] = {"IDLE", "POLICY", "HOLD", "LAND", "LANDED"};
  return (unsigned)mode < sizeof names / sizeof names[0] ? names[mode] : "?";
}

static uint8_t input_faults(const nsw_app_t *app, const nsw_config_t *config, const nsw_estimate_t *estimate,
                            const nsw_command_t *command, uint32_t now_ms)
{
  uint8_t faults = app->self_test_passed ? 0 : NSW_FAULT_SELF_TEST;
  if (config->command_timeout_ms > 0 && now_ms - command->updated_ms > config->command_timeout_ms) {
    faults |= NSW_FAULT_COMMAND_STALE;
  }
  const nsw_self_state_t *self = &estimate->self;
  const bool finite = nsw_all_finite(self->kin.pos, 3) && nsw_all_finite(self->kin.vel, 3)
                      && nsw_all_finite(self->quat, 4) && nsw_all_finite(self->omega, 3);
  /* The estimator's position uncertainty grows from the last position measurement on: that is how a
   * lost motion-capture or lighthouse fix shows. A negative value means the estimator reports none. */
  const float std = estimate->position_std;
  const bool uncertain = config->max_position_std > 0.0f && !(std < 0.0f) && !(std <= config->max_position_std);
  if (!finite || uncertain) {
    faults |= NSW_FAULT_STATE_STALE;
  }
  return faults;
}

/* Builds the observation and runs the policy; a non-finite observation or action drops the held action. */
static void evaluate(nsw_app_t *app, const nsw_config_t *config, const nsw_estimate_t *estimate,
                     const nsw_command_t *command, const nsw_kinematics_t *neighbors, int count)
{
  nsw_build_observation(&estimate->self, command->goal, neighbors, count, config->absent_distance, app->obs);
  app->policy_faults = 0;
  if (!nsw_all_finite(app->obs, NANOSWARM_POLICY_N_IN)) {
    app->policy_faults = NSW_FAULT_OBSERVATION;
    app->have_action = false;
    return;
  }
  float action[NSW_MOTORS];
  nanoswarm_policy(app->obs, action);
  app->evaluations++;
  if (!nsw_all_finite(action, NSW_MOTORS)) {
    app->policy_faults = NSW_FAULT_ACTION;
    app->have_action = false;
    return;
  }
  memcpy(app->action, action, sizeof action);
  app->have_action = true;
}

static void anchor_here(nsw_app_t *app)
{
  memcpy(app->anchor, app->last_good.pos, sizeof app->anchor);
  app->anchor_yaw = app->last_good_yaw;
}

static nsw_output_t hold_at(const float position[3], float yaw)
{
  nsw_output_t out = {.kind = NSW_OUTPUT_SETPOINT, .yaw = yaw};
  memcpy(out.position, position, sizeof out.position);
  return out;
}

nsw_output_t nsw_app_step(nsw_app_t *app, const nsw_config_t *config, const nsw_estimate_t *estimate,
                          const nsw_command_t *command, const nsw_kinematics_t *neighbors, int count,
                          uint32_t now_ms, uint32_t step)
{
  const nsw_self_state_t *self = &estimate->self;
  if (nsw_all_finite(self->kin.pos, 3) && nsw_all_finite(self->kin.vel, 3) && nsw_all_finite(self->quat, 4)) {
    float rot[9];
    nsw_rotation_matrix(self->quat, rot);
    app->last_good = self->kin;
    app->last_good_yaw = atan2f(rot[3], rot[0]);  /* heading of the body x axis in the world xy plane */
  }

  uint8_t faults = input_faults(app, config, estimate, command, now_ms);
  if (command->enable && !command->land && faults == 0) {
    const uint32_t period = config->rate_hz >= config->loop_hz ? 1u
                            : (uint32_t)config->loop_hz / (config->rate_hz > 0 ? config->rate_hz : 1u);
    /* On schedule, and at once when the policy becomes eligible, so that no stale action is ever flown;
     * after a failed evaluation, only on schedule. */
    if (step % period == 0 || (!app->have_action && app->policy_faults == 0)) {
      evaluate(app, config, estimate, command, neighbors, count);
    }
  } else {
    app->have_action = false;
    app->policy_faults = 0;
  }
  faults |= app->policy_faults;
  app->faults = faults;

  const nsw_mode_t before = app->mode;
  /* A command stale well past its timeout means the link is gone: hovering on would last until the battery
   * is flat, so the drone lands where it is (and flies again once commands return). */
  const bool link_lost = command->enable && (faults & NSW_FAULT_COMMAND_STALE) && config->link_loss_land_ms > 0
                         && now_ms - command->updated_ms
                                > (uint32_t)config->command_timeout_ms + config->link_loss_land_ms;
  nsw_mode_t mode = command->land || link_lost ? (before == NSW_MODE_LANDED ? NSW_MODE_LANDED : NSW_MODE_LAND)
                    : !command->enable ? NSW_MODE_IDLE
                    : faults ? NSW_MODE_HOLD : NSW_MODE_POLICY;
  if (mode == NSW_MODE_HOLD && before != NSW_MODE_HOLD) {
    anchor_here(app);
    app->fallbacks++;
  }
  if (mode == NSW_MODE_LAND && before != NSW_MODE_LAND) {
    anchor_here(app);
    app->land_start_ms = now_ms;
  }
  if (mode == NSW_MODE_LAND && app->last_good.pos[2] < config->land_cut_height) {
    mode = NSW_MODE_LANDED;
  }
  app->mode = mode;

  nsw_output_t out = {.kind = NSW_OUTPUT_MOTORS_OFF};
  switch (mode) {
    case NSW_MODE_IDLE:
      out.kind = NSW_OUTPUT_STOCK;
      break;
    case NSW_MODE_POLICY:
      out.kind = NSW_OUTPUT_FORCES;
      nsw_motor_forces(app->action, out.forces);
      break;
    case NSW_MODE_HOLD:
      if (app->anchor[2] >= config->land_cut_height) {
        out = hold_at(app->anchor, app->anchor_yaw);
      }
      break;
    case NSW_MODE_LAND: {
      const float descent = config->land_speed * (float)(now_ms - app->land_start_ms) * 0.001f;
      const float target[3] = {app->anchor[0], app->anchor[1], fmaxf(app->anchor[2] - descent, 0.0f)};
      out = hold_at(target, app->anchor_yaw);
      break;
    }
    case NSW_MODE_LANDED:
      break;
  }
  return out;
}
