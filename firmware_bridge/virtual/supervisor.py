"""The supervisor of N virtual drones: the firmware's state machine (supervisor.c, supervisor_state_machine.c),
run for all drones at once.

Each tick it reads per-drone conditions (armed, motors running in the last 2 s, tumbled, commander
watchdog, emergency stop, crashed) and moves each drone's state by the first matching transition of its
state, in the firmware's order. What follows from the state:
- motors may run only in ReadyToFly, Flying, WarningLevelOut and Landed;
- WarningLevelOut (no setpoint for 500 ms while flying) levels the attitude and keeps the height setpoint;
- no setpoint for 2000 ms, a tumble, disarming or an emergency stop while flying cut the motors
  (ExceptFreeFall); an emergency stop then locks the drone (a restart is needed), anything else leaves it
  Crashed until a crash-recovery request (refused while it is still tumbled);
- with auto-arming (the Crazyflie 2.1 default) a drone arms itself once its pre-flight checks pass.
The info bitfield is the firmware's (bits 0-7 here; the high-level commander adds bits 8-10).
Not modelled: the pre-flight and landing timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable

import numpy as np

WATCHDOG_LEVEL_S = 0.5      # COMMANDER_WDT_TIMEOUT_STABILIZE
WATCHDOG_CUT_S = 2.0        # COMMANDER_WDT_TIMEOUT_SHUTDOWN
FLYING_HYSTERESIS_S = 2.0   # IS_FLYING_HYSTERESIS_THRESHOLD
TILT_UP_Z = 0.5             # body z axis' up component below which a drone counts as tilted (60 degrees)
TILT_TIME_S = 1.0
UPSIDE_DOWN_UP_Z = -0.2
UPSIDE_DOWN_TIME_S = 0.1
EMERGENCY_WATCHDOG_S = 1.0  # DEFAULT_EMERGENCY_STOP_WATCHDOG_TIMEOUT


class State(IntEnum):
    NOT_INITIALIZED = 0
    PRE_FLIGHT_CHECKS_NOT_PASSED = 1
    PRE_FLIGHT_CHECKS_PASSED = 2
    READY_TO_FLY = 3
    FLYING = 4
    LANDED = 5
    RESET = 6
    WARNING_LEVEL_OUT = 7
    EXCEPT_FREE_FALL = 8
    LOCKED = 9
    CRASHED = 10


def _table(*states: State) -> np.ndarray:
    """A lookup table, indexed by state, that is True for `states`."""
    table = np.zeros(len(State), dtype=bool)
    table[list(states)] = True
    return table


MOTORS_ALLOWED = _table(State.READY_TO_FLY, State.FLYING, State.WARNING_LEVEL_OUT, State.LANDED)
STAYS_ARMED = MOTORS_ALLOWED
FLYING = _table(State.FLYING, State.WARNING_LEVEL_OUT)


@dataclass
class Conditions:
    armed: np.ndarray
    flying: np.ndarray
    tumbled: np.ndarray
    watchdog_warning: np.ndarray
    watchdog_timeout: np.ndarray
    emergency_stop: np.ndarray
    crashed: np.ndarray


Predicate = Callable[[Conditions], np.ndarray]


def always(c: Conditions) -> np.ndarray:
    return np.ones_like(c.armed)


def cut(c: Conditions) -> np.ndarray:
    return c.watchdog_timeout | c.tumbled | c.emergency_stop | ~c.armed


# (from, to, when): the first matching transition of a state wins, as in the firmware's lists.
TRANSITIONS: tuple[tuple[State, State, Predicate], ...] = (
    (State.NOT_INITIALIZED, State.PRE_FLIGHT_CHECKS_NOT_PASSED, always),
    (State.PRE_FLIGHT_CHECKS_NOT_PASSED, State.EXCEPT_FREE_FALL, lambda c: c.emergency_stop),
    (State.PRE_FLIGHT_CHECKS_NOT_PASSED, State.PRE_FLIGHT_CHECKS_PASSED, lambda c: ~c.tumbled),
    (State.PRE_FLIGHT_CHECKS_PASSED, State.EXCEPT_FREE_FALL, lambda c: c.emergency_stop),
    (State.PRE_FLIGHT_CHECKS_PASSED, State.PRE_FLIGHT_CHECKS_NOT_PASSED, lambda c: c.tumbled),
    (State.PRE_FLIGHT_CHECKS_PASSED, State.READY_TO_FLY, lambda c: c.armed),
    (State.READY_TO_FLY, State.EXCEPT_FREE_FALL, lambda c: c.emergency_stop),
    (State.READY_TO_FLY, State.PRE_FLIGHT_CHECKS_NOT_PASSED, lambda c: c.tumbled | ~c.armed),
    (State.READY_TO_FLY, State.FLYING, lambda c: c.flying),
    (State.FLYING, State.EXCEPT_FREE_FALL, cut),
    (State.FLYING, State.WARNING_LEVEL_OUT, lambda c: c.watchdog_warning),
    (State.FLYING, State.LANDED, lambda c: ~c.flying),
    (State.LANDED, State.RESET, always),
    (State.RESET, State.PRE_FLIGHT_CHECKS_NOT_PASSED, always),
    (State.WARNING_LEVEL_OUT, State.EXCEPT_FREE_FALL, cut),
    (State.WARNING_LEVEL_OUT, State.FLYING, lambda c: ~c.watchdog_warning),
    (State.EXCEPT_FREE_FALL, State.LOCKED, lambda c: c.emergency_stop),
    (State.EXCEPT_FREE_FALL, State.CRASHED, always),
    (State.CRASHED, State.PRE_FLIGHT_CHECKS_NOT_PASSED, lambda c: ~c.crashed),
)

BIT_CAN_BE_ARMED, BIT_ARMED, BIT_AUTO_ARMED, BIT_CAN_FLY, BIT_FLYING, BIT_TUMBLED, BIT_LOCKED, BIT_CRASHED = (
    1 << b for b in range(8))


class Supervisor:
    """Supervisor states and flags of N drones (rows)."""

    def __init__(self, n: int, auto_arm: bool = True):
        self.auto_arm = auto_arm
        self.state = np.full(n, State.NOT_INITIALIZED, dtype=np.int64)
        self.armed = np.zeros(n, dtype=bool)
        self.crashed = np.zeros(n, dtype=bool)
        self.tumbled = np.zeros(n, dtype=bool)
        self.emergency_requested = np.zeros(n, dtype=bool)
        self.emergency_watchdog_at = np.full(n, -np.inf)   # last emergency-stop watchdog notification
        self.thrust_at = np.full(n, -np.inf)               # last time a motor ran above idle
        self.tilted_since = np.full(n, np.nan)

    # ---- requests from the link (supervisor port, platform port, localization port) ------------------
    def request_arming(self, drone: int, arm: bool) -> bool:
        """supervisorRequestArming: arming is possible only with the pre-flight checks passed."""
        if arm == self.armed[drone]:
            return True
        if arm and self.state[drone] != State.PRE_FLIGHT_CHECKS_PASSED:
            return False
        self.armed[drone] = arm
        return True

    def request_crash_recovery(self, drone: int) -> bool:
        """supervisorRequestCrashRecovery: a crashed drone recovers unless it is still tumbled."""
        if self.crashed[drone] and self.tumbled[drone]:
            return False
        self.crashed[drone] = False
        return True

    def emergency_stop(self, drone: int) -> None:
        self.emergency_requested[drone] = True

    def emergency_stop_watchdog(self, drone: int, now: float) -> None:
        self.emergency_watchdog_at[drone] = now

    # ---- the tick ---------------------------------------------------------------------------------
    def update(self, now: float, *, motors_running: np.ndarray, up_z: np.ndarray, setpoint_age: np.ndarray,
               stop_param: np.ndarray, tumble_check: np.ndarray) -> np.ndarray:
        """Advance every drone's state machine; returns the indices of the drones whose state changed.

        up_z: the up component of each drone's body z axis (1 level, -1 upside down).
        """
        self.thrust_at = np.where(motors_running, now, self.thrust_at)
        tilted = up_z < TILT_UP_Z
        self.tilted_since = np.where(tilted, np.where(np.isnan(self.tilted_since), now, self.tilted_since), np.nan)
        tilt_time = np.where(tilted, now - self.tilted_since, 0.0)
        upside_down = (up_z < UPSIDE_DOWN_UP_Z) & (tilt_time > UPSIDE_DOWN_TIME_S)
        self.tumbled = tumble_check & ((tilt_time > TILT_TIME_S) | upside_down)
        conditions = Conditions(
            armed=self.armed.copy(), flying=now - self.thrust_at < FLYING_HYSTERESIS_S, tumbled=self.tumbled,
            watchdog_warning=setpoint_age > WATCHDOG_LEVEL_S, watchdog_timeout=setpoint_age > WATCHDOG_CUT_S,
            emergency_stop=self.emergency_requested | (stop_param != 0)
                           | (np.isfinite(self.emergency_watchdog_at)
                              & (now - self.emergency_watchdog_at > EMERGENCY_WATCHDOG_S)),
            crashed=self.crashed.copy())
        before = self.state.copy()
        decided = np.zeros_like(conditions.armed)
        for source, target, when in TRANSITIONS:
            move = (before == source) & ~decided & when(conditions)
            self.state[move] = target
            decided |= move
        changed = np.nonzero(self.state != before)[0]
        entered = np.zeros_like(decided)
        entered[changed] = True
        self.crashed |= entered & (self.state == State.CRASHED)
        self.armed &= ~(entered & ~STAYS_ARMED[self.state])
        if self.auto_arm:
            self.armed |= entered & (self.state == State.PRE_FLIGHT_CHECKS_PASSED)
        return changed

    # ---- what the rest of the drone reads --------------------------------------------------------------
    def motors_allowed(self) -> np.ndarray:
        return MOTORS_ALLOWED[self.state]

    def level_out(self) -> np.ndarray:
        return self.state == State.WARNING_LEVEL_OUT

    def flying(self) -> np.ndarray:
        return FLYING[self.state]

    def bits(self) -> np.ndarray:
        """Bits 0-7 of supervisor.info for every drone."""
        bits = np.zeros(len(self.state), dtype=np.int64)
        for flag, on in ((BIT_CAN_BE_ARMED, self.state == State.PRE_FLIGHT_CHECKS_PASSED), (BIT_ARMED, self.armed),
                         (BIT_AUTO_ARMED, np.full(len(bits), self.auto_arm)), (BIT_CAN_FLY, self.motors_allowed()),
                         (BIT_FLYING, self.flying()), (BIT_TUMBLED, self.tumbled),
                         (BIT_LOCKED, self.state == State.LOCKED), (BIT_CRASHED, self.crashed)):
            bits |= np.where(on, flag, 0)
        return bits
