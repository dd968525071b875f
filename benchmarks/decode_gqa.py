"""Decode with grouped-query heads on this CPU: errors, achieved bandwidth, and what native GQA saves in memory.

``python benchmarks/decode_gqa.py [--threads 1] [--budget 0.5] [--lengths 4096,8192,16384,32768]
[--batches 1,8] [--wait-quiet 60]``

Llama-3.1-8B attention shapes (32 query heads, 8 key/value heads, head_dim 128), float32, one query per sequence
(``q_len=1``) against a causal KV cache of 4k to 32k keys, batch 1 and 8, each case measured through the harness
(``harness.measure.runner.measure_case``: setup, errors against the float64 baseline, memory probe, interleaved timing
rounds, the measured matmul and copy ceilings). Printed per case and variant: status, median time, relative L2
error against the float64 baseline with the variant's own tolerance, achieved GB/s (``bytes_moved / time``), % of
the measured copy ceiling, which ceiling binds, and peak memory above the inputs.

Memory: at batch 1, ``full`` and ``chunked`` are measured twice in the same run: natively (K and V with 8 heads)
and with K and V expanded to all 32 heads by ``repeat_interleave`` before the call (what a kernel without GQA
support must do). The ratio native / expanded is printed (target: at most 1/4 for group size 4).

With ``--wait-quiet S`` each case waits up to S seconds for the machine to leave this process's threads a core
each (:func:`harness.measure.machine.wait_for_quiet`); rows timed while other work took the cores still say so in
their reason (``contended``).

Targets (issue 15): every exact variant within its tolerance; the best variant at 32k, batch 8 reaching at least
50% of the measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import math
import os

import torch

from harness import Case, Pattern, Variant, get_variant
from harness.core.models import get_model
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure.machine import wait_for_quiet
from harness.measure.runner import MeasureConfig, measure_case

VARIANTS = ("full", "causal", "chunked", "split_kv", "sdpa_flash", "flex")
EXPANDED = ("full", "chunked")


class Expanded(Variant):
    """``inner`` run on K and V repeated to every query head: grouped-query attention without GQA support."""

    exact = True
    supports_gqa = True
    supports_q_len = True
    supports_backward = False

    def __init__(self, inner: Variant) -> None:
        self.inner = inner
        self.name = f"{inner.name}+expand_kv"
        self.patterns = inner.patterns
        self.tolerances = inner.tolerances

    def prepare(self, pattern: Pattern, case: Case):
        mha = Case(batch=case.batch, heads=case.heads, seq_len=case.seq_len, q_len=case.q_len,
                   head_dim=case.head_dim, dtype=case.dtype, device=case.device, pattern=pattern, mode=case.mode)
        fn = self.inner.prepare(pattern, mha)
        group = case.heads // case.kv_heads

        def call(q, k, v):
            return fn(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1))

        return call


def _mib(x: float) -> str:
    return f"{x / 2**20:9.1f}" if math.isfinite(x) else "      nan"


def run(lengths: list[int], batches: list[int], threads: int, budget: float, wait_quiet: float = 0.0) -> None:
    model = get_model("llama3_8b")
    torch.set_num_threads(threads)
    cfg = MeasureConfig(budget_s=budget, threads=threads)
    print(f"{model.name}: heads {model.heads}, kv_heads {model.kv_heads}, head_dim {model.head_dim}; float32, "
          f"q_len=1, causal; threads={threads}; torch {torch.__version__}; load average "
          f"{os.getloadavg()[0]:.2f}")
    best_at: dict[tuple[int, int], tuple[str, float]] = {}
    mem: dict[tuple[int, str], float] = {}
    all_within = True
    for b in batches:
        for n in lengths:
            case = Case(batch=b, heads=model.heads, kv_heads=model.kv_heads, seq_len=n, q_len=1,
                        head_dim=model.head_dim, pattern=Pattern("causal"), model=model.name)
            variants: list[Variant] = [get_variant(v) for v in VARIANTS]
            if b == 1:
                variants += [Expanded(get_variant(v)) for v in EXPANDED]
            inputs = make_inputs(case)
            refs = ReferenceCache()
            refs.prepare(case, inputs, with_grads=False, dense=False)
            quiet = wait_for_quiet(threads, wait_quiet) if wait_quiet > 0 else None
            results = measure_case(variants, case, inputs, refs, cfg)
            print(f"\n{case.describe()}  (K+V {2 * inputs.k.numel() * 4 / 2**30:.2f} GiB; truth "
                  f"{refs.total_s:.2f} s; load {os.getloadavg()[0]:.2f}"
                  + ("" if quiet is None else f", machine quiet before timing: {'yes' if quiet else 'no'}") + ")")
            print(f"  {'variant':<20} {'status':<11} {'ms':>9} {'rel_l2':>9} {'tol':>7} {'ok':>3} {'GB/s':>7} "
                  f"{'%copy':>6} {'bound':<8} {'mem MiB':>9}")
            for v, m, _ in results:
                row = m.as_row()
                tol = v.tolerance(case.dtype)
                within = m.status == "ok" and m.err_rel_l2 <= tol
                if m.status == "ok" and not within:
                    all_within = False
                gbps, pct = row.get("achieved_gbps", math.nan), row.get("pct_of_copy_ceiling", math.nan)
                print(f"  {v.name:<20} {m.status:<11} {m.time_ms_median:9.2f} {m.err_rel_l2:9.2e} {tol:7.0e} "
                      f"{'yes' if within else 'NO':>3} {gbps:7.2f} {pct:6.1f} {row.get('bound', ''):<8} "
                      f"{_mib(m.peak_mem_bytes)}" + (f"  {m.reason[:90]}" if m.reason else ""))
                if m.status == "ok" and "+" not in v.name and math.isfinite(pct):
                    if pct > best_at.get((b, n), ("", -1.0))[1]:
                        best_at[(b, n)] = (v.name, pct)
                mem[(b, n, v.name)] = m.peak_mem_bytes
                copy = row.get("copy_ceiling_gbps", math.nan)
            print(f"  measured copy ceiling {copy:.2f} GB/s (read + write), matmul ceiling "
                  f"{results[0][1].matmul_ceiling_tflops * 1e3:.1f} GFLOP/s")
            del inputs, refs
    print("\nbest variant per case (% of the measured copy bandwidth):")
    for (b, n), (name, pct) in sorted(best_at.items()):
        print(f"  batch {b:<2} context {n:>6}: {name:<12} {pct:5.1f}%")
    top = best_at.get((max(batches), max(lengths)))
    if top is not None:
        verdict = "met" if top[1] >= 50 else "NOT met"
        print(f"target (>= 50% at {max(lengths)}, batch {max(batches)}): {verdict} ({top[0]}, {top[1]:.1f}%)")
    print(f"every exact variant within its tolerance: {'yes' if all_within else 'NO'}")
    if 1 not in batches:
        return
    print("\nmemory, native GQA / K and V expanded to all heads (batch 1, same run):")
    for n in lengths:
        for name in EXPANDED:
            native, expanded = mem.get((1, n, name), math.nan), mem.get((1, n, f"{name}+expand_kv"), math.nan)
            ratio = native / expanded if expanded > 0 else math.nan
            print(f"  context {n:>6} {name:<8} native {_mib(native)} MiB, expanded {_mib(expanded)} MiB, ratio "
                  f"{ratio:.4f} ({'<= 1/4' if ratio <= 0.25 else '> 1/4'})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--lengths", default="4096,8192,16384,32768")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="seconds to wait for a quiet machine per case")
    args = parser.parse_args(argv)
    run([int(x) for x in args.lengths.split(",")], [int(x) for x in args.batches.split(",")], args.threads,
        args.budget, args.wait_quiet)


if __name__ == "__main__":
    main()
