"""The machine's load and the thread choice: which cores this process may use, how busy other work keeps them,
how many threads fit, and whether the machine is quiet enough to time a contended measurement again.

- Readings: the 1-minute load average, the threads runnable at this instant (``procs_running`` of ``/proc/stat``),
  the busy time of the cores this process may run on (``/proc/stat``, per core, so that another container's cores
  on a shared node do not count), and the process's affinity mask.
- **Threads that fit** (:func:`default_threads`): with no thread count asked, a sweep uses torch's default, but no
  more than the cores of the affinity mask that other work leaves free (:func:`free_cores`), because threads that
  wait for a core stall each other at every barrier.
- **Other processes' limit** (:func:`others_limit`): other processes may keep busy at most
  :data:`OTHERS_FRACTION` of the cores a measurement leaves free (and at least half a core) before it is
  contended, because they share the last-level cache, the memory bandwidth and perhaps a hyper-thread sibling.
- **Quiet** (:func:`machine_quiet`, :class:`QuietGate`): a contended measurement is timed again only when every
  one of its threads would have a core and other work stays under that limit; after a wait in vain, retries only
  look for :data:`BUSY_MEMORY_S` seconds, so a machine that stays busy does not cost a wait per case.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

__all__ = ["BUSY_MEMORY_S", "OTHERS_FRACTION", "TICK_S", "QuietGate", "allowed_cores", "allowed_cpus",
           "busy_elsewhere", "default_threads", "free_cores", "load_average", "machine_busy_s", "machine_quiet",
           "others_limit", "runnable_now", "wait_for_quiet"]

#: After waiting in vain for a quiet machine, retries only look (without waiting) for this many seconds.
BUSY_MEMORY_S = 30.0
#: Other processes busy on this share of the cores a measurement leaves free (at least half a core) make it
#: contended (see :func:`others_limit`).
OTHERS_FRACTION = 0.5
try:
    _CLK_TCK = float(os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):
    _CLK_TCK = 100.0
#: Seconds of one ``/proc/stat`` tick: the resolution of :func:`machine_busy_s` per core.
TICK_S = 1.0 / _CLK_TCK


def load_average() -> float:
    """The 1-minute system load average (NaN where the platform has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return math.nan


def runnable_now() -> int | None:
    """Threads runnable on the whole machine at this instant (``procs_running`` of ``/proc/stat``), this one
    included; None where unknown."""
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _busy_ticks(fields: list[bytes]) -> int:
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return user + nice + system + irq + softirq + steal


def machine_busy_s(cpus: frozenset[int] | None = None) -> float | None:
    """CPU seconds the machine's cores have been busy since boot (``/proc/stat``: user, nice, system, irq,
    softirq and steal), summed over ``cpus`` (None: every core); None where unknown.

    Args:
        cpus: core numbers to count, e.g. this process's affinity mask (:func:`allowed_cpus`), so that work on
            cores this process may not use (another container's, on a shared node) is not counted.
    """
    try:
        with open("/proc/stat", "rb") as fh:
            if cpus is None:
                fields = fh.readline().split()
                return _busy_ticks(fields) / _CLK_TCK if fields[0] == b"cpu" else None
            total, seen = 0, False
            for line in fh:
                if not line.startswith(b"cpu"):
                    break
                fields = line.split()
                name = fields[0][3:]
                if name.isdigit() and int(name) in cpus:
                    total += _busy_ticks(fields)
                    seen = True
            return total / _CLK_TCK if seen else None
    except (OSError, ValueError, IndexError):
        return None


def allowed_cpus() -> frozenset[int] | None:
    """The cores of this process's affinity mask (None where the platform does not say)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def allowed_cores() -> int:
    """How many CPU cores this process may run on (its affinity mask; all cores where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def others_limit(threads: int, allowed: int | None = None) -> float:
    """Cores other processes may keep busy during a measurement with ``threads`` threads before it is contended:
    :data:`OTHERS_FRACTION` of the cores it leaves free, and at least half a core."""
    allowed = allowed_cores() if allowed is None else allowed
    return max(0.5, OTHERS_FRACTION * max(0, allowed - threads))


def busy_elsewhere(reads: int = 5, gap_s: float = 0.01, runnable: Callable[[], int | None] = runnable_now,
                   load: Callable[[], float] = load_average, sleep: Callable[[float], None] = time.sleep) -> float:
    """How many cores other work keeps busy: the larger of the 1-minute load average and the median count of
    runnable threads over ``reads`` instants, each minus this process's one running thread.

    Args:
        reads: instants sampled for the runnable count.
        gap_s: seconds between them.
        runnable, load, sleep: sources (tests pass fakes).
    """
    counts = []
    for i in range(reads):
        r = runnable()
        if r is not None:
            counts.append(r)
        if i + 1 < reads:
            sleep(gap_s)
    now = sorted(counts)[len(counts) // 2] - 1 if counts else 0
    avg = load()
    avg = avg - 1 if math.isfinite(avg) else 0.0
    return max(0.0, float(now), avg)


def free_cores(allowed: int | None = None, busy: float | None = None) -> int:
    """Cores of this process's affinity mask that other work leaves free (at least 1).

    Args:
        allowed: cores this process may use (default: :func:`allowed_cores`).
        busy: cores busy elsewhere (default: :func:`busy_elsewhere`).
    """
    allowed = allowed_cores() if allowed is None else allowed
    busy = busy_elsewhere() if busy is None else busy
    return max(1, min(allowed, allowed - int(math.ceil(busy - 0.25))))


def default_threads(torch_default: int, allowed: int | None = None, busy: float | None = None) -> tuple[int, str]:
    """The CPU thread count a sweep uses when none is asked: torch's default, but no more than the cores this
    process may use. It does not follow the machine's load: two runs of one command on one machine must measure the
    same thing, so a busy machine is marked ``contended`` on its rows, never measured with fewer threads.

    Args:
        torch_default: ``torch.get_num_threads()`` of a fresh process.
        allowed, busy: as in :func:`free_cores` (tests pass figures); ``busy`` only adds a warning to the sentence.

    Returns:
        ``(threads, why)``: the count and a sentence saying how it was chosen.
    """
    allowed = allowed_cores() if allowed is None else allowed
    busy = busy_elsewhere() if busy is None else busy
    threads = max(1, min(torch_default, allowed))
    why = f"threads={threads}: torch's default {torch_default}, {allowed} cores allowed"
    if free_cores(allowed, busy) < threads:
        why += (f"; other work keeps about {busy:.1f} cores busy, so rows may be marked contended (ask threads=1 "
                "for a measurement that fits beside it)")
    return threads, why


def machine_quiet(threads: int, allowed: int | None = None,
                  busy: Callable[[], float] | None = None) -> bool:
    """Whether ``threads`` threads of this process would now each have a core of their own.

    Args:
        threads: the threads the measurement uses.
        allowed: cores this process may use (default: :func:`allowed_cores`).
        busy: source of the cores busy elsewhere (default: the instantaneous runnable count only, since the load
            average lags by a minute).
    """
    allowed = allowed_cores() if allowed is None else allowed
    if busy is None:
        def busy() -> float:
            return busy_elsewhere(load=lambda: math.nan)
    elsewhere = busy()
    return elsewhere + threads <= allowed and elsewhere < others_limit(threads, allowed)


def wait_for_quiet(threads: int, timeout_s: float, poll_s: float = 0.1,
                   quiet: Callable[[int], bool] | None = None, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """Poll :func:`machine_quiet` until it holds or ``timeout_s`` passes; returns whether it held."""
    quiet = quiet or machine_quiet
    end = clock() + max(0.0, timeout_s)
    while True:
        if quiet(threads):
            return True
        if clock() >= end:
            return False
        sleep(poll_s)


class QuietGate:
    """Decides whether a contended measurement may be retried now, without waiting again and again on a machine
    that stays busy: after a wait that timed out, the next :data:`BUSY_MEMORY_S` seconds only look once.

    Args:
        quiet: whether ``threads`` threads fit now (default :func:`machine_quiet`).
        clock: a monotonic clock (tests pass a fake).
    """

    def __init__(self, quiet: Callable[[int], bool] | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._quiet, self._clock, self._sleep = quiet or machine_quiet, clock, sleep
        self._busy_until = -math.inf

    def ready(self, threads: int, timeout_s: float) -> bool:
        """Whether to retry: the machine is quiet now, or becomes quiet within ``timeout_s``."""
        wait = 0.0 if self._clock() < self._busy_until else timeout_s
        ok = wait_for_quiet(threads, wait, quiet=self._quiet, clock=self._clock, sleep=self._sleep)
        if not ok:
            self._busy_until = self._clock() + BUSY_MEMORY_S
        return ok
