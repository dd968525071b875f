"""``attnbench history`` on synthetic runs whose steps are known: found where they are, put down to the right cause,
and nothing else found.

The series: ``--runs`` runs (default 30), one a day, each with its own commit; three variants (``full``, ``chunked``,
``fast_kernel``) on two cases (N = 512 and 1024), every time drawn with log-normal run-to-run noise (``--noise``,
default 2%), the machine yardstick with 1%. ``fast_kernel`` steps up by 10% from run 17 (the code); from run 24 the
machine is 8% slower (every variant and the yardstick). Expected: the code step at run 17 for ``fast_kernel`` on
both cases, the machine's at run 24 on every series, no other step, exit status 1.

With ``--trials K`` it draws the series K times (other seeds) and counts how often each expectation held, and the
steps found in pure noise (the same series without any step): the penalty's power and false alarms.

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/history_steps.py [--runs 30] [--noise 0.02] [--trials 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CODE_STEP_RUN, CODE_STEP = 17, 0.10
MACHINE_STEP_RUN, MACHINE_STEP = 24, 0.08
STEPPING_VARIANT = "fast_kernel"
VARIANTS = {"full": 4.0, "chunked": 2.5, STEPPING_VARIANT: 1.0}  # time (ms) at N = 512
YARDSTICK_MS = 2.0


def commit_of(i: int) -> str:
    """The synthetic commit of run ``i`` (1-based)."""
    return hashlib.sha1(f"commit {i}".encode()).hexdigest()[:12]


def run_rows(i: int, rng: np.random.Generator, noise: float, code_step: bool = True, machine_step: bool = True,
             yardstick: bool = True) -> pd.DataFrame:
    """The rows of run ``i`` (1-based): every variant on both cases."""
    machine = 1 + MACHINE_STEP if machine_step and i >= MACHINE_STEP_RUN else 1.0
    stamp = (dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc) + dt.timedelta(days=i - 1)).isoformat()
    rows = []
    for n in (512, 1024):
        yard = YARDSTICK_MS * machine * float(np.exp(0.01 * rng.standard_normal()))
        for variant, t512 in VARIANTS.items():
            code = 1 + CODE_STEP if code_step and variant == STEPPING_VARIANT and i >= CODE_STEP_RUN else 1.0
            t = t512 * (n / 512) ** 2 * machine * code * float(np.exp(noise * rng.standard_normal()))
            rows.append(dict(
                run_id=f"run{i:02d}", variant=variant, status="ok", reason="", device="cpu",
                device_name="synthetic-cpu", dtype="float32", batch=1, heads=8, seq_len=n, head_dim=64,
                pattern="causal", mode="fwd", seed=0, threads=2, time_ms_median=t, time_ms_iqr=0.02 * t,
                time_ms_min=0.97 * t, n_runs=20,
                peak_mem_bytes=float(8 * 8 * n * n if variant == "full" else 8 * n * 64),
                err_rel_l2=3e-7, noisy=False, contended=False, torch_version="2.13.0", harness_version="0.1.0",
                git_commit=commit_of(i), timestamp=stamp, yardstick_ms=yard if yardstick else np.nan))
    return pd.DataFrame(rows)


def build_runs(root: Path, n_runs: int = 30, noise: float = 0.02, seed: int = 0, code_step: bool = True,
               machine_step: bool = True, yardstick: bool = True) -> list[Path]:
    """Write ``n_runs`` run directories ``root/runNN`` (results.csv and env.json).

    Args:
        root: the folder of runs (created).
        n_runs: how many.
        noise: the run-to-run noise of every time (log-normal sigma).
        seed: the noise's seed.
        code_step: ``fast_kernel`` 10% slower from run 17.
        machine_step: the machine (every time and the yardstick) 8% slower from run 24.
        yardstick: record ``yardstick_ms`` (False: runs from before the yardstick existed).

    Returns:
        The run directories.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(1, n_runs + 1):
        d = root / f"run{i:02d}"
        d.mkdir(parents=True, exist_ok=True)
        run_rows(i, rng, noise, code_step, machine_step, yardstick).to_csv(d / "results.csv", index=False)
        (d / "env.json").write_text(json.dumps({"python": "3.11", "git_commit": commit_of(i)}))
        out.append(d)
    return out


def judge(steps: pd.DataFrame, slack: int = 0) -> dict[str, bool]:
    """Which expectations a history's steps meet, a step counting as found within ``slack`` runs of its run."""
    pos = steps["run"].str[3:].astype(int)
    code = ((steps["cause"] == "code") & (steps["variant"] == STEPPING_VARIANT) & (steps["metric"] == "time")
            & ((pos - CODE_STEP_RUN).abs() <= slack))
    machine = (steps["cause"] == "machine") & ((pos - MACHINE_STEP_RUN).abs() <= slack)
    return {
        "code step found at its run (both cases)": int(code.sum()) == 2,
        "machine step put down to the machine (all 6 series)": int(machine.sum()) == 6,
        "no other step": bool((code | machine).all()) and len(steps) == 8,
    }


def _history(root: Path, out: Path, extra: list[str] = ()) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "harness", "history", str(root), "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def _trials(k: int, n_runs: int, noise: float) -> None:
    from harness.report.history import build_history, history_verdict
    from harness.store.reader import read_runs

    held: dict[tuple[str, int], int] = {}
    false_steps = series = exits = 0
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(k):
            for steps in (True, False):
                root = Path(tmp) / f"t{t}_{steps}"
                build_runs(root, n_runs, noise, seed=1000 + t, code_step=steps, machine_step=steps)
                hist = build_history(read_runs([root]).frame)
                if steps:
                    for slack in (0, 1):
                        for name, ok in judge(hist.steps_frame(), slack).items():
                            held[(name, slack)] = held.get((name, slack), 0) + ok
                    exits += history_verdict(hist, 0.05).code == 1
                else:
                    false_steps += len(hist.steps)
                    series += len(hist.judged)
    print(f"\n{k} trials, {n_runs} runs, noise {noise:.1%} (seeds 1000..{1000 + k - 1}):")
    for (name, slack), n in held.items():
        print(f"  {name}{' (within one run)' if slack else ''}: {n}/{k}")
    print(f"  exit 1 (the code step fails step:5%): {exits}/{k}")
    print(f"  pure noise (no step at all): {false_steps} step(s) found in {series} series")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--noise", type=float, default=0.02)
    p.add_argument("--trials", type=int, default=0)
    p.add_argument("--keep", default=None, help="write the runs and the history here (default: a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / "runs"
        build_runs(root, args.runs, args.noise)
        code, text = _history(root, root.parent / "history")
        print(f"$ attnbench history {root}\n{text}(exit {code})")
        steps = pd.read_csv(root.parent / "history" / "steps.csv")
        for name, ok in judge(steps).items():
            print(f"{'held' if ok else 'FAILED'}: {name}")
    if args.trials:
        _trials(args.trials, args.runs, args.noise)
    return 0


if __name__ == "__main__":
    sys.exit(main())
