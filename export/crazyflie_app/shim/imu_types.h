/* Host shim of crazyflie-firmware's imu_types.h: only what the nanoswarm app uses. */
#ifndef SHIM_IMU_TYPES_H
#define SHIM_IMU_TYPES_H

typedef union {
  struct {
    float x;
    float y;
    float z;
  };
  float axis[3];
} Axis3f;

#endif
