"""The serial hardware-in-the-loop link's errors, in one light module so the CLI can name them cheaply.

Each message says what went wrong and what to do about it; `HIL_FAILURES` is the CLI's label and exit
code for each, in the form of `nanoswarm.export.errors.EXPORT_FAILURES`.
"""

from __future__ import annotations


class HilError(RuntimeError):
    """The link to a HIL board failed; the message names the cause and the fix."""


class HilTimeoutError(HilError):
    """The board did not answer in time, after every retry."""


class HilMismatchError(HilError):
    """The board runs another policy, observation layout or protocol version than the host expects."""


class HilBuildError(HilError):
    """The HIL firmware could not be written, built or started (missing tool, compiler error, bad folder)."""


HIL_FAILURES: tuple[tuple[type[BaseException], str, int], ...] = (
    (HilMismatchError, "[red]HIL mismatch:[/red]", 2),
    (HilBuildError, "[red]HIL firmware build failed:[/red]", 3),
    (HilError, "[red]HIL link failed:[/red]", 6),
)
