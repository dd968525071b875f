"""Does the regression gate catch real slowdowns and stay silent on unchanged code? Power and false alarms, measured.

Runs real sweeps (``python -m harness sweep``) of variants made slower by construction
(``benchmarks/slowed_variants.py``: a kernel repeated ``ATTNBENCH_CALLS`` times per call, so 11 calls against 10 are
exactly 10% more work and 5 against 4 exactly 25%) and compares them with ``attnbench compare``'s rules
(:func:`harness.report.compare.compare_runs`), then ``attnbench ab``. Parts:

- ``power``: quiet machine, ``slowed_sdpa_flash`` 10% and 25% slower in every case, ``full`` and ``chunked``
  unchanged beside it. Targets: 25% caught in every case, 10% in at least 80%; unchanged variants never
  ``slower``/``faster``.
- ``shared``: every variant of every case 20% slower, machine quiet: caught (exit 1) with the yardstick still.
- ``machine``: the same code, the second run beside CPU hogs: no ``slower``/``faster``; exit 3 (0 with
  ``--unsure=pass``).
- ``aa``: 10 A/A comparisons of unchanged code on a quiet machine and 10 beside a hog: no ``slower``/``faster``.
- ``ab``: ``attnbench ab`` of the 25% slower version beside a hog: the paired ratio's interval holds 1.25.

The grid: ``pattern=full``, N = 256, 512, 1024, 2048, head_dim 32 and 64, one head, ``threads=1`` (this is a
2-core machine: one thread leaves a core for the system), ``budget`` 1 s per variant. Run from the repository root:
``PYTHONPATH=$PWD python benchmarks/gate.py [power|shared|machine|aa|ab|all] [--aa-pairs 10]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "benchmarks" / "slowed_variants.py"
GRID = ["pattern=full", "seq_len=[256,512,1024,2048]", "head_dim=[32,64]", "heads=1", "threads=1", "budget=1.0",
        "device=cpu", "progress=plain", f"variants_from=[{PLUGIN}]"]
TARGET = "slowed_sdpa_flash"


def _sweep(out: Path, name: str, variants: str, calls: int) -> Path:
    env = {**os.environ, "ATTNBENCH_CALLS": str(calls), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "harness", "sweep", *GRID, f"variants={variants}", f"results_dir={out}",
           f"run_name={name}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sweep {name} failed ({done.returncode}): {done.stderr[-2000:]}")
    print(f"    run {name}: ATTNBENCH_CALLS={calls}, {time.perf_counter() - t0:.0f} s", flush=True)
    return out / name


def _compare(base: Path, new: Path):
    from harness.report.compare import compare_runs

    return compare_runs(base, new, ["median:5%"])


def _by_variant(c) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for r in c.matched.itertuples():
        out.setdefault(r.variant, Counter())[r.verdict if r.verdict != "unsure" else f"unsure ({r.cause})"] += 1
    return out


def _show(c) -> None:
    from harness.report.compare import format_summary

    for line in format_summary(c).splitlines()[:3]:
        print(f"    {line}")
    for variant, counts in sorted(_by_variant(c).items()):
        print(f"    {variant:<20} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@contextlib.contextmanager
def hog(n: int = 2):
    """``n`` busy-looping processes beside the measurement (this machine has 2 cores)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(1.0)
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def part_power(out: Path) -> bool:
    print("== power: one variant per case 10% and 25% slower (real repeated work), quiet machine, threads=1")
    ok = True
    for pct, (b, n) in ((10, (10, 11)), (25, (4, 5))):
        base = _sweep(out, f"power{pct}_base", f"[full,chunked,{TARGET}]", b)
        new = _sweep(out, f"power{pct}_new", f"[full,chunked,{TARGET}]", n)
        c = _compare(base, new)
        _show(c)
        counts = _by_variant(c)
        caught, cases = counts.get(TARGET, Counter())["slower"], sum(counts.get(TARGET, Counter()).values())
        need = cases if pct == 25 else -(-cases * 8 // 10)
        alarms = sum(counts.get(v, Counter())[k] for v in ("full", "chunked") for k in ("slower", "faster"))
        verdict = caught >= need and alarms == 0
        ok &= verdict
        print(f"=> {pct}% slower: caught {caught} of {cases} (target >= {need}); unchanged variants called "
              f"slower/faster: {alarms} (target 0) [{'PASS' if verdict else 'FAIL'}]")
    return ok


def part_shared(out: Path) -> bool:
    print("== shared: every variant of every case 20% slower (6 calls against 5), quiet machine")
    variants = "[slowed_full,slowed_chunked,slowed_sdpa_flash]"
    c = _compare(_sweep(out, "shared_base", variants, 5), _sweep(out, "shared_new", variants, 6))
    _show(c)
    counts = c.counts()
    verdict = c.exit_code() == 1 and counts["faster"] == 0 and counts["slower"] >= len(c.matched) * 0.8
    print(f"=> slower {counts['slower']} of {len(c.matched)}, exit {c.exit_code()} (target: exit 1, the yardstick "
          f"still) [{'PASS' if verdict else 'FAIL'}]")
    return verdict


def part_machine(out: Path) -> bool:
    print("== machine: the same code, the second run beside two busy-looping processes")
    variants = f"[full,chunked,{TARGET}]"
    base = _sweep(out, "machine_base", variants, 1)
    with hog():
        new = _sweep(out, "machine_new", variants, 1)
    c = _compare(base, new)
    _show(c)
    moved = c.counts()["slower"] + c.counts()["faster"]
    verdict = moved == 0 and c.exit_code() in (3, 0) and c.exit_code("pass") == 0
    print(f"=> slower/faster {moved} (target 0); exit {c.exit_code()} (3 inconclusive, 0 with --unsure=pass: "
          f"{c.exit_code('pass')}) [{'PASS' if verdict else 'FAIL'}]")
    return verdict


def part_aa(out: Path, pairs: int) -> bool:
    ok = True
    for label, busy in (("quiet", False), ("beside a hog", True)):
        print(f"== aa: {pairs} A/A comparisons of unchanged code, {label}")
        variants = f"[full,chunked,{TARGET}]"
        runs, alarms, judged, total = [], 0, 0, 0
        with hog(1) if busy else contextlib.nullcontext():
            for i in range(pairs + 1):
                runs.append(_sweep(out, f"aa_{'hog' if busy else 'quiet'}{i}", variants, 1))
                if i:
                    c = _compare(runs[-2], runs[-1])
                    counts = c.counts()
                    alarms += counts["slower"] + counts["faster"]
                    judged += len(c.matched) - sum(c.unjudged().values())
                    total += len(c.matched)
                    print(f"    pair {i}: " + c.counts().__repr__() + f"; not judged {dict(c.unjudged())}")
        verdict = alarms == 0
        ok &= verdict
        print(f"=> {label}: slower/faster {alarms} in {pairs} comparisons (target 0); {judged} of {total} cases "
              f"judged [{'PASS' if verdict else 'FAIL'}]")
    return ok


def part_ab(out: Path) -> bool:
    print("== ab: the 25% slower version against the original, side by side, beside a hog")
    tmp = Path(tempfile.mkdtemp(dir=out))
    text = PLUGIN.read_text(encoding="utf-8")
    for side, calls in (("a", 4), ("b", 5)):
        (tmp / side).mkdir()
        (tmp / side / "slowed_variants.py").write_text(
            text.replace('CALLS = int(os.environ.get("ATTNBENCH_CALLS", "1") or 1)', f"CALLS = {calls}"))
    from harness.run.ab import run_ab

    grid = [g for g in GRID if not g.startswith("variants_from")]
    with hog(1):
        results = run_ab(str(tmp / "a" / "slowed_variants.py"), str(tmp / "b" / "slowed_variants.py"), grid,
                         variants=[TARGET])
    held = 0
    for r in results:
        inside = r.low <= 1.25 <= r.high
        held += inside
        print(f"    {r.case:<40} x{r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}] {r.pairs} pairs "
              f"{'contended ' if r.contended else ''}{'holds 1.25' if inside else 'MISSES 1.25'}")
    verdict = held == len(results)
    print(f"=> the interval holds 1.25 in {held} of {len(results)} cases [{'PASS' if verdict else 'FAIL'}]")
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="all", choices=("power", "shared", "machine", "aa", "ab", "all"))
    parser.add_argument("--aa-pairs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="attnbench_gate_"))
    out.mkdir(parents=True, exist_ok=True)
    parts = ("power", "shared", "machine", "aa", "ab") if args.part == "all" else (args.part,)
    results = {}
    for part in parts:
        t0 = time.perf_counter()
        if part == "aa":
            results[part] = part_aa(out, args.aa_pairs)
        else:
            results[part] = globals()[f"part_{part}"](out)
        print(f"   ({part}: {time.perf_counter() - t0:.0f} s)\n", flush=True)
    print("summary: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
