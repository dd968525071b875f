"""What the process got from the scheduler around each timed sample: wall time, CPU time, run-queue wait and
involuntary context switches, and whether the sample was *disturbed*.

Why run-queue wait: on a shared machine a call's wall time includes the time its threads were runnable but not
running. The process's CPU share cannot tell that from a call that simply runs on fewer threads than it was given
(both read below 1); the kernel's per-thread scheduler statistics can. ``/proc/self/task/<tid>/schedstat`` holds,
per thread, the time spent on a CPU and the time spent *waiting on a run queue*; summed over the process's
threads, the wait is zero on an idle machine and grows with every core the call had to wait for.

The rule: a sample is **disturbed** when the process's threads waited on a run queue for more than
:data:`DISTURBED_WAIT_FRACTION` of its wall time (the sample is known to include time the call did not take).
Where the kernel gives no schedstat (not Linux, or a kernel without ``CONFIG_SCHED_INFO``), a sample is disturbed
when the process was switched out involuntarily during it (``ru_nivcsw``): coarser, it sees that a preemption
happened, not how long it took.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["DISTURBED_WAIT_FRACTION", "SampleUsage", "SchedstatReader", "Usage", "UsageMeter",
           "involuntary_switches", "runq_wait_s"]

#: A sample whose threads waited on a run queue longer than this fraction of its wall time is disturbed.
DISTURBED_WAIT_FRACTION = 0.05
_TASKS = "/proc/self/task"


def _task_ids() -> list[str]:
    try:
        return os.listdir(_TASKS)
    except OSError:
        return []


def runq_wait_s(tids: Sequence[str] | None = None) -> float | None:
    """Seconds the process's threads have spent waiting on a run queue, summed (Linux schedstat); None if unknown.

    Args:
        tids: the thread ids to read (default: every thread of the process now).
    """
    total = 0
    seen = False
    for tid in _task_ids() if tids is None else tids:
        try:
            with open(f"{_TASKS}/{tid}/schedstat", "rb") as fh:
                parts = fh.read().split()
            total += int(parts[1])
            seen = True
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9 if seen else None


class SchedstatReader:
    """Run-queue wait of a fixed set of the process's threads, read through file descriptors kept open (a
    ``pread`` of an open schedstat file is cheaper than opening it again, and it is read around every sample)."""

    def __init__(self) -> None:
        self._fds: list[int] = []

    def open(self, tids: Sequence[str]) -> None:
        """Read these threads from now on (closing the previous ones)."""
        self.close()
        for tid in tids:
            with contextlib.suppress(OSError):
                self._fds.append(os.open(f"{_TASKS}/{tid}/schedstat", os.O_RDONLY))

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __del__(self) -> None:
        self.close()

    def read(self) -> float | None:
        """Seconds waited, summed over the threads (None when none of them can be read)."""
        total = 0
        seen = False
        for fd in self._fds:
            try:
                total += int(os.pread(fd, 128, 0).split()[1])
                seen = True
            except (OSError, IndexError, ValueError):
                continue  # a thread that ended
        return total / 1e9 if seen else None


def involuntary_switches() -> int:
    """Involuntary context switches of the whole process so far (``getrusage(RUSAGE_SELF).ru_nivcsw``)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)


@dataclass(frozen=True)
class Usage:
    """A reading of the process's clocks (seconds; ``wait_s`` None where run-queue wait is unknown)."""

    wall_s: float
    cpu_s: float
    wait_s: float | None
    nivcsw: int


@dataclass(frozen=True)
class SampleUsage:
    """What the process got during one sample: differences of two :class:`Usage` readings around it."""

    wall_s: float
    cpu_s: float
    wait_s: float | None
    nivcsw: int

    @property
    def disturbed(self) -> bool:
        """Waited on a run queue for more than :data:`DISTURBED_WAIT_FRACTION` of the sample's wall time (or, with
        no run-queue figures, was switched out involuntarily)."""
        if self.wait_s is not None:
            return self.wait_s > DISTURBED_WAIT_FRACTION * max(self.wall_s, 0.0)
        return self.nivcsw > 0


class UsageMeter:
    """Reads :class:`Usage`; every source can be replaced (tests pass fakes).

    Args:
        wall: wall clock (seconds).
        cpu: the process's CPU time, all threads (seconds).
        wait: run-queue wait of the threads read at the last :meth:`refresh` (default: Linux schedstat), or None
            when unknown.
        nivcsw: the process's involuntary context switches so far.
        tids: lists the process's thread ids (read again by :meth:`refresh`).
    """

    def __init__(self, wall: Callable[[], float] = time.perf_counter, cpu: Callable[[], float] = time.process_time,
                 wait: Callable[[], float | None] | None = None, nivcsw: Callable[[], int] = involuntary_switches,
                 tids: Callable[[], list[str]] = _task_ids) -> None:
        self._wall, self._cpu, self._nivcsw, self._list = wall, cpu, nivcsw, tids
        self._reader = SchedstatReader() if wait is None else None
        self._wait = wait if wait is not None else self._reader.read  # type: ignore[union-attr]
        self._fresh = False

    def refresh(self) -> None:
        """Read the process's thread ids again (a new OpenMP pool appears when the thread count changes)."""
        if self._reader is not None:
            self._reader.open(self._list())
        self._fresh = True

    def read(self) -> Usage:
        if not self._fresh:
            self.refresh()
        return Usage(self._wall(), self._cpu(), self._wait(), self._nivcsw())

    @staticmethod
    def delta(a: Usage, b: Usage) -> SampleUsage:
        wait = None if a.wait_s is None or b.wait_s is None else max(0.0, b.wait_s - a.wait_s)
        return SampleUsage(b.wall_s - a.wall_s, max(0.0, b.cpu_s - a.cpu_s), wait, max(0, b.nivcsw - a.nivcsw))
