"""The exact attention weights, ``softmax(q kᵀ / sqrt(d) + mask)`` in float64, a block of query rows at a time.

These are the probabilities the float64 baseline (:func:`harness.core.reference.reference_attention`) applies to
``v``: the same scale, the same mask from :class:`harness.core.pattern.Pattern` (bottom-right alignment, documents,
one mask per row of a padded batch), rows with no attended key all zero. Fused kernels never return their
weights; these are what they compute, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from harness.core.pattern import Pattern

__all__ = ["mask_rows", "probability_blocks", "probability_rows"]


def mask_rows(pattern: Pattern, seq_len: int, q_len: int, r0: int, r1: int, batch_row: int = 0,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean ``(r1 - r0, seq_len)``: which keys query rows ``[r0, r1)`` attend (of ``batch_row`` in a padded
    batch; query rows bottom-right aligned)."""
    if pattern.is_padded:
        qi = torch.arange(r0, r1, device=device)[:, None]
        ki = torch.arange(seq_len, device=device)[None, :]
        b = torch.tensor(batch_row, device=device)
        return pattern.batch_mask_fn(seq_len, device)(b, qi, ki)
    return pattern.dense_mask(seq_len, device, q_start=r0, q_end=r1, q_len=q_len)


def probability_rows(q: torch.Tensor, k: torch.Tensor, pattern: Pattern, r0: int, r1: int,
                     batch_row: int = 0) -> torch.Tensor:
    """Float64 attention weights of query rows ``[r0, r1)`` against every key.

    Args:
        q: ``(heads, q_len, D)``, one batch row.
        k: ``(heads, seq_len, D)``, the key head of each query head.
        pattern: the pattern.
        r0, r1: the query rows.
        batch_row: the batch row (for a padded batch's per-row mask).

    Returns:
        ``(heads, r1 - r0, seq_len)`` float64; each row sums to 1, or is all 0 when it attends no key.
    """
    lq, n, d = q.shape[1], k.shape[1], q.shape[2]
    s = torch.matmul(q[:, r0:r1].double(), k.double().transpose(1, 2)) * (1.0 / math.sqrt(d))
    mask = mask_rows(pattern, n, lq, r0, r1, batch_row, q.device)
    s = s.masked_fill(~mask, float("-inf"))
    row_max = s.amax(dim=-1, keepdim=True)
    p = (s - torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))).exp()
    denom = p.sum(dim=-1, keepdim=True)
    return p / torch.where(denom > 0, denom, torch.ones_like(denom))


def probability_blocks(q: torch.Tensor, k: torch.Tensor, pattern: Pattern, rows_per_block: int,
                       batch_row: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`probability_rows` over every query row, ``rows_per_block`` at a time: ``(r0, block)`` pairs."""
    lq = q.shape[1]
    for r0 in range(0, lq, max(1, rows_per_block)):
        yield r0, probability_rows(q, k, pattern, r0, min(lq, r0 + rows_per_block), batch_row)
