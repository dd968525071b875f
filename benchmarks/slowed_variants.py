"""Variants made slower by construction, for ``benchmarks/gate.py``: real extra work, not a sleep.

``slowed_<name>`` computes ``<name>``'s attention, then computes it again for the first ``f x q_len`` query rows
(``f`` from the environment variable ``ATTNBENCH_SLOWDOWN``, default 0): on the ``full`` pattern every query row
costs the same, so the variant does ``1 + f`` times the work of ``<name>`` (a 25% slower kernel at ``f = 0.25``)
and returns the same output. Load with ``variants_from=[benchmarks/slowed_variants.py]``; the variable is read
when the file is imported, so each run of a comparison sets its own.
"""

from __future__ import annotations

import dataclasses
import os

from harness import AttentionFn, Case, Pattern, Variant, get_variant, register_variant

SLOWDOWN = float(os.environ.get("ATTNBENCH_SLOWDOWN", "0") or 0)
#: The variants wrapped (each computes the full pattern and takes queries shorter than keys).
WRAPPED = ("full", "chunked", "sdpa_flash")


class _Slowed(Variant):
    patterns = frozenset({"full"})
    supports_q_len = True
    supports_backward = False
    inner = "full"

    def extra_reasons(self, case: Case) -> list[str]:
        return get_variant(self.inner).not_supported_reasons(case)

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        inner = get_variant(self.inner)
        fn = inner.prepare(pattern, case)
        rows = round(SLOWDOWN * case.q_len)
        if not rows:
            return fn
        extra = inner.prepare(pattern, dataclasses.replace(case, q_len=rows, kv_heads=case.kv_heads))

        def call(q, k, v):
            out = fn(q, k, v)
            extra(q[:, :, :rows], k, v)  # the same kernel on the first rows again: real work, result dropped
            return out

        return call

    def forward(self, q, k, v, pattern):
        return get_variant(self.inner)(q, k, v, pattern)


for _name in WRAPPED:
    register_variant(type(f"Slowed_{_name}", (_Slowed,), {
        "name": f"slowed_{_name}", "inner": _name,
        "description": f"{_name} doing {1 + SLOWDOWN:g}x its work (ATTNBENCH_SLOWDOWN={SLOWDOWN:g})",
        "tolerances": dict(get_variant(_name).tolerances)}))
