"""Check the built-in variants' speed and memory targets side by side with ``full`` (CPU, fp32, B=1, H=8, D=64).

Targets (issue 3, "Benchmark"):

- ``causal`` at N=4096: at least 1.6x faster than ``full`` with a causal mask;
- ``local_window`` (w=256) at N=8192: at least 8x faster than ``full`` with the same window, peak memory at most
  1/16 of ``full``'s;
- ``chunked`` at N=8192, full pattern: peak memory at most 1/8 of ``full``'s, time at most 1.5x ``full``'s.

Time: ``torch.utils.benchmark.Timer(...).blocked_autorange()`` median, with ``num_threads`` set to
``torch.get_num_threads()`` (the timer's default is 1 thread). Peak memory: the CPU allocations recorded by
``torch.profiler`` (``profile_memory=True``) replayed in order, above what was live before the call. Forward only,
under ``torch.no_grad()``. Run: ``PYTHONPATH=. python benchmarks/tune_variants.py [--only causal,chunked]``.
"""

from __future__ import annotations

import argparse
import gc

import torch
from torch.utils.benchmark import Timer

from harness import Case, Pattern, get_variant
from harness.inputs.make import make_inputs
from harness.measure.memory import measure_peak


def peak_bytes(fn) -> int:
    """Peak CPU bytes allocated while ``fn()`` runs, above what was live before (harness.measure.memory's replay)."""
    return int(measure_peak(fn, "cpu").peak_bytes)


def measure(name: str, pattern: Pattern, n: int, min_run_time: float) -> tuple[float, int]:
    """(median seconds, peak bytes) of variant ``name``'s prepared forward at ``n`` tokens."""
    case = Case(batch=1, heads=8, seq_len=n, head_dim=64, dtype="float32", pattern=pattern)
    inp = make_inputs(case)
    fn = get_variant(name).prepare(pattern, case)
    with torch.no_grad():
        fn(inp.q, inp.k, inp.v)  # setup / warm-up call
        timer = Timer("fn(q, k, v)", globals={"fn": fn, "q": inp.q, "k": inp.k, "v": inp.v},
                      num_threads=torch.get_num_threads())
        t = timer.blocked_autorange(min_run_time=min_run_time).median
        gc.collect()
        mem = peak_bytes(lambda: fn(inp.q, inp.k, inp.v))
    return t, mem


def compare(label: str, name: str, pattern: Pattern, n: int, min_run_time: float,
            speed_target: float | None, mem_target: float | None, slow_target: float | None = None) -> bool:
    """Measure ``full`` and ``name`` on the same case, print the ratios, and return whether the targets hold."""
    tf, mf = measure("full", pattern, n, min_run_time)
    tv, mv = measure(name, pattern, n, min_run_time)
    speed, mem = tf / tv, mf / mv
    ok = True
    line = (f"{label}: N={n} {pattern.label}: full {tf * 1e3:.0f} ms, {mf / 2**20:.0f} MiB | {name} "
            f"{tv * 1e3:.0f} ms, {mv / 2**20:.1f} MiB | speedup {speed:.2f}x, memory 1/{mem:.1f}")
    if speed_target is not None:
        ok &= speed >= speed_target
        line += f" [speed >= {speed_target}x: {'ok' if speed >= speed_target else 'MISSED'}]"
    if slow_target is not None:
        ok &= tv / tf <= slow_target
        line += f" [time <= {slow_target}x full: {'ok' if tv / tf <= slow_target else 'MISSED'}]"
    if mem_target is not None:
        ok &= mem >= mem_target
        line += f" [memory <= 1/{mem_target:g}: {'ok' if mem >= mem_target else 'MISSED'}]"
    print(line, flush=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="causal,local_window,chunked", help="comma-separated variants to check")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing (blocked_autorange)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32 B=1 H=8 D=64, forward")
    ok = True
    if "causal" in only:
        ok &= compare("causal", "causal", Pattern("causal"), 4096, args.min_run_time, 1.6, None)
    if "local_window" in only:
        ok &= compare("local_window", "local_window", Pattern("window", window=256), 8192, args.min_run_time,
                      8.0, 16.0)
    if "chunked" in only:
        ok &= compare("chunked", "chunked", Pattern("full"), 8192, args.min_run_time, None, 8.0, slow_target=1.5)
    print("all targets met" if ok else "some targets MISSED")


if __name__ == "__main__":
    main()
