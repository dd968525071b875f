"""How long ``attnbench report RUN`` takes, where the time goes, and the same command of another checkout beside it.

Target: ``attnbench report`` of the default run returns within :data:`TARGET_S` seconds (the plots follow in the
background); the script says whether this machine meets it.

Run from the repository root, on a run directory (the default run: ``attnbench sweep run_name=default``)::

    PYTHONPATH=$PWD python benchmarks/report_time.py results/default [--before /path/to/other/checkout] [--rounds 3]

It prints, for each checkout, the wall time of the whole command (a fresh process: imports included) in
``--rounds`` interleaved rounds (this checkout, then the other, alternating, so a change of load hits both),
and the phase split of this checkout's report measured in one process: imports, reading the run, tables
(summary, scaling), the figures drawn and written in this process alone and the way the report does it (worker
processes, one per core), and the text of report.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 3.0


def _cli_seconds(checkout: Path, run: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(wall seconds until the command returned, seconds until its plots were on disk)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(run), "--out", str(out), *extra],
                          cwd=checkout, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: report failed ({proc.returncode}): {proc.stderr[-2000:]}")
    while (out / "plots" / ".pending").exists():  # plots drawn in the background
        time.sleep(0.05)
    return secs, time.perf_counter() - t


def phases(run: Path, out: Path) -> dict[str, float]:
    """Seconds per phase of this checkout's report of ``run`` (one process, imports first)."""
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    from harness.report.build import PLOT_FORMATS
    from harness.report.document import ReportTables, report_markdown
    from harness.report.facets import facet_columns
    from harness.report.figures import write_figures
    from harness.report.scaling import scaling_table
    from harness.report.summary import summary_table, with_baseline_ratios
    from harness.store.reader import read_runs

    t1 = time.perf_counter()
    data = read_runs(run)
    t2 = time.perf_counter()
    frame = with_baseline_ratios(data.frame)
    facets = facet_columns(frame)
    summary = summary_table(frame)
    scaling = scaling_table(frame, facets)
    t3 = time.perf_counter()
    write_figures(frame, out / "serial", facets, PLOT_FORMATS, workers=1)
    t4 = time.perf_counter()
    files = write_figures(frame, out / "plots", facets, PLOT_FORMATS)
    t5 = time.perf_counter()
    report_markdown(data, ReportTables(frame, summary, scaling, facets, files), out)  # the text only
    t6 = time.perf_counter()
    return {"imports": t1 - t0, "read the run": t2 - t1, "tables (summary, scaling)": t3 - t2,
            "figures, one process": t4 - t3, "figures, the report's way": t5 - t4, "report.md text": t6 - t5}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run directory (the default run)")
    ap.add_argument("--before", type=Path, default=None, help="another checkout to time beside this one")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before-args", default="", help="extra report arguments for the other checkout")
    args = ap.parse_args()
    checkouts = [("this checkout", ROOT, [])]
    if args.before is not None:
        checkouts.append((f"before ({args.before})", args.before.resolve(), args.before_args.split()))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, path, extra in checkouts if r % 2 == 0 else checkouts[::-1]:
                times[name].append(_cli_seconds(path, args.run, Path(tmp) / f"{r}_{len(times[name])}", extra))
        print(f"`attnbench report {args.run}` wall time, {args.rounds} interleaved rounds "
              f"(load average {os.getloadavg()[0]:.1f}):")
        for name, ts in times.items():
            ret, done = [t[0] for t in ts], [t[1] for t in ts]
            print(f"  {name:<40} returns after median {statistics.median(ret):5.2f} s (all: "
                  + ", ".join(f"{t:.2f}" for t in ret) + f"); plots on disk after {statistics.median(done):5.2f} s")
        split = phases(args.run, Path(tmp) / "phases")
    print("phase split of this checkout's report (one process):")
    for k, v in split.items():
        print(f"  {k:<28} {v:6.2f} s")
    best = statistics.median(t[0] for t in times["this checkout"])
    print(f"target: <= {TARGET_S:.0f} s; this checkout: {best:.2f} s -> {'met' if best <= TARGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
