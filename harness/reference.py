"""The exact baseline: float64 attention (output and gradients) for any pattern, in bounded memory.

``reference_attention`` computes ``softmax(q kᵀ / sqrt(d) + mask) v`` in float64, one block of query rows at a
time, visiting only the keys the pattern can reach (``Pattern.key_bounds``). Each block holds a full row of
scores, so the softmax is exact (no online rescaling); memory is bounded by ``block_bytes`` and stays O(N) in the
sequence length. Gradients ``dq, dk, dv`` for an upstream gradient are computed in the same pass with the
standard formulas (``dS = P * (dP - rowsum(dO * O))``).

Rows with no attended key (possible only with a custom block layout) produce an output of 0 and zero gradients.

``textbook_attention`` is the same row-blocked computation done in the inputs' own dtype (matmul, softmax,
matmul, as a textbook implementation would): it is the yardstick of the precision-normalised error ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.inputs import Case, Inputs
from harness.pattern import Pattern

_DEFAULT_BLOCK_BYTES = 256 * 2**20  # per score buffer; a handful of such buffers are alive at once


@dataclass
class Reference:
    """Float64 output and (when asked for) gradients of exact attention."""

    out: torch.Tensor
    dq: torch.Tensor | None = None
    dk: torch.Tensor | None = None
    dv: torch.Tensor | None = None

    @property
    def has_grads(self) -> bool:
        return self.dq is not None


def _rows_for(pattern: Pattern, batch_heads: int, n: int, block_bytes: int) -> int:
    """Query rows per block such that one float64 score block fits ``block_bytes``."""
    elems = max(1, block_bytes // (8 * batch_heads))
    if pattern.kind in ("window", "window_sym"):
        w = pattern.window
        # a block of r rows sees at most r + 2w keys: largest r with r * (r + 2w) <= elems
        return max(1, int(math.isqrt(w * w + elems) - w))
    return max(1, elems // n)


def _masked_scores(qb: torch.Tensor, kb: torch.Tensor, mask_fn, q0: int, q1: int, k0: int, k1: int,
                   scale: float) -> torch.Tensor:
    s = torch.matmul(qb, kb.transpose(-1, -2)) * scale
    if mask_fn is not None:
        qi = torch.arange(q0, q1, device=qb.device)[:, None]
        ki = torch.arange(k0, k1, device=qb.device)[None, :]
        s = s.masked_fill(~mask_fn(qi, ki), float("-inf"))
    return s


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pattern: Pattern | None = None,
    grad_out: torch.Tensor | None = None,
    block_bytes: int = _DEFAULT_BLOCK_BYTES,
) -> Reference:
    """Exact float64 attention with ``pattern``; gradients too when ``grad_out`` is given.

    Args:
        q, k, v: ``(batch, heads, seq_len, head_dim)`` tensors of any floating dtype, on any device.
        pattern: the attention pattern (default: full).
        grad_out: upstream gradient of the output; when given, ``dq, dk, dv`` are returned as well.
        block_bytes: memory budget of one block of float64 scores.

    Returns:
        A :class:`Reference` with float64 tensors on the inputs' device.
    """
    pattern = Pattern() if pattern is None else pattern
    b, h, n, d = q.shape
    pattern.check_fits(n)
    scale = 1.0 / math.sqrt(d)
    q64, k64, v64 = q.double(), k.double(), v.double()
    out = torch.empty_like(q64)
    want_grad = grad_out is not None
    if want_grad:
        g64 = grad_out.double()
        dq, dk, dv = torch.empty_like(q64), torch.zeros_like(k64), torch.zeros_like(v64)
    rows = _rows_for(pattern, b * h, n, block_bytes)
    mask_fn = None if pattern.kind == "full" else pattern.mask_fn(n, q.device)
    for q0 in range(0, n, rows):
        q1 = min(n, q0 + rows)
        k0, k1 = pattern.key_bounds(q0, q1, n)
        qb, kb, vb = q64[:, :, q0:q1], k64[:, :, k0:k1], v64[:, :, k0:k1]
        s = _masked_scores(qb, kb, mask_fn, q0, q1, k0, k1, scale)
        row_max = s.amax(dim=-1, keepdim=True)
        row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        p = torch.exp(s - row_max)
        denom = p.sum(dim=-1, keepdim=True)
        p = p / torch.where(denom > 0, denom, torch.ones_like(denom))
        ob = torch.matmul(p, vb)
        out[:, :, q0:q1] = ob
        if want_grad:
            gb = g64[:, :, q0:q1]
            dv[:, :, k0:k1] += torch.matmul(p.transpose(-1, -2), gb)
            dp = torch.matmul(gb, vb.transpose(-1, -2))
            delta = (gb * ob).sum(dim=-1, keepdim=True)
            ds = p * (dp - delta)
            dq[:, :, q0:q1] = torch.matmul(ds, kb) * scale
            dk[:, :, k0:k1] += torch.matmul(ds.transpose(-1, -2), qb) * scale
    if want_grad:
        return Reference(out, dq, dk, dv)
    return Reference(out)


def textbook_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pattern: Pattern | None = None,
    block_bytes: int = _DEFAULT_BLOCK_BYTES,
) -> torch.Tensor:
    """Attention as a textbook writes it (matmul, masked softmax, matmul) in the inputs' own dtype.

    Rows are processed in blocks so memory stays bounded; each row's arithmetic is exactly that of the dense
    textbook computation. Rows with no attended key give 0.
    """
    pattern = Pattern() if pattern is None else pattern
    b, h, n, d = q.shape
    scale = 1.0 / math.sqrt(d)
    out = torch.empty_like(q)
    rows = max(1, block_bytes // (q.element_size() * b * h * n))
    mask_fn = None if pattern.kind == "full" else pattern.mask_fn(n, q.device)
    for q0 in range(0, n, rows):
        q1 = min(n, q0 + rows)
        s = _masked_scores(q[:, :, q0:q1], k, mask_fn, q0, q1, 0, n, scale)
        p = torch.softmax(s, dim=-1)
        p = torch.nan_to_num(p, nan=0.0)
        out[:, :, q0:q1] = torch.matmul(p, v)
    return out


class ReferenceCache:
    """Keeps the baseline of the most recent inputs, so every variant measured on them shares one computation."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._ref: Reference | None = None
        self._textbook: torch.Tensor | None = None
        self._dense: torch.Tensor | None = None

    def _check_key(self, case: Case) -> None:
        key = case.input_key()
        if key != self._key:
            self._key, self._ref, self._textbook, self._dense = key, None, None, None

    def reference(self, case: Case, inputs: Inputs, with_grads: bool) -> Reference:
        """The float64 baseline of ``case`` (computed once; recomputed only to add gradients)."""
        self._check_key(case)
        if self._ref is None or (with_grads and not self._ref.has_grads):
            self._ref = reference_attention(inputs.q, inputs.k, inputs.v, case.pattern,
                                            grad_out=inputs.grad_out if with_grads else None)
        return self._ref

    def textbook(self, case: Case, inputs: Inputs) -> torch.Tensor:
        """Textbook attention in the case's dtype (for the precision-normalised error ratio)."""
        self._check_key(case)
        if self._textbook is None:
            self._textbook = textbook_attention(inputs.q, inputs.k, inputs.v, case.pattern)
        return self._textbook

    def dense_reference(self, case: Case, inputs: Inputs) -> torch.Tensor:
        """Float64 output of exact attention with only the causal part of the case's pattern (no window, no
        layout, no approximation): what sparse and approximate variants are judged against for ``approx_err``."""
        self._check_key(case)
        dense = case.pattern.causal_part()
        if dense == case.pattern:
            return self.reference(case, inputs, with_grads=False).out
        if self._dense is None:
            self._dense = reference_attention(inputs.q, inputs.k, inputs.v, dense).out
        return self._dense

    def clear(self) -> None:
        self._key, self._ref, self._textbook, self._dense = None, None, None, None
