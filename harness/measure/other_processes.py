"""CPU time other processes used while a measurement ran, on the cores this process may run on.

A process busy on the cores a measurement leaves free takes no run-queue time from it (no sample is disturbed),
yet shares the last-level cache, the memory bandwidth and perhaps the core's hyper-thread sibling, so it can move
the measurement's figure. :class:`OthersMeter` reads the busy time of the cores of this process's affinity mask
(:func:`harness.measure.machine.machine_busy_s`) minus this process's own CPU time, over the *span* of the
measurement: from the start of its first batch to the end of its last.

- **The span, not the sum of its batches**: ``/proc/stat`` counts in ticks, and a batch of a few milliseconds
  reads 0 or 1 tick per core; summed over many batches those errors (each clipped at 0) add up to phantom load on
  an idle machine. Read at the two ends of the span, the error is at most one tick per core at each end
  (:attr:`OthersMeter.margin_s`). The batches of a case are interleaved with the other variants' (this process's
  own CPU time there is subtracted too), so the span's average is the one its batches saw.
- **The busiest stretch** (:meth:`OthersMeter.peak_cores`): the span's average dilutes a load that starts
  part-way through a measurement, so every stretch of at least :data:`OTHERS_WINDOW_S` between two readings is
  judged too, with the same margin taken off so that the ticks' coarseness cannot make a short stretch look busy.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable

from harness.measure.machine import TICK_S, allowed_cpus, machine_busy_s

__all__ = ["OTHERS_WINDOW_S", "OthersMeter"]

#: The shortest stretch of a measurement whose own figure for other processes is judged too (a load that starts
#: part-way through a case; see :meth:`OthersMeter.peak_cores`).
OTHERS_WINDOW_S = 0.2


class OthersMeter:
    """CPU time other processes used over the span of one measurement (see the module's docstring).

    Args:
        busy: busy seconds of those cores (default :func:`~harness.measure.machine.machine_busy_s` of
            :func:`~harness.measure.machine.allowed_cpus`; tests pass fakes).
        own: this process's CPU seconds.
        wall: a wall clock.
        resolution_s: how coarse one core's busy reading is (default one ``/proc/stat`` tick).
        cores: how many cores ``busy`` sums (default: the affinity mask's).
    """

    def __init__(self, busy: Callable[[], float | None] | None = None, own: Callable[[], float] = time.process_time,
                 wall: Callable[[], float] = time.perf_counter, resolution_s: float | None = None,
                 cores: int | None = None) -> None:
        if busy is None:
            cpus = allowed_cpus()
            busy = functools.partial(machine_busy_s, cpus)
            if cores is None and cpus is not None:
                cores = len(cpus)
        self._busy, self._own, self._wall = busy, own, wall
        self.resolution_s = TICK_S if resolution_s is None else resolution_s
        self.cores = cores if cores is not None else (os.cpu_count() or 1)
        self.known = True
        #: ``(busy, own, wall)`` at the start of the first batch, then at the end of every batch.
        self.readings: list[tuple[float, float, float]] = []

    def start(self) -> None:
        """Called before each batch: the first call opens the span."""
        if not self.readings and self.known:
            self._read()

    def stop(self) -> None:
        """Called after each batch: the span now ends here."""
        if self.readings and self.known:
            self._read()

    def _read(self) -> None:
        b = self._busy()
        if b is None:
            self.known = False
            return
        self.readings.append((b, self._own(), self._wall()))

    def _between(self, i: int, j: int) -> tuple[float, float]:
        (b0, c0, w0), (b1, c1, w1) = self.readings[i], self.readings[j]
        return (b1 - b0) - (c1 - c0), max(0.0, w1 - w0)

    @property
    def others_s(self) -> float:
        """Other processes' CPU seconds over the span as read (may dip below 0 by the readings' coarseness)."""
        return self._between(0, -1)[0] if len(self.readings) > 1 else 0.0

    @property
    def wall_s(self) -> float:
        """Wall seconds of the span."""
        return self._between(0, -1)[1] if len(self.readings) > 1 else 0.0

    @property
    def total_s(self) -> float:
        """Other processes' CPU seconds over the span (NaN where unknown; never below 0)."""
        return max(0.0, self.others_s) if self.known else math.nan

    @property
    def margin_s(self) -> float:
        """How far :attr:`total_s` may be off from the readings' coarseness: a tick per core at each end."""
        return 2.0 * self.resolution_s * self.cores

    def peak_cores(self, window_s: float = OTHERS_WINDOW_S) -> float:
        """The most cores other processes surely kept busy over any stretch of at least ``window_s`` between two
        readings: ``(their CPU seconds - margin_s) / wall seconds``, the largest over such stretches (NaN where
        unknown or when the span is shorter than ``window_s``)."""
        if not self.known or len(self.readings) < 2:
            return math.nan
        best = math.nan
        n = len(self.readings)
        for i in range(n - 1):
            for j in range(n - 1, i, -1):
                others, wall = self._between(i, j)
                if wall < window_s:
                    break
                cores = (others - self.margin_s) / wall
                if not cores <= best:
                    best = cores
        return max(0.0, best) if best == best else math.nan
