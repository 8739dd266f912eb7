"""Progress of long loops: a tqdm bar on a terminal, a few plain lines anywhere else.

A tqdm bar redraws itself with carriage returns; written to a log file (``nohup ... > log
2>&1``) that is one endless line of redraws. When the stream is not a terminal,
:func:`progress_bar` writes a plain line at every tenth of the way instead (and one at the
end), so a log shows how far a run got and how fast.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, TextIO

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", disable: bool = False, leave: bool = True,
                 stream: TextIO | None = None, steps: int = 10):
    """A progress bar over ``iterable`` or of ``total`` steps counted by ``update``.

    Used like ``tqdm`` (iterate over it, or call ``update(n)`` and ``close()``, or use it as a
    context manager).

    Parameters
    ----------
    iterable : iterable, optional
        Items to pass through while counting them.
    total : int, optional
        Expected count (default ``len(iterable)`` when it has one).
    desc, unit : str
        Label of the bar and name of one step.
    disable : bool
        Show nothing.
    leave : bool
        Keep the finished bar on a terminal (plain lines always stay).
    stream : file-like, optional
        Where to write (default ``sys.stderr``).
    steps : int
        Plain lines per run when ``stream`` is not a terminal: one each ``1 / steps`` of
        ``total`` (with an unknown total: at 1, 10, 100, ... steps).

    Returns
    -------
    tqdm or LineProgress
        A tqdm bar when ``stream`` is a terminal (or ``disable``), else a :class:`LineProgress`.
    """
    stream = sys.stderr if stream is None else stream
    if disable or _is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave,
                    file=stream)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, stream=stream, steps=steps)


def _is_terminal(stream) -> bool:
    """True when ``stream`` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """Progress as a few plain lines (``desc: 30/300 sample (10%), 2.5 sample/s, 12 s``)."""

    def __init__(self, iterable=None, *, total=None, desc="", unit="it", stream, steps=10):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream, self.steps = stream, max(1, int(steps))
        self.n = 0
        self._reported = 0
        self._start = time.monotonic()
        self._closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _due(self) -> bool:
        """True when ``n`` has crossed the next reporting point since the last line."""
        if self.total:
            step = self.total / self.steps
            return int(self.n / step) > int(self._reported / step)
        # Unknown total: at 1, 10, 100, ...
        return len(str(self.n)) > len(str(self._reported)) or self._reported == 0

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; write a line when another tenth of the way is done."""
        self.n += n
        if self.n > self._reported and self._due():
            self._write()

    def close(self) -> None:
        """Write the last line (if the end was not reported yet)."""
        if not self._closed:
            self._closed = True
            if self.n != self._reported:
                self._write()

    def _write(self) -> None:
        elapsed = time.monotonic() - self._start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / elapsed:.2f} {self.unit}/s" if elapsed > 0 else ""
        label = f"{self.desc}: " if self.desc else ""
        self.stream.write(f"{label}{count} {self.unit}{share}{rate}, {elapsed:.0f} s\n")
        self.stream.flush()
        self._reported = self.n
