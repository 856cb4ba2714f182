/*
 * Host shim of crazyflie-firmware's stabilizer_types.h (src/modules/interface): the subset the nanoswarm
 * app uses, with the firmware's names, field order and units, so that the app compiles unchanged against
 * either.
 */
#ifndef SHIM_STABILIZER_TYPES_H
#define SHIM_STABILIZER_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#include "imu_types.h"

typedef uint32_t stabilizerStep_t;  /* stabilizer loop iterations, 1 kHz */

typedef struct attitude_s {
  uint32_t timestamp;
  float roll;
  float pitch;
  float yaw;  /* deg */
} attitude_t;

struct vec3_s {
  uint32_t timestamp;
  float x;
  float y;
  float z;
};
typedef struct vec3_s point_t;
typedef struct vec3_s velocity_t;
typedef struct vec3_s acc_t;

/* Stored x, y, z, w; the estimators fill it by name with the scalar part in w. */
typedef struct quaternion_s {
  union {
    struct {
      float q0;
      float q1;
      float q2;
      float q3;
    };
    struct {
      float x;
      float y;
      float z;
      float w;
    };
  };
} quaternion_t;

typedef struct baro_s {
  float pressure;
  float temperature;
  float asl;
} baro_t;

typedef struct sensorData_s {
  Axis3f acc;   /* Gs */
  Axis3f gyro;  /* deg/s */
  Axis3f mag;
  baro_t baro;
  uint64_t interruptTimestamp;
} sensorData_t;

typedef struct state_s {
  attitude_t attitude;  /* deg, legacy frame (pitch inverted) */
  quaternion_t attitudeQuaternion;
  point_t position;     /* m */
  velocity_t velocity;  /* m/s */
  acc_t acc;
} state_t;

#define STABILIZER_NR_OF_MOTORS 4

typedef enum control_mode_e {
  controlModeLegacy = 0,
  controlModeForceTorque = 1,
  controlModeForce = 2,
} control_mode_t;

typedef struct control_s {
  union {
    struct {
      int16_t roll;
      int16_t pitch;
      int16_t yaw;
      float thrust;
    };
    struct {
      float thrustSi;
      union {
        float torque[3];
        struct {
          float torqueX;
          float torqueY;
          float torqueZ;
        };
      };
    };
    float normalizedForces[STABILIZER_NR_OF_MOTORS];  /* 0 ... 1 */
  };
  control_mode_t controlMode;
} control_t;

typedef enum mode_e {
  modeDisable = 0,
  modeAbs,
  modeVelocity
} stab_mode_t;

typedef struct setpoint_s {
  uint32_t timestamp;
  attitude_t attitude;      /* deg */
  attitude_t attitudeRate;  /* deg/s */
  quaternion_t attitudeQuaternion;
  float thrust;
  point_t position;         /* m */
  velocity_t velocity;      /* m/s */
  acc_t acceleration;       /* m/s^2 */
  bool velocity_body;
  struct {
    stab_mode_t x;
    stab_mode_t y;
    stab_mode_t z;
    stab_mode_t roll;
    stab_mode_t pitch;
    stab_mode_t yaw;
    stab_mode_t quat;
  } mode;
} setpoint_t;

#define RATE_1000_HZ 1000
#define RATE_MAIN_LOOP RATE_1000_HZ

#endif
