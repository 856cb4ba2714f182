/* Host shim of crazyflie-firmware's app.h. */
#ifndef SHIM_APP_H
#define SHIM_APP_H

void appMain(void);

#endif
