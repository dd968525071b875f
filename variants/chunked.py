"""``chunked``: memory-efficient exact attention (Rabe & Staats 2021), O(N · chunk) memory forward and backward.

Queries are cut into chunks of ``q_chunk`` rows; for each, the keys and values are visited in chunks of
``k_chunk`` with an online softmax (running row max ``m``, running denominator ``l``, rescaled accumulator), so
no more than one ``q_chunk x k_chunk`` score tile is alive at a time. Key chunks the pattern never reaches
(``Pattern.key_bounds``) are not visited, and tiles it reaches only in part get their mask; the tile plan
(which tiles, which masks) is built once in :meth:`Chunked.prepare`.

The backward pass is a :class:`torch.autograd.Function` that recomputes each tile's probabilities from the saved
row log-sum-exp (as FlashAttention does) instead of keeping an autograd graph of the loop, so it is also
O(N · chunk): it keeps only q, k, v, the output and the log-sum-exp, and three O(N · d) gradient buffers.

Grouped-query heads are computed natively: the query heads of a key/value head are folded into the rows of each
tile (``(B, Hkv, G * q_chunk, D)`` against ``(B, Hkv, k_chunk, D)``), so K and V are read once per group and never
copied to every head; the backward sums dk and dv over the group in the same matmuls. Queries shorter than keys
(``q_len < seq_len``) sit bottom-right (:mod:`harness.core.pattern`): the plan visits the keys each query chunk reaches.

Variable-length batches: packed documents are skipped like any other unattended keys. Query chunks follow the
documents (a long document is cut into chunks from its start, short ones are grouped whole into one chunk), a
query chunk visits only the keys of its own documents (``Pattern.key_bounds`` stops at their edges), tiles inside
one document take that document's rule (a tile of a causal document below its diagonal needs no mask), and only
tiles of grouped short documents get a mask, so the work is about the documents' own pairs. A padded batch is
computed whole (every tile of the longest document, for every row) with one mask per row on the tiles that
reach padding: what padding costs a kernel that takes a padded batch.

Low-precision inputs are computed in float32; the output has the input dtype. Rows with no attended key give 0.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch

from harness import AttentionFn, Case, Pattern, Variant, case_for, check_param, register_variant

_MASK_BUDGET_BYTES = 64 * 2**20  # partial-tile masks kept from prepare; beyond this they are rebuilt per call


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit inputs, the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@dataclass
class _Tile:
    """One key chunk ``[k0, k1)`` of a query chunk; ``masked_out`` is True where a pair is NOT attended."""

    k0: int
    k1: int
    partial: bool = False
    masked_out: torch.Tensor | None = None


@dataclass
class _Plan:
    """The tiles of every query chunk of one (pattern, seq_len)."""

    chunks: list[tuple[int, int, list[_Tile]]]
    mask_fn: object  # the pattern's (q_idx, k_idx) -> bool, for masks not kept in memory
    dtype: torch.dtype

    def tile_mask(self, q0: int, q1: int, tile: _Tile, device: torch.device) -> torch.Tensor | None:
        """The tile's masked-out pairs (None when every pair is attended)."""
        if not tile.partial:
            return None
        if tile.masked_out is not None:
            return tile.masked_out
        qi = torch.arange(q0, q1, device=device)[:, None]
        ki = torch.arange(tile.k0, tile.k1, device=device)[None, :]
        return ~self.mask_fn(qi, ki)


def _tile_kind(pattern: Pattern, q0: int, q1: int, k0: int, k1: int, off: int = 0) -> str | None:
    """``"full"``, ``"empty"`` or ``"partial"`` for the tile of query rows ``[q0, q1)`` (key positions ``off +
    row``) and keys ``[k0, k1)``; None when not known cheaply."""
    if pattern.has_documents:
        return _document_tile_kind(pattern, q0, q1, k0, k1)
    kind = pattern.kind
    lo, hi = q0 + off - (k1 - 1), (q1 - 1) + off - k0  # range of i - j over the tile
    if kind == "full":
        return "full"
    if kind == "causal":
        return "full" if lo >= 0 else ("empty" if hi < 0 else "partial")
    if kind == "window":
        w = pattern.window
        if lo >= 0 and hi < w:
            return "full"
        return "empty" if hi < 0 or lo >= w else "partial"
    if kind == "window_sym":
        w = pattern.window
        if max(abs(lo), abs(hi)) < w:
            return "full"
        return "empty" if lo >= w or hi <= -w else "partial"
    return None


def _document_tile_kind(pattern: Pattern, q0: int, q1: int, k0: int, k1: int) -> str | None:
    """:func:`_tile_kind` with documents: a packed tile inside one document takes its rule (a tile that spans two
    documents is not known cheaply); a padded tile takes the rule where no row reaches padding, else it is
    ``partial`` (unless the rule leaves it empty)."""
    docs = pattern.documents
    if pattern.is_padded:
        inner = _tile_kind(pattern.base, q0, q1, k0, k1)
        if inner == "empty" or max(q1, k1) <= min(docs):
            return inner
        return "partial"
    starts = pattern.doc_starts()
    d = bisect.bisect_right(starts, q0) - 1
    s, e = starts[d], starts[d + 1]
    if q1 <= e and s <= k0 and k1 <= e:
        return _tile_kind(pattern.base, q0 - s, q1 - s, k0 - s, k1 - s)
    return None


def _query_chunks(pattern: Pattern, lq: int, q_chunk: int) -> list[tuple[int, int]]:
    """Query chunks ``[q0, q1)`` of at most ``q_chunk`` rows. Packed documents: a chunk never cuts a document it
    does not begin (a long document is cut into chunks from its start, short ones are grouped whole), so the key
    tiles of a chunk inside one document start at that document's start and every query chunk reaches only the
    keys of its own documents."""
    if not pattern.has_documents or pattern.is_padded:
        return [(q0, min(lq, q0 + q_chunk)) for q0 in range(0, lq, q_chunk)]
    out: list[tuple[int, int]] = []
    start = None  # the open chunk of whole short documents
    for s, e in zip(pattern.doc_starts()[:-1], pattern.doc_starts()[1:]):
        if start is not None and e - start > q_chunk:
            out.append((start, s))
            start = None
        if e - s > q_chunk:
            out += [(a, min(e, a + q_chunk)) for a in range(s, e, q_chunk)]
        elif start is None:
            start = s
    if start is not None:
        out.append((start, lq))
    return out


def _mask_fn(pattern: Pattern, n: int, device: torch.device | str, lq: int):
    """``(q_idx, k_idx) -> attended``; for a padded batch ``(rows, 1, 1, q, k)``, one mask per batch row."""
    if not pattern.is_padded:
        return pattern.mask_fn(n, device, lq)
    fn = pattern.batch_mask_fn(n, device)
    rows = torch.arange(len(pattern.documents), device=device)[:, None, None, None, None]
    return lambda qi, ki: fn(rows, qi, ki)


def build_plan(pattern: Pattern, n: int, q_chunk: int, k_chunk: int, dtype: torch.dtype,
               device: torch.device | str, q_len: int | None = None) -> _Plan:
    """Tile plan of ``pattern`` for ``q_len`` queries against ``n`` keys: the key chunks each query chunk visits
    and their masks.

    Args:
        pattern: the attention pattern.
        n: key/value length.
        q_chunk, k_chunk: query rows and key columns per tile.
        dtype: compute dtype.
        device: where masks are kept.
        q_len: queries (default ``n``), bottom-right aligned.

    Returns:
        The plan; tiles with no attended pair are left out.
    """
    lq = n if q_len is None else q_len
    off = pattern.query_offset(n, lq)
    mask_fn = None if pattern.kind == "full" and not pattern.has_documents else _mask_fn(pattern, n, device, lq)
    budget = _MASK_BUDGET_BYTES
    chunks = []
    for q0, q1 in _query_chunks(pattern, lq, q_chunk):
        lo, hi = pattern.key_bounds(q0, q1, n, lq)
        tiles = []
        for k0 in range(lo, hi, k_chunk):
            k1 = min(hi, k0 + k_chunk)
            kind = _tile_kind(pattern, q0, q1, k0, k1, off)
            masked_out = None
            if kind != "full":
                qi = torch.arange(q0, q1, device=device)[:, None]
                ki = torch.arange(k0, k1, device=device)[None, :]
                masked_out = ~mask_fn(qi, ki)
                if kind is None:
                    kind = "empty" if bool(masked_out.all()) else ("full" if not bool(masked_out.any()) else "partial")
            if kind == "empty":
                continue
            tile = _Tile(k0, k1, partial=kind == "partial")
            if tile.partial and budget >= masked_out.numel():
                tile.masked_out = masked_out
                budget -= masked_out.numel()
            tiles.append(tile)
        chunks.append((q0, q1, tiles))
    return _Plan(chunks, mask_fn, dtype)


@register_variant
class Chunked(Variant):
    """Memory-efficient exact attention with an online softmax (see the module docstring).

    Args:
        q_chunk: query rows per chunk (default 1024).
        k_chunk: keys per chunk (default 1024).
    """

    name = "chunked"
    description = "memory-efficient exact attention: online softmax over key chunks within query chunks, O(N*chunk)"
    patterns = frozenset({"full", "causal", "window", "window_sym", "block_sparse", "block_sparse_causal"})
    supports_gqa = True
    supports_q_len = True
    doc_layouts = frozenset({"packed", "padded"})
    # largest seen in the conformance suite: ~4e-7 (float32), ~1.7e-3 (bfloat16: the output rounding)
    tolerances = {"float32": 2e-6, "bfloat16": 4e-3, "float16": 1e-3}
    grad_tolerances = {"float32": 5e-6, "bfloat16": 4e-3, "float16": 1e-3}
    q_chunk: int = 1024
    k_chunk: int = 1024

    def __init__(self, q_chunk: int | None = None, k_chunk: int | None = None) -> None:
        for key, value in (("q_chunk", q_chunk), ("k_chunk", k_chunk)):
            if value is None:
                continue
            setattr(self, key, check_param(key, value))

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        plan = build_plan(pattern, case.seq_len, self.q_chunk, self.k_chunk, _compute_dtype(case.torch_dtype),
                          case.device, case.q_len)
        return lambda q, k, v: _ChunkedAttention.apply(q, k, v, plan)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, case_for(q, pattern, k=k))(q, k, v)


class _ChunkedAttention(torch.autograd.Function):
    """Online-softmax forward; backward recomputes each tile from the saved log-sum-exp."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _Plan) -> torch.Tensor:
        cd = plan.dtype
        scale = 1.0 / math.sqrt(q.shape[-1])
        g = q.shape[1] // k.shape[1]
        qs = _grouped(q.to(cd) * scale, g)
        kc, vc = k.to(cd), v.to(cd)
        out, lse = _forward(qs, kc, vc, plan)
        ctx.plan, ctx.scale = plan, scale
        ctx.save_for_backward(q, k, v, out, lse)
        return _ungrouped(out).to(q.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        plan, scale = ctx.plan, ctx.scale
        cd = plan.dtype
        g = q.shape[1] // k.shape[1]
        dq, dk, dv = _backward(_grouped(q.to(cd) * scale, g), k.to(cd), v.to(cd), out, lse,
                               _grouped(grad_out.to(cd), g), plan, scale)
        return _ungrouped(dq).to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None


def _grouped(x: torch.Tensor, g: int) -> torch.Tensor:
    """``(B, H, L, D)`` -> ``(B, Hkv, G, L, D)`` (a view of a contiguous tensor)."""
    b, h, lq, d = x.shape
    return x.reshape(b, h // g, g, lq, d)


def _ungrouped(x: torch.Tensor) -> torch.Tensor:
    """``(B, Hkv, G, L, D)`` -> ``(B, H, L, D)``."""
    b, hkv, g, lq, d = x.shape
    return x.reshape(b, hkv * g, lq, d)


def _rows(x: torch.Tensor, q0: int, q1: int) -> torch.Tensor:
    """Rows ``[q0, q1)`` of a grouped ``(B, Hkv, G, L, D)`` tensor as ``(B, Hkv, G * (q1 - q0), D)``."""
    b, hkv, g, _, d = x.shape
    return x[:, :, :, q0:q1].reshape(b, hkv, g * (q1 - q0), d)


def _masked(s: torch.Tensor, masked_out: torch.Tensor, g: int) -> None:
    """Fill ``s`` (``(B, Hkv, G * r, c)``) with -inf where the ``(r, c)`` mask says not attended, in place."""
    b, hkv, rows, c = s.shape
    s.view(b, hkv, g, rows // g, c).masked_fill_(masked_out, float("-inf"))


def _forward(qs: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and row log-sum-exp (``-inf`` for rows with no attended key) of pre-scaled, grouped queries ``qs``
    (``(B, Hkv, G, Lq, D)``) against ``k, v`` (``(B, Hkv, N, D)``); both results grouped like ``qs``."""
    b, hkv, g, lq, d = qs.shape
    out = torch.zeros_like(qs)
    lse = torch.full((b, hkv, g, lq, 1), float("-inf"), dtype=qs.dtype, device=qs.device)
    neg_inf = float("-inf")
    for q0, q1, tiles in plan.chunks:
        if not tiles:
            continue
        qb = _rows(qs, q0, q1)
        m = denom = acc = None
        for tile in tiles:
            s = torch.matmul(qb, k[:, :, tile.k0:tile.k1].transpose(-1, -2))
            masked_out = plan.tile_mask(q0, q1, tile, qs.device)
            if masked_out is not None:
                _masked(s, masked_out, g)
            tile_max = s.amax(dim=-1, keepdim=True)
            m_new = tile_max if m is None else torch.maximum(m, tile_max)
            m_safe = m_new.masked_fill(m_new == neg_inf, 0.0) if masked_out is not None else m_new
            p = s.sub_(m_safe).exp_()
            pv = torch.matmul(p, v[:, :, tile.k0:tile.k1])
            if m is None:
                denom, acc = p.sum(dim=-1, keepdim=True), pv
            else:
                alpha = (m - m_safe).exp_()
                denom = denom.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
                acc = acc.mul_(alpha).add_(pv)
            m = m_new
        filled = denom > 0
        r = q1 - q0
        out[:, :, :, q0:q1] = (acc / torch.where(filled, denom, torch.ones_like(denom))).view(b, hkv, g, r, d)
        lse[:, :, :, q0:q1] = torch.where(filled, m + torch.log(denom),
                                          torch.full_like(denom, neg_inf)).view(b, hkv, g, r, 1)
    return out, lse


def _backward(qs: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
              grad_out: torch.Tensor, plan: _Plan, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq (grouped like ``qs``), dk, dv by recomputing each tile's probabilities ``exp(s - lse)``
    (FlashAttention-style); dk and dv sum over each key/value head's group in the same matmuls."""
    b, hkv, g, lq, d = qs.shape
    dq = torch.zeros_like(qs)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    delta = (grad_out * out.to(grad_out.dtype)).sum(dim=-1, keepdim=True)  # rowsum(dO * O)
    lse = lse.masked_fill(lse == float("-inf"), float("inf"))  # empty rows: p = exp(-inf) = 0, not NaN
    for q0, q1, tiles in plan.chunks:
        if not tiles:
            continue
        qb, gb = _rows(qs, q0, q1), _rows(grad_out, q0, q1)
        lb, db = _rows(lse, q0, q1), _rows(delta, q0, q1)
        dqb = torch.zeros_like(qb)
        for tile in tiles:
            kb, vb = k[:, :, tile.k0:tile.k1], v[:, :, tile.k0:tile.k1]
            s = torch.matmul(qb, kb.transpose(-1, -2))
            masked_out = plan.tile_mask(q0, q1, tile, qs.device)
            if masked_out is not None:
                _masked(s, masked_out, g)
            p = s.sub_(lb).exp_()
            dv[:, :, tile.k0:tile.k1] += torch.matmul(p.transpose(-1, -2), gb)
            ds = torch.matmul(gb, vb.transpose(-1, -2)).sub_(db).mul_(p)  # dS = P * (dP - delta)
            dqb += torch.matmul(ds, kb)
            dk[:, :, tile.k0:tile.k1] += torch.matmul(ds.transpose(-1, -2), qb)  # qb already holds the scale
        dq[:, :, :, q0:q1] = (dqb * scale).view(b, hkv, g, q1 - q0, d)
    return dq, dk, dv
