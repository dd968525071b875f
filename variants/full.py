"""``full``: textbook attention that materializes the N x N score matrix; any pattern by dense masking."""

from __future__ import annotations

import math

import torch

from harness import Pattern, Variant, register_variant
from harness.pattern import PATTERN_KINDS


@register_variant
class Full(Variant):
    name = "full"
    description = "textbook attention: N x N scores, softmax, matmul; any pattern by a dense mask"
    patterns = frozenset(PATTERN_KINDS)

    def prepare(self, pattern: Pattern, case):
        n = case.seq_len
        mask = None if pattern.kind == "full" else pattern.dense_mask(n, case.device)
        return lambda q, k, v: _dense(q, k, v, mask)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        mask = None if pattern.kind == "full" else pattern.dense_mask(q.shape[2], q.device)
        return _dense(q, k, v, mask)


def _dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if mask is not None:  # rows with no attended key (custom layouts) give 0, like the baseline
        probs = torch.nan_to_num(probs, nan=0.0)
    return torch.matmul(probs, v)
