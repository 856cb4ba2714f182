/* Host shim of crazyflie-firmware's debug.h: DEBUG_PRINT appends to a buffer the test reads. */
#ifndef SHIM_DEBUG_H
#define SHIM_DEBUG_H

#ifndef DEBUG_MODULE
#define DEBUG_MODULE "NULL"
#endif

void shim_console_print(const char *format, ...) __attribute__((format(printf, 1, 2)));
#define DEBUG_PRINT(fmt, ...) shim_console_print(DEBUG_MODULE ": " fmt, ##__VA_ARGS__)

#endif
