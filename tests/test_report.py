"""Report tests: files written, every variant and status on every plot and in the tables, fitted slopes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.report.build import default_out_dir, report_main, write_report
from harness.report.draw.style import FAILURE_GID, STATUS_MARKERS, variant_colors
from harness.report.facets import facet_columns
from harness.report.figures import make_figures
from harness.report.markdown import markdown_table
from harness.report.plots import pareto_front, plot_pareto, plot_vs_seq_len
from harness.report.scaling import crossover_seq_len, fit_exponent, scaling_table
from harness.report.summary import summary_table, with_baseline_ratios
from harness.report.tables import pivot_markdown
from harness.store.columns import PUBLIC_COLUMNS
from harness.store.reader import normalize, read_runs
from tests.report_fixtures import LENGTHS, STATUSES_INJECTED, synthetic_rows, write_run

VARIANTS = ("full", "quad_then_oom", "lin", "brand_new_variant")
NON_OK = sorted({s for _, s, _ in STATUSES_INJECTED})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return with_baseline_ratios(normalize(synthetic_rows()))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """One full report (PNG and SVG), written through the CLI entry point."""
    root = tmp_path_factory.mktemp("runs")
    run = write_run(root, "run_a", synthetic_rows(run_id="run_a", heads=(8,), patterns=("full", "causal")))
    out = root / "out"
    assert report_main([str(run), "--out", str(out), "--svg", "--wait"]) == 0
    return out, out / "report.md"


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


# ------------------------------------------------------------------ files
def test_report_files_exist(report_dir):
    out, path = report_dir
    assert path == out / "report.md" and path.is_file()
    for name in ("results.csv", "summary.csv", "scaling.csv"):
        assert (out / name).stat().st_size > 0
    for plot in ("time", "memory", "error", "speedup", "throughput", "accuracy_vs_cost"):
        for ext in ("png", "svg"):
            f = out / "plots" / f"{plot}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert not (out / "plots" / "pct_of_peak.png").exists()  # no pct_of_peak values in CPU rows


def test_results_csv_has_public_columns_first_and_all_rows(report_dir):
    out, _ = report_dir
    res = pd.read_csv(out / "results.csv")
    assert list(res.columns[: len(PUBLIC_COLUMNS)]) == list(PUBLIC_COLUMNS)
    assert len(res) == len(synthetic_rows(heads=(8,)))
    assert "textbook_err_rel_l2" in res.columns  # extra columns kept


def test_report_md_links_plots_and_lists_everything(report_dir):
    out, path = report_dir
    md = path.read_text()
    for plot in ("time", "memory", "error", "speedup", "accuracy_vs_cost"):
        assert f"](plots/{plot}.png)" in md
    for v in VARIANTS:
        assert f"`{v}`" in md
    for s in NON_OK:
        assert f"**{s}**" in md or f"| {s} |" in md, s
    assert "## Environment" in md and "env: cpu.cores" in md  # env.json flattened into the report
    assert "## Scaling" in md


def test_summary_has_every_variant_status_and_ratios(report_dir):
    out, _ = report_dir
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["variant"]) == set(VARIANTS)
    assert set(NON_OK) <= set(summary["status"])
    full = summary[summary["variant"] == "full"]
    assert np.allclose(full["speedup_vs_full"], 1.0) and np.allclose(full["mem_ratio_vs_full"], 1.0)
    q = summary[(summary["variant"] == "quad_then_oom") & (summary["status"] == "ok")]
    assert np.allclose(q["speedup_vs_full"], 1 / 0.7)  # time 0.7x full's on the same inputs
    bad = summary[summary["status"] != "ok"]
    assert bad["speedup_vs_full"].isna().all()


# ------------------------------------------------------------------ plots
@pytest.fixture(scope="module")
def figures(frame):
    figs = make_figures(frame)
    yield figs
    for f in figs.values():
        f.clear()


DRAWN_FAILURES = [st for st in NON_OK if st != "unsupported"]


@pytest.mark.parametrize("name", ["time", "memory", "error", "speedup", "throughput", "accuracy_vs_cost"])
def test_every_variant_and_failure_on_each_plot(figures, frame, name):
    """The legend holds every variant drawn and every failure status drawn; unsupported rows are not drawn in the
    panels (report.md lists them once) and so are not in the legend either."""
    fig = figures[name]
    texts = _legend_texts(fig)
    for v in VARIANTS:
        assert any(t.startswith(v) for t in texts), (name, v, texts)
    assert not any(t.startswith("unsupported") for t in texts), texts
    if name == "accuracy_vs_cost":  # a failed row has no time: each panel names its failures in a line
        notes = " ".join(t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == FAILURE_GID)
        for st in DRAWN_FAILURES:
            assert f"({st})" in notes, (st, notes)
        assert "(unsupported)" not in notes
        return
    for st in DRAWN_FAILURES:
        assert any(t.startswith(st) for t in texts), (name, st, texts)
    # the markers are drawn, not only listed: one per failed row (unsupported rows excepted)
    n_markers = sum(len(ln.get_xdata()) for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == FAILURE_GID)
    assert n_markers == int((~frame["status"].isin(["ok", "unsupported"])).sum())


def test_failure_markers_sit_at_their_seq_len(frame):
    fig = plot_vs_seq_len(frame, "time_ms_median", "ms", "t", facets=["heads", "pattern_label"])
    oom_x = sorted({float(x) for ax in fig.axes for ln in ax.get_lines()
                    if ln.get_gid() == FAILURE_GID and ln.get_marker() == STATUS_MARKERS["oom"][0]
                    for x in ln.get_xdata()})
    assert oom_x == [4096.0]


def test_colors_and_markers_consistent_across_plots(figures):
    colors = variant_colors(VARIANTS)
    assert len(set(colors.values())) == len(VARIANTS)
    markers = {}
    for name, fig in figures.items():
        leg = fig.legends[0]
        for handle, text in zip(leg.legend_handles, leg.get_texts()):
            v = text.get_text().split(" ")[0]
            if v in colors:
                assert handle.get_color() == colors[v], (name, v)
                assert markers.setdefault(v, handle.get_marker()) == handle.get_marker(), (name, v)
    assert len(set(markers.values())) == len(VARIANTS)  # the marker tells variants apart too


def test_series_lines_match_data(frame):
    fig = plot_vs_seq_len(frame, "time_ms_median", "ms", "t", facets=["heads", "pattern_label"])
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == set(VARIANTS)
    sub = frame[(frame["heads"] == 4) & (frame["pattern_label"] == "causal") & (frame["variant"] == "lin")]
    y = lines["lin"].get_ydata()
    want = sub.sort_values("seq_len")["time_ms_median"].to_numpy()
    np.testing.assert_allclose(y, want)  # NaN where unsupported/timeout: the line breaks there


def test_facets_follow_what_varies(frame):
    assert facet_columns(frame) == ["heads", "pattern_label"]
    one = frame[(frame["heads"] == 8) & (frame["pattern"] == "full")]
    assert facet_columns(one) == []
    # batch changing only with seq_len (batch x seq_len fixed) is not a facet
    fixed = one.assign(batch=(8192 // one["seq_len"]).astype(int))
    assert facet_columns(fixed) == []
    # two devices, each with its own dtype, batch and device name: one facet (device), the rest in the titles
    gpu = normalize(one.assign(device="cuda", dtype="bfloat16", batch=2, device_name="gpu", run_id="r2"))
    both = pd.concat([one, gpu], ignore_index=True)
    assert facet_columns(both) == ["device"]
    fig = plot_vs_seq_len(both, "time_ms_median", "ms", "t")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert any("device=cuda" in t and "dtype=bfloat16" in t for t in titles), titles
    # the same case in two runs (before/after): the run becomes a facet instead of mixing the two
    assert facet_columns(pd.concat([one, one.assign(run="r2")], ignore_index=True)) == ["run"]


def test_error_plot_has_textbook_reference(figures):
    assert any("textbook" in t for t in _legend_texts(figures["error"]))


def test_pct_of_peak_plot_only_when_present(frame, figures):
    assert "pct_of_peak" not in figures
    one = frame[(frame["heads"] == 8) & (frame["pattern"] == "full") & frame["seq_len"].isin([256, 512, 1024])]
    cuda = normalize(one.assign(pct_of_peak=40.0, device="cuda"))
    figs = make_figures(cuda)
    assert "pct_of_peak" in figs
    assert any(t.startswith("brand_new_variant") for t in _legend_texts(figs["pct_of_peak"]))


def test_pareto_front():
    pts = pd.DataFrame({"t": [1.0, 2.0, 3.0, 0.5, 2.5], "e": [0.5, 0.1, 0.2, 0.9, 0.05]})
    front = pareto_front(pts, "t", "e")
    assert list(front.index) == [3, 0, 1, 4]


def test_pareto_uses_approx_error_where_set(frame):
    one = frame[(frame["heads"] == 8) & (frame["pattern"] == "full")]
    bn = one[(one["variant"] == "brand_new_variant") & (one["status"] == "ok")]
    assert (bn["err_metric"] == 0.05).all()  # approx_err_rel_l2 wins over err_rel_l2 (4e-3)
    fig = plot_pareto(one, facets=[])
    ys = {float(ln.get_ydata()[0]) for ax in fig.axes for ln in ax.get_lines()
          if ln.get_color() == variant_colors(one["variant"])["brand_new_variant"] and len(ln.get_ydata()) == 1}
    assert 0.05 in ys


# ------------------------------------------------------------------ scaling
@pytest.mark.parametrize("k", [1.0, 2.0])
def test_fit_exponent_recovers_slope_exactly(k):
    n = np.array(LENGTHS, dtype=float)
    fit = fit_exponent(n, 3.0 * n**k)
    assert abs(fit.exponent - k) < 1e-9 and fit.n_points == len(LENGTHS)
    assert (fit.seq_len_min, fit.seq_len_max) == (256, 4096)


def test_fit_exponent_with_noise_within_tolerance():
    rng = np.random.default_rng(1)
    n = np.array([256, 512, 1024, 2048, 4096, 8192], dtype=float)
    for k in (1.0, 2.0):
        y = 1e-3 * n**k * np.exp(rng.normal(0, 0.08, n.size))
        assert abs(fit_exponent(n, y).exponent - k) < 0.1


def test_fit_exponent_degenerate():
    assert math.isnan(fit_exponent([512], [1.0]).exponent)
    assert math.isnan(fit_exponent([512, 1024], [np.nan, -1]).exponent)
    with pytest.raises(ValueError, match="same length"):
        fit_exponent([1, 2], [1.0])


def test_scaling_table_from_synthetic_rows(frame):
    tab = scaling_table(frame, ["heads", "pattern_label"])
    assert set(tab["variant"]) == set(VARIANTS)
    for variant, k in (("full", 2.0), ("quad_then_oom", 2.0), ("lin", 1.0), ("brand_new_variant", 1.0)):
        rows = tab[tab["variant"] == variant]
        assert (abs(rows["time_exponent"] - k) < 0.1).all(), variant
        assert (abs(rows["mem_exponent"] - k) < 0.1).all(), variant
    quad = tab[tab["variant"] == "full"]
    assert quad["note"].str.contains("quadratic-like").all()
    assert not tab[tab["variant"] == "lin"]["note"].str.contains("quadratic").any()
    lin = tab[tab["variant"] == "lin"].iloc[0]
    # 256 unsupported, 4096 timed out: not fitted; numbers in numeric columns
    assert (lin["time_fit_seq_len_min"], lin["time_fit_seq_len_max"], lin["time_fit_points"]) == (512, 2048, 3)
    assert (lin["rows"], lin["rows_ok"], lin["rows_unsupported"], lin["rows_timeout"]) == (5, 3, 1, 1)
    # an exact power law: exponent exactly k, and a zero-width interval
    assert lin["time_exponent_ci_low"] == pytest.approx(1.0) and lin["time_exponent_ci_high"] == pytest.approx(1.0)


def test_crossover(frame):
    one = frame[(frame["heads"] == 4) & (frame["pattern"] == "full")]
    # lin: 2e-3*4*N vs full 1e-6*4*N^2 -> lin faster once N > 2000; 2048 is the first length measured above
    assert crossover_seq_len(one, "lin") == 2048
    assert crossover_seq_len(one, "quad_then_oom") == 256
    assert math.isnan(crossover_seq_len(one.assign(time_ms_median=1.0), "lin"))


# ------------------------------------------------------------------ tables, reader, CLI
def test_pivot_tables_show_status_and_every_variant(frame):
    summary = summary_table(frame)
    md = pivot_markdown(summary, ["heads", "pattern_label"], "time")
    for v in VARIANTS:
        assert f"| {v}" in md or f" {v} |" in md
    for s in NON_OK:
        assert f"**{s}**" in md
    assert "(1.43x)" in md  # quad_then_oom's speedup


def test_markdown_table_escapes_and_blanks():
    md = markdown_table(pd.DataFrame({"a": ["x|y", "z"], "b": [np.nan, 1.5]}))
    assert "x\\|y" in md and "| z | 1.5 |" in md and "nan" not in md


def test_reader_accepts_csv_and_dirs_and_reports_missing(tmp_path):
    run = write_run(tmp_path, "r1", synthetic_rows(run_id="", heads=(4,), patterns=("full",)))
    (tmp_path / "other.csv").write_text((run / "results.csv").read_text())
    data = read_runs([run, tmp_path / "other.csv"])
    assert len(data.frame) == 2 * 20 and set(data.frame["run"]) == {"r1", "other"}
    assert "r1" in data.envs
    with pytest.raises(ValueError, match="does not exist"):
        read_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results under .*empty"):
        read_runs([tmp_path / "empty"])


def test_pattern_label_includes_window():
    df = normalize(pd.DataFrame({"variant": ["full"], "pattern": ["window"], "window": [256], "seq_len": [1024]}))
    assert df["pattern_label"].iloc[0] == "window(w=256)"


def test_report_main_default_out_and_errors(tmp_path, capsys, report_dir):
    assert "report.md" in capsys.readouterr().out or report_dir[1].is_file()
    assert default_out_dir([str(tmp_path)]) == tmp_path / "report"
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert report_main(["--results-dir", str(tmp_path / "none")]) == 2  # no RUN and no run under it


def test_without_full_baseline(tmp_path):
    rows = synthetic_rows(heads=(4,), patterns=("full",))
    run = write_run(tmp_path, "nofull", rows[rows["variant"] != "full"])
    md = write_report([run], tmp_path / "out", formats=()).read_text()
    assert "No `full` rows" in md


# ------------------------------------------------------------------ from real measurements
def test_report_from_measure_variant_rows(tmp_path):
    """Rows made by harness.measure.runner (tiny CPU cases) with test-only variants that are unsupported or OOM."""
    import torch

    from harness import Variant, get_variant, register_variant
    from harness.core.case import Case
    from harness.core.pattern import Pattern
    from harness.core.reference import ReferenceCache
    from harness.core.registry import unregister_variant
    from harness.inputs.make import make_inputs
    from harness.measure.runner import MeasureConfig, measure_variant

    class _ShortOnly(Variant):
        name = "test_short_only"

        def extra_reasons(self, case):
            return [f"seq_len={case.seq_len} (supported: <= 64)"] if case.seq_len > 64 else []

        def forward(self, q, k, v, pattern):
            return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1) @ v

    class _Oom(_ShortOnly):
        name = "test_oom"

        def extra_reasons(self, case):
            return []

        def forward(self, q, k, v, pattern):
            if q.shape[2] >= 128:
                raise torch.OutOfMemoryError("out of memory (simulated)")
            return super().forward(q, k, v, pattern)

    register_variant(_ShortOnly)
    register_variant(_Oom)
    try:
        rows = []
        cfg = MeasureConfig(budget_s=0.005, min_runs=3)
        for n in (32, 64, 128):
            case = Case(batch=1, heads=2, seq_len=n, head_dim=16, pattern=Pattern("full"))
            inputs, refs = make_inputs(case), ReferenceCache()
            for name in ("full", "test_short_only", "test_oom"):
                m = measure_variant(get_variant(name), case, inputs, refs, cfg)
                rows.append(dict(run_id="real", variant=name, device="cpu", dtype="float32", batch=1, heads=2,
                                 seq_len=n, head_dim=16, pattern="full", mode="fwd", seed=0, **m.as_row()))
    finally:
        unregister_variant("test_short_only")
        unregister_variant("test_oom")
    run = write_run(tmp_path, "real", pd.DataFrame(rows))
    md = write_report([run], tmp_path / "out", formats=()).read_text()
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert set(summary["status"]) == {"ok", "unsupported", "oom"}
    assert "**unsupported**" in md and "**oom**" in md
    frame = with_baseline_ratios(read_runs([run]).frame)
    fig = plot_vs_seq_len(frame, "time_ms_median", "ms", "t")
    texts = _legend_texts(fig)
    for want in ("full", "test_short_only", "test_oom", "oom"):
        assert any(t.startswith(want) for t in texts), want
    assert not any(t.startswith("unsupported") for t in texts)  # not drawn: report.md lists it once


# ------------------------------------------------------------------ speed: what is drawn, where
def test_plots_are_png_only_unless_svg_is_asked(tmp_path):
    run = write_run(tmp_path, "r", synthetic_rows(heads=(4,), patterns=("full",)))
    write_report([run], tmp_path / "out")
    plots = sorted(p.name for p in (tmp_path / "out" / "plots").iterdir() if p.is_file())
    assert plots and all(p.endswith(".png") for p in plots), plots
    pictures = sorted(p.name for p in (tmp_path / "out" / "plots" / "attention").glob("*.png"))
    assert pictures == ["full_mask.png"]  # the attention pictures: PNG too


def test_parallel_figures_equal_serial_ones(tmp_path, frame):
    from harness.report.figures import figure_names, write_figures

    serial = write_figures(frame, tmp_path / "one", workers=1)
    parallel = write_figures(frame, tmp_path / "two", workers=2)
    assert list(serial) == list(parallel) == figure_names(frame)
    for name in serial:
        assert parallel[name][0].read_bytes() == serial[name][0].read_bytes(), name  # the same pixels


def test_report_returns_before_the_plots_and_they_follow(tmp_path, capsys):
    import time

    run = write_run(tmp_path, "r", synthetic_rows(heads=(4,), patterns=("full",)))
    out = tmp_path / "out"
    assert report_main([str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in printed and "in the background" in printed
    assert "](plots/time.png)" in (out / "report.md").read_text()  # linked before it exists
    deadline = time.monotonic() + 180
    while (out / "plots" / ".pending").exists():
        assert time.monotonic() < deadline, (out / "plots" / "plots.log").read_text()
        time.sleep(0.2)
    for name in ("time", "memory", "error", "speedup", "throughput", "accuracy_vs_cost"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000, name
    assert "plots: 6 file(s)" in (out / "plots" / "plots.log").read_text()


# ------------------------------------------------------------------ truth line
def test_truth_line_sums_each_case_once_and_names_the_costliest():
    from harness.report.document import truth_line

    rows = synthetic_rows(heads=(8,), patterns=("full",))
    # the truth is computed once per case: every row of a case carries the same figure
    rows["baseline_ms"] = rows["seq_len"].map({n: float(n) for n in LENGTHS})
    rows["time_samples_ms"] = ["[1.5, 2.5]"] * len(rows)
    frame = normalize(rows)
    line = truth_line(frame)
    total = sum(LENGTHS) / 1e3
    assert f"took {total:.1f} s for {len(LENGTHS)} case(s)" in line
    assert f"most: {max(LENGTHS) / 1e3:.2f} s, N={max(LENGTHS)} full fwd" in line
    assert f"the timed samples took {4.0 * len(rows) / 1e3:.1f} s" in line


def test_truth_line_absent_without_the_column():
    from harness.report.document import truth_line

    assert truth_line(normalize(synthetic_rows(heads=(8,), patterns=("full",)))) == ""
