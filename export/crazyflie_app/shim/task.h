/* Host shim of FreeRTOS task.h: the tests run one thread, so critical sections are empty. */
#ifndef SHIM_TASK_H
#define SHIM_TASK_H

#include "FreeRTOS.h"

#define taskENTER_CRITICAL()
#define taskEXIT_CRITICAL()

#endif
