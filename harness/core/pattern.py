"""Attention patterns: which (query, key) pairs are attended, as one definition shared by every variant.

A :class:`Pattern` is the single source of truth for a mask. The float64 baseline, the dense masking of
``full``, the blocked variants' key ranges, FLOP counts and FlexAttention's ``mask_mod`` all derive from it, so
a variant and its baseline can never disagree about what "window 256" means.

Kinds (``Pattern.kind``):

- ``full``: every query attends to every key.
- ``causal``: query ``i`` attends to keys ``j <= i``.
- ``window``: causal sliding window of width ``w``: ``0 <= i - j < w`` (``w`` keys, the query's own included).
- ``window_sym``: symmetric sliding window: ``|i - j| < w`` (``w - 1`` neighbours on each side and itself).
- ``block_sparse`` / ``block_sparse_causal``: a block layout over ``block``-sized tiles, as in Sparse
  Transformer and BigBird: each query block attends to its ``local`` neighbouring key blocks on each side (and
  its own), to every ``stride``-th key block (the last block of each stride group; 0 = none), and to the first
  ``n_global`` key blocks; the first ``n_global`` query blocks attend to every key block. The causal kind
  additionally drops every pair with ``j > i``. A custom boolean layout may be given instead of the rule.

Queries shorter than keys (``q_len < seq_len``: decode, speculative decode, chunked prefill against a cache)
align bottom-right, as FlashAttention (since 2.1) and torch's ``causal_lower_right`` do: query row ``i`` sits at
position ``seq_len - q_len + i`` of the key sequence (:meth:`Pattern.query_offset`), and every rule above is
applied to that position. So a single decode query (``q_len = 1``) of a causal pattern attends to every key, of
a window to the last ``w`` keys, and with ``q_len = seq_len`` nothing changes. ``seq_len`` is always the
key/value length; every method takes ``q_len`` (default: ``seq_len``) and works on query *rows* ``0..q_len-1``.
This is the one place that says so: the baseline, FLOP counts, masks and every variant go through these methods.

Documents (variable-length batches, :mod:`harness.core.varlen`): a pattern with ``documents`` (their lengths) applies
its rule to each document as if it were its own sequence, and no pair crosses two documents. In the ``packed``
layout (``doc_layout``) the documents lie one after the other in one sequence of ``sum(documents)`` tokens:
query ``i`` and key ``j`` are attended when both lie in the same document, starting at ``s``, and the rule holds
for the positions ``i - s`` and ``j - s`` inside it (causal within each document, a window that never reaches
into the previous document, a block layout whose blocks count from the document's start). In the ``padded``
layout batch row ``b`` holds document ``b`` padded to the longest: query ``i`` and key ``j`` of row ``b`` are
attended when both are below the document's length and the rule holds; padding queries attend to nothing (their
output is 0 in the baseline and is never compared: errors count real tokens only) and padding keys are never
attended. So one document gets the same answer in either layout. Per-row masks of a padded batch come from
:meth:`Pattern.batch_mask_fn` (``mask_fn`` and ``dense_mask`` refuse them, having no batch index);
``attended_pairs`` counts the real pairs of every document together. Documents need square attention (``q_len``
equal to ``seq_len``) and a rule-based block layout (a custom ``layout`` has one size).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from harness.core.names import PATTERN_KINDS
from harness.core.varlen import LAYOUTS

__all__ = ["DOC_LAYOUTS", "PATTERN_KINDS", "Pattern", "make_pattern"]

_WINDOW_KINDS = ("window", "window_sym")
_BLOCK_KINDS = ("block_sparse", "block_sparse_causal")
_CAUSAL_KINDS = ("causal", "window", "block_sparse_causal")
#: Layouts of a batch of documents (``Pattern.doc_layout``; the sweep key ``layout``).
DOC_LAYOUTS: tuple[str, ...] = LAYOUTS


@dataclass(frozen=True)
class Pattern:
    """Which (query, key) pairs are attended.

    Args:
        kind: one of :data:`PATTERN_KINDS`.
        window: window width ``w`` for ``window`` / ``window_sym`` (ignored otherwise).
        block: tile size of a block-sparse layout.
        local: neighbouring key blocks attended on each side (0 = only the query's own block).
        stride: every ``stride``-th key block is attended by all queries (0 = no strided blocks).
        n_global: number of leading global blocks.
        layout: optional explicit boolean layout (``n_blocks x n_blocks``, as a tuple of tuples) replacing
            the rule; it must have ``ceil(seq_len / block)`` rows and columns for the sequence it is used on.
        documents: document lengths of a variable-length batch (None: one sequence per batch row); see the
            module docstring.
        doc_layout: ``packed`` (documents one after the other, ``seq_len = sum(documents)``) or ``padded`` (one
            batch row per document, ``seq_len = max(documents)``).
    """

    kind: str = "full"
    window: int | None = None
    block: int = 64
    local: int = 1
    stride: int = 0
    n_global: int = 1
    layout: tuple[tuple[bool, ...], ...] | None = field(default=None, compare=True, repr=False)
    documents: tuple[int, ...] | None = field(default=None, compare=True, repr=False)
    doc_layout: str = "packed"

    def __post_init__(self) -> None:
        if self.kind not in PATTERN_KINDS:
            raise ValueError(f"pattern={self.kind!r} is not a known pattern (allowed: {', '.join(PATTERN_KINDS)})")
        if self.kind in _WINDOW_KINDS:
            if self.window is None:
                raise ValueError(f"pattern={self.kind!r} needs window=<int >= 1> (got window=None)")
            _check_int("window", self.window, minimum=1)
        if self.kind in _BLOCK_KINDS:
            _check_int("block", self.block, minimum=1)
            _check_int("local", self.local, minimum=0)
            _check_int("stride", self.stride, minimum=0)
            _check_int("n_global", self.n_global, minimum=0)
        if self.doc_layout not in DOC_LAYOUTS:
            raise ValueError(f"layout={self.doc_layout!r} is not a known layout (allowed: {', '.join(DOC_LAYOUTS)})")
        if self.documents is not None:
            if not isinstance(self.documents, tuple) or not self.documents or any(
                    isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.documents):
                raise ValueError(f"documents={self.documents!r} must be a non-empty tuple of integers >= 1")
            if self.layout is not None:
                raise ValueError("a custom block layout has one size; documents need the rule-based layout "
                                 "(allowed: local, stride, n_global)")

    # ------------------------------------------------------------------ descriptors
    @property
    def is_causal(self) -> bool:
        """True when no query attends to a later key."""
        return self.kind in _CAUSAL_KINDS

    @property
    def is_sparse(self) -> bool:
        """True for patterns that drop pairs beyond the causal mask (windows, block layouts)."""
        return self.kind in _WINDOW_KINDS or self.kind in _BLOCK_KINDS

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``window(w=256)``."""
        if self.kind in _WINDOW_KINDS:
            return f"{self.kind}(w={self.window})"
        if self.kind in _BLOCK_KINDS:
            if self.layout is not None:  # a digest of the layout keeps two custom layouts two cases
                return f"{self.kind}(block={self.block}, custom layout {self.layout_digest()})"
            return f"{self.kind}(block={self.block}, local={self.local}, stride={self.stride}, global={self.n_global})"
        return self.kind

    def layout_digest(self) -> str:
        """8 hex digits identifying the custom block layout (the same on every machine; ``""`` without one)."""
        if self.layout is None:
            return ""
        bits = "/".join("".join("1" if x else "0" for x in row) for row in self.layout)
        return hashlib.sha1(bits.encode()).hexdigest()[:8]

    @property
    def has_documents(self) -> bool:
        """True for a variable-length batch (document masks)."""
        return self.documents is not None

    @property
    def is_padded(self) -> bool:
        """True for documents in the ``padded`` layout (masks differ per batch row)."""
        return self.documents is not None and self.doc_layout == "padded"

    @property
    def base(self) -> Pattern:
        """The same rule without documents: what each document gets on its own."""
        if self.documents is None:
            return self
        return replace(self, documents=None, doc_layout="packed")

    def with_documents(self, documents: tuple[int, ...] | None, layout: str = "packed") -> Pattern:
        """This rule over ``documents`` in ``layout`` (None: one sequence)."""
        if documents is None:
            return self.base
        return replace(self, documents=tuple(documents), doc_layout=layout)

    def doc_starts(self) -> tuple[int, ...]:
        """Packed layout: where each document starts, and the total at the end (``(0, d0, d0 + d1, ..., T)``)."""
        if self.documents is None:
            raise ValueError("this pattern has no documents")
        return _offsets(self.documents)

    def causal_part(self) -> Pattern:
        """The dense pattern with the same causality (and the same documents): what an approximation is judged
        against."""
        return Pattern("causal" if self.is_causal else "full", documents=self.documents,
                       doc_layout=self.doc_layout)

    # ------------------------------------------------------------------ validation against a length
    def check_fits(self, seq_len: int, q_len: int | None = None) -> None:
        """Raise ``ValueError`` when this pattern cannot be applied to ``q_len`` queries against ``seq_len`` keys."""
        self.query_offset(seq_len, q_len)
        if self.documents is not None:
            if q_len is not None and q_len != seq_len:
                raise ValueError(f"q_len={q_len} with documents: each document is a whole sequence (allowed: q_len = "
                                 f"seq_len={seq_len})")
            want = max(self.documents) if self.is_padded else sum(self.documents)
            if seq_len != want:
                what = "the longest document" if self.is_padded else "the documents' total"
                raise ValueError(f"seq_len={seq_len} does not fit {len(self.documents)} {self.doc_layout} documents "
                                 f"(allowed: seq_len = {want}, {what})")
        if self.kind in _BLOCK_KINDS and self.layout is not None:
            nb = math.ceil(seq_len / self.block)
            rows = len(self.layout)
            cols = {len(r) for r in self.layout}
            if rows != nb or cols != {nb}:
                shape = f"{rows}x{sorted(cols)[0] if len(cols) == 1 else sorted(cols)}"
                raise ValueError(
                    f"block layout of shape {shape} does not fit seq_len={seq_len} with block={self.block} "
                    f"(allowed: a {nb}x{nb} layout, ceil(seq_len / block) blocks per side)"
                )

    # ------------------------------------------------------------------ the mask
    def block_layout(self, seq_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Boolean ``[n_blocks, n_blocks]`` layout of a block-sparse pattern for ``seq_len``."""
        if self.kind not in _BLOCK_KINDS:
            raise ValueError(f"pattern={self.kind!r} has no block layout (only {', '.join(_BLOCK_KINDS)})")
        self.check_fits(seq_len)
        if self.documents is not None:
            return self._document_layout(seq_len, device)
        nb = math.ceil(seq_len / self.block)
        if self.layout is not None:
            lay = torch.tensor(self.layout, dtype=torch.bool, device=device)
        else:
            qb = torch.arange(nb, device=device)[:, None]
            kb = torch.arange(nb, device=device)[None, :]
            lay = (qb - kb).abs() <= self.local
            if self.stride > 0:
                lay = lay | (kb % self.stride == self.stride - 1)
            if self.n_global > 0:
                lay = lay | (kb < self.n_global) | (qb < self.n_global)
        if self.kind == "block_sparse_causal":
            lay = lay & torch.ones(nb, nb, dtype=torch.bool, device=device).tril()
        return lay

    def documents_aligned(self) -> bool:
        """Packed documents whose blocks line up with the sequence's ``block`` grid: every document but the last
        a multiple of ``block`` (each then starts on a block boundary)."""
        return self.documents is not None and not self.is_padded and all(
            d % self.block == 0 for d in self.documents[:-1])

    def _document_layout(self, seq_len: int, device: torch.device | str) -> torch.Tensor:
        """The block layout of packed, block-aligned documents: each document's own layout on the diagonal."""
        if not self.documents_aligned():
            why = ("a padded batch has one layout per row" if self.is_padded else
                   f"the documents do not start on multiples of block={self.block}")
            raise ValueError(f"no block layout over the sequence for these documents: {why} (allowed: packed "
                             f"documents whose lengths, but the last, are multiples of block={self.block})")
        nb = math.ceil(seq_len / self.block)
        lay = torch.zeros(nb, nb, dtype=torch.bool, device=device)
        own = self.base.block_layout(max(self.documents), device)
        for s, e in zip(self.doc_starts()[:-1], self.doc_starts()[1:]):
            b0, b1 = s // self.block, math.ceil(e / self.block)
            lay[b0:b1, b0:b1] = own[: b1 - b0, : b1 - b0]
        return lay

    def _document_fn(self, device: torch.device | str,
                     pad_to: int | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Packed documents: ``(q, k) -> bool``, same document and the rule on positions inside it. With
        ``pad_to``, positions from the total up to ``pad_to`` may be asked too (one more document of padding)."""
        docs = self.documents
        assert docs is not None
        total = sum(docs)
        size = max(total, pad_to or 0)
        lens = torch.tensor([*docs, size - total] if size > total else docs, device=device)
        doc = torch.repeat_interleave(torch.arange(lens.numel(), device=device), lens)  # document of each position
        start = torch.tensor(self.doc_starts()[:-1] + ((total,) if size > total else ()), device=device)[doc]
        rule = self.base.mask_fn(max(max(docs), size - total), device)
        return lambda q, k: (doc[q] == doc[k]) & rule(q - start[q], k - start[k])

    def batch_mask_fn(self, seq_len: int, device: torch.device | str = "cpu", pad_to: int | None = None
                      ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """A function ``(batch_row, q_row, k_idx) -> bool`` (broadcasting integer tensors): True where attended.

        The mask of every layout, padded documents included (FlexAttention's ``mask_mod`` takes the batch index
        the same way); without a padded batch the batch row is ignored. Square attention only. With documents,
        ``pad_to`` lets it be asked about positions up to ``pad_to`` (kernels that evaluate the mask on whole
        tiles past the end); those are never attended together with a real one.
        """
        if not self.is_padded:
            if self.documents is not None:
                self.check_fits(seq_len)
                fn = self._document_fn(device, pad_to)
            else:
                fn = self.mask_fn(seq_len, device)
            return lambda b, q, k: fn(q, k)
        self.check_fits(seq_len)
        lens = torch.tensor(self.documents, device=device)
        rule = self.base.mask_fn(max(seq_len, pad_to or 0), device)
        return lambda b, q, k: (q < lens[b]) & (k < lens[b]) & rule(q, k)

    def batch_dense_mask(self, seq_len: int, device: torch.device | str = "cpu",
                         fill_padding_rows: bool = False) -> torch.Tensor:
        """Boolean ``[rows, seq_len, seq_len]`` mask: one per batch row of a padded batch, else ``rows = 1``.

        Args:
            seq_len: the sequence length.
            device: where the mask is made.
            fill_padding_rows: let the padding queries of a padded batch attend to every key. Their output is
                never compared (nor used by anyone), and a dense softmax over a row with no attended key gives NaN,
                whose gradient would reach the real keys; with this they stay finite.
        """
        if not self.is_padded:
            return self.dense_mask(seq_len, device)[None]
        b = torch.arange(len(self.documents), device=device)[:, None, None]
        i = torch.arange(seq_len, device=device)
        mask = self.batch_mask_fn(seq_len, device)(b, i[None, :, None], i[None, None, :])
        if fill_padding_rows:
            lens = torch.tensor(self.documents, device=device)
            mask |= (i[None, :] >= lens[:, None])[:, :, None]
        return mask

    def mask_fn(self, seq_len: int, device: torch.device | str = "cpu",
                q_len: int | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A function ``(q_row, k_idx) -> bool`` (broadcasting integer tensors): True where attended.

        ``q_row`` is a query row ``0..q_len-1`` (bottom-right aligned: it sits at key position
        ``seq_len - q_len + q_row``). Its shape mirrors FlexAttention's ``mask_mod`` so that backend can use it
        as is. Packed documents are masked here; a padded batch's masks differ per row, so it raises
        ``ValueError`` (use :meth:`batch_mask_fn`).
        """
        off = self.query_offset(seq_len, q_len)
        if self.documents is not None:
            if self.is_padded:
                raise ValueError("padded documents have one mask per batch row (use batch_mask_fn or "
                                 "batch_dense_mask)")
            self.check_fits(seq_len, q_len)
            return self._document_fn(device)
        kind = self.kind
        if kind == "full":
            return lambda q, k: torch.ones_like(q - k, dtype=torch.bool)
        if kind == "causal":
            return (lambda q, k: q >= k) if off == 0 else (lambda q, k: q + off >= k)
        if kind == "window":
            w = self.window
            return lambda q, k: ((q + off) >= k) & ((q + off) - k < w)
        if kind == "window_sym":
            w = self.window
            return lambda q, k: ((q + off) - k).abs() < w
        lay = self.block_layout(seq_len, device)
        b = self.block
        if kind == "block_sparse":
            return lambda q, k: lay[(q + off) // b, k // b]
        return lambda q, k: lay[(q + off) // b, k // b] & ((q + off) >= k)

    def dense_mask(self, seq_len: int, device: torch.device | str = "cpu", q_start: int = 0, q_end: int | None = None,
                   k_start: int = 0, k_end: int | None = None, q_len: int | None = None) -> torch.Tensor:
        """Boolean mask ``[q_end - q_start, k_end - k_start]`` of the given tile (default: the whole
        ``q_len x seq_len`` matrix; query rows are bottom-right aligned)."""
        q_len = seq_len if q_len is None else q_len
        q_end = q_len if q_end is None else q_end
        k_end = seq_len if k_end is None else k_end
        q = torch.arange(q_start, q_end, device=device)[:, None]
        k = torch.arange(k_start, k_end, device=device)[None, :]
        return self.mask_fn(seq_len, device, q_len)(q, k)

    @staticmethod
    def query_offset(seq_len: int, q_len: int | None = None) -> int:
        """Key position of query row 0: ``seq_len - q_len`` (bottom-right alignment; 0 for square attention).

        Raises:
            ValueError: ``q_len`` is not between 1 and ``seq_len``.
        """
        if q_len is None or q_len == seq_len:
            return 0
        if isinstance(q_len, bool) or not isinstance(q_len, int) or not 1 <= q_len <= seq_len:
            raise ValueError(f"q_len={q_len!r} is out of range (allowed: an integer from 1 to seq_len={seq_len}, "
                             "the key/value length)")
        return seq_len - q_len

    def key_bounds(self, q_start: int, q_end: int, seq_len: int, q_len: int | None = None,
                   batch_row: int | None = None) -> tuple[int, int]:
        """Half-open key range ``[lo, hi)`` that contains every key attended by query rows ``[q_start, q_end)``.

        Keys outside the range are never attended, so blocked code may skip them. Packed documents: the keys of
        the documents of rows ``q_start`` to ``q_end - 1`` the rule reaches; padded: the bounds of the rule over
        the longest document (``batch_row``: of that row's document; empty for rows that are padding there).
        """
        if self.documents is not None:
            return self._document_bounds(q_start, q_end, seq_len, batch_row, common=False)
        off = self.query_offset(seq_len, q_len)
        p0, p1 = q_start + off, q_end + off  # key positions of the rows
        if self.kind in ("causal", "block_sparse_causal"):
            return 0, p1
        if self.kind == "window":
            return max(0, p0 - self.window + 1), p1
        if self.kind == "window_sym":
            return max(0, p0 - self.window + 1), min(seq_len, p1 + self.window - 1)
        return 0, seq_len

    def common_key_bounds(self, q_start: int, q_end: int, seq_len: int,
                          q_len: int | None = None, batch_row: int | None = None) -> tuple[int, int]:
        """Half-open key range attended by *every* query row of ``[q_start, q_end)`` (empty: ``lo >= hi``).

        Inside it no mask is needed; blocked code masks only the columns of :meth:`key_bounds` outside it.
        Block layouts make no such claim (an empty range). Packed documents: rows of one document only (rows of
        two documents share no key); padded: every batch row (or ``batch_row``'s) at once.
        """
        if self.documents is not None:
            return self._document_bounds(q_start, q_end, seq_len, batch_row, common=True)
        off = self.query_offset(seq_len, q_len)
        p0, p1 = q_start + off, q_end + off
        if self.kind == "full":
            return 0, seq_len
        if self.kind == "causal":
            return 0, p0 + 1
        if self.kind == "window":
            return max(0, p1 - self.window), p0 + 1
        if self.kind == "window_sym":
            return max(0, p1 - self.window), min(seq_len, p0 + self.window)
        return 0, 0

    def _document_bounds(self, q0: int, q1: int, seq_len: int, batch_row: int | None,
                         common: bool) -> tuple[int, int]:
        """:meth:`key_bounds` (or, ``common``, :meth:`common_key_bounds`) of rows ``[q0, q1)`` with documents."""
        self.check_fits(seq_len)
        docs, base = self.documents, self.base
        assert docs is not None
        if q1 <= q0:
            return (0, 0)
        if self.is_padded:
            if batch_row is not None:
                length = docs[batch_row]
            else:
                length = min(docs) if common else max(docs)
            if q0 >= length or (common and q1 > length):
                return (0, 0)
            fn = base.common_key_bounds if common else base.key_bounds
            lo, hi = fn(q0, min(q1, length), length)
            return (lo, hi) if lo < hi else (0, 0)
        starts = self.doc_starts()
        d0 = bisect.bisect_right(starts, q0) - 1
        d1 = bisect.bisect_right(starts, q1 - 1) - 1
        if common and d0 != d1:
            return (0, 0)
        s0, s1 = starts[d0], starts[d1]
        fn = base.common_key_bounds if common else base.key_bounds
        lo = s0 + fn(q0 - s0, min(q1, starts[d0 + 1]) - s0, docs[d0])[0]
        hi = s1 + fn(max(q0, s1) - s1, q1 - s1, docs[d1])[1]
        return (lo, hi) if lo < hi else (0, 0)

    # ------------------------------------------------------------------ counting
    def attended_pairs(self, seq_len: int, q_len: int | None = None) -> int:
        """Exact number of attended (query, key) pairs for ``q_len`` queries against ``seq_len`` keys (drives
        FLOP counts); ``q_len`` defaults to ``seq_len``. With documents: the real pairs of all the documents
        together (the whole batch, in either layout; padding never counts)."""
        if self.documents is not None:
            self.check_fits(seq_len, q_len)
            base = self.base
            return sum(count * base.attended_pairs(length) for length, count in Counter(self.documents).items())
        n = seq_len
        off = self.query_offset(n, q_len)
        lq = n - off
        if self.kind == "full":
            return lq * n
        if self.kind == "causal":  # row at position p attends p + 1 keys
            return (n * (n + 1) - off * (off + 1)) // 2
        if self.kind == "window":  # position p attends min(p + 1, w) keys
            return _sum_min_plus_one(n, self.window) - _sum_min_plus_one(off, self.window)
        if self.kind == "window_sym":  # position p: itself, min(p, w-1) before, min(n-1-p, w-1) after
            m = self.window - 1
            return lq + _sum_min(n, m) - _sum_min(off, m) + _sum_min(lq, m)
        lay = self.block_layout(n).to(torch.int64)
        nb = lay.shape[0]
        b = self.block
        starts = torch.arange(nb, dtype=torch.int64) * b
        ends = torch.clamp(starts + b, max=n)
        sizes = ends - starts
        rows = torch.clamp(ends - torch.clamp(starts, min=off), min=0)  # query rows (positions >= off) per block
        if self.kind == "block_sparse":
            return int(rows @ lay @ sizes)
        below = lay.tril(-1)
        # diagonal block r: rows at positions p in [a, e) attend p - start + 1 keys of their own block
        a = torch.clamp(starts, min=off)
        first, last = a - starts, ends - starts  # row offsets inside the block: [first, last)
        diag_pairs = (last * (last + 1) - first * (first + 1)) // 2
        return int(rows @ below @ sizes + (lay.diagonal() * torch.where(rows > 0, diag_pairs, 0)).sum())


def _offsets(docs: tuple[int, ...]) -> tuple[int, ...]:
    out = [0]
    for d in docs:
        out.append(out[-1] + d)
    return tuple(out)


def _sum_min_plus_one(n: int, w: int) -> int:
    """sum_{p=0}^{n-1} min(p + 1, w)."""
    if n <= w:
        return n * (n + 1) // 2
    return w * (w + 1) // 2 + (n - w) * w


def _sum_min(n: int, m: int) -> int:
    """sum_{i=0}^{n-1} min(i, m)."""
    if m >= n - 1:
        return n * (n - 1) // 2
    return m * (m + 1) // 2 + (n - 1 - m) * m


def _check_int(key: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{key}={value} is out of range (allowed: an integer >= {minimum})")


def make_pattern(kind: str, window: int | None = None, **layout: object) -> Pattern:
    """Build a :class:`Pattern`, dropping settings the kind does not use so equal patterns compare equal."""
    if kind not in PATTERN_KINDS:
        raise ValueError(f"pattern={kind!r} is not a known pattern (allowed: {', '.join(PATTERN_KINDS)})")
    kw: dict[str, object] = {}
    if kind in _WINDOW_KINDS:
        kw["window"] = window
    if kind in _BLOCK_KINDS:
        kw.update({k: v for k, v in layout.items() if v is not None})
    return Pattern(kind, **kw)  # type: ignore[arg-type]
