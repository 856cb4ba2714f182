/* Host shim of crazyflie-firmware's configblock.h. */
#ifndef SHIM_CONFIGBLOCK_H
#define SHIM_CONFIGBLOCK_H

#include <stdint.h>

uint64_t configblockGetRadioAddress(void);

#endif
