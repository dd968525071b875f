"""``split_kv``: decode attention that splits the key/value length into chunks and merges partial softmaxes.

This is how fast decode kernels work (FlashDecoding, vLLM's paged attention v2): with one or a few queries there
is too little work along the queries to keep a machine busy, so the keys are cut into chunks of ``chunk``
keys, each chunk's partial attention is computed independently (its row max ``m_s``, denominator ``l_s`` and
unnormalised output ``o_s``), and the partials are merged at the end::

    M = max_s m_s,   out = sum_s exp(m_s - M) o_s / sum_s exp(m_s - M) l_s

Only the keys the pattern can reach are visited (``Pattern.key_bounds``: a window's decode reads its last ``w``
keys); chunks every query attends (``Pattern.common_key_bounds``) take no mask. Grouped-query heads are folded
into the rows (``fold_groups``), so each key/value head is read once for its whole group and never copied.
Queries align bottom-right (:mod:`harness.core.pattern`).

Each split's scores are computed as ``K_split @ Qᵀ`` (keys as rows, the few queries as columns) and its output as
``Pᵀ @ V_split``: on the CPU these tall-skinny products stream K and V faster than ``Q @ K_splitᵀ`` (the keys are
the rows the BLAS kernel walks; ``benchmarks/decode_gqa.py`` shows the bandwidth each variant reaches).

Forward only (a decode kernel); up to ``max_q_len`` queries. Low-precision inputs are computed in float32.
"""

from __future__ import annotations

import math

import torch

from harness import (
    AttentionFn,
    Case,
    Pattern,
    Variant,
    case_for,
    check_param,
    fold_groups,
    register_variant,
    unfold_groups,
)


@register_variant
class SplitKV(Variant):
    """Split-KV decode attention (see the module docstring).

    Args:
        chunk: keys per split (default 4096: long enough that each split's matmuls stream K and V at full speed,
            short enough that a 32k-key cache still gives several splits to merge; ``benchmarks/decode_gqa.py``
            measures the bandwidth).
    """

    name = "split_kv"
    description = "decode: the KV length split into chunks attended independently, partial softmaxes merged"
    patterns = frozenset({"full", "causal", "window", "window_sym"})
    supports_backward = False
    supports_gqa = True
    supports_q_len = True
    doc_layouts_reason = ("it is a decode kernel (a few queries against a long cache); documents are whole "
                          "sequences of queries")
    #: Most queries per sequence it takes: it is a decode kernel (prefill belongs to ``chunked`` and the others).
    max_q_len = 128
    tolerances = {"float32": 2e-6, "bfloat16": 4e-3, "float16": 1e-3}
    chunk: int = 4096

    def __init__(self, chunk: int | None = None) -> None:
        if chunk is not None:
            self.chunk = check_param("chunk", chunk)

    def extra_reasons(self, case: Case) -> list[str]:
        if case.q_len > self.max_q_len:
            return [f"q_len={case.q_len} (split_kv is a decode kernel: supported q_len <= {self.max_q_len}; "
                    "prefill is chunked's, causal's and the fused kernels' work)"]
        return []

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        plan = _plan(pattern, case.seq_len, case.q_len, self.chunk, case.device)
        return lambda q, k, v: _split_kv(q, k, v, plan)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, case_for(q, pattern, k=k))(q, k, v)


def _plan(pattern: Pattern, n: int, lq: int, chunk: int,
          device: torch.device | str) -> list[tuple[int, int, torch.Tensor | None]]:
    """The splits ``(k0, k1, masked_out)`` over the keys the ``lq`` queries reach; ``masked_out`` (``(lq, k1 -
    k0)``, True where not attended) only for splits some query does not fully attend."""
    lo, hi = pattern.key_bounds(0, lq, n, lq)
    c_lo, c_hi = pattern.common_key_bounds(0, lq, n, lq)
    fn = None if pattern.kind == "full" else pattern.mask_fn(n, device, lq)
    rows = torch.arange(lq, device=device)[:, None]
    splits = []
    for k0 in range(lo, hi, chunk):
        k1 = min(hi, k0 + chunk)
        masked_out = None
        if fn is not None and not (c_lo <= k0 and k1 <= c_hi):
            masked_out = ~fn(rows, torch.arange(k0, k1, device=device)[None, :])
            if bool(masked_out.all()):
                continue
        splits.append((k0, k1, masked_out))
    return splits


def _split_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              plan: list[tuple[int, int, torch.Tensor | None]]) -> torch.Tensor:
    b, h, lq, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    cd = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    # (B, Hkv, D, G * Lq): the group's queries as columns, so each split's scores are one tall-skinny product
    # K_split @ Q (keys as rows), the orientation BLAS streams K fastest in
    qt = fold_groups(q.to(cd) * (1.0 / math.sqrt(d)), hkv).transpose(-1, -2)
    maxes, sums, outs = [], [], []
    for k0, k1, masked_out in plan:  # each split on its own: nothing carried from one to the next
        s = torch.matmul(k[:, :, k0:k1].to(cd), qt)  # (B, Hkv, c, G * Lq)
        if masked_out is not None:
            s.view(b, hkv, k1 - k0, g, lq).masked_fill_(masked_out.transpose(0, 1)[:, None, :], float("-inf"))
        m = s.max(dim=-2, keepdim=True).values  # (B, Hkv, 1, G * Lq); 3x faster than amax over a middle dim
        m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        p = s.sub_(m_safe).exp_()
        maxes.append(m)
        sums.append(p.sum(dim=-2, keepdim=True))
        outs.append(torch.matmul(p.transpose(-1, -2), v[:, :, k0:k1].to(cd)))  # (B, Hkv, G * Lq, D)
    m_all = torch.stack(maxes).transpose(-1, -2)  # (S, B, Hkv, G * Lq, 1)
    top = m_all.amax(dim=0)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    w = torch.exp(m_all - top)  # 0 for splits a row does not reach
    denom = (w * torch.stack(sums).transpose(-1, -2)).sum(dim=0)
    out = (w * torch.stack(outs)).sum(dim=0) / torch.where(denom > 0, denom, torch.ones_like(denom))
    return unfold_groups(out, h).to(q.dtype)
