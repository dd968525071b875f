"""The accuracy-cost plane of a run across patterns: each variant on the pattern it is built for.

``err_metric`` (``approx_err_rel_l2`` where recorded) compares every variant with the same dense float64
attention, so approximate variants on the full pattern and exact sparse variants on their window or block layout
sit on one plane per input distribution and length. Rows of exact dense variants on sparse patterns (``full``
computing a window by masking) are left out: they only repeat the sparse variant's error at a higher cost.

Usage: ``PYTHONPATH=$PWD python benchmarks/accuracy_plane.py results/cpu_accuracy --seq-len 512 --out docs/img``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report.draw.canvas import save_figure
from harness.report.plots import plot_pareto
from harness.store.reader import read_runs

_DENSE_EXACT_ON_SPARSE = {"full", "chunked", "sdpa_flash", "sdpa_math", "sdpa_efficient", "sdpa_cudnn", "flex"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories or results.csv files")
    ap.add_argument("--seq-len", type=int, nargs="+", default=[512], help="lengths to show (one panel row each)")
    ap.add_argument("--out", default="docs/img", help="output directory")
    ap.add_argument("--name", default="accuracy_vs_cost_cpu", help="file name stem")
    a = ap.parse_args(argv)
    df = read_runs(a.runs).frame
    sparse = df["pattern"].isin(["window", "window_sym", "block_sparse", "block_sparse_causal"])
    keep = (df["status"] == "ok") & df["seq_len"].isin(a.seq_len)
    keep &= ~(sparse & df["variant"].isin(_DENSE_EXACT_ON_SPARSE))
    sub = df[keep].copy()
    if sub.empty:
        print(f"no ok rows at seq_len={a.seq_len} in {a.runs}", file=sys.stderr)
        return 1
    sub["variant"] = sub["variant"] + " (" + sub["pattern_label"] + ")"
    fig = plot_pareto(sub, facets=["inputs"] if sub["inputs"].nunique() > 1 else [])
    for path in save_figure(fig, Path(a.out), a.name, formats=("png",)):
        print(path)
    cols = ["inputs", "seq_len", "variant", "time_ms_median", "err_metric"]
    print(sub.sort_values(["inputs", "seq_len", "time_ms_median"])[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
