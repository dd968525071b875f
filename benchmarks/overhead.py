"""The harness's own overhead per (case, variant), the phase split of the default run, and how fast
``attnbench list`` answers.

Phase split (issue 20): the default run (``attnbench`` with no arguments: the ``quick`` preset, every variant,
report included) in a fresh process, with timers around the harness's own functions: import, inputs, setup
(prepare, first call, errors, warm-up, checks), the float64 baseline and textbook yardstick, memory probes, timed
runs (the interleaved rounds, reading the process's clocks included), ceilings, the report, and the rest. Each
phase counts its own time only (a phase inside another is subtracted from it). Target: wall <= 2 x the timing
budgets (rows timed x ``budget``) + the baseline.

Overhead = wall time of a sweep minus the time spent inside the measurements (``measure_wall_ms`` of each
record: setup call, warm-up, timed runs, error computation and the float64 baseline). What is left is the
harness: config and Hydra, making inputs, support checks, writing records, progress, env capture, the CSV.
Cases are tiny so that the measured part is small and the overhead stands out; it is reported per
(case, variant). Targets: <= 50 ms per (case, variant); ``attnbench list`` < 3 s.

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/overhead.py            # everything
    PYTHONPATH=$PWD python benchmarks/overhead.py --phases [N]   # only the phase split of N default runs
    PYTHONPATH=$PWD python benchmarks/overhead.py --phases-side-by-side [N]   # ... each beside one with
                                                                              # ATTNBENCH_SYSTEM_MALLOC=1

On a shared machine wall times swing with the load; the script also times a bare ``import torch`` side by side,
because ``attnbench list`` cannot be faster than that.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY = {"heads": 1, "head_dim": 8, "pattern": "full", "budget": 0.002, "warmup": 0, "min_runs": 1,
        "progress": "off"}
N_VARIANTS = 4


def _register_bench_variants(n: int) -> list[str]:
    """``n`` copies of the built-in ``full`` variant under other names, so a case has several variants."""
    from harness import get_variant, register_variant
    from harness.core.pattern import PATTERN_KINDS
    from harness.core.variant import Variant

    names = []
    for i in range(n):
        cls = type(f"BenchFull{i}", (Variant,), {
            "name": f"bench_full_{i}", "patterns": frozenset(PATTERN_KINDS),
            "forward": lambda self, q, k, v, pattern: get_variant("full").forward(q, k, v, pattern),
            "__module__": __name__,
        })
        register_variant(cls)
        names.append(cls.name)
    return names


def _measured_s(run_dir: Path) -> float:
    from harness.store.records import RunStore

    return sum(float(r.get("measure_wall_ms") or 0.0) for r in RunStore(run_dir).rows()) / 1e3


def _line(label: str, items: int, wall: float, measured: float) -> float:
    over = wall - measured
    print(f"  {label:<40} items {items:>4}  wall {wall:7.2f} s  measuring {measured:6.2f} s  overhead {over:6.2f} s")
    return over


def _fit(label: str, small: tuple[int, float], big: tuple[int, float]) -> None:
    """Overhead = fixed + per_item * items, from two sweep sizes run back to back."""
    (n1, o1), (n2, o2) = small, big
    per_item = (o2 - o1) / (n2 - n1)
    fixed = o1 - per_item * n1
    verdict = "OK" if per_item <= 0.050 else "ABOVE TARGET"
    print(f"=> {label}: {1e3 * per_item:.1f} ms per (case, variant) [{verdict}: target <= 50 ms], "
          f"plus {fixed:.2f} s once per sweep; whole-sweep average at {n2} items: {1e3 * o2 / n2:.1f} ms")


def _sweep_fn(tmp: Path, variants: list[str], seq_lens: list[int], name: str) -> tuple[int, float]:
    """Plain-function path: plan_from_config + run_sweep (what a Python user or a Hydra job calls)."""
    from harness.run.config import plan_from_config
    from harness.run.sweep import run_sweep

    cfg = {**TINY, "seq_len": seq_lens, "mode": ["fwd", "fwd_bwd"], "variants": variants,
           "results_dir": str(tmp), "run_name": name}
    t0 = time.perf_counter()
    plan = plan_from_config(cfg, cuda_available=False)
    run_sweep(plan)
    wall = time.perf_counter() - t0
    return plan.n_items, _line(f"run_sweep {name}", plan.n_items, wall, _measured_s(plan.run_dir))


_REPORT_S = [0.0]


def _time_reports() -> None:
    """Time ``harness.report.build.write_report`` (called by the CLI after a sweep) so it is shown on its own."""
    import importlib.util

    if importlib.util.find_spec("harness.report.build") is None:
        return
    import harness.report.build as rep

    real = rep.write_report

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            _REPORT_S[0] += time.perf_counter() - t0

    rep.write_report = timed


def _sweep_cli(tmp: Path, variants: list[str], seq_lens: list[int], name: str, multirun: bool) -> tuple[int, float]:
    """The ``attnbench sweep`` path in this process: grid check, Hydra compose and job(s), CSV at the end.

    The report written after the sweep (tables and plots) is timed apart and left out of the overhead.
    """
    from harness.cli import main as cli

    seq = ",".join(map(str, seq_lens))
    argv = ["sweep", *(["-m"] if multirun else []), f"results_dir={tmp}", f"run_name={name}", f"seq_len={seq}",
            "mode=[fwd,fwd_bwd]", f"variants=[{','.join(variants)}]", "device=cpu",
            *(f"{k}={v}" for k, v in TINY.items())]
    t0 = time.perf_counter()
    _REPORT_S[0] = 0.0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(argv)
    wall = time.perf_counter() - t0
    assert code == 0, code
    items = len(seq_lens) * 2 * len(variants)
    print(f"  {'':<40} (the report after it took {_REPORT_S[0]:.2f} s, not counted)")
    return items, _line(f"attnbench sweep {name}", items, wall - _REPORT_S[0], _measured_s(tmp / name))


def bench_overhead(tmp: Path, variants: list[str]) -> None:
    small, big = [8, 16], [8, 16, 24, 32, 40, 48, 56, 64]
    _sweep_fn(tmp, variants, small, "warmup")  # imports (pandas, ...) and first calls out of the way
    print(f"run_sweep(), {len(variants)} variants per case:")
    _fit("run_sweep", _sweep_fn(tmp, variants, small, "fn-small"), _sweep_fn(tmp, variants, big, "fn-big"))
    t0 = time.perf_counter()
    from harness.run.config import plan_from_config
    from harness.run.sweep import run_sweep

    plan = plan_from_config({**TINY, "seq_len": big, "mode": ["fwd", "fwd_bwd"], "variants": variants,
                             "results_dir": str(tmp), "run_name": "fn-big"}, cuda_available=False)
    run_sweep(plan)
    print(f"=> resume with every record present: {1e3 * (time.perf_counter() - t0) / plan.n_items:.1f} ms per "
          "(case, variant)")
    print("attnbench sweep, one Hydra job (axis lists):")
    _fit("attnbench sweep", _sweep_cli(tmp, variants, small, "cli-small", False),
         _sweep_cli(tmp, variants, big, "cli-big", False))
    print("attnbench sweep -m, one Hydra job per sequence length (8 items per job):")
    (_, o1), (n2, o2) = (_sweep_cli(tmp, variants, small, "clim-small", True),
                          _sweep_cli(tmp, variants, big, "clim-big", True))
    per_job = (o2 - o1) / (len(big) - len(small))
    print(f"=> attnbench sweep -m: {per_job:.2f} s per Hydra job ({1e3 * per_job / (n2 // len(big)):.0f} ms per "
          f"(case, variant) at {n2 // len(big)} per job); Hydra composes each job's config twice (check + launch). "
          "Prefer axis lists (one job) for many small cases.")


def _time_cmd(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median wall and median CPU (user+sys) seconds of a command."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def bench_list(repeats: int = 3) -> None:
    for label, cmd in (("python -c 'import torch' (floor)", [sys.executable, "-c", "import torch"]),
                       ("attnbench list (python -m harness list)", [sys.executable, "-m", "harness", "list"])):
        wall, cpu = _time_cmd(cmd, repeats)
        print(f"{label:<58} median of {repeats}: wall {wall:5.2f} s  cpu {cpu:5.2f} s")


# ---------------------------------------------------------------------------------------------------- phases
class _Phases:
    """Exclusive time per phase: a phase called inside another is subtracted from the outer one."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.stack: list[float] = []

    def wrap(self, owner: object, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        def timed(*a, **k):
            t0 = time.perf_counter()
            self.stack.append(0.0)
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                inner = self.stack.pop()
                self.total[name] = self.total.get(name, 0.0) + dt - inner
                if self.stack:
                    self.stack[-1] += dt

        setattr(owner, attr, timed)


def phases_child(results_dir: str) -> None:
    """The default run with phase timers; prints one JSON line with the phases, the wall time and row figures."""
    t0 = time.perf_counter()
    import torch  # noqa: F401

    import harness.cli.main as cli
    import harness.measure.runner as measure
    import harness.report.build as report
    import harness.run.outcome as outcome
    from harness.core.reference import ReferenceCache

    ph = _Phases()
    ph.total["import"] = time.perf_counter() - t0
    ph.wrap(measure, "measure_case", "setup")  # what is left of a case after the phases inside it
    ph.wrap(measure, "run_rounds", "timed runs")
    ph.wrap(measure, "measure_peak", "memory probes")
    ph.wrap(measure, "matmul_ceiling_tflops", "ceilings")
    ph.wrap(measure, "copy_ceiling_gbps", "ceilings")
    for attr in ("prepare_case", "reference", "textbook", "dense_reference"):
        if hasattr(ReferenceCache, attr):
            ph.wrap(ReferenceCache, attr, "baseline")
    ph.wrap(outcome.CaseInputs, "get", "inputs")
    ph.wrap(report, "report_with_background_plots", "report")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main([f"results_dir={results_dir}", "run_name=default", "progress=off"])
    wall = time.perf_counter() - t0
    from harness.store.records import RunStore

    rows = RunStore(Path(results_dir) / "default").rows()
    timed = [r for r in rows if r.get("n_runs")]
    samples_s = sum(sum(r.get("time_samples_ms") or []) + sum(r.get("time_samples_dropped_ms") or [])
                    for r in timed) / 1e3
    env_doc = json.loads((Path(results_dir) / "default" / "env.json").read_text())
    print(json.dumps({"code": code, "wall": wall, "phases": ph.total, "rows": len(rows), "timed_rows": len(timed),
                      "allocator": env_doc.get("allocator", "?"),
                      "budget": rows[0].get("budget_s") if rows else 0.0, "samples_s": samples_s,
                      "contended": sum(bool(r.get("contended")) for r in rows),
                      "retried": sum(1 for r in timed if (r.get("retries") or 0) > 0),
                      "stop": dict(Counter(r.get("stop_reason") for r in timed)),
                      "pct_of_peak_cpu": sum(1 for r in timed if r.get("device") == "cpu"
                                             and isinstance(r.get("pct_of_peak"), float)
                                             and r["pct_of_peak"] == r["pct_of_peak"])}))


def _wait_for_plots(plots: Path, limit_s: float = 120.0) -> None:
    """Wait until the run's background plot process is done (its ``.pending`` marker gone), so that it neither
    loads the machine under the next run nor loses its folder."""
    from harness.report.background import PENDING_MARKER

    t0 = time.perf_counter()
    while (plots / PENDING_MARKER).exists() and time.perf_counter() - t0 < limit_s:
        time.sleep(0.1)


def bench_phases(repeats: int = 1, side_by_side: bool = False) -> None:
    """The phase split of ``repeats`` default runs; ``side_by_side`` alternates them with runs that keep glibc's
    own allocator settings (``ATTNBENCH_SYSTEM_MALLOC=1``, see :mod:`harness.measure.allocator`)."""
    from harness.measure.allocator import SYSTEM_MALLOC_ENV

    base = {k: v for k, v in os.environ.items() if k != SYSTEM_MALLOC_ENV}
    plans = [(i, {}) for i in range(repeats)]
    if side_by_side:
        plans = [p for i in range(repeats) for p in ((i, {}), (i, {SYSTEM_MALLOC_ENV: "1"}))]
    for i, extra in plans:
        env = {**base, "PYTHONPATH": str(ROOT), **extra}
        if side_by_side:
            print(f"-- {'ATTNBENCH_SYSTEM_MALLOC=1 (glibc defaults)' if extra else 'as shipped (allocator pinned)'}")
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run([sys.executable, __file__, "--phases-child", d], cwd=ROOT, env=env, check=True,
                                 capture_output=True, text=True).stdout
            _wait_for_plots(Path(d) / "default" / "report" / "plots")
        res = json.loads(out.strip().splitlines()[-1])
        ph, wall = res["phases"], res["wall"]
        ph["rest"] = wall - sum(ph.values())
        budgets = res["timed_rows"] * res["budget"]
        print(f"default run {i + 1}: wall {wall:.1f} s, {res['rows']} rows ({res['timed_rows']} timed, "
              f"{res['contended']} contended, {res.get('retried', 0)} timed again after contention), "
              f"exit {res['code']}, load average {os.getloadavg()[0]:.1f}; allocator: {res['allocator']}")
        order = ["import", "inputs", "setup", "baseline", "memory probes", "timed runs", "ceilings", "report", "rest"]
        for name in order:
            v = ph.get(name, 0.0)
            print(f"  {name:<14} {v:7.2f} s  {100 * v / wall:5.1f}%")
        print(f"  timed samples inside the rounds: {res['samples_s']:.2f} s (budgets: {res['timed_rows']} x "
              f"{res['budget']:g} s = {budgets:.1f} s); stop reasons {res['stop']}")
        print(f"  CPU rows with pct_of_peak: {res['pct_of_peak_cpu']} of {res['timed_rows']} timed")
        target = 2 * budgets + ph.get("baseline", 0.0)
        verdict = "OK" if wall <= target else "ABOVE TARGET"
        print(f"=> wall {wall:.1f} s vs 2 x budgets + baseline = {target:.1f} s [{verdict}]; "
              f"report {ph.get('report', 0.0):.1f} s (target <= 3 s, the reports helper's)")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--phases-child":
        phases_child(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] in ("--phases", "--phases-side-by-side"):
        bench_phases(int(sys.argv[2]) if len(sys.argv) > 2 else 1, side_by_side=sys.argv[1].endswith("side"))
        return
    import torch

    from harness.core.registry import list_variants

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    bench = _register_bench_variants(N_VARIANTS)
    print(f"variants: {', '.join(list_variants())}")
    _time_reports()
    with tempfile.TemporaryDirectory() as d:
        bench_overhead(Path(d), bench)
    bench_list()
    print("phase split of the default run (a fresh process):")
    bench_phases()


if __name__ == "__main__":
    main()
