"""Measured device ceilings that rows are compared with: matmul throughput (TFLOP/s) and copy bandwidth (GB/s).

- :func:`matmul_ceiling_tflops`: a large square matmul in the case's dtype; on CUDA 8192³ timed with CUDA events
  and an L2 flush (:func:`harness.measure.timing.time_cuda`), on the CPU 1024³ with the per-call timer and the row's
  thread count. A row's ``pct_of_peak`` = 100 x its TFLOP/s / this figure (:mod:`harness.measure.runner`).
- :func:`copy_ceiling_gbps`: ``dst.copy_(src)`` of a buffer larger than the last-level cache (256 MiB on CUDA,
  64 MiB on the CPU, so that the copy streams from memory); GB/s counts the bytes read plus the bytes written
  (``2 x nbytes / time``), the traffic the copy moves. Memory-bound work (decode) divides its achieved GB/s by it.

Each figure is the median of the undisturbed samples (:mod:`harness.measure.usage`), measured once per process
for each (device, dtype, threads) and kept in memory. On the CPU it is also cached on disk (default
``~/.cache/attnbench/ceilings.json``; ``ATTNBENCH_CEILING_CACHE`` names another file, or ``off``), keyed by host,
CPU model, torch version, dtype and threads, so later runs on the same host skip the measurement. A figure taken
while the machine was contended (:mod:`harness.measure.contention`) is used for the run but never written to disk,
so that one busy moment does not become every later run's ceiling.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.core.case import parse_dtype
from harness.core.flops import tflops

__all__ = ["CACHE_ENV", "CPU_COPY_BYTES", "CPU_MATMUL_N", "CUDA_COPY_BYTES", "CUDA_MATMUL_N", "copy_ceiling_gbps",
           "matmul_ceiling_tflops"]

#: Side of the square matmul on CUDA (large enough to fill a data-centre GPU with work) and on the CPU (large
#: enough to reach the BLAS's steady throughput, small enough to time in a fraction of a second).
CUDA_MATMUL_N = 8192
CPU_MATMUL_N = 1024
#: Bytes copied by the copy ceiling: more than the last-level cache holds.
CUDA_COPY_BYTES = 256 * 2**20
CPU_COPY_BYTES = 64 * 2**20
#: Environment variable naming the CPU ceilings' cache file (``off``: no disk cache).
CACHE_ENV = "ATTNBENCH_CEILING_CACHE"

_memo: dict[tuple, float] = {}


def _cache_path() -> Path | None:
    """The on-disk cache of CPU ceilings (None when ``ATTNBENCH_CEILING_CACHE=off``)."""
    from harness.measure.env import user_cache_file

    return user_cache_file(CACHE_ENV, "ceilings.json")


def _disk_key(kind: str, dtype: str, threads: int) -> str:
    from harness.measure.env import cpu_model

    return f"{socket.gethostname()}|{cpu_model()}|torch {torch.__version__}|{kind}|{dtype}|{threads} threads"


def _disk_get(key: str) -> float | None:
    path = _cache_path()
    if path is None or not path.is_file():
        return None
    with contextlib.suppress(OSError, ValueError, TypeError):
        value = json.loads(path.read_text(encoding="utf-8")).get(key, {}).get("value")
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return None


def _disk_put(key: str, value: float) -> None:
    path = _cache_path()
    if path is None:
        return
    from harness.base.files import write_atomic

    with contextlib.suppress(OSError, ValueError):
        path.parent.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {}
        if path.is_file():
            with contextlib.suppress(ValueError):
                doc = json.loads(path.read_text(encoding="utf-8"))
        from harness.measure.env import now_iso

        doc[key] = {"value": value, "measured": now_iso()}
        write_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _cuda_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: no such CUDA device here")
    return torch.device("cuda", torch.cuda.current_device()) if dev.index is None else dev


def _threads(threads: int | None) -> int:
    return torch.get_num_threads() if threads is None else int(threads)


def _measure_cpu(call, threads: int, budget_s: float) -> tuple[float, bool]:
    """Median ms of ``call`` on the CPU with ``threads`` threads, and whether the measurement was contended."""
    from harness.measure.timing import time_cpu_per_call

    call()  # warm-up (page faults of fresh buffers, thread pool start)
    r = time_cpu_per_call(call, budget_s=budget_s, threads=threads, min_runs=5, rel_ci=0.02)
    return r.median_ms, r.contended


def _measure_cuda(call, dev: torch.device, budget_s: float) -> float:
    from harness.measure.timing import time_cuda

    return time_cuda(call, device=dev, budget_s=budget_s, warmup=3, min_runs=5, max_runs=200).median_ms


def _measure(call: Callable[[], None], dev: torch.device, threads: int, budget_s: float) -> tuple[float, bool]:
    """Median ms of ``call`` on ``dev``, and whether the measurement was contended (judged on the CPU only)."""
    if dev.type == "cuda":
        return _measure_cuda(call, dev, budget_s), False
    return _measure_cpu(call, threads, budget_s)


def _remembered(key: tuple, disk: str, measure: Callable[[], tuple[float, bool]]) -> float:
    """The ceiling kept under ``key`` in this process, else the one on disk under ``disk`` (CPU only: '' on CUDA),
    else ``measure()``'s, kept in memory and, unless contended or not finite, on disk."""
    if key in _memo:
        return _memo[key]
    cached = _disk_get(disk) if disk else None
    if cached is not None:
        _memo[key] = cached
        return cached
    value, contended = measure()
    _memo[key] = value
    if disk and not contended and math.isfinite(value):
        _disk_put(disk, value)
    return value


def matmul_ceiling_tflops(device: str | torch.device, dtype: str | torch.dtype, threads: int | None = None,
                          n: int | None = None, budget_s: float = 0.3) -> float:
    """Measured matmul throughput (TFLOP/s) of ``device`` in ``dtype``: the ceiling ``pct_of_peak`` divides by.

    An ``n x n @ n x n`` matmul of standard-normal inputs; ``2·n³ / median time``. Kept per (device, dtype,
    threads) for the life of the process (CPU: also on disk, see the module docstring). TF32 follows torch's
    setting for float32 on CUDA, as it does for the variants.

    Args:
        device: ``cpu`` or a CUDA device.
        dtype: the case's dtype (name or torch dtype).
        threads: CPU threads (None: torch's current count); ignored on CUDA.
        n: matmul side (default :data:`CUDA_MATMUL_N` / :data:`CPU_MATMUL_N`).
        budget_s: time limit of the measurement.

    Returns:
        TFLOP/s.

    Raises:
        ValueError: an unknown device type, or a CUDA device that is not here.
    """
    dev = torch.device(device)
    tdtype = parse_dtype(dtype)
    if dev.type == "cuda":
        dev = _cuda_device(dev)
        key: tuple = ("matmul", f"{dev}:{torch.cuda.get_device_name(dev)}", str(tdtype), 0, n)
    elif dev.type == "cpu":
        key = ("matmul", "cpu", str(tdtype), _threads(threads), n)
    else:
        raise ValueError(f"device={str(device)!r} has no matmul ceiling (allowed: cpu, cuda)")
    side = n or (CUDA_MATMUL_N if dev.type == "cuda" else CPU_MATMUL_N)
    disk = _disk_key(f"matmul {side}", str(tdtype).removeprefix("torch."), key[3]) if dev.type == "cpu" else ""

    def measure() -> tuple[float, bool]:
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(side, side, generator=gen).to(dev, tdtype)
        b = torch.randn(side, side, generator=gen).to(dev, tdtype)
        out = torch.empty(side, side, device=dev, dtype=tdtype)

        def call() -> None:
            torch.matmul(a, b, out=out)

        ms, contended = _measure(call, dev, key[3], budget_s)
        return tflops(2.0 * side**3, ms), contended

    return _remembered(key, disk, measure)


def copy_ceiling_gbps(device: str | torch.device, threads: int | None = None, nbytes: int | None = None,
                      budget_s: float = 0.3) -> float:
    """Measured copy bandwidth (GB/s, bytes read + bytes written) of ``device``: the ceiling of memory-bound work.

    ``dst.copy_(src)`` of ``nbytes`` (default :data:`CUDA_COPY_BYTES` / :data:`CPU_COPY_BYTES`, more than the
    last-level cache), ``2 x nbytes / median time``. Kept like :func:`matmul_ceiling_tflops`.

    Args:
        device: ``cpu`` or a CUDA device.
        threads: CPU threads (None: torch's current count); ignored on CUDA.
        nbytes: bytes per buffer.
        budget_s: time limit of the measurement.

    Returns:
        GB/s (1 GB = 1e9 bytes).

    Raises:
        ValueError: an unknown device type, or a CUDA device that is not here.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = _cuda_device(dev)
        key: tuple = ("copy", f"{dev}:{torch.cuda.get_device_name(dev)}", 0, nbytes)
    elif dev.type == "cpu":
        key = ("copy", "cpu", _threads(threads), nbytes)
    else:
        raise ValueError(f"device={str(device)!r} has no copy ceiling (allowed: cpu, cuda)")
    size = nbytes or (CUDA_COPY_BYTES if dev.type == "cuda" else CPU_COPY_BYTES)
    disk = _disk_key(f"copy {size}", "bytes", key[2]) if dev.type == "cpu" else ""

    def measure() -> tuple[float, bool]:
        src = torch.ones(size, dtype=torch.uint8, device=dev)
        dst = torch.zeros(size, dtype=torch.uint8, device=dev)

        def call() -> None:
            dst.copy_(src)

        ms, contended = _measure(call, dev, key[2], budget_s)
        return (2.0 * size / (ms * 1e-3) / 1e9 if ms > 0 else math.nan), contended

    return _remembered(key, disk, measure)
