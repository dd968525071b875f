"""A variant run on a picture's cut of the inputs: its output for the drawn row and heads, its weights when it
gives them (:meth:`harness.core.variant.Variant.attention_weights`), or why there is neither.

A variant that cannot run the case says why (its reasons, the same sentences a sweep's ``unsupported`` row has);
one that raises is reported with its error. Neither stops the other pictures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.core.registry import get_variant
from harness.show.view import View

__all__ = ["MAX_WEIGHT_ELEMS", "VariantRun", "run_variant"]

#: Most entries (batch x heads x q_len x seq_len of the cut) a variant's weights may have; above it they are not
#: asked for (the weight error picture is left out, with a note).
MAX_WEIGHT_ELEMS = 2**27


@dataclass(frozen=True)
class VariantRun:
    """What a variant gave on the cut.

    Args:
        name: the variant.
        out: its output for the drawn row and heads, ``(heads drawn, q_len, D)``; None when it did not run.
        weights: its weights for them, ``(heads drawn, q_len, seq_len)``; None when it gives none.
        problem: why ``out`` is None (``unsupported: ...`` or ``error: ...``), or a note on the weights.
    """

    name: str
    out: torch.Tensor | None
    weights: torch.Tensor | None = None
    problem: str = ""


def run_variant(name: str, view: View, cut: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                want_weights: bool = True) -> VariantRun:
    """Run variant ``name`` on ``cut`` (``view.cut(inputs)``) as the sweep does: ``prepare``, then the call.

    Raises:
        ValueError: no variant has that name (the message lists the known ones).
    """
    variant = get_variant(name)
    reasons = variant.not_supported_reasons(view.case)
    if reasons:
        return VariantRun(name, None, problem="unsupported: " + "; ".join(reasons))
    case = view.cut_case()
    try:
        with torch.no_grad():
            out = variant.prepare(case.pattern, case)(*cut)
    except Exception as exc:  # a failing variant is reported, the other pictures go on
        return VariantRun(name, None, problem=f"error: {type(exc).__name__}: {exc}")
    if not want_weights:
        return VariantRun(name, view.drawn(out))
    elems = cut[0].shape[0] * cut[0].shape[1] * case.q_len * case.seq_len
    if elems > MAX_WEIGHT_ELEMS:
        return VariantRun(name, view.drawn(out), problem=f"weights not asked: {elems} entries (allowed: at most "
                                                        f"{MAX_WEIGHT_ELEMS} = 2**27)")
    try:
        with torch.no_grad():
            weights = variant.attention_weights(*cut, case.pattern)
    except Exception as exc:
        return VariantRun(name, view.drawn(out), problem=f"weights: {type(exc).__name__}: {exc}")
    return VariantRun(name, view.drawn(out), None if weights is None else view.drawn(weights))
