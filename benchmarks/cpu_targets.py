"""CPU speed and memory targets of the blocked variants, measured with the harness (``measure_variant``).

CPU, float32, B=1, H=8, D=64, forward. Each pair is measured side by side in one run (interleaved, repeated,
medians), since only ratios measured together mean anything on a shared machine:

- ``local_window`` (w=256) vs ``full`` with the same window pattern at N=8192: >= 8x faster, peak memory <= 1/16.
- ``chunked`` vs ``full`` at N=8192, full pattern: peak memory <= 1/8, time <= 1.5x.
- ``causal`` vs ``full`` with a causal mask at N=4096: >= 1.6x faster.

Prints a table and PASS/FAIL per target; exits 1 when a target fails, 0 otherwise. A variant that is not
registered is reported and its targets skipped (exit 0 unless something else failed); a row whose status is
not ``ok`` fails its target.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/cpu_targets.py [--repeats 3] [--budget 0.5]
[--threads N]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass

import torch

from harness import Case, Pattern, get_variant
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure.runner import MeasureConfig, Measurement, measure_variant

B, H, D = 1, 8, 64


@dataclass
class Target:
    """One comparison: ``variant`` against ``baseline`` on the same case."""

    variant: str
    baseline: str
    seq_len: int
    pattern: Pattern
    min_speedup: float | None = None  # baseline time / variant time must be >= this
    max_time_ratio: float | None = None  # variant time / baseline time must be <= this
    max_mem_ratio: float | None = None  # variant peak / baseline peak must be <= this

    @property
    def name(self) -> str:
        return f"{self.variant} vs {self.baseline}, {self.pattern.label}, N={self.seq_len}"


TARGETS: tuple[Target, ...] = (
    Target("local_window", "full", 8192, Pattern("window", window=256), min_speedup=8.0, max_mem_ratio=1 / 16),
    Target("chunked", "full", 8192, Pattern("full"), max_time_ratio=1.5, max_mem_ratio=1 / 8),
    Target("causal", "full", 4096, Pattern("causal"), min_speedup=1.6),
)


@dataclass
class Pair:
    """Medians over the repeats of the rows' median time and peak memory."""

    variant: Measurement
    baseline: Measurement
    time_v: float
    time_b: float
    mem_v: float
    mem_b: float


def _measure_pair(t: Target, repeats: int, cfg: MeasureConfig) -> Pair:
    case = Case(batch=B, heads=H, seq_len=t.seq_len, head_dim=D, dtype="float32", device="cpu", pattern=t.pattern)
    inputs, refs = make_inputs(case), ReferenceCache()
    rows: dict[str, list[Measurement]] = {t.variant: [], t.baseline: []}
    for i in range(repeats):
        order = (t.variant, t.baseline) if i % 2 == 0 else (t.baseline, t.variant)
        for name in order:
            # errors only once per variant (the float64 baseline is cached in refs); memory only once too
            one = MeasureConfig(**{**cfg.__dict__, "errors": i == 0, "memory": i == 0})
            rows[name].append(measure_variant(get_variant(name), case, inputs, refs, one))
            print(f"  {name:>14} rep {i}: {_fmt_row(rows[name][-1])}", flush=True)
    v, b = rows[t.variant], rows[t.baseline]
    return Pair(v[0], b[0], _med(v, "time_ms_median"), _med(b, "time_ms_median"), v[0].peak_mem_bytes,
                b[0].peak_mem_bytes)


def _med(rows: list[Measurement], key: str) -> float:
    vals = [getattr(r, key) for r in rows if r.status == "ok"]
    return statistics.median(vals) if vals else math.nan


def _fmt_row(m: Measurement) -> str:
    if m.status != "ok":
        return f"{m.status}: {m.reason}"
    return (f"{m.time_ms_median:9.1f} ms (IQR {m.time_ms_iqr:.1f}, n={m.n_runs}{', noisy' if m.noisy else ''}), "
            f"peak {_mib(m.peak_mem_bytes)}, setup {m.setup_ms:.0f} ms, err_rel_l2 {m.err_rel_l2:.2e}")


def _mib(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x / 2**20:.1f} MiB"


def _check(t: Target, p: Pair) -> list[tuple[str, str, bool]]:
    """(what, measured, passed) for each of the target's conditions."""
    out = []
    ok_rows = p.variant.status == "ok" and p.baseline.status == "ok"
    if t.min_speedup is not None:
        s = p.time_b / p.time_v if ok_rows else math.nan
        out.append((f"speed-up >= {t.min_speedup:g}x", f"{s:.2f}x", ok_rows and s >= t.min_speedup))
    if t.max_time_ratio is not None:
        r = p.time_v / p.time_b if ok_rows else math.nan
        out.append((f"time <= {t.max_time_ratio:g}x {t.baseline}", f"{r:.2f}x", ok_rows and r <= t.max_time_ratio))
    if t.max_mem_ratio is not None:
        r = p.mem_v / p.mem_b if ok_rows and p.mem_b > 0 else math.nan
        out.append((f"peak mem <= 1/{1 / t.max_mem_ratio:g} of {t.baseline}", f"1/{1 / r:.1f}" if r > 0 else "n/a",
                    ok_rows and r <= t.max_mem_ratio))
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure every target and print the table; return the exit status (1 if any target failed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved measurements of each variant (default 3)")
    ap.add_argument("--budget", type=float, default=0.5, help="time budget per measurement in s (default 0.5)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's current count)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats={args.repeats} is out of range (allowed: >= 1)")
    threads = args.threads or torch.get_num_threads()
    cfg = MeasureConfig(budget_s=args.budget, threads=threads, cpu_timer="per_call", min_runs=3)
    print(f"CPU targets: float32, B={B}, H={H}, D={D}, fwd, {threads} threads, torch {torch.__version__}, "
          f"{args.repeats} interleaved repeats, budget {args.budget} s per measurement\n", flush=True)
    lines, failed, skipped = [], 0, 0
    for t in TARGETS:
        missing = []
        for name in (t.variant, t.baseline):
            try:
                get_variant(name)
            except ValueError:
                missing.append(name)
        if missing:
            print(f"SKIP  {t.name}: variant(s) {', '.join(missing)} not registered\n")
            lines.append(f"| {t.name} | — | — | SKIP (not registered: {', '.join(missing)}) |")
            skipped += 1
            continue
        print(f"{t.name}:", flush=True)
        p = _measure_pair(t, args.repeats, cfg)
        results = _check(t, p)
        for what, got, ok in results:
            failed += not ok
            lines.append(f"| {t.name} | {what} | {got} | {'PASS' if ok else 'FAIL'} |")
        print(f"  {t.variant}: {p.time_v:.1f} ms, {_mib(p.mem_v)}; {t.baseline}: {p.time_b:.1f} ms, {_mib(p.mem_b)}")
        print("  " + "; ".join(f"{w}: {g} {'PASS' if ok else 'FAIL'}" for w, g, ok in results) + "\n", flush=True)
    print("| target | condition | measured | result |\n|---|---|---|---|")
    print("\n".join(lines))
    print(f"\n{failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
