"""FLOP counts of attention by pattern, throughput, and the device's measured matmul ceiling.

Counting convention (the one FlashAttention's papers use): the forward pass costs ``4·B·H·D`` FLOPs per attended
(query, key) pair (``2·D`` for the ``q·k`` dot product, ``2·D`` for the ``p·v`` accumulation; softmax is not
counted), so full attention is ``4·B·H·N²·D``, causal counts ``N(N+1)/2`` pairs and a window or block layout
only its attended pairs (:meth:`harness.pattern.Pattern.attended_pairs`). The backward pass counts 2.5x the
forward (five matmuls instead of two), ``fwd_bwd`` 3.5x. These are *useful* FLOPs: a variant that computes masked
pairs anyway does not get credit for them.

``pct_of_peak`` divides achieved TFLOP/s by a ceiling *measured* on the device: a large square matmul in the
case's dtype, timed once per (device, dtype) with the CUDA timer of :mod:`harness.timing` and cached for the
life of the process.
"""

from __future__ import annotations

import math

import torch

from harness.inputs import Case, parse_dtype

#: Multipliers of the forward FLOPs per mode.
MODE_FLOP_FACTORS: dict[str, float] = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}
#: Side of the square matmul that measures the ceiling (8192³ fills an H100 with work).
_CEILING_MATMUL_N = 8192

_ceiling_cache: dict[tuple[str, str], float] = {}


def attention_flops(case: Case) -> float:
    """FLOPs of ``case`` in its mode: ``4·B·H·D`` per attended pair forward, backward 2.5x, fwd_bwd 3.5x.

    Args:
        case: the benchmark case (shape, pattern, mode).

    Returns:
        The FLOP count as a float.
    """
    fwd = 4.0 * case.batch * case.heads * case.head_dim * case.pattern.attended_pairs(case.seq_len)
    return MODE_FLOP_FACTORS[case.mode] * fwd


def tflops(flops: float, time_ms: float) -> float:
    """Throughput in TFLOP/s for ``flops`` done in ``time_ms`` milliseconds (NaN for a time that is not > 0)."""
    if not (math.isfinite(time_ms) and time_ms > 0 and math.isfinite(flops)):
        return math.nan
    return flops / (time_ms * 1e-3) / 1e12


def matmul_ceiling_tflops(device: str | torch.device, dtype: str | torch.dtype, n: int = _CEILING_MATMUL_N,
                          budget_s: float = 0.3) -> float:
    """The measured matmul throughput (TFLOP/s) of a CUDA device in ``dtype``: the ceiling rows are compared to.

    An ``n x n @ n x n`` matmul of standard-normal inputs is timed with CUDA events and an L2 flush before each
    run (:func:`harness.timing.time_cuda`); the median time gives ``2·n³ / t``. The figure is cached per
    (device, dtype) for the life of the process. TF32 follows torch's current setting for float32
    (``torch.backends.cuda.matmul.allow_tf32``), as it does for the variants.

    Args:
        device: a CUDA device (``"cuda"``, ``"cuda:1"``).
        dtype: the case's dtype (name or torch dtype).
        n: matmul side.
        budget_s: time budget of the measurement.

    Returns:
        TFLOP/s.

    Raises:
        ValueError: the device is not a CUDA device, or CUDA is not available.
    """
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: the matmul ceiling is measured on CUDA devices only")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    tdtype = parse_dtype(dtype)
    key = (f"{dev}:{torch.cuda.get_device_name(dev)}", str(tdtype))
    if key not in _ceiling_cache:
        from harness.timing import time_cuda  # local import: timing imports nothing from here, keep it so

        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(dev, tdtype)
        b = torch.randn(n, n, generator=gen).to(dev, tdtype)
        out = torch.empty(n, n, device=dev, dtype=tdtype)

        def call() -> None:
            torch.matmul(a, b, out=out)

        result = time_cuda(call, device=dev, budget_s=budget_s, warmup=3, min_runs=5, max_runs=200)
        _ceiling_cache[key] = tflops(2.0 * n**3, result.median_ms)
        del a, b, out
    return _ceiling_cache[key]


def pct_of_peak(achieved_tflops: float, device: str | torch.device, dtype: str | torch.dtype) -> float:
    """``achieved / measured matmul ceiling`` as a percentage, on CUDA; NaN on other devices.

    Args:
        achieved_tflops: the row's TFLOP/s.
        device: the case's device.
        dtype: the case's dtype.

    Returns:
        A percentage (100 = as fast as the large matmul), or NaN.
    """
    if torch.device(device).type != "cuda" or not math.isfinite(achieved_tflops):
        return math.nan
    ceiling = matmul_ceiling_tflops(device, dtype)
    return 100.0 * achieved_tflops / ceiling if ceiling > 0 else math.nan
