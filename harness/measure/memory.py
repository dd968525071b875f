"""Peak memory of one call, measured (not estimated), in bytes above what was live when the call began.

- CUDA: the caching allocator's statistics. ``reset_peak_memory_stats``, read ``memory_allocated`` (the live
  inputs and everything else already allocated), run and synchronize, then ``max_memory_allocated`` minus that
  starting figure. Resolution: the allocator's block rounding (sizes are rounded up to multiples of 512 bytes);
  memory obtained outside PyTorch's allocator is not seen.
- CPU: the profiler (``torch.autograd.profiler.profile``, which ``torch.profiler`` drives) with
  ``profile_memory=True`` records every allocation and free made through PyTorch's CPU allocator as a ``[memory]``
  event with a signed byte count and a nanosecond timestamp. The events are replayed in time order; the running sum
  starts at 0 (the state before the call) and its maximum is the high-water mark above the start. Resolution: exact
  bytes per tensor allocation; memory that libraries take for themselves (BLAS packing buffers, oneDNN scratchpads,
  the Python heap) is not seen.

After the call its result is dropped (and ``cleanup`` runs, e.g. dropping the gradients of ``fwd_bwd``) while
still measuring: what stays allocated is ``left_bytes``, memory the call leaves behind. On CPU the drop is marked
in the profile with a ``record_function`` range, so ``end_bytes`` (the output still alive) and ``left_bytes`` come
from one profile.

Garbage collection is switched off during the measured call instead of running a full ``gc.collect()`` before
it (a full collection in a process with torch and its libraries loaded costs far more than most calls): a
collection inside the call could free objects allocated before it and lower the running sum below the call's
true peak. Only when something appears to be left behind is ``gc.collect()`` run, once, and the probe repeated,
to tell a leak from garbage awaiting collection.

Profiling distorts time, so the harness measures memory in a separate, untimed call. The first profiled call
of a process pays the profiler's start-up; later ones do not.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from harness.measure.gcpause import gc_paused

__all__ = ["CPU_METHOD", "CUDA_METHOD", "MemoryResult", "allocation_deltas", "high_water_mark", "measure_peak"]


CPU_METHOD = "cpu: torch.profiler [memory] events replayed in time order (bytes via the CPU allocator)"
CUDA_METHOD = "cuda: max_memory_allocated - memory_allocated before the call (reset_peak_memory_stats)"


@dataclass
class MemoryResult:
    """Peak memory of one call.

    Attributes:
        peak_bytes: high-water mark of allocated bytes above the start of the call (NaN if not measured).
        method: how it was measured (goes into ``memory_method``).
        end_bytes: bytes still allocated after the call, relative to the start (e.g. the output, gradients).
        left_bytes: bytes still allocated after the result was dropped (and ``cleanup`` ran): what the call left
            behind. 0 for a call that frees everything it allocated.
    """

    peak_bytes: float
    method: str
    end_bytes: float = math.nan
    left_bytes: float = math.nan


def measure_peak(fn: Callable[[], object], device: str | torch.device = "cpu",
                 cleanup: Callable[[], object] | None = None) -> MemoryResult:
    """Run ``fn`` once and measure its peak memory above what was allocated when it started.

    Whatever ``fn`` returns is dropped after the call (then ``cleanup`` runs); its allocation counts towards the
    peak, and what is still allocated afterwards is ``left_bytes``.

    Args:
        fn: the call to measure (no arguments).
        device: where the call allocates (``cpu`` or a CUDA device).
        cleanup: run after the result is dropped (e.g. clear gradients the call produced).

    Returns:
        A :class:`MemoryResult`.
    """
    dev = torch.device(device)
    if dev.type not in ("cuda", "cpu"):
        raise ValueError(f"device={str(device)!r} is not supported for memory measurement (allowed: cpu, cuda)")
    measure = _cuda_peak if dev.type == "cuda" else _cpu_peak
    with gc_paused():
        r = measure(fn, dev, cleanup, False)
    if r.left_bytes > 0:  # garbage awaiting collection, or a real leak: collect once and measure again
        with gc_paused():
            r = measure(fn, dev, cleanup, True)
    return r


def _cuda_peak(fn: Callable[[], object], dev: torch.device, cleanup: Callable[[], object] | None,
               collect: bool) -> MemoryResult:
    if collect:
        gc.collect()
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    result = fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - before
    end = torch.cuda.memory_allocated(dev) - before
    del result
    if cleanup is not None:
        cleanup()
    if collect:
        gc.collect()
    torch.cuda.synchronize(dev)
    left = torch.cuda.memory_allocated(dev) - before
    return MemoryResult(float(peak), CUDA_METHOD, float(end), float(max(0, left)))


@contextlib.contextmanager
def _without_profiler_chatter() -> Iterator[None]:
    """Drop the two ``USDT: ... profiler_start/stop`` lines libkineto writes to fd 2 at every profile; every
    other line written to stderr meanwhile (warnings, errors) is passed on unchanged afterwards."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): leave stderr alone
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True) if not ln.startswith(b"USDT:")]
            if kept:
                os.write(2, b"".join(kept))


_DROP_MARK = "attnbench::drop_result"


def _cpu_peak(fn: Callable[[], object], dev: torch.device, cleanup: Callable[[], object] | None,
              collect: bool) -> MemoryResult:
    # torch.autograd.profiler.profile is the profiler torch.profiler.profile drives; used directly, because the
    # latter's start looks up torch._inductor, whose first import is slow.
    from torch.autograd.profiler import profile, record_function

    if collect:
        gc.collect()
    with _without_profiler_chatter(), profile(use_cpu=True, profile_memory=True) as prof:
        result = fn()
        with record_function(_DROP_MARK):
            del result
            if cleanup is not None:
                cleanup()
            if collect:
                gc.collect()
    deltas = allocation_deltas(prof)
    mark = _mark_start(prof, _DROP_MARK)
    peak, left = high_water_mark(deltas)
    _, end = high_water_mark([d for d in deltas if d[0] < mark]) if mark is not None else (peak, left)
    return MemoryResult(float(peak), CPU_METHOD, float(end), float(max(0, left)))


def _kineto_results(prof: object) -> object | None:
    """The raw kineto results of a finished ``torch.autograd.profiler.profile`` or ``torch.profiler.profile``."""
    results = getattr(prof, "kineto_results", None)
    return results if results is not None else getattr(getattr(prof, "profiler", None), "kineto_results", None)


def _mark_start(prof: object, name: str) -> int | None:
    results = _kineto_results(prof)
    if results is None:
        return None
    starts = [e.start_ns() for e in results.events() if e.name() == name]
    return min(starts) if starts else None


def allocation_deltas(prof: object) -> list[tuple[int, int]]:
    """The CPU ``[memory]`` events of a finished profile as ``(timestamp_ns, signed_bytes)``, in time order.

    The raw kineto events are read because ``prof.events()`` (the per-operator view) drops allocation events
    that are not attached to an operator.

    Args:
        prof: a finished ``torch.autograd.profiler.profile`` or ``torch.profiler.profile`` run with
            ``profile_memory=True``.

    Raises:
        RuntimeError: the profiler's raw events are not available in this torch build.
    """
    results = _kineto_results(prof)
    if results is None:
        raise RuntimeError("torch.profiler gave no kineto results; CPU memory cannot be measured with this build")
    out = [(e.start_ns(), e.nbytes()) for e in results.events()
           if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    out.sort(key=lambda t: t[0])  # stable: events with equal timestamps keep the recorded order
    return out


def high_water_mark(deltas: list[tuple[int, int]]) -> tuple[int, int]:
    """Replay signed allocation sizes in order.

    Args:
        deltas: ``(timestamp, signed_bytes)`` in time order.

    Returns:
        ``(peak, end)``: the running sum's maximum (at least 0, the start) and its final value.
    """
    cur = peak = 0
    for _, nbytes in deltas:
        cur += nbytes
        peak = max(peak, cur)
    return peak, cur
