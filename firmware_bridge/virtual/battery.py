"""The virtual drones' batteries: a simple discharge with the current proportional to thrust.

The voltage falls linearly with the charge drawn, from a full 4.2 V to an empty 3.0 V (a 1S LiPo's usable
range; the firmware's own limits are pm.lowVoltage 3.2 V and a critical 3.0 V). The current is the
hover current times the thrust relative to hover, and the hover current is what empties the Crazyflie
2.1's 250 mAh battery in its specified flight time of about 7 minutes (Bitcraze's product page):
0.25 Ah / (7/60 h) = 2.14 A. A sag injected for a test adds its own fall in volts per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STATE_BATTERY, STATE_LOW_POWER = 0, 3  # pm.state values (the firmware's PMStates)


@dataclass(frozen=True)
class BatteryModel:
    full_v: float = 4.2
    empty_v: float = 3.0
    capacity_ah: float = 0.25
    hover_current_a: float = 0.25 / (7.0 / 60.0)


class Batteries:
    """N batteries (rows), full at start."""

    def __init__(self, n: int, model: BatteryModel = BatteryModel()):
        self.model = model
        self.voltage = np.full(n, model.full_v)
        self.sag_v_per_s = np.zeros(n)

    def step(self, thrust_over_hover: np.ndarray, dt: float) -> None:
        m = self.model
        drawn_ah = m.hover_current_a * np.clip(thrust_over_hover, 0.0, None) * dt / 3600.0
        fall = (m.full_v - m.empty_v) * drawn_ah / m.capacity_ah + self.sag_v_per_s * dt
        self.voltage = np.clip(self.voltage - fall, m.empty_v, m.full_v)

    def level_percent(self) -> np.ndarray:
        m = self.model
        return np.round(100.0 * (self.voltage - m.empty_v) / (m.full_v - m.empty_v))

    def state(self, low_voltage: np.ndarray) -> np.ndarray:
        """pm.state: low power below pm.lowVoltage, else on battery."""
        return np.where(self.voltage < low_voltage, STATE_LOW_POWER, STATE_BATTERY)
