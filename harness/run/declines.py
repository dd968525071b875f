"""The (case, variant) pairs of a sweep that cannot run on this machine, found before any work, one line per variant.

With ``skip_unsupported=true`` (the ``quick`` preset) a sweep writes no row for a pair the variant declines
(:func:`harness.measure.runner.declined`: a pattern, device, dtype, head dim or mode it does not support, a missing
package or kernel): it says so once per variant instead, e.g. ::

    local_window: 9 of 12 cases: pattern=full, causal, block_sparse_causal (supported: window, window_sym)

so ``variants=*`` over several patterns measures each variant on the patterns it computes and prints no line per
declined case. Cases on a device this machine lacks are left to the sweep (they are rows naming the device).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Declines", "find_declines", "merge_reasons", "plan_declines"]

#: A reason of the form ``key=value (why)``; reasons that share the key and the bracket merge.
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_]+)=(?P<value>\S+) (?P<rest>\(.*\))$")


@dataclass
class Declines:
    """What a plan's variants decline.

    Args:
        pairs: ``(case, variant name)`` of every declined pair.
        cases: variant name -> number of cases considered for it.
        reasons: variant name -> reason text -> number of cases it was given for.
    """

    pairs: set[tuple[Any, str]] = field(default_factory=set)
    cases: Counter = field(default_factory=Counter)
    reasons: dict[str, Counter] = field(default_factory=dict)

    def count(self, variant: str) -> int:
        """Cases ``variant`` declines."""
        return sum(1 for _, v in self.pairs if v == variant)

    def lines(self) -> list[str]:
        """One line per variant that declines something: ``name: k of n cases: reason; reason``."""
        out = []
        for variant, reasons in self.reasons.items():
            k = self.count(variant)
            out.append(f"{variant}: {k} of {self.cases[variant]} case{'s' * (self.cases[variant] != 1)}: "
                       f"{merge_reasons(reasons)}")
        return out


def _parts(reason: str) -> list[str]:
    """The reasons joined in ``reason`` by ``"; "`` (a ``"; "`` inside brackets belongs to its reason)."""
    parts, depth, start, text = [], 0, 0, str(reason)
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and text.startswith("; ", i):
            parts.append(text[start:i])
            start = i + 2
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def merge_reasons(reasons: Iterable[str]) -> str:
    """Reasons of several cases as one text: each distinct part once, and parts ``key=value (why)`` with the same
    key and bracket merged into ``key=a, b (why)``. A part every case gives (``device=cpu
    (supported: cuda)``) explains them all: then only such parts are shown.

    Args:
        reasons: reason texts (each may join several parts with ``"; "``), most frequent first.

    Returns:
        The merged text.
    """
    reasons = list(reasons)
    common = set.intersection(*(set(_parts(r)) for r in reasons)) if reasons else set()
    groups: dict[tuple[str, str], list[str]] = {}
    for reason in reasons:
        for part in _parts(reason):
            if common and part not in common:
                continue
            m = _KEY_VALUE.match(part)
            key = (m["key"], m["rest"]) if m else (part, "")
            values = groups.setdefault(key, [])
            if m and m["value"] not in values:
                values.append(m["value"])
    parts = [f"{k}={', '.join(vals)} {rest}" if rest else k for (k, rest), vals in groups.items()]
    return "; ".join(parts)


def find_declines(cases: Iterable[Any], variants: Iterable[Any], cuda_available: bool) -> Declines:
    """Every (case, variant) the variant declines, on cases whose device this machine has.

    Args:
        cases: :class:`~harness.core.case.Case` objects.
        variants: variant objects (from the registry).
        cuda_available: whether CUDA cases can run here (the others are left to the sweep).

    Returns:
        The :class:`Declines`.
    """
    from harness.measure.runner import declined

    cases = [c for c in cases if c.device_type != "cuda" or cuda_available]
    out = Declines()
    for variant in variants:
        for case in cases:
            out.cases[variant.name] += 1
            m = declined(variant, case, 0)
            if m is None:
                continue
            out.pairs.add((case, variant.name))
            out.reasons.setdefault(variant.name, Counter())[m.reason] += 1
    for name, reasons in out.reasons.items():  # most frequent reason first
        out.reasons[name] = Counter(dict(reasons.most_common()))
    return out


@functools.lru_cache(maxsize=8)
def plan_declines(plan: Any, cuda_available: bool | None = None) -> Declines:
    """:func:`find_declines` of a :class:`~harness.run.config.SweepPlan`'s cases and variants (cached per plan).

    Variant names the registry does not know (a plan built without loading variants) decline nothing here.
    """
    from harness.core.registry import get_variant

    if cuda_available is None:
        from harness.measure.env import cuda_available as _cuda

        cuda_available = _cuda()
    variants = []
    for name in plan.variants:
        try:
            variants.append(get_variant(name))
        except (KeyError, ValueError):
            continue
    return find_declines(plan.cases, variants, cuda_available)
