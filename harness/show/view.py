"""What a picture shows of a case: one batch row and some query heads, and the case's inputs cut to them.

Heads and batch rows are independent in attention, so a picture computes only what it draws. The cut keeps
whole groups of grouped-query heads (every query head of each key/value head drawn), so a variant runs the same
code path on the cut as on the whole case. A padded batch of documents is never cut by batch row: its pattern
holds one document per row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from harness.core.case import Case, Inputs

__all__ = ["DEFAULT_HEADS", "View", "make_view"]

#: Heads drawn when none are named: the first ones, at most this many.
DEFAULT_HEADS = 4


@dataclass(frozen=True)
class View:
    """The batch row and query heads of ``case`` a picture shows.

    Args:
        case: the case.
        heads: query heads drawn, increasing.
        row: the batch row drawn.
    """

    case: Case
    heads: tuple[int, ...]
    row: int = 0

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.case.heads // self.case.kv_heads

    @property
    def kv_groups(self) -> tuple[int, ...]:
        """The key/value heads of the drawn heads."""
        return tuple(sorted({h // self.group for h in self.heads}))

    @property
    def computed_heads(self) -> tuple[int, ...]:
        """Every query head of those key/value heads (what the cut holds)."""
        return tuple(g * self.group + i for g in self.kv_groups for i in range(self.group))

    @property
    def picked(self) -> list[int]:
        """Where each drawn head sits among :attr:`computed_heads`."""
        return [self.computed_heads.index(h) for h in self.heads]

    @property
    def keeps_batch(self) -> bool:
        """The cut keeps every batch row (a padded batch of documents)."""
        return self.case.pattern.is_padded

    @property
    def cut_row(self) -> int:
        """The drawn batch row's index in the cut."""
        return self.row if self.keeps_batch else 0

    def cut_case(self) -> Case:
        """The case of the cut tensors: one batch row (all for a padded batch) and the computed heads."""
        batch = self.case.batch if self.keeps_batch else 1
        return replace(self.case, batch=batch, heads=len(self.computed_heads), kv_heads=len(self.kv_groups),
                       q_len=self.case.q_len)

    def cut(self, inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(q, k, v)`` of the cut: ``(rows, computed heads, q_len, D)`` and ``(rows, kv groups, seq_len, D)``."""
        rows = slice(None) if self.keeps_batch else slice(self.row, self.row + 1)
        qh = torch.tensor(self.computed_heads, device=inputs.q.device)
        kh = torch.tensor(self.kv_groups, device=inputs.k.device)
        return (inputs.q[rows].index_select(1, qh).contiguous(), inputs.k[rows].index_select(1, kh).contiguous(),
                inputs.v[rows].index_select(1, kh).contiguous())

    def drawn(self, x: torch.Tensor) -> torch.Tensor:
        """The drawn batch row and heads of a tensor shaped like the cut's output: ``(heads drawn, ...)``."""
        return x[self.cut_row].index_select(0, torch.tensor(self.picked, device=x.device))

    def per_head_keys(self, k: torch.Tensor) -> torch.Tensor:
        """The cut's keys (or values) for each drawn head: ``(heads drawn, seq_len, D)`` of the drawn row."""
        idx = torch.tensor([self.kv_groups.index(h // self.group) for h in self.heads], device=k.device)
        return k[self.cut_row].index_select(0, idx)

    def head_label(self, h: int) -> str:
        """``head 5`` or, with grouped heads, ``head 5 (kv head 1)``."""
        return f"head {h}" + (f" (kv head {h // self.group})" if self.group > 1 else "")


def make_view(case: Case, heads: tuple[int, ...] | list[int] | None = None, row: int = 0) -> View:
    """The :class:`View` of ``case``'s batch ``row`` and query ``heads`` (default: the first :data:`DEFAULT_HEADS`).

    Raises:
        ValueError: a head or the row is out of range (naming it and what is allowed).
    """
    if heads is None:
        heads = tuple(range(min(case.heads, DEFAULT_HEADS)))
    heads = tuple(sorted(dict.fromkeys(heads)))
    bad = [h for h in heads if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < case.heads]
    if not heads or bad:
        shown = ",".join(map(str, bad or heads)) or "(none)"
        raise ValueError(f"heads={shown} is out of range (allowed: head indices 0 to {case.heads - 1}, the case's "
                         f"heads={case.heads})")
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < case.batch:
        raise ValueError(f"row={row} is out of range (allowed: a batch row 0 to {case.batch - 1}, the case's "
                         f"batch={case.batch})")
    return View(case, heads, row)
