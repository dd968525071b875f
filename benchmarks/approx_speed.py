"""Speed of the approximate variants against ``full`` on the CPU, and their scaling in N (a benchmark script).

Two parts, both forward only, float32, B=1, H=8, D=64, timed side by side in one process with
``torch.utils.benchmark.Timer.blocked_autorange`` (thread count set explicitly and printed):

1. at N = 8192 (``--n``), each approximate variant against ``full`` for the full pattern, and for the causal
   pattern where the variant offers it (against ``full`` with the causal mask); PASS when the variant is at
   least ``--target`` (4) times faster;
2. each approximate variant at N = 1024 ... 8192 (``--scaling``), with the slope of log(time) against log(N)
   fitted by least squares: about 1 for O(N), about 2 for ``full``.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/approx_speed.py``. Exits 1 when a speed-up
misses the target. Timings on a shared machine are noisy; only the ratios of one run mean anything.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
import torch.utils.benchmark as tb

from harness import Case, Pattern, get_variant
from harness.inputs.make import make_inputs

APPROX = ("linear", "performer", "nystrom")


def time_variant(name: str, case: Case, min_run_time: float, threads: int) -> float:
    """Median seconds of one forward call of ``name`` on ``case`` (inputs drawn as the harness does)."""
    variant = get_variant(name)
    inputs = make_inputs(case)
    fn = variant.prepare(case.pattern, case)

    def call():
        with torch.no_grad():
            return fn(inputs.q, inputs.k, inputs.v)

    call()  # setup and first call outside the timing
    timer = tb.Timer(stmt="call()", globals={"call": call}, num_threads=threads,
                     label=f"N={case.seq_len}", sub_label=f"{name} {case.pattern.kind}")
    return timer.blocked_autorange(min_run_time=min_run_time).median


def loglog_slope(ns: list[int], times: list[float]) -> float:
    """Least-squares slope of log(time) against log(N)."""
    xs = [math.log(n) for n in ns]
    ys = [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main(argv: list[str] | None = None) -> int:
    """Run both parts, print the tables and PASS/FAIL; return the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192, help="sequence length of the speed-up comparison")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--target", type=float, default=4.0, help="required speed-up over full")
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per blocked_autorange")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--scaling", type=int, nargs="*", default=[1024, 2048, 4096, 8192],
                    help="sequence lengths of the scaling part (empty: skip)")
    ap.add_argument("--variants", nargs="*", default=list(APPROX))
    ap.add_argument("--full-max-n", type=int, default=8192,
                    help="largest N at which full is timed in the scaling part (its N x N scores need memory)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    def case(n: int, kind: str) -> Case:
        return Case(batch=1, heads=args.heads, seq_len=n, head_dim=args.head_dim, dtype="float32", device="cpu",
                    pattern=Pattern(kind), mode="fwd", seed=0)

    print(f"torch {torch.__version__}, CPU threads {args.threads}, float32, B=1 H={args.heads} D={args.head_dim}, "
          f"forward, blocked_autorange(min_run_time={args.min_run_time})")
    print(f"\n1. speed-up over full at N={args.n} (target >= {args.target:g}x)")
    print(f"{'variant':<11}{'pattern':<9}{'variant ms':>12}{'full ms':>12}{'speed-up':>10}  verdict")
    failed = False
    full_ms: dict[str, float] = {}
    for name in args.variants:
        for kind in ("full", "causal"):
            if kind not in get_variant(name).patterns:
                continue
            if kind not in full_ms:
                full_ms[kind] = 1e3 * time_variant("full", case(args.n, kind), args.min_run_time, args.threads)
            ms = 1e3 * time_variant(name, case(args.n, kind), args.min_run_time, args.threads)
            speedup = full_ms[kind] / ms
            ok = speedup >= args.target
            failed |= not ok
            print(f"{name:<11}{kind:<9}{ms:>12.2f}{full_ms[kind]:>12.2f}{speedup:>9.1f}x  {'PASS' if ok else 'FAIL'}")

    if args.scaling:
        ns = sorted(args.scaling)
        print(f"\n2. scaling, full pattern: median ms at N = {', '.join(map(str, ns))}; log-log slope")
        print(f"{'variant':<11}" + "".join(f"{n:>10}" for n in ns) + f"{'slope':>8}")
        for name in (*args.variants, "full"):
            sizes = [n for n in ns if name != "full" or n <= args.full_max_n]
            times = [time_variant(name, case(n, "full"), args.min_run_time, args.threads) for n in sizes]
            slope = loglog_slope(sizes, times) if len(sizes) > 1 else math.nan
            cells = [f"{1e3 * times[sizes.index(n)]:>10.2f}" if n in sizes else f"{'-':>10}" for n in ns]
            print(f"{name:<11}" + "".join(cells) + f"{slope:>8.2f}")
    print("\nRESULT:", "FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
