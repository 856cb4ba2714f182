"""The flight bridge's errors, in one light module so the CLI can name them without importing cflib.

Each says what went wrong, on which drone, and what to do; `BRIDGE_FAILURES` is the CLI's label and exit
code for each. Bad manifests and missions are `nanoswarm.config.ConfigError`s like every other config.
"""

from __future__ import annotations


class BridgeError(RuntimeError):
    """Base of the errors that stop a flight before or while it runs."""


class ConnectError(BridgeError):
    """One or more drones could not be connected; the message lists each one's URI and reason."""


class PreflightError(BridgeError):
    """A pre-flight check failed, so nothing took off; the message lists every failed check."""


class PolicyError(BridgeError):
    """The policy a flight needs is missing or cannot fly this swarm (laptop mode, or a dry run's onboard
    drones): no folder, no exported model, or another airframe."""


class MocapError(BridgeError):
    """The motion-capture source named in the manifest cannot be reached or does not see a drone."""


BRIDGE_FAILURES: tuple[tuple[type[BaseException], str, int], ...] = (
    (ConnectError, "[red]connection failed:[/red]", 6),
    (PreflightError, "[red]pre-flight check failed, nothing took off:[/red]", 6),
    (PolicyError, "[red]policy error:[/red]", 2),
    (MocapError, "[red]motion capture error:[/red]", 6),
)
