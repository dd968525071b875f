"""The exact baseline: float64 attention (output and gradients) for any pattern, in bounded memory and time.

``reference_attention`` computes ``softmax(q kᵀ / sqrt(d) + mask) v`` in float64 one tile at a time: a block of
query rows against only the keys the pattern can reach. Windows and causal patterns visit the contiguous range
``Pattern.key_bounds`` of each row block; block layouts gather, per query block, just the key blocks the
layout attends. The mask is evaluated only on the columns of a tile that some row does not attend
(``Pattern.common_key_bounds`` gives the rest), so its cost is O(rows x block) rather than O(rows x keys). Each
tile holds whole rows of scores, so the softmax is exact (no online rescaling). Gradients ``dq, dk, dv`` for an
upstream gradient are computed in the same pass with the standard formulas (``dS = P * (dP - rowsum(dO * O))``).

Shapes: ``q`` is ``(batch, heads, q_len, head_dim)``, ``k`` and ``v`` are ``(batch, kv_heads, seq_len,
head_dim)`` with ``kv_heads`` dividing ``heads``: query head ``h`` reads key/value head ``h // (heads //
kv_heads)`` (grouped-query attention; ``kv_heads = 1`` is multi-query). The group is folded into the rows of a
tile, so K and V are never expanded. Queries shorter than keys align bottom-right (see :mod:`harness.core.pattern`).

Memory and time: the float64 score tiles are carved out of buffers allocated once per call and reused (matmul
with ``out=``, softmax in place), so the allocator never returns them to the OS between tiles (a fresh tile per
block faults every page in again). ``benchmarks/baseline_cost.py`` measures the baseline's cost against the
block size.

Rows with no attended key (possible only with a custom block layout) produce an output of 0 and zero gradients.

Documents (variable-length batches, :mod:`harness.core.pattern`): each document is computed exactly on its own, as
its own sequence under the pattern's rule (documents of one length together, as one batch), so no key outside
a document is ever visited and a packed and a padded batch of the same documents get the same answer. Padding
rows of a padded batch get 0, padding keys zero gradients.

``textbook_attention`` is the same tiled computation done in the inputs' own dtype, with the textbook's
operations (matmul, masked ``torch.softmax``, matmul): the yardstick of the precision-normalised error ratio.
Each row's arithmetic is that of the dense textbook computation restricted to the keys it can attend (the
masked ones contribute exact zeros there).

``ReferenceCache`` keeps one set of inputs' baseline, textbook output and dense reference (the ``approx_err``
yardstick) and the seconds each took, which a sweep reports as ``baseline_ms``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.core.case import Case, Inputs
from harness.core.metrics import ErrorStats, error_stats
from harness.core.pattern import Pattern
from harness.core.varlen import real_tokens

__all__ = ["DEFAULT_BLOCK_BYTES", "Reference", "ReferenceCache", "dense_rows", "needs_dense_reference",
           "reference_attention", "textbook_attention"]

#: Bytes of one score buffer (two are alive with gradients); the buffers are allocated once per call and reused.
#: ``benchmarks/baseline_cost.py --sizes`` measures the cost at other sizes.
DEFAULT_BLOCK_BYTES = 16 * 2**20
#: Keys per float64 tile: longer rows are visited in chunks of this many keys with an online softmax (running
#: max and denominator, in float64), so tiles stay wide enough for efficient matmuls at any length.
_KEY_CHUNK = 1024
#: Query rows (per batch x head slice) a tile aims for; the batch x head dimension is split to reach it.
_ROW_TARGET = 256
#: The dense (``approx_err``) pass covers every query row when its FLOPs are at most this many ...
_DENSE_MIN_FLOPS = 2.0**33
#: ... or at most this multiple of the pattern's own attended FLOPs; beyond both, an evenly spaced subset of
#: query rows within that budget (at least ``_DENSE_MIN_ROWS``) is compared, and the row says how many.
_DENSE_FLOP_FACTOR = 1.0
_DENSE_MIN_ROWS = 64


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


@dataclass
class _Keys:
    """Keys ``[k0, k1)`` (or the gathered ``keys``) of a tile; ``masked``: column ranges some row does not attend."""

    k0: int = 0
    k1: int = 0
    keys: torch.Tensor | None = None
    masked: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.k1 - self.k0 if self.keys is None else int(self.keys.numel())


@dataclass
class _Rows:
    """Query rows ``[r0, r1)`` (or the given ``rows``) and the key chunks they visit."""

    r0: int
    r1: int
    chunks: list[_Keys]
    rows: torch.Tensor | None = None
    out0: int = 0  # with ``rows``: where these rows start in the compact output

    @property
    def n(self) -> int:
        return self.r1 - self.r0 if self.rows is None else int(self.rows.numel())


class _Planner:
    """Cuts ``lq`` query rows x ``n`` keys of a pattern into tiles: rows x (chunks of) the keys they can reach.

    Args:
        limit: score elements one batch x head slice of a tile may hold (rows x keys, the group folded in).
        key_chunk: most keys per tile (None: whole rows, as the textbook needs).
    """

    def __init__(self, pattern: Pattern, lq: int, n: int, limit: int, key_chunk: int | None,
                 device: torch.device) -> None:
        self.pattern, self.lq, self.n, self.limit, self.kc, self.device = pattern, lq, n, limit, key_chunk, device

    def _width(self, span: int) -> int:
        return max(1, span if self.kc is None else min(span, self.kc))

    def _chunks(self, r0: int, r1: int, k0: int, k1: int) -> list[_Keys]:
        """``[k0, k1)`` in pieces of at most ``key_chunk``, each with the columns outside the common range."""
        lo, hi = self.pattern.common_key_bounds(r0, r1, self.n, self.lq)
        step = k1 - k0 if self.kc is None else self.kc
        out = []
        for a in range(k0, k1, max(1, step)):
            e = min(k1, a + step)
            c_lo, c_hi = max(lo, a), min(hi, e)
            if c_lo >= c_hi:
                masked = [(0, e - a)]
            else:
                masked = [(x - a, y - a) for x, y in ((a, c_lo), (c_hi, e)) if y > x]
            out.append(_Keys(a, e, masked=masked))
        return out

    def _largest_rows(self, r0: int, stop: int) -> int:
        """Largest ``r <= stop - r0`` with ``r * width(span(r0, r0 + r)) <= limit`` (at least 1), by bisection."""
        def cost(r: int) -> int:
            k0, k1 = self.pattern.key_bounds(r0, r0 + r, self.n, self.lq)
            return r * self._width(k1 - k0)

        lo, hi = 1, stop - r0
        if cost(hi) <= self.limit:
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if cost(mid) <= self.limit else (lo, mid)
        return lo

    def tiles(self) -> Iterator[_Rows]:
        """Every attended pair of the ``lq x n`` problem, once."""
        if self.pattern.kind in ("block_sparse", "block_sparse_causal"):
            yield from self._layout_tiles()
            return
        r0 = 0
        while r0 < self.lq:
            r1 = r0 + self._largest_rows(r0, self.lq)
            k0, k1 = self.pattern.key_bounds(r0, r1, self.n, self.lq)
            if k1 > k0:
                yield _Rows(r0, r1, self._chunks(r0, r1, k0, k1))
            r0 = r1

    def _layout_tiles(self) -> Iterator[_Rows]:
        """Per query block of the layout: its rows against the gathered keys of the key blocks it attends."""
        pattern, n, b = self.pattern, self.n, self.pattern.block
        off = pattern.query_offset(n, self.lq)
        lay = pattern.block_layout(n)  # small; read on the CPU
        for qb in range(off // b, lay.shape[0]):
            p0, p1 = max(off, qb * b), min(n, (qb + 1) * b)  # key positions of this block's query rows
            cols = [c for c in lay[qb].nonzero().flatten().tolist() if c * b < p1 or pattern.kind == "block_sparse"]
            if not cols:
                continue  # rows with no attended key: output 0, as initialised
            keys = torch.cat([torch.arange(c * b, min(n, (c + 1) * b)) for c in cols]).to(self.device)
            nk = int(keys.numel())
            step = self.kc or nk
            chunks = [_Keys(keys=keys[a:a + step], masked=[(0, min(step, nk - a))]) for a in range(0, nk, step)]
            rows_per = max(1, self.limit // self._width(nk))
            for a in range(p0, p1, rows_per):
                yield _Rows(a - off, min(p1, a + rows_per) - off, chunks)

    def row_tiles(self, rows: torch.Tensor) -> Iterator[_Rows]:
        """Tiles over an increasing subset ``rows`` of the query rows (the dense pass on sampled rows)."""
        rl = rows.tolist()
        i, pos = 0, 0
        while i < len(rl):
            j = i + 1
            while j < len(rl):
                k0, k1 = self.pattern.key_bounds(rl[i], rl[j] + 1, self.n, self.lq)
                if (j + 1 - i) * self._width(k1 - k0) > self.limit:
                    break
                j += 1
            lo_row, hi_row = rl[i], rl[j - 1] + 1
            k0, k1 = self.pattern.key_bounds(lo_row, hi_row, self.n, self.lq)
            if k1 > k0:
                yield _Rows(lo_row, hi_row, self._chunks(lo_row, hi_row, k0, k1), rows=rows[i:j], out0=pos)
            pos += j - i
            i = j


class _Buffer:
    """A flat buffer handing out views of any shape that fits; it grows (rarely: a budget smaller than one row
    of a tile) instead of failing."""

    def __init__(self, elems: int, dtype: torch.dtype, device: torch.device) -> None:
        self.data = torch.empty(max(1, elems), dtype=dtype, device=device)

    def view(self, shape: tuple[int, ...]) -> torch.Tensor:
        numel = math.prod(shape)
        if numel > self.data.numel():
            self.data = torch.empty(numel, dtype=self.data.dtype, device=self.data.device)
        return self.data[:numel].view(shape)


def _shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    """``(B, H, Hkv, q_len, seq_len, D)`` after checking that the shapes fit together."""
    if q.dim() != 4:
        raise ValueError(f"q.shape={tuple(q.shape)} must have 4 dims (batch, heads, q_len, head_dim)")
    b, h, lq, d = q.shape
    if k.dim() != 4 or k.shape != v.shape or k.shape[0] != b or k.shape[3] != d:
        raise ValueError(f"k and v must be (batch={b}, kv_heads, seq_len, head_dim={d}) and alike "
                         f"(got q={tuple(q.shape)}, k={tuple(k.shape)}, v={tuple(v.shape)})")
    hkv, n = k.shape[1], k.shape[2]
    if hkv < 1 or h % hkv:
        raise ValueError(f"kv_heads={hkv} does not divide heads={h}")
    if lq > n:
        raise ValueError(f"q_len={lq} is larger than seq_len={n} (the key/value length)")
    return b, h, hkv, lq, n, d


class _Tiled:
    """q, k, v viewed as ``(B * Hkv, G, rows, D)`` and ``(B * Hkv, keys, D)``; reads tiles (in ``dtype``: the
    float64 baseline converts each tile as it reads it, so no float64 copy of a long K/V cache is made) and
    masks them."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern,
                 dtype: torch.dtype) -> None:
        b, h, hkv, lq, n, d = _shapes(q, k, v)
        pattern.check_fits(n, lq)
        self.b, self.h, self.hkv, self.g, self.lq, self.n, self.d = b, h, hkv, h // hkv, lq, n, d
        self.bh = b * hkv
        self.q4 = q.reshape(self.bh, self.g, lq, d)
        self.k3, self.v3 = k.reshape(self.bh, n, d), v.reshape(self.bh, n, d)
        self.mask_fn = None if pattern.kind == "full" else pattern.mask_fn(n, q.device, lq)
        self.device, self.dtype = q.device, dtype

    def bh_chunk(self, rows: int, keys: int, elems: int) -> int:
        """Batch x head slices per tile so that a tile of ``rows x keys`` per slice fits ``elems``."""
        return max(1, min(self.bh, elems // max(1, self.g * rows * keys)))

    def rows(self, x4: torch.Tensor, t: _Rows) -> torch.Tensor:
        """``x4[:, :, rows]`` with the group folded into the rows: ``(c, G * r, D)``."""
        sel = x4[:, :, t.r0:t.r1] if t.rows is None else x4.index_select(2, t.rows)
        return sel.reshape(x4.shape[0], self.g * t.n, self.d).to(self.dtype)

    def keys(self, x3: torch.Tensor, c: _Keys) -> torch.Tensor:
        """The chunk's keys (or values) of ``x3`` (``(chunk, keys, D)``), in the compute dtype."""
        return (x3[:, c.k0:c.k1] if c.keys is None else x3.index_select(1, c.keys)).to(self.dtype)

    def mask(self, s: torch.Tensor, t: _Rows, c: _Keys) -> None:
        """Set the unattended scores of ``s`` (``(chunk, G * r, keys)``) to ``-inf``, in place."""
        if self.mask_fn is None:
            return
        s4 = s.view(s.shape[0], self.g, t.n, c.n)
        qi = (torch.arange(t.r0, t.r1, device=self.device) if t.rows is None else t.rows)[:, None]
        for a, e in c.masked:
            ki = (torch.arange(c.k0 + a, c.k0 + e, device=self.device) if c.keys is None else c.keys[a:e])[None, :]
            s4[..., a:e].masked_fill_(~self.mask_fn(qi, ki), float("-inf"))

    def scores(self, qb: torch.Tensor, k3: torch.Tensor, t: _Rows, c: _Keys, buf: _Buffer,
               scale: float) -> torch.Tensor:
        """Masked, scaled scores ``qb @ keysᵀ * scale`` of a tile, written into (a view of) ``buf``."""
        s = torch.bmm(qb, self.keys(k3, c).transpose(1, 2), out=buf.view((qb.shape[0], qb.shape[1], c.n)))
        self.mask(s.mul_(scale), t, c)
        return s

    def put(self, dst4: torch.Tensor, t: _Rows, block: torch.Tensor) -> None:
        """Write a ``(chunk, G * r, D)`` block into ``dst4`` (``(chunk, G, rows, D)``; compact with ``rows``)."""
        r0 = t.r0 if t.rows is None else t.out0
        dst4[:, :, r0:r0 + t.n] = block.view(dst4.shape[0], self.g, t.n, self.d)


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pattern: Pattern | None = None,
    grad_out: torch.Tensor | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    rows: torch.Tensor | None = None,
    key_chunk: int = _KEY_CHUNK,
) -> Reference:
    """Exact float64 attention with ``pattern``; gradients too when ``grad_out`` is given.

    Args:
        q: ``(batch, heads, q_len, head_dim)``, any floating dtype, any device.
        k, v: ``(batch, kv_heads, seq_len, head_dim)``; ``kv_heads`` divides ``heads``; ``q_len <= seq_len``.
        pattern: the attention pattern (default: full); queries align bottom-right.
        grad_out: upstream gradient of the output; when given, ``dq, dk, dv`` are returned as well.
        block_bytes: memory budget of one float64 score buffer.
        rows: optional increasing query rows: only those rows' output is computed (shape ``(batch, heads,
            len(rows), head_dim)``), without gradients.
        key_chunk: most keys per tile; longer rows take an online softmax over chunks.

    Returns:
        A :class:`Reference` with float64 tensors on the inputs' device.
    """
    pattern = Pattern() if pattern is None else pattern
    if grad_out is not None and rows is not None:
        raise ValueError("reference_attention: rows= computes outputs only (give no grad_out)")
    if pattern.has_documents:
        if rows is not None:
            raise ValueError("reference_attention: rows= is not available with documents (each is computed whole)")
        return _by_document(q, k, v, pattern, grad_out,
                            lambda *a, **kw: reference_attention(*a, block_bytes=block_bytes, key_chunk=key_chunk,
                                                                 **kw), torch.float64)
    x = _Tiled(q, k, v, pattern, torch.float64)
    elems = max(1, block_bytes // 8)
    kc = max(1, key_chunk)
    chunk = x.bh_chunk(min(x.lq, _ROW_TARGET), min(x.n, kc), elems)
    plan = _Planner(pattern, x.lq, x.n, max(1, elems // (chunk * x.g)), kc, q.device)
    if rows is not None:
        rows = rows.to(device=q.device, dtype=torch.long)
    out_rows = x.lq if rows is None else int(rows.numel())
    out4 = torch.zeros(x.bh, x.g, out_rows, x.d, dtype=torch.float64, device=q.device)
    sbuf = _Buffer(elems, torch.float64, q.device)
    grads = _Grads(x, grad_out, elems) if grad_out is not None else None
    scale = 1.0 / math.sqrt(x.d)
    for c0 in range(0, x.bh, chunk):
        sl = slice(c0, min(x.bh, c0 + chunk))
        q4, k3, v3 = x.q4[sl], x.k3[sl], x.v3[sl]
        for t in (plan.tiles() if rows is None else plan.row_tiles(rows)):
            qb = x.rows(q4, t)
            if len(t.chunks) == 1:  # whole rows in one tile: the plain softmax
                p, ob = _softmax_whole_rows(x, qb, k3, v3, t, sbuf, scale)
                lse = None
            else:
                ob, lse = _softmax_online(x, qb, k3, v3, t, sbuf, scale)
                p = None
            x.put(out4[sl], t, ob)
            if grads is not None:
                grads.add_tile(sl, t, qb, ob, p, lse, sbuf, scale)
    out = out4.view(x.b, x.h, out_rows, x.d)
    return Reference(out) if grads is None else grads.reference(out)


def _softmax_whole_rows(x: _Tiled, qb: torch.Tensor, k3: torch.Tensor, v3: torch.Tensor, t: _Rows, sbuf: _Buffer,
                        scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A tile whose rows' keys fit one chunk: ``(p, p @ v)`` with the exact softmax ``p`` (empty rows: 0)."""
    s = x.scores(qb, k3, t, t.chunks[0], sbuf, scale)
    row_max = s.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    p = s.sub_(row_max).exp_()
    denom = p.sum(dim=-1, keepdim=True)
    p.div_(torch.where(denom > 0, denom, torch.ones_like(denom)))
    return p, torch.bmm(p, x.keys(v3, t.chunks[0]))


def _softmax_online(x: _Tiled, qb: torch.Tensor, k3: torch.Tensor, v3: torch.Tensor, t: _Rows, sbuf: _Buffer,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A tile whose rows span several key chunks: the output by an online softmax in float64 (running max and
    denominator, rescaled per chunk) and each row's log-sum-exp (+inf on empty rows, so ``exp(s - lse) = 0``)."""
    m = torch.full((qb.shape[0], qb.shape[1], 1), float("-inf"), dtype=torch.float64, device=qb.device)
    denom = torch.zeros_like(m)
    acc = torch.zeros_like(qb)
    for c in t.chunks:
        s = x.scores(qb, k3, t, c, sbuf, scale)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        alpha = torch.exp(m - m_safe)
        p = s.sub_(m_safe).exp_()
        denom = denom.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
        acc = acc.mul_(alpha).add_(torch.bmm(p, x.keys(v3, c)))
        m = m_new
    filled = denom > 0
    ob = acc / torch.where(filled, denom, torch.ones_like(denom))
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    lse = torch.where(filled, m_safe + torch.log(torch.where(filled, denom, torch.ones_like(denom))),
                      torch.full_like(denom, float("inf")))
    return ob, lse


class _Grads:
    """``dq, dk, dv`` of the float64 baseline, accumulated tile by tile (``dS = P * (dP - rowsum(dO * O))``)."""

    def __init__(self, x: _Tiled, grad_out: torch.Tensor, elems: int) -> None:
        dev = x.q4.device
        self.x = x
        self.g4 = grad_out.double().reshape(x.bh, x.g, x.lq, x.d)
        self.dq4 = torch.zeros(x.q4.shape, dtype=torch.float64, device=dev)
        self.dk3 = torch.zeros(x.k3.shape, dtype=torch.float64, device=dev)
        self.dv3 = torch.zeros_like(self.dk3)
        self.dpbuf = _Buffer(elems, torch.float64, dev)

    def add_tile(self, sl: slice, t: _Rows, qb: torch.Tensor, ob: torch.Tensor, p: torch.Tensor | None,
                 lse: torch.Tensor | None, sbuf: _Buffer, scale: float) -> None:
        """Add one tile's contribution; ``p`` is the tile's softmax when it had one chunk, else it is recomputed
        per chunk from the scores and ``lse``."""
        x = self.x
        k3, v3 = x.k3[sl], x.v3[sl]
        gb = x.rows(self.g4[sl], t)
        delta = (gb * ob).sum(dim=-1, keepdim=True)
        dqb = torch.zeros_like(qb)
        for c in t.chunks:
            if p is None or len(t.chunks) > 1:
                p = x.scores(qb, k3, t, c, sbuf, scale).sub_(lse).exp_()
            kb, vb = x.keys(k3, c), x.keys(v3, c)
            dvb = torch.bmm(p.transpose(1, 2), gb)
            dp = torch.bmm(gb, vb.transpose(1, 2), out=self.dpbuf.view((gb.shape[0], gb.shape[1], c.n)))
            ds = dp.sub_(delta).mul_(p)
            dqb += torch.bmm(ds, kb)
            dkb = torch.bmm(ds.transpose(1, 2), qb).mul_(scale)
            if c.keys is None:
                self.dv3[sl, c.k0:c.k1] += dvb
                self.dk3[sl, c.k0:c.k1] += dkb
            else:
                self.dv3[sl].index_add_(1, c.keys, dvb)
                self.dk3[sl].index_add_(1, c.keys, dkb)
        x.put(self.dq4[sl], t, dqb.mul_(scale))

    def reference(self, out: torch.Tensor) -> Reference:
        x = self.x
        return Reference(out, self.dq4.view(x.b, x.h, x.lq, x.d), self.dk3.view(x.b, x.hkv, x.n, x.d),
                         self.dv3.view(x.b, x.hkv, x.n, x.d))


def textbook_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pattern: Pattern | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> torch.Tensor:
    """Attention as a textbook writes it (matmul, masked softmax, matmul) in the inputs' own dtype.

    Tiled like :func:`reference_attention` (same shapes, grouped heads, bottom-right alignment), always with
    whole rows so that each row's arithmetic is the textbook one over the keys it can attend. Rows with no
    attended key give 0.

    Args:
        q, k, v: as for :func:`reference_attention`, all in one dtype.
        pattern: the attention pattern (default: full).
        block_bytes: memory budget of one score tile.

    Returns:
        The output, shaped and typed like ``q``.
    """
    pattern = Pattern() if pattern is None else pattern
    if pattern.has_documents:
        fn = lambda *a, grad_out=None: Reference(textbook_attention(*a, block_bytes=block_bytes))  # noqa: E731
        return _by_document(q, k, v, pattern, None, fn, q.dtype).out
    x = _Tiled(q, k, v, pattern, q.dtype)
    g, lq, n, d = x.g, x.lq, x.n, x.d
    elems = max(1, block_bytes // q.element_size())
    k0, k1 = pattern.key_bounds(max(0, lq - _ROW_TARGET), lq, n, lq)  # the widest rows (causal: the last ones)
    chunk = x.bh_chunk(min(lq, _ROW_TARGET), max(1, k1 - k0), elems)
    plan = _Planner(pattern, lq, n, max(1, elems // (chunk * g)), None, q.device)
    out4 = torch.zeros(x.bh, g, lq, d, dtype=q.dtype, device=q.device)
    sbuf = _Buffer(elems, q.dtype, q.device)
    scale = 1.0 / math.sqrt(d)
    for c0 in range(0, x.bh, chunk):
        sl = slice(c0, min(x.bh, c0 + chunk))
        q4, k3, v3 = x.q4[sl], x.k3[sl], x.v3[sl]
        for t in plan.tiles():
            qb = x.rows(q4, t)
            for c in t.chunks:  # one chunk: whole rows
                p = torch.softmax(x.scores(qb, k3, t, c, sbuf, scale), dim=-1)
                if c.masked:
                    p = torch.nan_to_num(p, nan=0.0)
                x.put(out4[sl], t, torch.bmm(p, x.keys(v3, c)))
    return out4.view(x.b, x.h, lq, d)


def _by_document(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern,
                 grad_out: torch.Tensor | None, attend, dtype: torch.dtype) -> Reference:
    """``attend`` (the baseline or the textbook) run on each document as its own sequence under the pattern's rule,
    documents of one length gathered into one batch; results scattered back into the case's layout (padding 0)."""
    b, h, hkv, lq, n, d = _shapes(q, k, v)
    pattern.check_fits(n, lq)
    docs, base = pattern.documents, pattern.base
    assert docs is not None
    padded = pattern.is_padded
    if padded and b != len(docs):
        raise ValueError(f"a padded batch of {b} rows does not hold {len(docs)} documents")
    if not padded and b != 1:
        raise ValueError(f"packed documents are one sequence (batch=1; got batch={b})")
    want_grad = grad_out is not None
    out = torch.zeros(q.shape, dtype=dtype, device=q.device)
    grads = [torch.zeros(t.shape, dtype=dtype, device=q.device) for t in (q, k, v)] if want_grad else []
    starts = pattern.doc_starts()
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(docs):
        by_length.setdefault(length, []).append(i)
    for length, idx in by_length.items():
        if padded:
            sel = torch.tensor(idx, device=q.device)
        else:
            sel = (torch.tensor([starts[i] for i in idx], device=q.device)[:, None]
                   + torch.arange(length, device=q.device)[None, :])
        parts = [_take(x, sel, length, padded) for x in (q, k, v)]
        gd = _take(grad_out, sel, length, padded) if want_grad else None
        r = _single(*parts, gd, dtype) if length == 1 else attend(*parts, base, grad_out=gd)
        _put(out, r.out, sel, length, padded)
        if want_grad:
            for dst, val in zip(grads, (r.dq, r.dk, r.dv)):
                _put(dst, val, sel, length, padded)
    return Reference(out, *grads) if want_grad else Reference(out)


def _single(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad_out: torch.Tensor | None,
            dtype: torch.dtype) -> Reference:
    """Documents of one token (every rule attends a token to itself): the output is the value, exactly; dq and dk
    are exactly 0 (a softmax over one key has no slope), dv sums the group's upstream gradients."""
    g = q.shape[1] // k.shape[1]
    out = v.to(dtype).repeat_interleave(g, dim=1)
    if grad_out is None:
        return Reference(out)
    dv = grad_out.to(dtype).reshape(v.shape[0], v.shape[1], g, *v.shape[2:]).sum(dim=2)
    return Reference(out, torch.zeros(q.shape, dtype=dtype, device=q.device),
                     torch.zeros(k.shape, dtype=dtype, device=q.device), dv)


def _take(x: torch.Tensor, sel: torch.Tensor, length: int, padded: bool) -> torch.Tensor:
    """Documents of one ``length`` as a batch ``(m, heads, length, D)``: padded, the batch rows ``sel``; packed,
    the positions ``sel`` (``(m, length)``) of the one sequence."""
    if padded:
        return x.index_select(0, sel)[:, :, :length]
    m = sel.shape[0]
    return x[0].index_select(1, sel.flatten()).view(x.shape[1], m, length, x.shape[3]).transpose(0, 1)


def _put(dst: torch.Tensor, val: torch.Tensor, sel: torch.Tensor, length: int, padded: bool) -> None:
    """Write a batch of documents (:func:`_take`'s shape) back into ``dst``."""
    if padded:
        dst[sel, :, :length] = val.to(dst.dtype)
    else:
        dst[0, :, sel.flatten()] = val.transpose(0, 1).reshape(dst.shape[1], -1, dst.shape[3]).to(dst.dtype)


def needs_dense_reference(exact: bool, pattern: Pattern) -> bool:
    """Whether a row gets ``approx_err_*`` (against dense attention): approximate variants, sparse patterns."""
    return not exact or pattern.is_sparse


def dense_rows(case: Case) -> torch.Tensor | None:
    """The query rows the dense (``approx_err``) pass covers for ``case``: None for all of them.

    All rows when the dense pass costs at most ``max(2^33, pattern's own FLOPs)``; otherwise evenly spaced rows
    whose dense cost fits that budget (at least 64), so a long sparse case is not dominated by a quadratic
    float64 pass that only one figure needs.
    """
    if case.pattern.has_documents:  # computed document by document: never more than the documents' own pairs
        return None
    dense = case.pattern.causal_part()
    lq, n = case.q_len, case.seq_len
    per_pair = 4.0 * case.batch * case.heads * case.head_dim
    dense_flops = per_pair * dense.attended_pairs(n, lq)
    budget = max(_DENSE_MIN_FLOPS, _DENSE_FLOP_FACTOR * per_pair * case.pattern.attended_pairs(n, lq))
    if dense_flops <= budget:
        return None
    count = max(_DENSE_MIN_ROWS, int(budget / (dense_flops / lq)))
    if count >= lq:
        return None
    return ((torch.arange(count, dtype=torch.float64) + 0.5) * (lq / count)).long()


class ReferenceCache:
    """The truth of the most recent inputs, shared by every variant measured on them, and what it cost.

    Holds the float64 baseline, the textbook output and the dense reference of one set of inputs (a case's
    ``input_key``), computed on first use, and the seconds spent on each (``seconds``); ``seconds`` is cleared
    with the inputs.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._ref: Reference | None = None
        self._textbook: torch.Tensor | None = None
        self._dense: tuple[torch.Tensor | None, torch.Tensor] | None = None
        self.seconds: dict[str, float] = {}

    def _check_key(self, case: Case) -> None:
        key = case.input_key()
        if key != self._key:
            self.clear()
            self._key = key

    def _timed(self, part: str, fn):
        t0 = time.perf_counter()
        value = fn()
        self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0
        return value

    @property
    def total_s(self) -> float:
        """Seconds spent on these inputs' truth so far (baseline, gradients, textbook, dense pass)."""
        return sum(self.seconds.values())

    def reference(self, case: Case, inputs: Inputs, with_grads: bool) -> Reference:
        """The float64 baseline of ``case`` (computed once; recomputed only to add gradients)."""
        self._check_key(case)
        if self._ref is None or (with_grads and not self._ref.has_grads):
            self._ref = self._timed("reference", lambda: reference_attention(
                inputs.q, inputs.k, inputs.v, case.pattern, grad_out=inputs.grad_out if with_grads else None))
        return self._ref

    def textbook(self, case: Case, inputs: Inputs) -> torch.Tensor:
        """Textbook attention in the case's dtype (for the precision-normalised error ratio)."""
        self._check_key(case)
        if self._textbook is None:
            self._textbook = self._timed("textbook", lambda: textbook_attention(inputs.q, inputs.k, inputs.v,
                                                                                case.pattern))
        return self._textbook

    def prepare(self, case: Case, inputs: Inputs, with_grads: bool, dense: bool) -> None:
        """Compute now what rows of ``case`` will ask for: the baseline (with gradients if asked), the
        textbook output and, when ``dense``, the dense reference."""
        self.reference(case, inputs, with_grads)
        self.textbook(case, inputs)
        if dense:
            self._dense_pass(case, inputs)

    def prepare_case(self, case: Case, inputs: Inputs, variants: Sequence[Any], errors: bool = True
                     ) -> tuple[float, str]:
        """Compute the truth ``variants`` need on ``case`` before their rows, and say what it cost.

        The baseline (with gradients in backward modes), the textbook output and, when one of ``variants`` gets
        ``approx_err`` figures (:func:`needs_dense_reference`), the dense pass. A failure here is not raised: the
        rows meet it again and record it.

        Args:
            case: the case.
            inputs: its inputs.
            variants: the variants that will be measured on it (each with an ``exact`` attribute).
            errors: whether error figures are computed at all (False: nothing to do).

        Returns:
            ``(milliseconds added, line)``: NaN and ``""`` when nothing was computed; the line reads
            ``truth of <case>: T s (reference R s, textbook X s, dense D s)``.
        """
        if not errors or not variants:
            return math.nan, ""
        before = dict(self.seconds)
        try:
            self.prepare(case, inputs, with_grads=case.needs_backward,
                         dense=any(needs_dense_reference(v.exact, case.pattern) for v in variants))
        except Exception:
            self.clear()  # nothing half-made is kept; the rows compute (and fail) again
            return math.nan, ""
        added = {k: v - before.get(k, 0.0) for k, v in self.seconds.items() if v - before.get(k, 0.0) > 0}
        ms = 1e3 * sum(added.values())
        parts = ", ".join(f"{k} {v:.3g} s" for k, v in added.items())
        return ms, f"truth of {case.describe()}: {ms / 1e3:.3g} s" + (f" ({parts})" if parts else " (shared)")

    def _dense_pass(self, case: Case, inputs: Inputs) -> tuple[torch.Tensor | None, torch.Tensor]:
        self._check_key(case)
        dense = case.pattern.causal_part()
        if dense == case.pattern:
            return None, self.reference(case, inputs, with_grads=False).out
        if self._dense is None:
            rows = dense_rows(case)
            out = self._timed("dense", lambda: reference_attention(inputs.q, inputs.k, inputs.v, dense,
                                                                   rows=rows).out)
            self._dense = (rows, out)
        return self._dense

    def dense_reference(self, case: Case, inputs: Inputs) -> torch.Tensor:
        """Float64 output of exact attention with only the causal part of the case's pattern (no window, no
        layout, no approximation), over every query row (computed whole even where :func:`dense_rows`
        samples)."""
        rows, out = self._dense_pass(case, inputs)
        if rows is None:
            return out
        return reference_attention(inputs.q, inputs.k, inputs.v, case.pattern.causal_part()).out

    def dense_error(self, case: Case, inputs: Inputs, out: torch.Tensor) -> tuple[ErrorStats, int]:
        """``out`` against the dense reference: what the pattern's or approximation's shortcut costs.

        Returns:
            The error figures and the number of query rows they cover (``case.q_len`` when all; fewer when
            :func:`dense_rows` samples a long case).
        """
        rows, ref = self._dense_pass(case, inputs)
        if rows is None:  # padded documents: real tokens only
            return error_stats(real_tokens(out, case.pattern), real_tokens(ref, case.pattern)), case.q_len
        return error_stats(out.index_select(2, rows.to(out.device)), ref), int(rows.numel())

    def clear(self) -> None:
        self._key, self._ref, self._textbook, self._dense = None, None, None, None
        self.seconds = {}
