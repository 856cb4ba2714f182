/* Host shim of crazyflie-firmware's usec_time.h; the time is set by the test (shim_set_time_us). */
#ifndef SHIM_USEC_TIME_H
#define SHIM_USEC_TIME_H

#include <stdint.h>

uint64_t usecTimestamp(void);

#endif
