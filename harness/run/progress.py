"""What a running sweep shows: a one-line display (case, variant, ETA) on a terminal, plain log lines otherwise.

One :class:`Progress` can span several Hydra jobs of a multirun: the CLI creates it with the grid's total and
installs it with :func:`install`; each job's :func:`harness.run.sweep.run_sweep` picks it up via :func:`current`
(same process). A job started some other way (a parallel launcher's worker) makes its own for its own cases.

The bar names every phase as it starts (``setup full``, ``computing the float64 baseline``, ``timing 3 variants
in rounds``); plain lines name a phase only when it is still running after :data:`SLOW_PHASE_S`, so a long phase
always says what it is doing without doubling the output of short ones.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import threading
import time
from typing import TextIO

__all__ = ["SLOW_PHASE_S", "Progress", "current", "install"]

log = logging.getLogger("attnbench.sweep")

_current: Progress | None = None
#: Seconds after which plain output names the phase still running.
SLOW_PHASE_S = 1.0


def install(progress: Progress | None) -> None:
    """Make ``progress`` the display used by sweeps in this process (``None`` removes it)."""
    global _current
    _current = progress


def current() -> Progress | None:
    """The installed display, if any."""
    return _current


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _choose_style(setting: str, stream: TextIO) -> str:
    """``auto`` -> ``bar`` on a terminal (and not ``TERM=dumb``), else ``plain``; other settings unchanged."""
    if setting != "auto":
        return setting
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "bar" if tty and os.environ.get("TERM") != "dumb" else "plain"


class Progress:
    """Counts (case, variant) items and shows where the sweep is.

    Args:
        total: items expected (an estimate is fine; it grows if exceeded).
        style: ``bar`` (one rewritten line), ``plain`` (a line per item), ``off``, or ``auto``.
        stream: where to write (default: ``sys.stderr``).
    """

    def __init__(self, total: int, style: str = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.style = _choose_style(style, self.stream)
        self.total = max(0, total)
        self.done = 0
        self.measured = 0
        self.skipped = 0
        self.t0 = time.perf_counter()
        self._line_len = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: tuple[float, str] | None = None  # (deadline, text) of the phase plain output may name
        self._notifier: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ estimates
    def eta_s(self) -> float:
        """Seconds left: the mean time per measured item so far times the items left (NaN before the first)."""
        if self.measured == 0:
            return math.nan
        per_item = (time.perf_counter() - self.t0) / max(1, self.measured)
        return per_item * max(0, self.total - self.done)

    def _prefix(self) -> str:
        width = len(str(self.total))
        return f"[{self.done:>{width}}/{self.total}]"

    # ------------------------------------------------------------------ events
    def start(self, case_text: str, variant: str) -> None:
        """An item or a phase begins (the bar shows it; plain output names it if it lasts over a second)."""
        if self.style == "bar":
            eta = _fmt_duration(self.eta_s())
            self._bar(f"{self._prefix()} {case_text} | {variant} | ETA {eta}")
        elif self.style == "plain":
            self._later(f"{self._prefix()} {case_text} | {variant}...")

    def finish(self, case_text: str, variant: str, status: str, summary: str = "", skipped: bool = False) -> None:
        """An item ended with ``status`` (``skipped`` when an existing record was kept)."""
        self.done += 1
        if self.done > self.total:
            self.total = self.done
        if skipped:
            self.skipped += 1
        else:
            self.measured += 1
        text = f"{self._prefix()} {case_text} | {variant}: {'exists, skipped' if skipped else status}"
        if summary and not skipped:
            text += f" {summary}"
        log.info(text)
        if self.style == "plain":
            self._later(None)
            self._line(text)

    def message(self, text: str) -> None:
        """A line of its own (kept above the bar)."""
        log.info(text)
        if self.style in ("plain", "bar"):
            self._line(text)

    def close(self) -> None:
        """Clear the bar, leaving the terminal clean (and stop naming slow phases)."""
        with self._cond:
            self._pending, self._closed = None, True
            self._cond.notify()
        if self.style == "bar" and self._line_len:
            self.stream.write("\r" + " " * self._line_len + "\r")
            self.stream.flush()
            self._line_len = 0

    # ------------------------------------------------------------------ output
    def _bar(self, text: str) -> None:
        cols = shutil.get_terminal_size((100, 20)).columns
        text = text if len(text) < cols else text[: max(10, cols - 2)] + "…"
        pad = max(0, self._line_len - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._line_len = len(text)

    def _line(self, text: str) -> None:
        with self._lock:
            if self.style == "bar" and self._line_len:
                self.stream.write("\r" + " " * self._line_len + "\r")
                self._line_len = 0
            self.stream.write(text + "\n")
            self.stream.flush()

    def _later(self, text: str | None) -> None:
        """Plain output: print ``text`` if nothing else is said within :data:`SLOW_PHASE_S` (None: cancel)."""
        with self._cond:
            self._pending = None if text is None else (time.monotonic() + SLOW_PHASE_S, text)
            if text is not None and self._notifier is None:
                self._notifier = threading.Thread(target=self._notify, name="attnbench-progress", daemon=True)
                self._notifier.start()
            self._cond.notify()

    def _notify(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._pending is None or time.monotonic() < self._pending[0]):
                    wait = None if self._pending is None else max(0.0, self._pending[0] - time.monotonic())
                    self._cond.wait(wait)
                if self._closed or self._pending is None:
                    self._notifier = None
                    return
                text, self._pending = self._pending[1], None
                self.stream.write(text + "\n")
                self.stream.flush()
