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
            # Each repetition's output is dropped before the next one starts, as the harness drops a call's output
            # before its next call: every repetition then meets the allocator and the caches as a lone call of
            # ``full`` does, and the construction is k times one call of ``full``, not k calls with one more
            # output held alive (which read 2.07x and 4.13x against ``full``).
            for _ in range(k - 1):
                inner(q, kk, v)
            return inner(q, kk, v)
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
