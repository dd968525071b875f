"""What a reader sees: units that follow the data, approximations marked as such, contended points hollow, the
legend holding only what is drawn, panels in pattern order, and report.md ranking exact variants apart."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.report.build import write_report
from harness.report.draw.style import HOLLOW_GID, POINTS_GID, variant_styles
from harness.report.draw.units import bandwidth_unit, bytes_unit, flops_unit, time_unit
from harness.report.facets import facet_panels
from harness.report.figures import make_figures
from harness.report.plots import pareto_front, plot_pareto, plot_vs_seq_len
from harness.report.rows import approximate_variants
from harness.report.summary import at_a_glance, summary_table, with_baseline_ratios
from harness.store.reader import normalize
from tests.report_fixtures import write_run

_ROW = dict(run_id="r", status="ok", reason="", device="cpu", device_name="cpu-x", dtype="float32", batch=1, heads=8,
            head_dim=64, pattern="full", mode="fwd", seed=0, n_runs=5, noisy=False, threads=2,
            timestamp="2026-11-30T12:00:00", textbook_err_rel_l2=3e-7)


def _rows(spec: dict[str, tuple[float, float, float]], lengths=(256, 512, 1024)) -> pd.DataFrame:
    """Rows per variant: (time at N=256 in ms, error, throughput in TFLOP/s); time grows as N^2."""
    rows = []
    for v, (t0, err, tf) in spec.items():
        for n in lengths:
            t = t0 * (n / 256) ** 2
            rows.append(dict(_ROW, variant=v, seq_len=n, time_ms_median=t, time_ms_iqr=0.01 * t, time_ms_min=t,
                             peak_mem_bytes=4e6 * n / 256, err_rel_l2=err, tflops=tf))
    return normalize(pd.DataFrame(rows))


def _labels(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


# ------------------------------------------------------------------ units
def test_units_follow_the_data():
    assert time_unit([0.05, 0.4]).name == "µs" and time_unit([0.05, 0.4]).factor == 1e3
    assert time_unit([3.0, 400.0]).name == "ms" and time_unit([2e3, 9e3]).name == "s"
    assert bytes_unit([5e5]).name == "KiB" and bytes_unit([5e7]).name == "MiB" and bytes_unit([3e9]).name == "GiB"
    assert flops_unit([0.02, 0.3]).name == "GFLOP/s" and flops_unit([0.02, 600.0]).name == "TFLOP/s"
    assert bandwidth_unit([16.9, 40.0]).name == "GB/s" and bandwidth_unit([900.0, 3020.0]).name == "TB/s"
    assert bandwidth_unit([3020.0]).factor == 1e-3


def test_cpu_throughput_reads_in_gflops_and_gpu_in_tflops():
    cpu = _rows({"full": (1.0, 3e-7, 0.04), "fast": (0.5, 3e-7, 0.08)})
    fig = make_figures(with_baseline_ratios(cpu))["throughput"]
    ax = fig.axes[0]
    assert "GFLOP/s" in ax.get_ylabel()
    ys = sorted({float(y) for ln in ax.get_lines() if ln.get_gid() == POINTS_GID for y in ln.get_ydata()})
    assert ys == pytest.approx([40.0, 80.0])  # 0.04 and 0.08 TFLOP/s drawn as GFLOP/s
    gpu = _rows({"full": (1.0, 3e-3, 100.0), "fast": (0.5, 3e-3, 600.0)})
    assert "TFLOP/s" in make_figures(with_baseline_ratios(gpu))["throughput"].axes[0].get_ylabel()


def test_time_axis_in_microseconds_for_short_calls():
    fig = plot_vs_seq_len(_rows({"full": (0.01, 3e-7, 1.0)}), "time_ms_median", "median time ({unit})", "t",
                          unit=time_unit)
    assert fig.axes[0].get_ylabel() == "median time (µs)"


# ------------------------------------------------------------------ approximations
def test_approximations_from_the_exact_column_or_else_the_error():
    df = _rows({"full": (1.0, 3e-7, 1.0), "apx": (0.2, 0.7, 1.0), "lowprec": (0.5, 4e-3, 1.0)})
    assert approximate_variants(df) == {"apx"}  # no exact column: by the error (> 5%)
    declared = normalize(df.assign(exact=np.where(df["variant"] == "lowprec", False, True)))
    assert approximate_variants(declared) == {"lowprec"}  # the declaration wins over the error


def test_approximations_are_dashed_and_labelled_with_their_error():
    df = with_baseline_ratios(_rows({"full": (1.0, 3e-7, 1.0), "apx": (0.2, 0.73, 1.0)}))
    styles = variant_styles(df)
    assert styles["apx"].approx and styles["apx"].label == "apx (approx., err 0.73)"
    assert not styles["full"].approx and styles["full"].label == "full (baseline)"
    fig = make_figures(df)["time"]
    assert "apx (approx., err 0.73)" in _labels(fig)
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "apx")
    assert line.get_linestyle() == "--"


def test_share_of_peak_leaves_approximations_out_and_says_so():
    df = _rows({"full": (1.0, 3e-7, 1.0), "apx": (0.2, 0.73, 1.0)})
    fig = make_figures(with_baseline_ratios(normalize(df.assign(pct_of_peak=30.0))))["pct_of_peak"]
    assert [t for t in _labels(fig) if t.startswith(("full", "apx"))] == ["full (baseline)"]
    assert "Approximations not drawn (apx)" in fig.get_supxlabel()


# ------------------------------------------------------------------ contention, legend, footnote
def test_contended_points_are_hollow_in_time_figures_only():
    df = _rows({"full": (1.0, 3e-7, 1.0), "other": (0.5, 3e-7, 1.0)})
    df["contended"] = (df["variant"] == "other") & (df["seq_len"] == 512)
    figs = make_figures(with_baseline_ratios(df))
    for name in ("time", "speedup", "throughput", "accuracy_vs_cost"):
        hollow = [ln for ax in figs[name].axes for ln in ax.get_lines() if ln.get_gid() == HOLLOW_GID]
        assert sum(len(ln.get_xdata()) for ln in hollow) == 1, name
        assert all(ln.get_markerfacecolor() == "white" for ln in hollow)
        assert any(t.startswith("hollow: contended") for t in _labels(figs[name])), name
    for name in ("memory", "error"):  # not timed: a busy machine does not change them
        assert not any(ln.get_gid() == HOLLOW_GID for ax in figs[name].axes for ln in ax.get_lines()), name
        assert not any(t.startswith("hollow") for t in _labels(figs[name])), name


def test_a_variant_with_nothing_to_draw_is_named_once_in_the_footnote_not_in_the_legend():
    df = _rows({"full": (1.0, 3e-7, 1.0)})
    never = df.assign(variant="gpu_only", status="unsupported", reason="device=cpu (supported: cuda)",
                      time_ms_median=np.nan, peak_mem_bytes=np.nan, err_rel_l2=np.nan, tflops=np.nan)
    fig = make_figures(with_baseline_ratios(normalize(pd.concat([df, never], ignore_index=True))))["time"]
    assert not any(t.startswith("gpu_only") for t in _labels(fig))
    foot = fig.get_supxlabel()
    assert "gpu_only (unsupported 3)" in foot and "Not measured" in foot
    assert not any(ln.get_marker() == "s" and ln.get_linestyle() == "None" and not ln.get_gid()
                   for ax in fig.axes for ln in ax.get_lines())  # no grey band of unsupported markers


def test_panels_go_from_dense_to_sparse_patterns():
    parts = []
    for pattern, extra in (("window", {"window": 128}), ("full", {}), ("block_sparse_causal", {"block": 64}),
                           ("causal", {})):
        base = _rows({"full": (1.0, 3e-7, 1.0)}).drop(columns=["pattern_label"])
        parts.append(base.assign(pattern=pattern, **extra))
    df = normalize(pd.concat(parts, ignore_index=True))
    kinds = [str(k[0]).split("(")[0] for k, _ in facet_panels(df, ["pattern_label"])]
    assert kinds == ["full", "causal", "window", "block_sparse_causal"]
    fig = make_figures(with_baseline_ratios(df))["time"]
    titles = [ax.get_title().split("(")[0] for ax in fig.axes if ax.get_visible()]
    assert [t.replace("pattern=", "") for t in titles] == kinds


# ------------------------------------------------------------------ accuracy against cost
def test_cases_where_nothing_ran_leave_no_empty_panel_and_columns_keep_their_length():
    df = _rows({"full": (1.0, 3e-7, 1.0), "other": (0.5, 3e-7, 1.0)})
    real = df.assign(inputs="real")
    long = real["seq_len"] == 1024  # e.g. real inputs past the model's context: every variant unsupported
    real.loc[long, "status"], real.loc[long, "time_ms_median"] = "unsupported", np.nan
    both = normalize(pd.concat([df.assign(inputs="gaussian"), real], ignore_index=True))
    fig = plot_pareto(both, facets=["inputs"])
    shown = [(i, ax.get_title()) for i, ax in enumerate(fig.axes) if ax.get_visible()]
    assert len(shown) == 5 and all(t.endswith(f"N={n}") for (i, t), n in zip(shown, (256, 512, "1k", 256, 512)))
    assert [i % 3 for i, _ in shown] == [0, 1, 2, 0, 1]  # the real row's N=256 and 512 sit under gaussian's
    one = plot_vs_seq_len(normalize(both[both["seq_len"] == 1024]), "time_ms_median", "ms", "t", facets=["inputs"])
    assert sum(ax.get_visible() for ax in one.axes) == 1  # the all-unsupported panel is not drawn



def test_pareto_front_ties_round_off_errors_and_small_differences():
    pts = pd.DataFrame({"t": [1.0, 2.0, 3.0, 4.0], "e": [3e-7, 2e-7, 0.50, 0.49]})
    assert list(pareto_front(pts, "t", "e").index) == [0, 1]  # strict: 2e-7 < 3e-7 is "better"
    assert list(pareto_front(pts, "t", "e", floor=6e-7).index) == [0]  # both within round-off: the faster
    approx = pd.DataFrame({"t": [1.0, 2.0], "e": [0.50, 0.495]})
    assert list(pareto_front(approx, "t", "e", rel_tol=0.02).index) == [0]  # 1% better is the same error


def test_pareto_plot_rings_the_faster_of_two_exact_kernels_only():
    df = _rows({"full": (1.0, 3.1e-7, 1.0), "fast": (0.4, 3.3e-7, 1.0), "apx": (0.1, 0.7, 1.0)}, lengths=(256,))
    fig = plot_pareto(df, facets=[])
    ax = fig.axes[0]
    rings = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "none" and ln.get_markersize() > 10]
    ringed_x = sorted(float(x) for ln in rings for x in ln.get_xdata())
    assert ringed_x == pytest.approx([100.0, 400.0])  # apx (fastest) and fast; full ties with fast on error
    assert ax.get_xlabel() == "median time (µs, log)"
    assert any(t.startswith("textbook attention") for t in _labels(fig))


# ------------------------------------------------------------------ report.md
def test_at_a_glance_ranks_exact_variants_and_lists_approximations_apart():
    df = with_baseline_ratios(_rows({"full": (1.0, 3e-7, 1.0), "flash": (0.5, 3e-7, 1.0),
                                     "linear": (0.1, 0.78, 1.0), "slowapx": (4.0, 0.5, 1.0)}))
    table = at_a_glance(summary_table(df), [], approximate_variants(df))
    row = table.iloc[0]
    assert row["fastest exact"].startswith("flash 8 ms (2x faster than full)")
    assert row["approximations (error vs exact)"] == ("linear 1.6 ms (10x faster than full), err 0.78; "
                                                      "slowapx 64 ms (4x slower than full), err 0.5")
    assert "linear" not in row["fastest exact"] and "linear" not in row["least memory (exact)"]


def test_report_leads_with_what_ran_and_lists_skipped_pairs_once(tmp_path):
    df = _rows({"full": (1.0, 3e-7, 1.0), "linear": (0.1, 0.78, 1.0)})
    run = write_run(tmp_path, "r", df)
    env = {"environment": {"python": "3.11"}, "skipped": [
        "local_window: 3 of 3 cases: pattern=full (supported: window, window_sym)"]}
    (run / "env.json").write_text(json.dumps(env))
    md = write_report([run], tmp_path / "out", formats=()).read_text()
    head = md.split("## At a glance")[0]
    assert "**6 rows** (ok 6) on cpu-x (cpu), float32, B=1, H=8, D=64, N=256, 512, 1024, mode fwd" in head
    assert "approximate: `linear`" in head
    not_measured = md.split("## Not measured")[1].split("## ")[0]
    assert "- local\\_window: 3 of 3 cases: pattern=full (supported: window, window\\_sym)" in not_measured or \
        "- local_window: 3 of 3 cases: pattern=full (supported: window, window_sym)" in not_measured
    assert md.index("## At a glance") < md.index("## Not measured") < md.index("## Scaling")
    assert "env: skipped" not in md
