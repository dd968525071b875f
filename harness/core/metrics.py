"""Numerical error of an output (or gradient) against the float64 baseline.

Four figures, each computed in float64:

- ``max_abs``: largest absolute difference;
- ``rel_l2``: ``||x - ref||_F / ||ref||_F`` (the absolute Frobenius norm when the reference is all zeros);
- ``mean_abs``: mean absolute difference;
- ``ratio_vs_textbook``: ``rel_l2(x) / rel_l2(textbook attention run in the same dtype)``. Dividing by what
  the dtype itself costs makes low-precision kernels comparable: FlashAttention's tests accept a kernel whose
  error is at most about 2x (3x for gradients) that of the textbook computation in the same precision.

A tensor holding NaN or Inf gets NaN figures (and the sweep marks the row ``numerics``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["ErrorStats", "error_stats", "ratio"]


@dataclass(frozen=True)
class ErrorStats:
    """Error figures of one tensor against its reference."""

    max_abs: float
    rel_l2: float
    mean_abs: float
    finite: bool = True


def error_stats(x: torch.Tensor, ref: torch.Tensor) -> ErrorStats:
    """Compare ``x`` (any dtype) with the float64 ``ref`` of the same shape.

    Raises:
        ValueError: the shapes differ.
    """
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(f"output shape {tuple(x.shape)} does not match the reference shape {tuple(ref.shape)}")
    x64 = x.detach().to(device=ref.device, dtype=torch.float64)
    if not bool(torch.isfinite(x64).all()):
        return ErrorStats(math.nan, math.nan, math.nan, finite=False)
    diff = x64 - ref
    ref_norm = float(torch.linalg.vector_norm(ref))
    diff_norm = float(torch.linalg.vector_norm(diff))
    rel = diff_norm / ref_norm if ref_norm > 0 else diff_norm
    if diff.numel() == 0:
        return ErrorStats(0.0, 0.0, 0.0)
    return ErrorStats(float(diff.abs().max()), rel, float(diff.abs().mean()))


def ratio(err: float, textbook_err: float) -> float:
    """``err / textbook_err``; NaN when the textbook error is 0 or undefined (e.g. float64 inputs)."""
    if not math.isfinite(err) or not math.isfinite(textbook_err) or textbook_err <= 0:
        return math.nan
    return err / textbook_err
