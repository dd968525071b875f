"""``causal``: causal attention that skips every key block above the diagonal (about half of ``full``'s FLOPs).

Queries are processed in blocks of ``block`` rows. Query block ``[s, e)`` attends to the keys ``[0, e)`` only:
the key blocks right of the diagonal are never multiplied, so the matmul and softmax work is
``sum_i block * e_i ~ N^2 / 2`` instead of ``N^2``. Each block holds whole rows of scores, so its softmax is exact
(no online rescaling); the causal mask is added to the diagonal tile ``[s, e) x [s, e)`` only, from one
precomputed ``block x block`` triangle (hoisted into :meth:`Causal.prepare`).

Queries shorter than keys (``Lq < N``) sit bottom-right: query row ``i`` is key position ``N - Lq + i``, so
query block ``[s, e)`` attends keys ``[0, N - Lq + e)`` and the same triangle masks its last ``e - s`` keys.
Grouped-query heads are folded into the rows (``fold_groups``): one matmul per key/value head serves its group
and K and V are never copied to every head.

Low-precision inputs are computed in float32 and the output is returned in the input dtype. Gradients flow by
autograd through the block loop (it saves each block's probabilities: about half of ``full``'s N x N).
"""

from __future__ import annotations

import math

import torch

from harness import AttentionFn, Case, Pattern, Variant, case_for, check_param, register_variant, unfold_groups


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic is done in: float32 for 16-bit inputs, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@register_variant
class Causal(Variant):
    """Block-skipping causal attention (see the module docstring).

    Args:
        block: query rows per block; smaller blocks waste less work on the diagonal, larger ones make
            bigger matmuls (default 256).
    """

    name = "causal"
    description = "causal attention in query blocks, skipping key blocks above the diagonal (~half the FLOPs)"
    patterns = frozenset({"causal"})
    supports_gqa = True
    supports_q_len = True
    doc_layouts_reason = ("it computes one causal triangle per sequence (query blocks against keys [0, end)), with no "
                          "document or padding mask; chunked, flex and full compute documents")
    # largest seen in the conformance suite: ~4e-7 (float32), ~1.7e-3 (bfloat16: the output rounding)
    tolerances = {"float32": 2e-6, "bfloat16": 4e-3, "float16": 1e-3}
    grad_tolerances = {"float32": 5e-6, "bfloat16": 4e-3, "float16": 1e-3}
    block: int = 256

    def __init__(self, block: int | None = None) -> None:
        if block is not None:
            self.block = check_param("block", block)

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        bq = min(self.block, case.q_len)
        # additive mask of the diagonal tile: -inf strictly above the diagonal; its top-left corner serves the
        # shorter last block
        upper = torch.ones(bq, bq, dtype=torch.bool, device=case.device).triu(1)
        dtype = _compute_dtype(case.torch_dtype)
        diag = torch.zeros(bq, bq, dtype=dtype, device=case.device).masked_fill_(upper, float("-inf"))
        return lambda q, k, v: _causal_blocks(q, k, v, bq, diag)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, case_for(q, pattern, k=k))(q, k, v)


def _causal_blocks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bq: int, diag: torch.Tensor) -> torch.Tensor:
    """Causal attention of ``q (B, H, Lq, D)`` against ``k, v (B, Hkv, N, D)``, query block by query block over
    keys ``[0, N - Lq + e)``; the group of each key/value head folded into the rows."""
    b, h, lq, d = q.shape
    hkv, n = k.shape[1], k.shape[2]
    g, off = h // hkv, n - lq
    cd = diag.dtype
    qs = (q.to(cd) * (1.0 / math.sqrt(d))).view(b, hkv, g, lq, d)  # scale folded into q once: O(N d), not O(N^2)
    kc, vc = k.to(cd), v.to(cd)
    outs = []
    for s in range(0, lq, bq):
        e = min(lq, s + bq)
        qb = qs[:, :, :, s:e].reshape(b, hkv, g * (e - s), d)
        scores = torch.matmul(qb, kc[:, :, :off + e].transpose(-1, -2)).view(b, hkv, g, e - s, off + e)
        scores[..., off + s:off + e].add_(diag[: e - s, : e - s])  # the only tile that needs a mask
        probs = torch.softmax(scores, dim=-1).view(b, hkv, g * (e - s), off + e)  # every row has its own key
        outs.append(torch.matmul(probs, vc[:, :, :off + e]).view(b, hkv, g, e - s, d))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=3)
    return unfold_groups(out.reshape(b, hkv, g * lq, d), h).to(q.dtype)
