"""``local_window``: sliding-window attention that computes only the band, in blocks; memory O(N·w), not O(N²).

Queries are cut into blocks of ``block`` rows. Query block ``[s, s + block)`` can only reach the keys
``[s - w + 1, s + block)`` (causal window) or ``[s - w + 1, s + block + w - 1)`` (symmetric window): a span of
``block + w - 1`` (or ``block + 2w - 2``) keys. The keys and values are zero-padded at both ends so that every
block's span has the same length; ``Tensor.unfold`` then views all spans at once (a strided view, no gather
loop) and one batched matmul computes every block's scores, shaped ``(B, H, n_blocks, block, span)``. One
additive mask ``(n_blocks, block, span)``, built once in :meth:`LocalWindow.prepare`, removes the pairs outside
the band and the padding. Every buffer is O(N · span) = O(N · (block + w)).

Low-precision inputs are computed in float32; the output has the input dtype. Gradients flow by autograd (also
O(N · span) memory).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness import Pattern, Variant, register_variant
from harness.inputs import Case
from harness.variant import AttentionFn, case_for, check_param


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit inputs, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@register_variant
class LocalWindow(Variant):
    """Banded sliding-window attention (see the module docstring).

    Args:
        block: query rows per block (default 128): the span costs ``block + w - 1`` key columns per row for
            ``w`` useful ones, so smaller blocks waste less, larger blocks make bigger matmuls.
    """

    name = "local_window"
    description = "sliding-window attention computing only the band, in blocks (unfold + one batched matmul)"
    patterns = frozenset({"window", "window_sym"})
    # largest seen in the conformance suite: ~4e-7 (float32), ~1.7e-3 (bfloat16: the output rounding)
    tolerances = {"float32": 2e-6, "bfloat16": 4e-3, "float16": 1e-3}
    grad_tolerances = {"float32": 5e-6, "bfloat16": 4e-3, "float16": 1e-3}
    block: int = 128

    def __init__(self, block: int | None = None) -> None:
        if block is not None:
            self.block = check_param("block", block)

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        if pattern.kind not in self.patterns:
            raise ValueError(f"pattern={pattern.kind!r} is not computed by local_window "
                             "(supported: window, window_sym)")
        plan = _BandPlan.build(pattern, case.seq_len, self.block, _compute_dtype(case.torch_dtype), case.device)
        return lambda q, k, v: plan.attend(q, k, v)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, case_for(q, pattern))(q, k, v)


class _BandPlan:
    """Block geometry and additive band mask of one (pattern, seq_len)."""

    def __init__(self, n: int, bq: int, left: int, right: int, bias: torch.Tensor) -> None:
        self.n, self.bq, self.left, self.right, self.bias = n, bq, left, right, bias
        self.n_blocks = bias.shape[0]
        self.span = bias.shape[2]

    @classmethod
    def build(cls, pattern: Pattern, n: int, block: int, dtype: torch.dtype, device: torch.device | str) -> _BandPlan:
        w = min(pattern.window, n)  # a window wider than the sequence is the same as one of width n
        bq = min(block, n)
        nb = math.ceil(n / bq)
        left = w - 1
        right = w - 1 if pattern.kind == "window_sym" else 0
        span = bq + left + right
        starts = torch.arange(nb, device=device) * bq
        qi = starts[:, None, None] + torch.arange(bq, device=device)[None, :, None]  # (nb, bq, 1) query index
        ki = starts[:, None, None] - left + torch.arange(span, device=device)[None, None, :]  # (nb, 1, span)
        keep = pattern.mask_fn(n)(qi, ki) & (ki >= 0) & (ki < n)
        # padded query rows (index >= n) are discarded; let them attend to everything so no row is all -inf
        keep = keep | (qi >= n)
        bias = torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill_(~keep, float("-inf"))
        return cls(n, bq, left, right, bias)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, h, n, d = q.shape
        cd, bq, nb = self.bias.dtype, self.bq, self.n_blocks
        tail = nb * bq - n  # padding after the last query
        qs = q.to(cd) * (1.0 / math.sqrt(d))
        if tail:
            qs = F.pad(qs, (0, 0, 0, tail))
        qb = qs.view(b, h, nb, bq, d)
        pad = (0, 0, self.left, tail + self.right)
        kw = F.pad(k.to(cd), pad).unfold(2, self.span, bq)  # (B, H, nb, d, span): each block's keys, transposed
        vw = F.pad(v.to(cd), pad).unfold(2, self.span, bq).transpose(-1, -2)  # (B, H, nb, span, d)
        scores = torch.matmul(qb, kw)  # (B, H, nb, bq, span)
        scores.add_(self.bias)
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            probs = torch.softmax(scores, dim=-1)
        else:  # inference: softmax in place, one (B, H, nb, bq, span) buffer fewer
            probs = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
            probs.div_(probs.sum(dim=-1, keepdim=True))
        out = torch.matmul(probs, vw).view(b, h, nb * bq, d)
        if tail:
            out = out[:, :, :n]
        return out.to(q.dtype)
