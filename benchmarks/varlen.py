"""Pad or pack: a long-tailed batch of documents, packed against padded, exact variants side by side (issue 16).

The batch: ``lengths=lognormal/mean:512/max:4096/total:16384`` (seed 0): 16384 tokens in all, long-tailed
document lengths. CPU, float32, causal within each document, H=2, D=64, forward. Each exact variant is measured
with the harness (``measure_case``: setup, error against the float64 baseline, peak memory, interleaved timing
rounds) on the packed layout (one sequence, document mask) and on the padded layout (one row per document, padded
to the longest), the two layouts alternated over ``--repeats`` repeats (medians), so both are timed under the same
conditions. Printed per (variant, layout): status, relative error against its tolerance, median time, time per real
token, peak memory; then each variant's padded/packed ratio of time per real token, and the fastest (variant,
layout). Exits 1 when an exact variant that ran is out of tolerance, 0 otherwise.

``full`` materializes every score (2 GiB per copy packed at H=2; about 7 GiB at the peak): leave it out with
``--variants chunked,flex,sdpa_flash`` on a small machine.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/varlen.py [--threads 1] [--repeats 3]
[--budget 0.5] [--lengths SPEC] [--heads 2] [--variants a,b]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys

import torch

from harness import Case, Pattern, get_variant
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure.runner import MeasureConfig, Measurement, measure_case

DEFAULT_LENGTHS = "lognormal/mean:512/max:4096/total:16384"
DEFAULT_VARIANTS = ("chunked", "flex", "sdpa_flash", "sdpa_nested_math", "full")
LAYOUTS = ("packed", "padded")


def _cases(lengths: str, heads: int, head_dim: int, pattern: Pattern) -> dict[str, Case]:
    return {layout: Case(heads=heads, head_dim=head_dim, lengths=lengths, layout=layout, pattern=pattern,
                         dtype="float32", device="cpu") for layout in LAYOUTS}


def _mib(x: float) -> str:
    return "" if not math.isfinite(x) else (f"{x / 2**30:.2f} GiB" if x >= 2**30 else f"{x / 2**20:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default=DEFAULT_LENGTHS)
    ap.add_argument("--pattern", default="causal", choices=("full", "causal"))
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.5)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cases = _cases(args.lengths, args.heads, args.head_dim, Pattern(args.pattern))
    docs = cases["packed"].documents
    variants = [get_variant(n) for n in args.variants.split(",") if n]
    load = os.getloadavg()[0]
    padding = 100 * (1 - sum(docs) / (len(docs) * max(docs)))
    print(f"lengths={cases['packed'].lengths} seed 0: {len(docs)} documents, {sum(docs)} tokens, mean "
          f"{statistics.mean(docs):.0f}, median {statistics.median(docs):.0f}, max {max(docs)}; padded batch "
          f"{cases['padded'].batch} x {cases['padded'].seq_len} ({padding:.0f}% padding)")
    print(f"cpu float32 H={args.heads} D={args.head_dim} {args.pattern} fwd, threads={args.threads}, "
          f"{args.repeats} repeats (layouts alternated), budget {args.budget} s; load average {load:.2f} on "
          f"{os.cpu_count()} cores at the start\n")

    inputs = {layout: make_inputs(c) for layout, c in cases.items()}
    refs = {layout: ReferenceCache() for layout in LAYOUTS}
    rows: dict[tuple[str, str], list[Measurement]] = {}
    for r in range(args.repeats):
        order = LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]
        for layout in order:
            cfg = MeasureConfig(budget_s=args.budget, threads=args.threads, min_runs=3, errors=r == 0,
                                memory=r == 0, ceiling=False)
            for v, m, _ in measure_case(variants, cases[layout], inputs[layout], refs[layout], cfg, seed=r):
                rows.setdefault((v.name, layout), []).append(m)

    failed = False
    tokens = sum(docs)
    print(f"{'variant':<18} {'layout':<7} {'status':<11} {'err_rel_l2':>10} {'tol':>7} {'median ms':>10} "
          f"{'us/token':>9} {'peak mem':>9}")
    per_token: dict[tuple[str, str], float] = {}
    for v in variants:
        for layout in LAYOUTS:
            ms = rows[(v.name, layout)]
            first = ms[0]
            if first.status != "ok":
                print(f"{v.name:<18} {layout:<7} {first.status:<11} {first.reason[:110]}")
                continue
            ok = [m for m in ms if m.status == "ok"]
            med = statistics.median(m.time_ms_median for m in ok)
            per_token[(v.name, layout)] = 1e3 * med / tokens
            tol = v.tolerance("float32")
            within = first.err_rel_l2 <= tol
            failed |= not within
            print(f"{v.name:<18} {layout:<7} {'ok' if within else 'OUT OF TOL':<11} {first.err_rel_l2:>10.2e} "
                  f"{tol:>7.0e} {med:>10.1f} {per_token[(v.name, layout)]:>9.3f} {_mib(first.peak_mem_bytes):>9}")
    print("\npadded / packed, time per real token (above 1: padding costs that much):")
    for v in variants:
        a, b = per_token.get((v.name, "packed")), per_token.get((v.name, "padded"))
        if a and b:
            print(f"  {v.name:<18} {b / a:6.2f}x   (packed {a:.3f} us/token, padded {b:.3f} us/token)")
    if per_token:
        (name, layout), best = min(per_token.items(), key=lambda kv: kv[1])
        print(f"\nfastest: {name} {layout}, {best:.3f} us per real token")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
