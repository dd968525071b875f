"""``local_window``: sliding-window attention that computes only the band, in blocks; memory O(N·w), not O(N²).

Queries are cut into blocks of ``block`` rows. Query block ``[s, s + block)`` can only reach the keys
``[s - w + 1, s + block)`` (causal window) or ``[s - w + 1, s + block + w - 1)`` (symmetric window): a span of
``block + w - 1`` (or ``block + 2w - 2``) keys. The keys and values are zero-padded at both ends so that every
block's span has the same length; ``Tensor.unfold`` then views all spans at once (a strided view, no gather
loop) and one batched matmul computes every block's scores, shaped ``(B, H, n_blocks, block, span)``. One
additive mask ``(n_blocks, block, span)``, built once in :meth:`LocalWindow.prepare`, removes the pairs outside
the band and the padding. Every buffer is O(N · span) = O(N · (block + w)).

Grouped-query heads are folded into the rows of each block: the ``G`` query heads of a key/value head form one
``(G * block, D)`` block against that head's unfolded keys, so K and V are never copied to every head. Queries
shorter than keys (``q_len < seq_len``) sit bottom-right: query block ``j`` starts at key position
``seq_len - q_len + j * block`` and the unfold starts there.

Low-precision inputs are computed in float32; the output has the input dtype. Gradients flow by autograd (also
O(N · span) memory).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness import AttentionFn, Case, Pattern, Variant, case_for, check_param, register_variant


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
    supports_gqa = True
    supports_q_len = True
    doc_layouts_reason = ("its band plan is one window over the whole sequence, with no document or padding mask; "
                          "chunked, flex and full compute windows within documents")
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
        plan = _BandPlan.build(pattern, case.seq_len, self.block, _compute_dtype(case.torch_dtype), case.device,
                               case.q_len)
        return lambda q, k, v: plan.attend(q, k, v)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, case_for(q, pattern, k=k))(q, k, v)


class _BandPlan:
    """Block geometry and additive band mask of one (pattern, seq_len, q_len)."""

    def __init__(self, n: int, lq: int, bq: int, left: int, right: int, bias: torch.Tensor) -> None:
        self.n, self.lq, self.bq, self.left, self.right, self.bias = n, lq, bq, left, right, bias
        self.off = n - lq
        self.n_blocks = bias.shape[0]
        self.span = bias.shape[2]

    @classmethod
    def build(cls, pattern: Pattern, n: int, block: int, dtype: torch.dtype, device: torch.device | str,
              q_len: int | None = None) -> _BandPlan:
        lq = n if q_len is None else q_len
        off = pattern.query_offset(n, lq)
        w = min(pattern.window, n)  # a window wider than the sequence is the same as one of width n
        bq = min(block, lq)
        nb = math.ceil(lq / bq)
        left = w - 1
        right = w - 1 if pattern.kind == "window_sym" else 0
        span = bq + left + right
        starts = torch.arange(nb, device=device) * bq  # first query row of each block
        qi = starts[:, None, None] + torch.arange(bq, device=device)[None, :, None]  # (nb, bq, 1) query row
        ki = off + starts[:, None, None] - left + torch.arange(span, device=device)[None, None, :]  # (nb, 1, span)
        keep = pattern.mask_fn(n, device, lq)(qi, ki) & (ki >= 0) & (ki < n)
        # padded query rows (index >= lq) are discarded; let them attend to everything so no row is all -inf
        keep = keep | (qi >= lq)
        bias = torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill_(~keep, float("-inf"))
        return cls(n, lq, bq, left, right, bias)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, h, lq, d = q.shape
        hkv, g = k.shape[1], h // k.shape[1]
        cd, bq, nb = self.bias.dtype, self.bq, self.n_blocks
        tail = nb * bq - lq  # padding after the last query
        qs = q.to(cd) * (1.0 / math.sqrt(d))
        if tail:
            qs = F.pad(qs, (0, 0, 0, tail))
        # (B, Hkv, G, nb, bq, D) -> (B, Hkv, nb, G * bq, D): a key/value head's query heads stacked in each block
        qb = qs.view(b, hkv, g, nb, bq, d)
        qb = qb.view(b, hkv, nb, bq, d) if g == 1 else qb.transpose(2, 3).reshape(b, hkv, nb, g * bq, d)
        # key position p is padded index p + left; block j's keys start at padded index off + j * bq
        need = self.off + (nb - 1) * bq + self.span
        pad = (0, 0, self.left, max(0, need - (self.n + self.left)))
        kw = F.pad(k.to(cd), pad)[:, :, self.off:].unfold(2, self.span, bq)  # (B, Hkv, nb, d, span)
        vw = F.pad(v.to(cd), pad)[:, :, self.off:].unfold(2, self.span, bq).transpose(-1, -2)  # (B, Hkv, nb, span, d)
        scores = torch.matmul(qb, kw)  # (B, Hkv, nb, G * bq, span)
        scores.view(b, hkv, nb, g, bq, self.span).add_(self.bias[:, None])
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            probs = torch.softmax(scores, dim=-1)
        else:  # inference: softmax in place, one (B, Hkv, nb, G * bq, span) buffer fewer
            probs = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
            probs.div_(probs.sum(dim=-1, keepdim=True))
        out = torch.matmul(probs, vw)  # (B, Hkv, nb, G * bq, D)
        if g == 1:
            out = out.view(b, h, nb * bq, d)
        else:
            out = out.view(b, hkv, nb, g, bq, d).transpose(2, 3).reshape(b, h, nb * bq, d)
        if tail:
            out = out[:, :, :lq]
        return out.to(q.dtype)
