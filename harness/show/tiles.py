"""How a (query x key) matrix is drawn in a bounded number of pixels: one pixel per pair when it fits, else tiles
of whole tokens, each tile an aggregate of all its pairs (a sum over them, divided by what it covers), never a
sample of them.

A :class:`Tiling` says how the ``rows x cols`` matrix is cut; :class:`TileSum` accumulates per-tile sums from blocks
of whole query rows, so a matrix too large to hold is reduced as it is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["TileSum", "Tiling", "tiling_for"]


@dataclass(frozen=True)
class Tiling:
    """A ``rows x cols`` matrix cut into tiles of ``row_tile x col_tile`` entries (the last ones may be smaller).

    Args:
        rows, cols: the matrix's size (query rows, keys).
        row_tile, col_tile: entries per tile along each side (1: exact).
    """

    rows: int
    cols: int
    row_tile: int = 1
    col_tile: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        """Tiles along each side."""
        return math.ceil(self.rows / self.row_tile), math.ceil(self.cols / self.col_tile)

    @property
    def exact(self) -> bool:
        """One tile per entry."""
        return self.row_tile == 1 and self.col_tile == 1

    def describe(self) -> str:
        """``exact: one pixel per (query, key) pair`` or ``tiles of 8 x 8 tokens (queries x keys)``."""
        if self.exact:
            return "exact: one pixel per (query, key) pair"
        return f"tiles of {self.row_tile} x {self.col_tile} tokens (queries x keys)"

    def row_block(self, max_elems: int) -> int:
        """Query rows per block of :meth:`TileSum.add`: a multiple of ``row_tile``, about ``max_elems`` entries."""
        per_row = max(1, self.cols)
        return max(self.row_tile, (max_elems // per_row) // self.row_tile * self.row_tile)

    def counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Entries per tile along each side: ``(rows in each tile row, cols in each tile column)``, float64."""
        nr, nc = self.shape
        rows = torch.full((nr,), float(self.row_tile), dtype=torch.float64)
        cols = torch.full((nc,), float(self.col_tile), dtype=torch.float64)
        rows[-1] = self.rows - (nr - 1) * self.row_tile
        cols[-1] = self.cols - (nc - 1) * self.col_tile
        return rows, cols


def tiling_for(rows: int, cols: int, max_tiles: int) -> Tiling:
    """The finest tiling with at most ``max_tiles`` tiles per side; square matrices get square tiles.

    Args:
        rows, cols: the matrix's size (``>= 1``).
        max_tiles: most tiles along a side (``>= 1``).

    Returns:
        The tiling (exact when both sides fit).
    """
    if min(rows, cols, max_tiles) < 1:
        raise ValueError(f"a tiling needs rows, cols and max_tiles >= 1 (got {rows}, {cols}, {max_tiles})")
    rt, ct = math.ceil(rows / max_tiles), math.ceil(cols / max_tiles)
    if rows == cols:
        rt = ct = max(rt, ct)
    return Tiling(rows, cols, rt, ct)


class TileSum:
    """Per-tile sums of a matrix given as blocks of whole query rows (float64, on the CPU).

    Args:
        tiling: how the matrix is cut.
        lead: leading dimensions of every block (e.g. ``(heads,)``).
    """

    def __init__(self, tiling: Tiling, lead: tuple[int, ...] = ()) -> None:
        self.tiling = tiling
        self.sums = torch.zeros(*lead, *tiling.shape, dtype=torch.float64)

    def add(self, r0: int, block: torch.Tensor) -> None:
        """Add rows ``[r0, r0 + block.shape[-2])`` of the matrix; ``r0`` is a multiple of ``row_tile``.

        Args:
            r0: the block's first row.
            block: ``(*lead, rows, cols)``, any real dtype and device.
        """
        t = self.tiling
        if r0 % t.row_tile:
            raise ValueError(f"a block must start on a tile row (r0={r0}, row_tile={t.row_tile})")
        x = block.detach().to(device="cpu", dtype=torch.float64)
        r = x.shape[-2]
        x = F.pad(x, (0, (-t.cols) % t.col_tile, 0, (-r) % t.row_tile))
        lead = x.shape[:-2]
        nrb, nc = x.shape[-2] // t.row_tile, x.shape[-1] // t.col_tile
        red = x.reshape(*lead, nrb, t.row_tile, nc, t.col_tile).sum(dim=(-3, -1))
        i0 = r0 // t.row_tile
        self.sums[..., i0:i0 + nrb, :] += red
