"""The bridge from a laptop to a Crazyflie swarm over cflib: connect, upload goals, stream telemetry, enforce
safety; the same code flies the virtual swarm (`firmware_bridge.virtual`) when no radio is attached."""

import warnings

# Importing cflib turns every library's DeprecationWarning on for the whole process (its package sets
# `simplefilter('always', DeprecationWarning)`): a training run, which imports this package through the CLI,
# printed 14 of torch's. Imported here first, inside catch_warnings, the filters it sets are undone before any
# module of this package imports from it.
with warnings.catch_warnings():
    import cflib  # noqa: F401
