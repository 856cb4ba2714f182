/* Host shim of crazyflie-firmware's app_channel.h; shim.c holds one queued packet. */
#ifndef SHIM_APP_CHANNEL_H
#define SHIM_APP_CHANNEL_H

#include <stddef.h>

#define APPCHANNEL_MTU (31)

size_t appchannelReceiveDataPacket(void *buffer, size_t max_length, int timeout_ms);

#endif
