"""``full``: textbook attention that materializes the score matrix; any pattern by dense masking.

Grouped-query heads are computed natively: q ``(B, H, Lq, D)`` is viewed as ``(B, Hkv, G * Lq, D)`` (the ``G``
query heads of a key/value head stacked as rows), so one matmul per key/value head serves its whole group and K
and V are never copied to every head. Queries shorter than keys (``Lq < N``) use the pattern's bottom-right mask.
"""

from __future__ import annotations

import math

import torch

from harness import Pattern, Variant, register_variant
from harness.pattern import PATTERN_KINDS
from harness.variant import fold_groups, unfold_groups


@register_variant
class Full(Variant):
    name = "full"
    description = "textbook attention: N x N scores, softmax, matmul; any pattern by a dense mask"
    patterns = frozenset(PATTERN_KINDS)
    supports_gqa = True
    supports_q_len = True

    def prepare(self, pattern: Pattern, case):
        mask = None if pattern.kind == "full" else pattern.dense_mask(case.seq_len, case.device, q_len=case.q_len)
        return lambda q, k, v: _dense(q, k, v, mask)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        mask = None if pattern.kind == "full" else pattern.dense_mask(k.shape[2], q.device, q_len=q.shape[2])
        return _dense(q, k, v, mask)


def _dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    b, h, lq, d = q.shape
    hkv, n = k.shape[1], k.shape[2]
    g = h // hkv
    scores = torch.matmul(fold_groups(q, hkv), k.transpose(-1, -2)) * (1.0 / math.sqrt(d))  # (B, Hkv, G*Lq, N)
    if mask is not None:
        scores = scores.view(b, hkv, g, lq, n).masked_fill(~mask, float("-inf")).view(b, hkv, g * lq, n)
    probs = torch.softmax(scores, dim=-1)
    if mask is not None:  # rows with no attended key (custom layouts) give 0, like the baseline
        probs = torch.nan_to_num(probs, nan=0.0)
    return unfold_groups(torch.matmul(probs, v), h)
