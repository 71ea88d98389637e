"""Progress lines on stderr: counts, elapsed time, time left; silent unless asked for."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO


class Progress:
    """``label done/total (what): N s, about M s left`` on ``stream``.

    On a terminal the line is rewritten in place; elsewhere (a log file, a
    pipe) each update is its own line, at most one every ``every`` seconds
    apart from the last, which is always written.

    Parameters
    ----------
    label : str
        What is being counted, e.g. ``"preprocessing"``.
    total : int
        The number of steps.
    stream : text stream, default=sys.stderr
    every : float, default=2.0
        Seconds between lines when ``stream`` is not a terminal.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> progress = Progress("folds", 2, stream=out, every=0)
    >>> progress.update(1, "fold 1")
    >>> progress.update(2, "fold 2")
    >>> progress.close()
    >>> out.getvalue().splitlines()[-1].startswith("folds 2/2 (fold 2): ")
    True
    """

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, every: float = 2.0
    ) -> None:
        self.label = label
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.every = every
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_line = -float("inf")
        self._open = False

    def update(self, done: int, what: str = "") -> None:
        """Report that ``done`` of ``total`` steps are finished, the last one ``what``."""
        now = time.perf_counter()
        if not self.terminal and done < self.total and now - self._last_line < self.every:
            return
        elapsed = now - self.start
        left = elapsed / max(done, 1) * (self.total - done)
        line = f"{self.label} {done}/{self.total}"
        if what:
            line += f" ({what})"
        line += f": {elapsed:.0f} s" + (f", about {left:.0f} s left" if done < self.total else "")
        if self.terminal:
            print("\r\033[K" + line, end="", file=self.stream, flush=True)
            self._open = True
        else:
            print(line, file=self.stream, flush=True)
        self._last_line = now

    def close(self) -> None:
        """End the rewritten line on a terminal."""
        if self._open:
            print(file=self.stream, flush=True)
            self._open = False


_REPORTING: ContextVar[bool] = ContextVar("slicelearn_progress", default=False)


@contextmanager
def reporting(enabled: bool = True) -> Iterator[None]:
    """Inside the block, long library steps (encoding, prediction) report progress on stderr.

    The library is silent by default; the command line turns this on.
    """
    token = _REPORTING.set(enabled)
    try:
        yield
    finally:
        _REPORTING.reset(token)


class _Silent:
    def update(self, done: int, what: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def progress(label: str, total: int) -> Progress | _Silent:
    """A :class:`Progress` inside :func:`reporting`, else one that prints nothing."""
    return Progress(label, total) if _REPORTING.get() else _Silent()
