"""Any key is an emergency stop: a watcher of the terminal that sets an event on the first keypress.

The terminal is put in cbreak mode while flying (keys arrive without Enter, Ctrl-C still interrupts) and
restored afterwards, also when the flight ends with an exception.
"""

from __future__ import annotations

import os
import select
import threading
from typing import IO

POLL_S = 0.05


class KeyWatcher:
    """Sets `pressed` when a key arrives on `stream`; does nothing if `stream` is not a terminal."""

    def __init__(self, stream: IO, pressed: threading.Event):
        self.stream = stream
        self.pressed = pressed
        self._saved: list | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> "KeyWatcher":
        try:
            import termios
            import tty
        except ImportError:   # not a POSIX terminal (Windows): Ctrl-C remains the emergency stop
            return self
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return self
        if not os.isatty(fd):
            return self
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._watch, args=(fd,), name="nanoswarm-keys", daemon=True)
        self._thread.start()
        return self

    def _watch(self, fd: int) -> None:
        while not self._done.is_set():
            readable, _, _ = select.select([fd], [], [], POLL_S)
            if readable and os.read(fd, 64):
                self.pressed.set()
                return

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
