/*
 * nanoswarm_controller.h - the app task's work, callable on its own so that host tests can drive it.
 */
#ifndef NANOSWARM_CONTROLLER_H
#define NANOSWARM_CONTROLLER_H

/** One pass of the app task (appMain loops over it): broadcasts the drone's own state over P2P when due
 *  (param nanoswarm.txHz), then waits until the next broadcast for a command on the app channel. */
void nanoswarmServiceLinks(void);

#endif /* NANOSWARM_CONTROLLER_H */
