"""``full``: textbook attention that materializes the score matrix; any pattern by dense masking.

Grouped-query heads are computed natively: q ``(B, H, Lq, D)`` is viewed as ``(B, Hkv, G * Lq, D)`` (the ``G``
query heads of a key/value head stacked as rows), so one matmul per key/value head serves its whole group and K
and V are never copied to every head. Queries shorter than keys (``Lq < N``) use the pattern's bottom-right mask.

Variable-length batches: a packed batch gets the document mask as its dense mask (the whole ``total x total``
score matrix is computed, most of it masked: the cost of packing with a kernel that cannot skip); a padded batch
gets one mask per row (``Pattern.batch_dense_mask``), its padding queries attending to every key so that their
(discarded) rows stay finite.
"""

from __future__ import annotations

import math

import torch

from harness import PATTERN_KINDS, Pattern, Variant, fold_groups, register_variant, unfold_groups


@register_variant
class Full(Variant):
    name = "full"
    description = "textbook attention: N x N scores, softmax, matmul; any pattern by a dense mask"
    patterns = frozenset(PATTERN_KINDS)
    supports_gqa = True
    supports_q_len = True
    doc_layouts = frozenset({"packed", "padded"})

    def prepare(self, pattern: Pattern, case):
        mask = _mask(pattern, case.seq_len, case.device, case.q_len)
        return lambda q, k, v: _dense(q, k, v, mask)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return _dense(q, k, v, _mask(pattern, k.shape[2], q.device, q.shape[2]))

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        """The masked softmax it computes, in the inputs' dtype: ``(B, H, Lq, N)``."""
        probs = _probs(q, k, _mask(pattern, k.shape[2], q.device, q.shape[2]))
        return unfold_groups(probs, q.shape[1])


def _mask(pattern: Pattern, n: int, device, q_len: int) -> torch.Tensor | None:
    """The dense mask: ``(q_len, n)``, or ``(rows, 1, 1, n, n)`` with documents (one per padded row)."""
    if pattern.has_documents:
        return pattern.batch_dense_mask(n, device, fill_padding_rows=True)[:, None, None]
    return None if pattern.kind == "full" else pattern.dense_mask(n, device, q_len=q_len)


def _probs(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The masked softmax with the group folded into the rows: ``(B, Hkv, G * Lq, N)``."""
    b, h, lq, d = q.shape
    hkv, n = k.shape[1], k.shape[2]
    g = h // hkv
    scores = torch.matmul(fold_groups(q, hkv), k.transpose(-1, -2)) * (1.0 / math.sqrt(d))  # (B, Hkv, G*Lq, N)
    if mask is not None:
        scores = scores.view(b, hkv, g, lq, n).masked_fill(~mask, float("-inf")).view(b, hkv, g * lq, n)
    probs = torch.softmax(scores, dim=-1)
    if mask is not None:  # rows with no attended key (custom layouts) give 0, like the baseline
        probs = torch.nan_to_num(probs, nan=0.0)
    return probs


def _dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return unfold_groups(torch.matmul(_probs(q, k, mask), v), q.shape[1])
