"""Variants whose work is set by construction, for ``benchmarks/gate.py``: real repeated work, not a sleep.

``slowed_<name>`` runs ``<name>``'s prepared kernel ``CALLS`` times per call (``CALLS`` from the environment
variable ``ATTNBENCH_CALLS``, default 1) and returns the last output. A base run with ``ATTNBENCH_CALLS=4`` and a
new run with ``5`` make the new kernel exactly 25% slower (``10`` against ``11``: 10%), overheads included, since
every repetition is the same call. Load with ``variants_from=[benchmarks/slowed_variants.py]``; the variable is
read when the file is imported, so each run of a comparison sets its own (``attnbench ab`` needs two files: copy
this one and set ``CALLS`` in each).
"""

from __future__ import annotations

import os

from harness import AttentionFn, Case, Pattern, Variant, get_variant, register_variant

CALLS = int(os.environ.get("ATTNBENCH_CALLS", "1") or 1)
#: The variants wrapped.
WRAPPED = ("full", "chunked", "sdpa_flash")


class _Slowed(Variant):
    patterns = frozenset({"full", "causal"})
    supports_backward = False
    inner = "full"

    def extra_reasons(self, case: Case) -> list[str]:
        return get_variant(self.inner).not_supported_reasons(case)

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        fn = get_variant(self.inner).prepare(pattern, case)
        calls = CALLS

        def call(q, k, v):
            for _ in range(calls - 1):  # each output dropped before the next call, as the harness drops its own
                fn(q, k, v)
            return fn(q, k, v)

        return call

    def forward(self, q, k, v, pattern):
        return get_variant(self.inner)(q, k, v, pattern)


for _name in WRAPPED:
    register_variant(type(f"Slowed_{_name}", (_Slowed,), {
        "name": f"slowed_{_name}", "inner": _name,
        "description": f"{_name}, {CALLS} times per call (ATTNBENCH_CALLS={CALLS})",
        "tolerances": dict(get_variant(_name).tolerances)}))
