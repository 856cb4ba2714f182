/*
 * Host shim of crazyflie-firmware's param.h. The firmware collects PARAM_GROUP tables in a linker section;
 * here each table registers itself at load time, so a test can set a parameter by group and name
 * (shim_param_set) and its callback runs as the firmware's param task would run it.
 */
#ifndef SHIM_PARAM_H
#define SHIM_PARAM_H

enum { PARAM_UINT8 = 1, PARAM_UINT16, PARAM_UINT32, PARAM_INT8, PARAM_INT16, PARAM_INT32, PARAM_FLOAT };

typedef struct {
  int type;
  const char *name;
  void *address;
  void (*callback)(void);
} shim_param_t;

void shim_register_params(const char *group, const shim_param_t *params);

#define PARAM_GROUP_START(NAME) static const shim_param_t shim_params_##NAME[] = {
#define PARAM_ADD(TYPE, NAME, ADDRESS) {(TYPE), #NAME, (void *)(ADDRESS), 0},
#define PARAM_ADD_WITH_CALLBACK(TYPE, NAME, ADDRESS, CALLBACK) {(TYPE), #NAME, (void *)(ADDRESS), (CALLBACK)},
#define PARAM_GROUP_STOP(NAME) {0, 0, 0, 0}}; \
  __attribute__((constructor)) static void shim_register_params_##NAME(void) \
  { shim_register_params(#NAME, shim_params_##NAME); }

#endif
