/* Host shim of crazyflie-firmware's radiolink.h: the P2P part, with the firmware's packet layout. */
#ifndef SHIM_RADIOLINK_H
#define SHIM_RADIOLINK_H

#include <stdbool.h>
#include <stdint.h>

#define P2P_MAX_DATA_SIZE 60

typedef struct _P2PPacket {
  uint8_t size;  /* bytes of data */
  uint8_t rssi;
  union {
    struct {
      uint8_t port;
      uint8_t data[P2P_MAX_DATA_SIZE];
    };
    uint8_t raw[P2P_MAX_DATA_SIZE + 1];
  };
} __attribute__((packed)) P2PPacket;

typedef void (*P2PCallback)(P2PPacket *);

bool radiolinkSendP2PPacketBroadcast(P2PPacket *p2pp);
void p2pRegisterCB(P2PCallback cb);

#endif
