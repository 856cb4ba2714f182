/* Host shim of crazyflie-firmware's log.h: log tables register themselves like the param shim's. */
#ifndef SHIM_LOG_H
#define SHIM_LOG_H

#include <stdint.h>

enum { LOG_UINT8 = 1, LOG_UINT16, LOG_UINT32, LOG_INT8, LOG_INT16, LOG_INT32, LOG_FLOAT };

typedef struct {
  int type;
  const char *name;
  void *address;
} shim_log_t;

void shim_register_logs(const char *group, const shim_log_t *logs);

typedef uint16_t logVarId_t;
logVarId_t logGetVarId(char *group, char *name);  /* the firmware's signature: not const */
#define LOG_VARID_IS_VALID(varId) (varId != 0xffffu)
float logGetFloat(logVarId_t varid);

#define LOG_GROUP_START(NAME) static const shim_log_t shim_logs_##NAME[] = {
#define LOG_ADD(TYPE, NAME, ADDRESS) {(TYPE), #NAME, (void *)(ADDRESS)},
#define LOG_GROUP_STOP(NAME) {0, 0, 0}}; \
  __attribute__((constructor)) static void shim_register_logs_##NAME(void) \
  { shim_register_logs(#NAME, shim_logs_##NAME); }

#endif
