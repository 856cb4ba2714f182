"""The virtual swarm's errors: what cannot be done as asked, and how to fix it."""

from __future__ import annotations


class VirtualSwarmError(ValueError):
    """The swarm cannot be built or used as asked (size, start positions, policy folder, ports, faults)."""


class VirtualSwarmStopped(RuntimeError):
    """The swarm's simulation thread stopped on an error; the message carries it."""


# The CLI's label and exit code for each (as `export.errors.EXPORT_FAILURES`).
VIRTUAL_FAILURES: tuple[tuple[type[BaseException], str, int], ...] = (
    (VirtualSwarmError, "[red]virtual swarm error:[/red]", 2),
    (VirtualSwarmStopped, "[red]virtual swarm stopped:[/red]", 3),
)


class MalformedPacket(ValueError):
    """A CRTP packet that no firmware handler could read; it is dropped and counted, never raised out."""
