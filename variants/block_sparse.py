"""``block_sparse``: attention over a block layout (Sparse Transformer / BigBird style), computing only its blocks.

The layout is the pattern's own (``Pattern.block_layout(N)``: local, strided and global blocks, or a custom
boolean layout), so the float64 baseline reproduces exactly what is computed here.

For each query block the attended key blocks are gathered and attended to in one softmax over whole rows
(exact, no online rescaling). Rows attend to different numbers of key blocks (a global query block reads every
key block, a local one a handful), so query blocks are grouped by their count rounded up on a ladder that wastes
at most 25% (``1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ...``); each group is one batched matmul over
``(group, block, count * block)`` scores. Padding slots, keys past the end of a partial last block and, for
``block_sparse_causal``, the token-level causal mask inside diagonal tiles, are removed by one additive mask per
group built once in :meth:`BlockSparse.prepare`. Query rows that attend to no key give 0.

Grouped-query heads are folded into the rows of each query block (the ``G`` query heads of a key/value head
form a ``(G * block, D)`` block against that head's gathered keys), so K and V are not copied to every head.
Queries shorter than keys are not computed: the layout pairs query blocks with key blocks of one square grid.

Packed documents (variable-length batches) fit when each starts on a block boundary (every document but the last
a multiple of ``block``): the layout is then block-diagonal, each document's own layout on the diagonal
(``Pattern.block_layout``), and nothing else changes. Other documents, and padded batches (one layout per row),
are declined with the reason.

Low-precision inputs are computed in float32; the output has the input dtype. Gradients flow by autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness import AttentionFn, Case, Pattern, Variant, case_for, register_variant


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit inputs, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _ladder(count: int) -> int:
    """``count`` rounded up so that it loses at most 25% (keeps the number of groups logarithmic)."""
    if count <= 8:
        return max(count, 1)
    step = 1 << (count.bit_length() - 3)  # a quarter of the leading power of two
    return -(-count // step) * step


@dataclass
class _Group:
    """Query blocks that attend to (at most) ``count`` key blocks each."""

    rows: torch.Tensor  # (g,) query block indices
    keys: torch.Tensor  # (g * count,) key block indices, padded slots point at block 0
    bias: torch.Tensor  # (g, block, count * block) additive mask: 0 attended, -inf not
    row_scale: torch.Tensor | None  # (g, block, 1): 0 for rows with no attended key, None when there are none
    count: int


@register_variant
class BlockSparse(Variant):
    """Block-sparse attention computing only the layout's blocks (see the module docstring)."""

    name = "block_sparse"
    description = "block-sparse layout (local + strided + global blocks); gathers and computes only those blocks"
    patterns = frozenset({"block_sparse", "block_sparse_causal"})
    supports_gqa = True
    q_len_reason = ("its plan pairs query blocks with key blocks of one square layout grid; bottom-right short "
                    "queries would straddle the grid's blocks")
    doc_layouts = frozenset({"packed"})
    doc_layouts_reason = ("its plan is one block layout for every batch row, and the rows of a padded batch have "
                          "different lengths")
    # largest seen in the conformance suite: ~4e-7 (float32), ~1.7e-3 (bfloat16: the output rounding)
    tolerances = {"float32": 2e-6, "bfloat16": 4e-3, "float16": 1e-3}
    grad_tolerances = {"float32": 5e-6, "bfloat16": 4e-3, "float16": 1e-3}

    def extra_reasons(self, case: Case) -> list[str]:
        p = case.pattern
        if p.has_documents and not p.is_padded and p.kind in self.patterns and not p.documents_aligned():
            return [f"lengths={_short(case.lengths)}: packed documents must start on block boundaries for "
                    f"{self.name}'s layout grid (supported: every length but the last a multiple of "
                    f"block={p.block})"]
        return []

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        if pattern.kind not in self.patterns:
            raise ValueError(f"pattern={pattern.kind!r} is not computed by block_sparse "
                             "(supported: block_sparse, block_sparse_causal)")
        groups, order = _plan(pattern, case.seq_len, _compute_dtype(case.torch_dtype), case.device)
        return lambda q, k, v: _attend(q, k, v, pattern.block, groups, order)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, case_for(q, pattern, k=k))(q, k, v)


def _short(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= 60 else text[:57] + "..."


def _plan(pattern: Pattern, n: int, dtype: torch.dtype,
          device: torch.device | str) -> tuple[list[_Group], torch.Tensor]:
    """Groups of query blocks with their gathered key blocks and masks; and the order that undoes the grouping."""
    bs = pattern.block
    lay = pattern.block_layout(n)  # built on the CPU: it is small, and read row by row here
    nb = lay.shape[0]
    causal = pattern.kind == "block_sparse_causal"
    by_count: dict[int, list[int]] = {}
    for r in range(nb):
        by_count.setdefault(_ladder(int(lay[r].sum())), []).append(r)
    tok = torch.arange(bs)
    groups, visit = [], []
    for count, rows in sorted(by_count.items()):
        keys = torch.zeros(len(rows), count, dtype=torch.long)
        valid = torch.zeros(len(rows), count, dtype=torch.bool)
        for i, r in enumerate(rows):
            cols = lay[r].nonzero().flatten()
            keys[i, : len(cols)] = cols
            valid[i, : len(cols)] = True
        rows_t = torch.tensor(rows, dtype=torch.long)
        qi = rows_t[:, None, None] * bs + tok[None, :, None]  # (g, bs, 1) query token index
        ki = (keys[:, :, None] * bs + tok[None, None, :]).reshape(len(rows), 1, count * bs)  # (g, 1, count*bs)
        keep = valid.repeat_interleave(bs, dim=1)[:, None, :] & (ki < n)
        if causal:
            keep = keep & (ki <= qi)
        empty = ~keep.any(dim=-1, keepdim=True)  # (g, bs, 1): rows attending to no key (incl. padded rows)
        keep = keep | empty  # keep them finite; their output is zeroed by row_scale
        bias = torch.zeros(keep.shape, dtype=dtype).masked_fill_(~keep, float("-inf"))
        real_empty = empty & (qi < n)
        row_scale = (~real_empty).to(dtype).to(device) if bool(real_empty.any()) else None
        groups.append(_Group(rows_t.to(device), keys.flatten().to(device), bias.to(device), row_scale, count))
        visit.extend(rows)
    order = torch.empty(nb, dtype=torch.long)
    order[torch.tensor(visit)] = torch.arange(nb)
    return groups, order.to(device)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bs: int, groups: list[_Group],
            order: torch.Tensor) -> torch.Tensor:
    """Block-sparse attention of ``q (B, H, N, D)`` against ``k, v (B, Hkv, N, D)`` following the prepared groups;
    each key/value head's query heads folded into the rows of a block."""
    b, h, n, d = q.shape
    hkv = k.shape[1]
    g = h // hkv
    cd = groups[0].bias.dtype
    nb = order.shape[0]
    tail = nb * bs - n
    pad = (0, 0, 0, tail)
    qs = F.pad(q.to(cd) * (1.0 / math.sqrt(d)), pad).view(b, hkv, g, nb, bs, d)
    kb = F.pad(k.to(cd), pad).view(b, hkv, nb, bs, d)
    vb = F.pad(v.to(cd), pad).view(b, hkv, nb, bs, d)
    outs = []
    for grp in groups:
        rows = grp.rows.shape[0]
        qg = qs.index_select(3, grp.rows)  # (B, Hkv, G, g, bs, d)
        qg = qg.view(b, hkv, rows, bs, d) if g == 1 else qg.transpose(2, 3).reshape(b, hkv, rows, g * bs, d)
        kg = kb.index_select(2, grp.keys).view(b, hkv, rows, grp.count * bs, d)
        vg = vb.index_select(2, grp.keys).view(b, hkv, rows, grp.count * bs, d)
        scores = torch.matmul(qg, kg.transpose(-1, -2))  # (B, Hkv, g, G * bs, count * bs)
        scores.view(b, hkv, rows, g, bs, grp.count * bs).add_(grp.bias[:, None])
        out = torch.matmul(torch.softmax(scores, dim=-1), vg).view(b, hkv, rows, g, bs, d)
        if grp.row_scale is not None:
            out = out * grp.row_scale[:, None]
        outs.append(out)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    if len(groups) > 1:
        out = out.index_select(2, order)
    out = out.transpose(2, 3).reshape(b, h, nb * bs, d)[:, :, :n]  # (B, Hkv, nb, G, bs, d) -> (B, H, N, d)
    return out.to(q.dtype)
