"""Variants exactly k times slower than ``full`` by construction (the same work repeated k times), for
``benchmarks/under_load.py``: load with ``variants_from=[benchmarks/repeat_variants.py]``."""

from __future__ import annotations

from harness import Variant, get_variant, register_variant


class _Repeat(Variant):
    patterns = frozenset({"full", "causal"})
    k = 1

    def prepare(self, pattern, case):
        inner = get_variant("full").prepare(pattern, case)
        k = self.k

        def fn(q, kk, v):
            out = None
            for _ in range(k):
                out = inner(q, kk, v)
            return out
        return fn


@register_variant
class Repeat2(_Repeat):
    name = "repeat2_full"
    description = "full, twice in a row (exactly 2x the work)"
    k = 2


@register_variant
class Repeat4(_Repeat):
    name = "repeat4_full"
    description = "full, four times in a row (exactly 4x the work)"
    k = 4
