/* Host shim of FreeRTOS.h: the firmware's task.h needs it first; the app uses nothing of its own. */
#ifndef SHIM_FREERTOS_H
#define SHIM_FREERTOS_H

#include <stdint.h>

#endif
