"""An attnbench plugin: exact attention computed 64 query rows at a time (scores never exceed 64 x N)."""

import math

import torch

from harness import PATTERN_KINDS, Pattern, Variant, register_variant


@register_variant
class QueryChunked(Variant):
    name = "example_query_chunked"
    description = "example plugin: exact attention, 64 query rows at a time"
    patterns = frozenset(PATTERN_KINDS)  # any pattern: each chunk takes its rows of the pattern's mask
    chunk = 64

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        n, scale, outs = q.shape[2], 1.0 / math.sqrt(q.shape[-1]), []
        for start in range(0, n, self.chunk):
            end = min(start + self.chunk, n)
            scores = torch.matmul(q[:, :, start:end], k.transpose(-1, -2)) * scale
            mask = pattern.dense_mask(n, q.device, q_start=start, q_end=end)
            probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            outs.append(torch.matmul(probs.nan_to_num(0.0), v))  # rows with no key give 0, like the baseline
        return torch.cat(outs, dim=2)
