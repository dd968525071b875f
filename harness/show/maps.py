"""The numbers each picture draws, computed from a case's inputs: the mask (attended fraction per tile), the float64
attention weights (mass per tile), the error of a set of weights per tile, and the relative error of output rows.

Matrices are reduced tile by tile as their query rows are computed (:mod:`harness.show.tiles`), so a long case
never holds its ``q_len x seq_len`` matrix; error maps compare output rows, every row or evenly spaced ones
(:func:`error_rows`), against float64 outputs from :func:`harness.core.reference.reference_attention`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.core.reference import reference_attention
from harness.show.tiles import TileSum, Tiling, tiling_for
from harness.show.view import View
from harness.show.weights import mask_rows, probability_blocks

__all__ = ["BLOCK_ELEMS", "MAX_WEIGHT_PAIRS", "ZOOM_KEYS", "ZOOM_ROWS", "ErrorMap", "MatrixMap", "error_rows",
           "mask_map", "mask_zoom", "output_error_map", "reference_rows", "weight_error_map", "weights_map"]

#: Entries of one block of query rows x keys computed at a time (per head), float64.
BLOCK_ELEMS = 2**22
#: Most (query, key) pairs per head a weights picture computes: ``q_len x seq_len`` above it is refused.
MAX_WEIGHT_PAIRS = 2**28
#: Keys of the exact zoom on a short-query mask (:func:`mask_zoom`), and the most query rows it is drawn for.
ZOOM_KEYS = 64
ZOOM_ROWS = 32


@dataclass(frozen=True)
class MatrixMap:
    """Query x key matrices at one tiling, one per panel (a mask has one panel; weights one per head).

    Args:
        values: ``(panels, tile rows, tile cols)``; NaN where a tile holds no attended pair (weights, errors).
        tiling: how the ``q_len x seq_len`` matrix was cut.
        q_offset: key position of query row 0 (``seq_len - q_len``: short queries align bottom-right).
        panels: a title per panel.
        k_offset: key position of the first column (a zoom on the last keys starts past 0).
    """

    values: np.ndarray
    tiling: Tiling
    q_offset: int
    panels: tuple[str, ...]
    k_offset: int = 0


@dataclass(frozen=True)
class ErrorMap:
    """Relative error of output rows, per drawn head and query row.

    Args:
        values: ``(heads, rows)``: ``|o_i - r_i| / |r_i|`` (L2 over the head dim); NaN where ``r_i = 0`` (a row
            that attends nothing, padding).
        rows: the query rows compared (increasing; all of them unless sampled).
        q_len: the case's query rows.
        q_offset: key position of query row 0.
        heads: a label per head.
        overall: relative L2 error over everything compared (rows with a reference).
    """

    values: np.ndarray
    rows: np.ndarray
    q_len: int
    q_offset: int
    heads: tuple[str, ...]
    overall: float

    @property
    def sampled(self) -> bool:
        """Only some query rows were compared."""
        return len(self.rows) < self.q_len


def _offset(view: View) -> int:
    return view.case.seq_len - view.case.q_len


def mask_map(view: View, max_tiles: int) -> tuple[MatrixMap, int]:
    """The attended fraction of each tile of the drawn batch row's mask (exact: 1 attended, 0 not).

    Returns:
        The map (one panel) and the number of attended pairs in the row.
    """
    case = view.case
    tiling = tiling_for(case.q_len, case.seq_len, max_tiles)
    acc = TileSum(tiling)
    step = tiling.row_block(BLOCK_ELEMS)
    for r0 in range(0, case.q_len, step):
        acc.add(r0, mask_rows(case.pattern, case.seq_len, case.q_len, r0, min(case.q_len, r0 + step), view.row))
    rows, cols = tiling.counts()
    frac = acc.sums / (rows[:, None] * cols[None, :])
    return MatrixMap(frac.numpy()[None], tiling, _offset(view), ("mask",)), int(round(float(acc.sums.sum())))


def mask_zoom(view: View, keys: int = ZOOM_KEYS) -> MatrixMap | None:
    """Queries shorter than keys: the exact mask of every query row against the last ``keys`` keys (where the
    bottom-right alignment shows), when there are at most :data:`ZOOM_ROWS` rows; else None."""
    case = view.case
    if case.is_square or case.q_len > ZOOM_ROWS:
        return None
    k0 = max(0, case.seq_len - keys)
    mask = mask_rows(case.pattern, case.seq_len, case.q_len, 0, case.q_len, view.row)[:, k0:]
    tiling = Tiling(case.q_len, case.seq_len - k0)
    return MatrixMap(mask.double().numpy()[None], tiling, _offset(view), (f"the last {tiling.cols} keys, exact",), k0)


def _attended_tiles(view: View, tiling: Tiling) -> torch.Tensor:
    """Boolean per tile: holds at least one attended pair of the drawn row."""
    acc = TileSum(tiling)
    case = view.case
    step = tiling.row_block(BLOCK_ELEMS)
    for r0 in range(0, case.q_len, step):
        acc.add(r0, mask_rows(case.pattern, case.seq_len, case.q_len, r0, min(case.q_len, r0 + step), view.row))
    return acc.sums > 0


def _check_size(view: View) -> None:
    pairs = view.case.q_len * view.case.seq_len
    if pairs > MAX_WEIGHT_PAIRS:
        raise ValueError(f"q_len x seq_len = {view.case.q_len} x {view.case.seq_len} = {pairs} pairs per head is "
                         f"too many for a weights picture (allowed: at most {MAX_WEIGHT_PAIRS} = 2**28, e.g. "
                         "seq_len=16384)")


def _drawn_qk(view: View, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return view.drawn(q), view.per_head_keys(k)


def weights_map(view: View, cut: tuple[torch.Tensor, torch.Tensor, torch.Tensor], max_tiles: int) -> MatrixMap:
    """The float64 attention weights of the drawn heads: per tile, the weight a query of the tile row puts on
    the tile's keys, summed over them and averaged over the queries (exact: the weight itself). Each row of
    tiles sums to 1 (0 for rows that attend nothing). NaN where the tile holds no attended pair.

    Args:
        view: the drawn row and heads.
        cut: ``view.cut(inputs)``.
        max_tiles: most tiles per side.

    Raises:
        ValueError: the case has more pairs per head than :data:`MAX_WEIGHT_PAIRS`.
    """
    _check_size(view)
    q, k = _drawn_qk(view, cut[0], cut[1])
    case = view.case
    tiling = tiling_for(case.q_len, case.seq_len, max_tiles)
    acc = TileSum(tiling, (len(view.heads),))
    step = tiling.row_block(max(1, BLOCK_ELEMS // len(view.heads)))
    for r0, p in probability_blocks(q, k, case.pattern, step, view.cut_row):
        acc.add(r0, p)
    rows, _ = tiling.counts()
    mass = acc.sums / rows[:, None]
    mass[:, ~_attended_tiles(view, tiling)] = float("nan")
    return MatrixMap(mass.numpy(), tiling, _offset(view), tuple(view.head_label(h) for h in view.heads))


def weight_error_map(view: View, cut: tuple[torch.Tensor, torch.Tensor, torch.Tensor], weights: torch.Tensor,
                     max_tiles: int) -> MatrixMap:
    """``|W - P|`` of a variant's weights ``W`` against the float64 ones ``P`` of the drawn heads: per tile, summed
    over the tile's keys and averaged over its queries (exact: the difference itself). Rows that attend no key
    (padding of a padded batch) are not compared, as their outputs are not.

    Args:
        view: the drawn row and heads.
        cut: ``view.cut(inputs)``.
        weights: the variant's weights for the drawn heads, ``(heads drawn, q_len, seq_len)``.
        max_tiles: most tiles per side.
    """
    _check_size(view)
    q, k = _drawn_qk(view, cut[0], cut[1])
    case = view.case
    tiling = tiling_for(case.q_len, case.seq_len, max_tiles)
    acc = TileSum(tiling, (len(view.heads),))
    step = tiling.row_block(max(1, BLOCK_ELEMS // len(view.heads)))
    for r0, p in probability_blocks(q, k, case.pattern, step, view.cut_row):
        w = weights[:, r0:r0 + p.shape[1]].to(device=p.device, dtype=torch.float64)
        w = torch.where(p.sum(dim=-1, keepdim=True) > 0, w, torch.zeros_like(w))  # padding rows: not compared
        acc.add(r0, (w - p).abs())
    rows, _ = tiling.counts()
    err = acc.sums / rows[:, None]
    return MatrixMap(err.numpy(), tiling, _offset(view), tuple(view.head_label(h) for h in view.heads))


def error_rows(q_len: int, max_rows: int) -> torch.Tensor | None:
    """The query rows an error map compares: None for all of them (``q_len <= max_rows``), else ``max_rows``
    evenly spaced rows (the middle of ``max_rows`` equal stretches)."""
    if q_len <= max_rows:
        return None
    return ((torch.arange(max_rows, dtype=torch.float64) + 0.5) * (q_len / max_rows)).long()


def reference_rows(view: View, cut: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rows: torch.Tensor | None,
                   dense: bool = False) -> torch.Tensor:
    """Float64 outputs of the cut at ``rows`` (None: all), with the case's pattern or (``dense``) its causal part
    only, the drawn heads: ``(heads drawn, rows, D)``."""
    pattern = view.case.pattern.causal_part() if dense else view.case.pattern
    q, k, v = cut
    if rows is not None and not pattern.has_documents:
        return view.drawn(reference_attention(q, k, v, pattern, rows=rows).out)
    out = view.drawn(reference_attention(q, k, v, pattern).out)
    return out if rows is None else out.index_select(1, rows.to(out.device))


def output_error_map(view: View, out: torch.Tensor, ref: torch.Tensor, rows: torch.Tensor | None) -> ErrorMap:
    """The relative error of each output row ``out`` against ``ref`` (both ``(heads drawn, rows, D)``)."""
    o64 = out.detach().to(device="cpu", dtype=torch.float64)
    r64 = ref.detach().to(device="cpu", dtype=torch.float64)
    diff = torch.linalg.vector_norm(o64 - r64, dim=-1)
    norm = torch.linalg.vector_norm(r64, dim=-1)
    rel = torch.where(norm > 0, diff / torch.where(norm > 0, norm, torch.ones_like(norm)),
                      torch.full_like(norm, float("nan")))
    has = norm > 0
    total = float(torch.linalg.vector_norm(r64[has]))
    overall = float(torch.linalg.vector_norm((o64 - r64)[has])) / total if total > 0 else float("nan")
    all_rows = np.arange(view.case.q_len) if rows is None else rows.numpy()
    return ErrorMap(rel.numpy(), all_rows, view.case.q_len, _offset(view),
                    tuple(view.head_label(h) for h in view.heads), overall)
