"""Harness timing vs ``triton.testing.do_bench``, interleaved in one process, with the cause of a gap split out.

The harness's CUDA timer and do_bench do the same thing (CUDA events around each run, a 256 MiB L2 flush before
it, the median), so a gap between a sweep row and a separate do_bench run has three possible sources: the timer,
the callable (the harness's prepared variant vs the kernel as a user calls it) or the GPU's state at the time (clocks,
temperature, power). This script times each case four ways, in ``--rounds`` rounds whose order alternates
(A B C D, then D C B A, ...) so that drift over time falls on every way alike:

    bench(direct)    do_bench on the kernel as a user calls it      -- the yardstick
    bench(harness)   do_bench on the harness's prepared callable    -- differs from the yardstick by the callable
    timer(direct)    the harness's timer on the user's callable     -- differs from the yardstick by the timer
    sweep            ``measure_variant``, the code path of a sweep row (errors and memory off)

It prints each way's median over rounds and its round-to-round spread (max/min - 1: the noise floor), and the
check: |sweep / bench(direct) - 1| <= tolerance. Both callables are run once on the same q, k, v first and their
outputs compared, so the two sides are known to compute the same thing.

Usage (CUDA machine)::

    python -m benchmarks.timer_agreement                            # bf16, H=16, D=128, B*N=16384, N=1024..16384
    python -m benchmarks.timer_agreement --kernels sdpa_cudnn flex --seq-lens 4096 16384 --rounds 5 --csv a.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from benchmarks.gpu_direct import KERNELS, KernelCase, build_plan, compile_limit, failure, make_direct, release
from harness import Case, Pattern, get_variant
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure.calls import make_call
from harness.measure.runner import MeasureConfig, measure_variant
from harness.measure.timing import time_cpu_per_call, time_cuda

#: The four ways, in the order of the first round.
WAYS: tuple[str, ...] = ("bench_direct", "bench_harness", "timer_direct", "sweep")

Timer = Callable[[Callable[[], object]], float]


@dataclass
class Agreement(KernelCase):
    """One kernel on one case timed four ways over several rounds (ms per round and way)."""

    device: str = "cuda"
    status: str = "ok"
    message: str = ""
    out_max_abs_diff: float = math.nan
    times: dict[str, list[float]] = field(default_factory=lambda: {w: [] for w in WAYS})

    def median(self, way: str) -> float:
        """Median over rounds of one way (NaN when it has no rounds)."""
        vals = self.times.get(way, [])
        return float(statistics.median(vals)) if vals else math.nan

    def spread(self, way: str) -> float:
        """Round-to-round spread of one way: max/min - 1 (NaN with fewer than two rounds)."""
        vals = self.times.get(way, [])
        return max(vals) / min(vals) - 1.0 if len(vals) >= 2 and min(vals) > 0 else math.nan

    def gap(self, way: str = "sweep") -> float:
        """``way``'s median relative to the yardstick's, minus one (+0.05: 5 % slower than do_bench)."""
        return self.median(way) / self.median("bench_direct") - 1.0

    def row(self) -> dict[str, object]:
        """A flat CSV row: the case, each way's median and spread, the gaps, the rounds as text."""
        out: dict[str, object] = {k: getattr(self, k) for k in (
            "kernel", "pattern", "window", "batch", "heads", "seq_len", "head_dim", "dtype", "device", "status")}
        for w in WAYS:
            out[f"{w}_ms"] = self.median(w)
            out[f"{w}_spread"] = self.spread(w)
        for w in WAYS[1:]:
            out[f"gap_{w}"] = self.gap(w)
        out["out_max_abs_diff"] = self.out_max_abs_diff
        out["rounds_ms"] = "; ".join(f"{w}=" + ",".join(f"{t:.5g}" for t in self.times[w]) for w in WAYS)
        out["message"] = self.message
        return out


def round_orders(rounds: int, ways: tuple[str, ...] = WAYS) -> list[tuple[str, ...]]:
    """The order of the ways in each round: forward in even rounds, reversed in odd ones (A B C D, D C B A, ...)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r} is out of range (allowed: an integer >= 1)")
    return [tuple(ways) if r % 2 == 0 else tuple(reversed(ways)) for r in range(rounds)]


def do_bench_ms(fn: Callable[[], object]) -> float:
    """triton's do_bench median (warm-up 25 ms, 100 ms of runs, L2 flushed before each run)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))


def harness_timer_ms(device: str, budget_s: float) -> Timer:
    """The harness's own timer on ``device`` as a function of a callable: its median in ms."""
    if torch.device(device).type == "cuda":
        return lambda fn: time_cuda(fn, device, budget_s).median_ms
    return lambda fn: time_cpu_per_call(fn, budget_s).median_ms


def agreement(kernel: str, pattern: Pattern, batch: int, heads: int, seq_len: int, head_dim: int,
              dtype: str = "bfloat16", device: str = "cuda", rounds: int = 3, budget_s: float = 0.2,
              bench: Timer | None = None, timer: Timer | None = None) -> Agreement:
    """Time one kernel on one case the four ways of :data:`WAYS`, ``rounds`` times, in alternating order.

    Args:
        kernel: a kernel of :data:`benchmarks.gpu_direct.KERNELS` (also the harness variant's name).
        pattern: full, causal or a causal window (flex, xformers).
        dtype / device: the case's dtype name and device.
        rounds: rounds of the four ways.
        budget_s: the harness's timing budget (as in a sweep).
        bench: the yardstick timer (default: triton's do_bench; there is none on CPU, so tests pass one).
        timer: the harness's timer (default: :func:`harness_timer_ms` on ``device``).

    Returns:
        An :class:`Agreement`; a failure (unsupported case, OOM, error) is its status and message, not a raise.
    """
    orders = round_orders(rounds)
    if bench is None:
        if torch.device(device).type != "cuda":
            raise ValueError(f"device={device!r} has no do_bench (allowed: cuda, or pass bench=...)")
        bench = do_bench_ms
    timer = timer or harness_timer_ms(device, budget_s)
    res = Agreement(kernel, pattern.kind, pattern.window or 0, batch, heads, seq_len, head_dim, dtype, device)
    case = Case(batch=batch, heads=heads, seq_len=seq_len, head_dim=head_dim, dtype=dtype, device=device,
                pattern=pattern, mode="fwd")
    variant = get_variant(kernel)
    reasons = variant.not_supported_reasons(case)
    if reasons:
        res.status, res.message = "unsupported", "; ".join(reasons)
        return res
    inputs = make_inputs(case)
    direct = None
    try:
        # dynamo's recompile limits raised throughout: the direct flex of each case and the harness's share
        # flex_attention's cache with every earlier case, and a compile past the default limit must not go eager
        with compile_limit():
            direct = make_direct(kernel, inputs.q, inputs.k, inputs.v, pattern)
            harness_call = make_call(variant.prepare(case.pattern, case), case, inputs)
            with torch.no_grad():
                res.out_max_abs_diff = float((direct().float() - harness_call().float()).abs().max())
            cfg = MeasureConfig(budget_s=budget_s, errors=False, memory=False, ceiling=False)
            refs = ReferenceCache()

            def sweep_ms() -> float:
                m = measure_variant(variant, case, inputs, refs, cfg)
                if m.status != "ok":
                    raise RuntimeError(f"measure_variant: {m.status}: {m.reason}")
                return m.time_ms_median

            ways: dict[str, Callable[[], float]] = {
                "bench_direct": lambda: bench(direct),
                "bench_harness": lambda: bench(harness_call),
                "timer_direct": lambda: timer(direct),
                "sweep": sweep_ms,
            }
            graphs = _compiled_graphs()
            with torch.no_grad():
                for order in orders:
                    for way in order:
                        res.times[way].append(float(ways[way]()))
            compiled = _compiled_graphs() - graphs
        if compiled:
            res.status = "error"
            res.message = (f"torch.compile compiled {compiled} graph(s) during the timed rounds (a guard miss): "
                           "the times include compilation")
    except Exception as exc:  # noqa: BLE001 - every failure is a row with its message
        res.status, res.message = failure(exc)
    finally:
        release(direct)
    return res


def _compiled_graphs() -> int:
    """How many graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def report(results: list[Agreement], tolerance: float) -> int:
    """Print the table and the check; return how many ok cases have |sweep gap| > ``tolerance``."""
    print(f"{'kernel':11s} {'pattern':9s} {'N':>6s} {'B':>3s} |{'bench(dir)':>11s}{'bench(har)':>11s}"
          f"{'timer(dir)':>11s}{'sweep':>9s} ms |{'callable':>9s}{'timer':>8s}{'sweep':>8s} gap |{'spread(dir)':>12s}"
          f"{'spread(swp)':>12s} |{'out diff':>9s}")
    bad = 0
    for r in results:
        label = r.pattern + (str(r.window) if r.window else "")
        head = f"{r.kernel:11s} {label:9s} {r.seq_len:6d} {r.batch:3d} |"
        if r.status != "ok":
            print(f"{head} {r.status}: {r.message}")
            continue
        gap = r.gap("sweep")
        flag = abs(gap) > tolerance
        bad += flag
        print(f"{head}{r.median('bench_direct'):11.4f}{r.median('bench_harness'):11.4f}"
              f"{r.median('timer_direct'):11.4f}{r.median('sweep'):9.4f}    |{r.gap('bench_harness'):+9.1%}"
              f"{r.gap('timer_direct'):+8.1%}{gap:+8.1%}     |{r.spread('bench_direct'):12.1%}"
              f"{r.spread('sweep'):12.1%} |{r.out_max_abs_diff:9.2g}"
              + (f"  <-- sweep off by more than {tolerance:.0%}" if flag else ""))
    ok = sum(r.status == "ok" for r in results)
    print(f"{bad} of {ok} cases with the sweep's median more than {tolerance:.0%} from do_bench's. Medians over "
          f"rounds; gap 'callable': the harness's callable vs the user's, both under do_bench; 'timer': the "
          f"harness's timer vs do_bench, both on the user's callable; spread: max/min - 1 over rounds.")
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernels", nargs="+", default=["sdpa_cudnn", "sdpa_flash", "flex"],
                   help=f"subset of {', '.join(KERNELS)}")
    p.add_argument("--patterns", nargs="+", default=["full", "causal"], help="full and/or causal")
    p.add_argument("--seq-lens", nargs="+", type=int, default=[1024, 4096, 16384])
    p.add_argument("--tokens", type=int, default=16384, help="batch = max(1, tokens // seq_len)")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--window", type=int, default=256, help="causal sliding window width (0 = no window cases)")
    p.add_argument("--window-seq-lens", nargs="*", type=int, default=[1024, 16384, 65536])
    p.add_argument("--window-kernels", nargs="*", default=["flex"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=float, default=0.2, help="the harness's timing budget in seconds")
    p.add_argument("--tolerance", type=float, default=0.03)
    p.add_argument("--csv", default="", help="write one row per case to this CSV file")
    a = p.parse_args(argv)
    try:
        plan = build_plan(a.kernels, a.patterns, a.seq_lens, a.window, a.window_seq_lens, a.window_kernels)
        round_orders(a.rounds)
    except ValueError as exc:
        p.error(str(exc))
    if not torch.cuda.is_available():
        print(f"timer_agreement: no CUDA device (torch {torch.__version__}); nothing to time", file=sys.stderr)
        return 2
    print(f"# {torch.cuda.get_device_name()} | torch {torch.__version__} | {a.dtype} H={a.heads} D={a.head_dim} "
          f"B*N={a.tokens} | {a.rounds} rounds, order alternating | harness budget {a.budget} s")
    results = []
    for kern, pat, n in plan:
        r = agreement(kern, pat, max(1, a.tokens // n), a.heads, n, a.head_dim, a.dtype, "cuda", a.rounds, a.budget)
        results.append(r)
        print(f"  {kern} {pat.label} N={n}: " + "  ".join(
            f"{w} {r.median(w):.4f}" for w in WAYS) + f"  {r.status} {r.message}".rstrip(), flush=True)
    bad = report(results, a.tolerance)
    if a.csv:
        rows = [r.row() for r in results]
        with open(a.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
