"""Display units that follow the data: a figure's axis is in µs, ms or s, KiB, MiB or GiB, GFLOP/s or TFLOP/s,
GB/s or TB/s, whichever keeps its numbers short."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Unit", "bandwidth_unit", "bytes_unit", "flops_unit", "time_unit"]


@dataclass(frozen=True)
class Unit:
    """A display unit: ``shown = raw * factor``."""

    name: str
    factor: float = 1.0


def time_unit(values_ms) -> Unit:
    """µs below a millisecond, s from a second (by the median value), else ms."""
    v = _positive(values_ms)
    if v.size == 0:
        return Unit("ms")
    mid = float(np.median(v))
    if mid < 1.0:
        return Unit("µs", 1e3)
    if mid >= 1000.0:
        return Unit("s", 1e-3)
    return Unit("ms")


def bytes_unit(values_bytes) -> Unit:
    """KiB, MiB or GiB by the largest value."""
    v = _positive(values_bytes)
    top = float(v.max()) if v.size else 0.0
    if top >= 2**30:
        return Unit("GiB", 2.0**-30)
    if 0 < top < 2**20:
        return Unit("KiB", 2.0**-10)
    return Unit("MiB", 2.0**-20)


def flops_unit(values_tflops) -> Unit:
    """TFLOP/s when the largest value reaches 1 TFLOP/s (a GPU), else GFLOP/s (a CPU)."""
    v = _positive(values_tflops)
    if v.size and float(v.max()) >= 1.0:
        return Unit("TFLOP/s")
    return Unit("GFLOP/s", 1e3)


def bandwidth_unit(values_gbps) -> Unit:
    """TB/s when the largest value reaches 1000 GB/s (a GPU's memory), else GB/s."""
    v = _positive(values_gbps)
    if v.size and float(v.max()) >= 1000.0:
        return Unit("TB/s", 1e-3)
    return Unit("GB/s")


def _positive(values) -> np.ndarray:
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v) & (v > 0)]
