"""Pictures of swarm flights, simulated or flown: reports, videos and training curves.

Everything here draws a `SwarmRecord` (record.py), so an evaluated episode and a logged flight are drawn by
the same code; `training.evaluate` and `firmware_bridge.flight_record` turn their data into records.
Matplotlib draws off-screen (Agg canvases, never pyplot), so nothing needs a display, on CI or over ssh.
"""
