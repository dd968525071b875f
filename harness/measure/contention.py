"""What the process actually got while it was timed: CPU time, run-queue wait, preemptions, system load, and on
CUDA the GPU's clocks, throttle reasons and other processes; which threads fit on the cores that are free.

Why run-queue wait. On a shared machine the wall time of a call includes the time its threads were runnable but
not running. Seen on a 2-core machine with one busy-looping process beside it: ``full`` (B=1, H=2, N=256, D=32)
with two OpenMP threads took 43-51 ms per call instead of 0.2-0.4 ms, every call alike (a tight IQR), because one
thread waited at a barrier for its sibling, which waited for a core. The process's CPU time over wall x threads
(``cpu_share``) read 0.33 there, but it also read 0.50 on the idle machine (a call that small runs mostly on one
thread), so CPU share alone cannot tell a stalled call from a serial one. The kernel's per-thread scheduler
statistics can: ``/proc/self/task/<tid>/schedstat`` holds, per thread, the time spent on a CPU and the time spent
*waiting on a run queue*. Summed over the process's threads, that wait was 58-69 ms per 47 ms call under the hog
and 0 on the idle machine; one 4 ms preemption of a single-threaded call showed as 4 ms of wait on that call alone.

The rules (constants below):

- A *sample* is **disturbed** when the process's threads waited on a run queue for more than
  :data:`DISTURBED_WAIT_FRACTION` of the sample's wall time. Where the kernel gives no schedstat (not Linux, or a
  kernel without ``CONFIG_SCHED_INFO``), a sample is disturbed when the process was involuntarily switched out
  during it (``ru_nivcsw`` from ``getrusage``): coarser, it sees that a preemption happened, not how long it took.
- A *measurement* is **contended** when more than :data:`CONTENDED_FRACTION` of its samples were disturbed (and at
  least :data:`MIN_DISTURBED`), or
  when other processes kept busy, on average from its first batch to its last, at least :func:`others_limit`
  cores (half of the cores it left free, and at least half a core: ``others_cores``, from ``/proc/stat``'s busy
  time minus this process's CPU time; the limit is raised by the ticks' coarseness), or, on CUDA, when the SM
  clock ran below :data:`GPU_SLOW_CLOCK_FRACTION` of its maximum
  (NVBench's throttling rule) or other processes used the same GPU.

The second rule is for what takes no run-queue time from this process: a process busy on the other cores
shares the last-level cache, the memory bandwidth and perhaps this core's hyper-thread sibling. With one thread
on the 2-core VM, a busy loop on the other core moved single cases by 10-30% with no sample disturbed. What no
rule here sees is a slower core with nothing else running on the machine (a busy host under a virtual machine, a
lower clock); see ``docs/measurement.md``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: A sample whose threads waited on a run queue longer than this fraction of its wall time is disturbed.
DISTURBED_WAIT_FRACTION = 0.05
#: A measurement with more than this fraction of disturbed samples is contended...
CONTENDED_FRACTION = 0.25
#: ...and at least this many: one waited-on sample is an event, not a state of the machine. In the default run
#: (threads=2 on the 2 cores, nothing else running), rows of 3 samples had one sample wait in each of 3 runs;
#: each time their whole case was timed again.
MIN_DISTURBED = 2
#: On CUDA, an SM clock below this fraction of its maximum during timing marks the measurement contended.
GPU_SLOW_CLOCK_FRACTION = 0.75
#: After waiting in vain for a quiet machine, retries only look (without waiting) for this many seconds.
BUSY_MEMORY_S = 30.0
#: Other processes busy on this share of the cores a measurement leaves free (at least half a core) make it
#: contended (see :func:`others_limit`).
OTHERS_FRACTION = 0.5
#: The shortest stretch of a measurement whose own figure for other processes is judged too (a load that starts
#: part-way through a case; see :meth:`OthersMeter.peak_cores`).
OTHERS_WINDOW_S = 0.2
_TASKS = "/proc/self/task"
try:
    _CLK_TCK = float(os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):
    _CLK_TCK = 100.0

# NVML clock-event ("throttle") reason bits, from nvml.h; the idle bit is left out (a GPU between kernels).
_NVML_REASONS: dict[int, str] = {
    0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost",
    0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


# ---------------------------------------------------------------------------------------------------- readings
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
    """Run-queue wait of a fixed set of the process's threads, read through file descriptors kept open
    (``pread`` of an open schedstat file costs ~3 us a thread, opening it again ~10 us)."""

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


def others_limit(threads: int, allowed: int | None = None) -> float:
    """Cores other processes may keep busy during a measurement with ``threads`` threads before it is contended:
    :data:`OTHERS_FRACTION` of the cores it leaves free, and at least half a core."""
    allowed = allowed_cores() if allowed is None else allowed
    return max(0.5, OTHERS_FRACTION * max(0, allowed - threads))


def allowed_cores() -> int:
    """How many CPU cores this process may run on (its affinity mask; all cores where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
    """The CPU thread count a sweep uses when none is asked: torch's default, but no more than the free cores.

    Args:
        torch_default: ``torch.get_num_threads()`` of a fresh process.
        allowed, busy: as in :func:`free_cores` (tests pass figures).

    Returns:
        ``(threads, why)``: the count and a sentence saying how it was chosen.
    """
    allowed = allowed_cores() if allowed is None else allowed
    busy = busy_elsewhere() if busy is None else busy
    free = free_cores(allowed, busy)
    threads = max(1, min(torch_default, free))
    why = (f"threads={threads}: torch's default {torch_default}, {allowed} cores allowed, about {busy:.1f} busy "
           f"with other work, so {free} free")
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


# ---------------------------------------------------------------------------------------------------- per sample
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


# ---------------------------------------------------------------------------------------------------- per measurement
@dataclass
class Contention:
    """What the process got during one timing measurement.

    Attributes:
        samples: samples taken.
        disturbed: samples that were disturbed (see :attr:`SampleUsage.disturbed`).
        cpu_share: the process's CPU time during the samples / (their wall time x threads); 1.0 = every asked
            thread ran all the time. A call that does not use all its threads reads below 1 on an idle machine.
        runq_wait_share: run-queue wait of the process's threads / (wall time x threads) (NaN where unknown).
        load_before, load_after: the 1-minute load average when timing began and ended.
        gpu: the GPU's state during timing (:func:`gpu_state`), empty on CPU or without NVML.
        detector: ``runq_wait`` (schedstat) or ``nivcsw`` (involuntary switches only).
        others_cores: cores other processes kept busy, on average, from the first batch to the last (NaN where
            unknown).
        others_limit: the most :attr:`others_cores` may be before the measurement is contended.
        others_peak: the most cores other processes surely kept busy over a stretch of at least
            :data:`OTHERS_WINDOW_S` (:meth:`OthersMeter.peak_cores`; NaN where unknown). The measurement is
            contended when it reaches :func:`others_limit` too.
    """

    samples: int = 0
    disturbed: int = 0
    cpu_share: float = math.nan
    runq_wait_share: float = math.nan
    load_before: float = math.nan
    load_after: float = math.nan
    gpu: dict[str, Any] = field(default_factory=dict)
    detector: str = ""
    others_cores: float = math.nan
    others_limit: float = math.inf
    others_peak: float = math.nan
    others_peak_limit: float = math.inf

    @property
    def disturbed_fraction(self) -> float:
        return self.disturbed / self.samples if self.samples else 0.0

    @property
    def gpu_contended(self) -> bool:
        g = self.gpu
        clock, top = g.get("gpu_sm_clock_mhz", math.nan), g.get("gpu_sm_clock_max_mhz", math.nan)
        slow = bool(top and top > 0 and clock < GPU_SLOW_CLOCK_FRACTION * top)
        return slow or int(g.get("gpu_other_processes", 0) or 0) > 0

    @property
    def others_busy(self) -> bool:
        return self.others_cores >= self.others_limit or self.others_peak >= self.others_peak_limit  # False for NaN

    @property
    def contended(self) -> bool:
        return self.samples_waited or self.others_busy or self.gpu_contended

    @property
    def samples_waited(self) -> bool:
        """More than :data:`CONTENDED_FRACTION` of the samples, and at least :data:`MIN_DISTURBED`, were disturbed."""
        return self.disturbed_fraction > CONTENDED_FRACTION and self.disturbed >= MIN_DISTURBED

    def note(self) -> str:
        """One sentence for the row's ``reason`` when contended ('' otherwise)."""
        if not self.contended:
            return ""
        parts = []
        if self.samples_waited:
            how = "waited on a run queue" if self.detector == "runq_wait" else "were preempted"
            parts.append(f"{self.disturbed} of {self.samples} samples {how} (cpu_share {self.cpu_share:.2f}, "
                         f"load {self.load_before:.1f} -> {self.load_after:.1f})")
        if self.others_busy:
            if self.others_cores >= self.others_limit:
                parts.append(f"other processes kept {self.others_cores:.1f} cores busy beside it (limit "
                             f"{self.others_limit:.2g}: they share caches, memory bandwidth, maybe this core)")
            else:
                parts.append(f"other processes kept at least {self.others_peak:.1f} cores busy during part of it "
                             f"({self.others_cores:.1f} on average; limit {self.others_peak_limit:.2g}: they share "
                             "caches, memory bandwidth, maybe this core)")
        g = self.gpu
        if g.get("gpu_other_processes"):
            parts.append(f"{g['gpu_other_processes']} other process(es) on the GPU")
        clock, top = g.get("gpu_sm_clock_mhz", math.nan), g.get("gpu_sm_clock_max_mhz", math.nan)
        if top and top > 0 and clock < GPU_SLOW_CLOCK_FRACTION * top:
            parts.append(f"SM clock {clock:.0f} of {top:.0f} MHz ({g.get('gpu_throttle_reasons') or 'no reason'})")
        return "contended: " + "; ".join(parts)

    def columns(self) -> dict[str, Any]:
        """The row's columns: ``cpu_share, runq_wait_share, load_before, load_after, disturbed_samples`` and the
        GPU's, when measured."""
        return {"cpu_share": self.cpu_share, "runq_wait_share": self.runq_wait_share,
                "load_before": self.load_before, "load_after": self.load_after,
                "disturbed_samples": self.disturbed, "others_cores": self.others_cores, **self.gpu}


def summarize(usages: Sequence[SampleUsage], threads: int, load_before: float = math.nan,
              load_after: float = math.nan, gpu: dict[str, Any] | None = None, others_s: float = math.nan,
              others_wall_s: float = 0.0, others_limit_cores: float | None = None,
              others_margin_s: float = 0.0, others_peak_cores: float = math.nan) -> Contention:
    """Sum the per-sample usage of one measurement into a :class:`Contention`.

    Args:
        usages: one per sample.
        threads: the threads the measurement asked for.
        load_before, load_after: load averages around it.
        gpu: the GPU state (CUDA).
        others_s, others_wall_s: CPU seconds other processes used while the batches ran, and those batches' wall
            seconds (see :class:`OthersMeter`).
        others_limit_cores: :func:`others_limit` (default: for ``threads`` on this machine).
        others_margin_s: how far ``others_s`` may be off from the coarseness of its readings
            (:attr:`OthersMeter.margin_s`): the limit is raised by it, so that a row is contended only when other
            processes surely reached the limit.
        others_peak_cores: :meth:`OthersMeter.peak_cores` (its margin already taken off), judged against the limit.
    """
    wall = sum(u.wall_s for u in usages)
    cpu = sum(u.cpu_s for u in usages)
    waits = [u.wait_s for u in usages]
    known = bool(usages) and all(w is not None for w in waits)
    denom = wall * max(1, threads)
    limit = others_limit(threads) if others_limit_cores is None else others_limit_cores
    return Contention(
        samples=len(usages), disturbed=sum(u.disturbed for u in usages),
        cpu_share=cpu / denom if denom > 0 else math.nan,
        runq_wait_share=(sum(w for w in waits if w is not None) / denom) if known and denom > 0 else math.nan,
        load_before=load_before, load_after=load_after, gpu=dict(gpu or {}),
        detector="runq_wait" if known else ("nivcsw" if usages else ""),
        others_cores=others_s / others_wall_s if others_wall_s > 0 and math.isfinite(others_s) else math.nan,
        others_limit=limit + (others_margin_s / others_wall_s if others_wall_s > 0 else 0.0),
        others_peak=others_peak_cores, others_peak_limit=limit)


class OthersMeter:
    """CPU time other processes used while a measurement ran: the busy time of the cores this process may run on
    (:func:`machine_busy_s` over :func:`allowed_cpus`) minus this process's CPU time, over the *span* of the
    measurement, from the start of its first batch to the end of its last.

    Why the span and not the sum of its batches: ``/proc/stat`` counts in ticks (10 ms), and a batch of a few
    milliseconds reads 0 or 1 tick per core. With batches of 3 ms, 32 per variant, those readings (each clipped
    at 0) added up to 0.5-0.7 cores of "others" on an idle machine, and its rows were retried as contended. Read
    at the two ends of the span, the error is at most one tick per core at each end, and :attr:`margin_s` says
    how large. The batches of a case are interleaved with the other variants' (this process's own CPU time there
    is subtracted too), so the span's average is the one its batches saw.

    Args:
        busy: busy seconds of those cores (default :func:`machine_busy_s` of :func:`allowed_cpus`; tests pass
            fakes).
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
        self.resolution_s = 1.0 / _CLK_TCK if resolution_s is None else resolution_s
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
        unknown or when the span is shorter than ``window_s``).

        The span's average dilutes a load that starts part-way through a measurement: two rows of the case during
        which a busy loop started read 1.18x and 1.35x and went unmarked, the span's average under the limit.
        Subtracting the margin from every stretch keeps the ticks' coarseness from making a
        short stretch look busy.
        """
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


# ---------------------------------------------------------------------------------------------------- GPU (NVML)
_nvml_module: Any = None
_nvml_tried = False


def set_nvml(module: Any) -> None:
    """Use ``module`` as the NVML binding (tests pass a fake; None: import ``pynvml`` again on next use)."""
    global _nvml_module, _nvml_tried
    _nvml_module, _nvml_tried = module, module is not None


def _nvml() -> Any:
    global _nvml_module, _nvml_tried
    if not _nvml_tried:
        _nvml_tried = True
        try:
            import pynvml  # nvidia-ml-py; optional

            pynvml.nvmlInit()
            _nvml_module = pynvml
        except Exception:  # not installed, no driver: the GPU columns stay empty
            _nvml_module = None
    return _nvml_module


def _nvml_handle(nv: Any, index: int, uuid: str | None) -> Any:
    if uuid:
        with contextlib.suppress(Exception):
            return nv.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    return nv.nvmlDeviceGetHandleByIndex(index)


def throttle_names(mask: int) -> str:
    """Names of the NVML clock-event reasons set in ``mask`` (the idle bit ignored), joined by ``+``."""
    return "+".join(name for bit, name in _NVML_REASONS.items() if mask & bit)


def gpu_state(index: int = 0, uuid: str | None = None, nvml: Any = None) -> dict[str, Any]:
    """The GPU's SM clock against its maximum, its clock-event (throttle) reasons and the other processes on it.

    Read while timed work is queued (an idle GPU lowers its clocks). Empty when NVML is not available.

    Args:
        index: the NVML device index (used when ``uuid`` is not given or not found).
        uuid: the device's UUID (``torch.cuda.get_device_properties(i).uuid``), which survives
            ``CUDA_VISIBLE_DEVICES`` renumbering.
        nvml: the binding (default: ``pynvml`` when importable).

    Returns:
        ``gpu_sm_clock_mhz``, ``gpu_sm_clock_max_mhz``, ``gpu_throttle_reasons``, ``gpu_other_processes``.
    """
    nv = nvml if nvml is not None else _nvml()
    if nv is None:
        return {}
    try:
        h = _nvml_handle(nv, index, uuid)
        sm = nv.NVML_CLOCK_SM
        out: dict[str, Any] = {"gpu_sm_clock_mhz": float(nv.nvmlDeviceGetClockInfo(h, sm)),
                               "gpu_sm_clock_max_mhz": float(nv.nvmlDeviceGetMaxClockInfo(h, sm))}
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            nv.nvmlDeviceGetCurrentClocksThrottleReasons
        out["gpu_throttle_reasons"] = throttle_names(int(reasons(h)))
        procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
        out["gpu_other_processes"] = sum(1 for p in procs if int(getattr(p, "pid", -1)) != os.getpid())
        return out
    except Exception as exc:  # a driver that refuses a query: said in the row, not raised
        return {"gpu_state_error": f"{type(exc).__name__}: {exc}"[:200]}
