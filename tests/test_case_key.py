"""One definition of a case: every parameter keys summaries, speedups, comparisons, plots and scaling fits."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from harness.core.pattern import PATTERN_KINDS, Pattern
from harness.report.build import write_report
from harness.report.compare import compare_runs
from harness.report.facets import facet_columns
from harness.report.markdown import markdown_table
from harness.report.scaling import scaling_table
from harness.report.summary import summary_table, with_baseline_ratios
from harness.report.tables import scaling_markdown
from harness.store.columns import CASE_PARAMS, PATTERN_PARAMS, case_key, case_text, pattern_label
from harness.store.reader import normalize, read_runs
from harness.store.records import RunStore

_BASE_ROW = dict(run_id="r", variant="full", status="ok", device="cpu", dtype="float32", batch=1, heads=2,
                 seq_len=256, head_dim=32, pattern="full", mode="fwd", seed=0, inputs="gaussian", threads=2)
# a value different from _BASE_ROW's (or from the default) for every parameter
_OTHER = dict(device="cuda", dtype="bfloat16", batch=2, heads=4, seq_len=512, head_dim=64, inputs="local", seed=1,
              mode="fwd_bwd", threads=1, window=128, block=32, local=2, stride=4, n_global=0, kv_heads=1, q_len=1,
              model="llama3_8b", cpu_timer="blocked_autorange", lengths="100+300", layout="padded")


def _block_rows(run_id: str = "blk") -> list[dict]:
    """A block=[32,64] run as the sweep records it: ``full`` is much slower with block=32 at N=512 (the layout
    changes what ``full`` computes), so merging the two layouts gives wrong speedups."""
    rows = []
    times = {(32, 256): (0.466, 0.339), (32, 512): (3.895, 0.591), (64, 256): (0.488, 0.418),
             (64, 512): (1.973, 0.874)}
    for (block, n), (t_full, t_bs) in times.items():
        label = f"block_sparse(block={block}, local=1, stride=0, global=1)"
        for variant, t in (("full", t_full), ("block_sparse", t_bs)):
            rows.append(dict(_BASE_ROW, run_id=run_id, variant=variant, seq_len=n, pattern="block_sparse",
                             window=None, block=block, local=1, stride=0, n_global=1, pattern_label=label,
                             time_ms_median=t, time_ms_iqr=0.01 * t, time_ms_min=0.99 * t,
                             peak_mem_bytes=1e6 * (2 if variant == "full" else 1),
                             timestamp=f"2026-11-30T12:00:{n % 60:02d}",
                             record_id=f"{variant[:4]}{block}{n}"))
    return rows


def _write_records(root, name: str, rows: list[dict]):
    store = RunStore(root / name)
    for i, row in enumerate(rows):
        store.write(f"{i:020d}", row)
    return store.run_dir


def test_block_layouts_compared_with_themselves_match_all_rows(tmp_path):
    run = _write_records(tmp_path, "blk", _block_rows())
    c = compare_runs(run, run)
    assert len(c.matched) == 8 and c.duplicates == 0
    assert c.only_base.empty and c.only_new.empty


def test_block_layouts_summary_speedups_are_same_layout_ratios(tmp_path):
    run = _write_records(tmp_path, "blk", _block_rows())
    summary = summary_table(read_runs(run).frame)
    assert len(summary) == 8
    got = {(int(r.seq_len), r.pattern_label, r.variant): r.speedup_vs_full for r in summary.itertuples()}
    bs32 = "block_sparse(block=32, local=1, stride=0, global=1)"
    bs64 = "block_sparse(block=64, local=1, stride=0, global=1)"
    assert got[(512, bs32, "block_sparse")] == pytest.approx(3.895 / 0.591)
    assert got[(512, bs64, "block_sparse")] == pytest.approx(1.973 / 0.874)
    assert got[(512, bs32, "full")] == pytest.approx(1.0) and got[(512, bs64, "full")] == pytest.approx(1.0)
    # plots and scaling split the two layouts too
    frame = with_baseline_ratios(read_runs(run).frame)
    assert facet_columns(frame) == ["pattern_label"]
    tab = scaling_table(frame, facet_columns(frame))
    assert len(tab) == 4 and set(tab["pattern_label"]) == {bs32, bs64}


def test_rows_without_a_recorded_label_get_the_same_key(tmp_path):
    """Older runs (and pytest-benchmark rows) lack ``pattern_label``: it is rebuilt from the pattern columns, so
    they still match a new run's rows."""
    rows = _block_rows()
    old = [{k: v for k, v in r.items() if k != "pattern_label"} for r in rows]
    c = compare_runs(_write_records(tmp_path, "old", old), _write_records(tmp_path, "new", rows))
    assert len(c.matched) == 8 and c.only_base.empty and c.only_new.empty


@pytest.mark.parametrize("kind", PATTERN_KINDS)
def test_pattern_label_from_columns_equals_the_patterns_own(kind):
    kw = {"window": 96} if kind.startswith("window") else {}
    if kind.startswith("block"):
        kw = {"block": 32, "local": 2, "stride": 4, "n_global": 0}
    p = Pattern(kind, **kw)
    row = {"pattern": kind, "window": p.window if kind.startswith("window") else None}
    if kind.startswith("block"):
        row.update(block=p.block, local=p.local, stride=p.stride, n_global=p.n_global)
    assert pattern_label(row) == p.label


@pytest.mark.parametrize("name", [p.name for p in CASE_PARAMS if p.name != "pattern_label"]
                         + [p.name for p in PATTERN_PARAMS])
def test_every_case_parameter_changes_the_key(name):
    base = dict(_BASE_ROW, pattern="window", window=256) if name == "window" else dict(_BASE_ROW)
    if name in ("block", "local", "stride", "n_global"):
        base.update(pattern="block_sparse", block=64, local=1, stride=0, n_global=1)
    other = dict(base, **{name: _OTHER[name]})
    a, b = normalize(pd.DataFrame([base, other]))["case_key"]
    assert a != b, name


def test_two_custom_layouts_with_one_block_size_are_two_cases():
    diag = ((True, False), (False, True))
    lower = ((True, False), (True, True))
    a, b = Pattern("block_sparse", block=32, layout=diag), Pattern("block_sparse", block=32, layout=lower)
    assert a.label != b.label and a.label == Pattern("block_sparse", block=32, layout=diag).label
    assert a.label == "block_sparse(block=32, custom layout " + a.layout_digest() + ")"
    # stable across runs and machines (compare matches cases by it): the SHA-1 of the rows as 0/1 text
    assert a.layout_digest() == hashlib.sha1(b"10/01").hexdigest()[:8] == "b9957f3c"
    rows = [dict(_BASE_ROW, pattern="block_sparse", block=32, pattern_label=p.label) for p in (a, b)]
    k1, k2 = normalize(pd.DataFrame(rows))["case_key"]
    assert k1 != k2


def test_defaults_fill_parameters_older_rows_lack():
    new = dict(_BASE_ROW)
    old = {k: v for k, v in new.items() if k not in ("inputs", "seed")}
    a, b = normalize(pd.DataFrame([new, old]))["case_key"]
    assert a == b
    assert case_key(new) == a


def test_thread_count_keys_cpu_rows_only():
    cpu = [dict(_BASE_ROW, threads=1), dict(_BASE_ROW, threads=2)]
    gpu = [dict(r, device="cuda") for r in cpu]
    keys = normalize(pd.DataFrame(cpu + gpu))["case_key"].tolist()
    assert keys[0] != keys[1] and keys[2] == keys[3]
    assert case_text(dict(_BASE_ROW, seq_len=512)) == "cpu float32 B1 H2 N512 D32 full fwd 2 threads"


def test_cpu_timer_keys_cpu_rows_only_and_older_rows_read_per_call():
    per_call, blocked = dict(_BASE_ROW, cpu_timer="per_call"), dict(_BASE_ROW, cpu_timer="blocked_autorange")
    older = dict(_BASE_ROW)  # made before the sweep wrote the column
    gpu = [dict(r, device="cuda") for r in (per_call, blocked)]
    keys = normalize(pd.DataFrame([per_call, blocked, older] + gpu))["case_key"].tolist()
    assert keys[0] != keys[1] and keys[0] == keys[2] and keys[3] == keys[4]
    assert case_text(blocked) == "cpu float32 B1 H2 N256 D32 full fwd 2 threads timer=blocked_autorange"
    assert case_text(per_call) == case_text(older) == "cpu float32 B1 H2 N256 D32 full fwd 2 threads"


def test_rows_timed_with_two_cpu_timers_are_two_cases_in_the_summary(tmp_path):
    rows = [dict(_BASE_ROW, cpu_timer=t, time_ms_median=ms, peak_mem_bytes=1e6, record_id=f"r{i}",
                 timestamp="2026-11-30T12:00:00") for i, (t, ms) in enumerate((("per_call", 1.0),
                                                                                ("blocked_autorange", 2.0)))]
    summary = summary_table(read_runs(_write_records(tmp_path, "timers", rows)).frame)
    assert sorted(summary["cpu_timer"]) == ["blocked_autorange", "per_call"]
    assert sorted(summary["time_ms_median"]) == [1.0, 2.0]


# ------------------------------------------------------------------ scaling and report numbers
def _power_rows(batch_of_n=None, mem_flat: bool = False) -> pd.DataFrame:
    rows = []
    for n in (256, 512, 1024, 2048):
        b = batch_of_n(n) if batch_of_n else 1
        rows.append(dict(_BASE_ROW, seq_len=n, batch=b, time_ms_median=1e-6 * b * n**2,
                         peak_mem_bytes=1e6 if mem_flat else 8.0 * b * n))
    return normalize(pd.DataFrame(rows))


def test_scaling_csv_numbers_are_numeric(tmp_path):
    frame = _power_rows()
    tab = scaling_table(frame, [])
    text_cols = {"variant", "fit_per", "note"}
    for col in tab.columns:
        if col not in text_cols:
            assert pd.api.types.is_numeric_dtype(tab[col]), col
    assert (tab["time_fit_seq_len_min"].iloc[0], tab["time_fit_seq_len_max"].iloc[0]) == (256, 2048)


def test_batch_changing_with_seq_len_is_fitted_per_sequence():
    frame = _power_rows(batch_of_n=lambda n: 4096 // n)  # batch x N = const
    assert facet_columns(frame) == []  # batch changes only with N: not a panel of its own
    row = scaling_table(frame, []).iloc[0]
    assert row["fit_per"] == "sequence" and "batch changes with seq_len" in row["note"]
    assert row["time_exponent"] == pytest.approx(2.0) and row["mem_exponent"] == pytest.approx(1.0)


def test_flat_memory_exponent_prints_zero():
    frame = _power_rows(mem_flat=True)
    tab = scaling_table(frame, [])
    assert tab["mem_exponent"].iloc[0] == 0.0
    md = scaling_markdown(tab)
    assert "e-1" not in md and "| 0 [0, 0] |" in md, md


def test_markdown_zero_rule():
    md = markdown_table(pd.DataFrame({"x": [0.0, 8.66e-16, 1e-3]}))
    assert "| 0 |" in md and "8.66e-16" in md  # measured values print as measured; exponents are rounded


def test_report_of_block_run_keeps_layouts_apart(tmp_path):
    run = _write_records(tmp_path, "blk", _block_rows())
    md = write_report([run], tmp_path / "out", formats=()).read_text()
    assert "pattern=block_sparse(block=32, local=1, stride=0, global=1)" in md
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(summary) == 8 and not summary.duplicated(["pattern_label", "seq_len", "variant"]).any()
    assert np.isclose(summary["speedup_vs_full"].max(), 3.895 / 0.591)
    assert not math.isclose(summary["speedup_vs_full"].max(), 3.895 / 0.339)
