"""FLOP counts of attention by pattern, and throughput.

Counting convention (the one FlashAttention's papers use): the forward pass costs ``4·B·H·D`` FLOPs per attended
(query, key) pair (``2·D`` for the ``q·k`` dot product, ``2·D`` for the ``p·v`` accumulation; softmax is not
counted), so full attention is ``4·B·H·N²·D``, causal counts ``N(N+1)/2`` pairs and a window or block layout
only its attended pairs (:meth:`harness.core.pattern.Pattern.attended_pairs`, of the ``q_len x seq_len`` problem with
queries aligned bottom-right; grouped-query heads do as many products as full heads, so ``H`` is the number of
query heads). The backward pass counts 2.5x the
forward (five matmuls instead of two), ``fwd_bwd`` 3.5x. These are *useful* FLOPs: a variant that computes masked
pairs anyway does not get credit for them.

The device ceilings that ``pct_of_peak`` (and achieved GB/s) are compared with are measured in
:mod:`harness.measure.ceilings`.
"""

from __future__ import annotations

import math

from harness.core.case import Case

__all__ = ["MODE_FLOP_FACTORS", "attention_flops", "tflops"]

#: Multipliers of the forward FLOPs per mode.
MODE_FLOP_FACTORS: dict[str, float] = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}


def attention_flops(case: Case) -> float:
    """FLOPs of ``case`` in its mode: ``4·B·H·D`` per attended pair forward, backward 2.5x, fwd_bwd 3.5x.

    Args:
        case: the benchmark case (shape, pattern, mode).

    Returns:
        The FLOP count as a float.
    """
    fwd = 4.0 * case.heads * case.head_dim * case.attended_pairs()  # every batch row; documents: real pairs only
    return MODE_FLOP_FACTORS[case.mode] * fwd


def tflops(flops: float, time_ms: float) -> float:
    """Throughput in TFLOP/s for ``flops`` done in ``time_ms`` milliseconds (NaN for a time that is not > 0)."""
    if not (math.isfinite(time_ms) and time_ms > 0 and math.isfinite(flops)):
        return math.nan
    return flops / (time_ms * 1e-3) / 1e12
