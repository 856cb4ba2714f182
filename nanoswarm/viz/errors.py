"""Errors of the pictures, in one light module so the CLI can name them without importing matplotlib."""

from __future__ import annotations


class RenderError(ValueError):
    """What was asked to be drawn cannot be: the input is of no known kind, or the output format does not fit
    it. The message names the problem and the fix."""


VIZ_FAILURES: tuple[tuple[type[BaseException], str, int], ...] = (
    (RenderError, "[red]render error:[/red]", 2),
)
