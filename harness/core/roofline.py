"""Bytes a case must move, achieved bandwidth, and which ceiling binds (the roofline of one row).

Decode (a few queries against a long KV cache) is bound by memory bandwidth, prefill by matmul throughput; a row
says which by comparing its arithmetic intensity with the device's ridge point:

- ``bytes_moved``: the least traffic any kernel needs, each tensor read or written once: forward reads q, k and
  v and writes the output; backward reads q, k, v, the output and its gradient and writes dq, dk and dv;
  ``fwd_bwd`` both. In the inputs' dtype; with grouped heads k and v have ``kv_heads`` heads, so GQA's saving
  shows here. Of k and v only the keys some query attends count (:func:`keys_read`): a sliding-window decode
  query needs its last ``w`` keys, not the whole cache, and a kernel that reads the rest does extra work.
- ``achieved_gbps``: ``bytes_moved / time``; ``pct_of_copy_ceiling``: against the measured copy bandwidth of the
  device (``copy_ceiling_gbps``, read + write, :mod:`harness.measure.ceilings`).
- ``arith_intensity``: the row's useful FLOPs (:func:`harness.core.flops.attention_flops`) per byte moved;
  ``ridge_intensity``: measured matmul ceiling / measured copy ceiling, in FLOP per byte; ``bound``: ``memory``
  when the intensity is below the ridge (the copy ceiling limits the row), else ``compute``.
"""

from __future__ import annotations

import math

from harness.core.case import Case

__all__ = ["ROOFLINE_COLUMNS", "bytes_moved", "keys_read", "roofline_figures"]

#: Columns :func:`roofline_figures` fills.
ROOFLINE_COLUMNS: tuple[str, ...] = ("bytes_moved", "achieved_gbps", "pct_of_copy_ceiling", "arith_intensity",
                                     "ridge_intensity", "bound")


def keys_read(case: Case) -> int:
    """The keys (per batch row and key/value head) that at least one query of ``case`` attends.

    All of them for full and causal patterns; for a sliding window, the span its queries reach (``q_len + w - 1``
    keys at most: a decode query's last ``w``); for a block layout, the key blocks of the layout's rows that hold
    queries. Variable-length batches count every key (each document's queries reach its keys).
    """
    pattern, n, q = case.pattern, case.seq_len, case.q_len
    if pattern.has_documents:
        return n
    if pattern.kind in ("block_sparse", "block_sparse_causal"):
        layout = pattern.block_layout(n)
        cols = layout[(n - q) // pattern.block:].any(dim=0).tolist()
        return sum(min(pattern.block, n - j * pattern.block) for j, used in enumerate(cols) if used)
    lo, hi = pattern.key_bounds(0, q, n, q)
    return max(0, hi - lo)


def bytes_moved(case: Case) -> float:
    """The least bytes a kernel computing ``case`` reads and writes (each tensor once).

    Args:
        case: the case (shapes, dtype, mode).

    Returns:
        Bytes.
    """
    elem = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[case.dtype]
    q = case.batch * case.heads * case.q_len * case.head_dim  # q, the output and its gradient
    kv = case.batch * case.kv_heads * keys_read(case) * case.head_dim  # k and v each
    fwd = 2 * q + 2 * kv  # read q, k, v; write out
    bwd = 3 * q + 2 * kv + q + 2 * kv  # read q, out, dout, k, v; write dq, dk, dv
    return float(elem * {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[case.mode])


def roofline_figures(case: Case, flops: float, time_ms: float, matmul_tflops: float = math.nan,
                     copy_gbps: float = math.nan) -> dict[str, float | str]:
    """The row's bandwidth figures and which ceiling binds.

    Args:
        case: the case.
        flops: the row's useful FLOPs.
        time_ms: its median time.
        matmul_tflops: the measured matmul ceiling (NaN: unknown).
        copy_gbps: the measured copy ceiling in GB/s (NaN: unknown).

    Returns:
        A dict over :data:`ROOFLINE_COLUMNS` (NaN or ``""`` where a figure cannot be had).
    """
    moved = bytes_moved(case)
    ok_time = math.isfinite(time_ms) and time_ms > 0
    gbps = moved / (time_ms * 1e-3) / 1e9 if ok_time else math.nan
    intensity = flops / moved if moved > 0 and math.isfinite(flops) else math.nan
    have = math.isfinite(matmul_tflops) and matmul_tflops > 0 and math.isfinite(copy_gbps) and copy_gbps > 0
    ridge = matmul_tflops * 1e12 / (copy_gbps * 1e9) if have else math.nan
    bound = "" if not (have and math.isfinite(intensity)) else ("memory" if intensity < ridge else "compute")
    pct = 100.0 * gbps / copy_gbps if math.isfinite(gbps) and math.isfinite(copy_gbps) and copy_gbps > 0 else math.nan
    return {"bytes_moved": moved, "achieved_gbps": gbps, "pct_of_copy_ceiling": pct, "arith_intensity": intensity,
            "ridge_intensity": ridge, "bound": bound}
