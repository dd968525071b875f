"""The report's attention pictures: a mask per pattern measured, the worst case of every approximate variant and
sparse pattern, chosen from the rows without torch and drawn by ``attnbench show --jobs`` in a child process."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.report.build import write_report
from harness.report.pictures import MAX_FLOPS, picture_plan, row_keys
from harness.run.config import plan_from_config
from harness.run.sweep import run_sweep
from harness.store.reader import normalize, read_runs


def _row(**kw) -> dict:
    base = dict(run_id="r", variant="full", status="ok", device="cpu", dtype="float32", batch=1, heads=4,
                seq_len=256, head_dim=32, pattern="causal", window=np.nan, mode="fwd", seed=0, inputs="local",
                err_rel_l2=1e-7, approx_err_rel_l2=np.nan, exact=True, time_ms_median=1.0)
    return base | kw


def _frame(rows: list[dict]) -> pd.DataFrame:
    return normalize(pd.DataFrame(rows))


def test_one_mask_per_pattern_at_its_shortest_square_length():
    frame = _frame([_row(seq_len=512), _row(seq_len=256), _row(seq_len=1024, q_len=1),
                    _row(pattern="window", window=64, seq_len=1024, approx_err_rel_l2=0.1),
                    _row(pattern="window", window=64, seq_len=512, approx_err_rel_l2=0.2)])
    masks = [p for p in picture_plan(frame) if p.kind == "mask"]
    assert [(p.subject, p.keys["seq_len"]) for p in masks] == [("causal", 256), ("window(w=64)", 512)]
    assert [p.name for p in masks] == ["causal", "window_w64"]


def test_the_worst_case_of_each_approximation_and_sparse_pattern():
    frame = _frame([_row(variant="linear", exact=False, err_rel_l2=0.5, seq_len=256),
                    _row(variant="linear", exact=False, err_rel_l2=0.9, seq_len=512),
                    _row(variant="linear", exact=False, err_rel_l2=2.0, seq_len=1024, status="error"),
                    _row(pattern="window", window=32, approx_err_rel_l2=0.3, seq_len=512),
                    _row(pattern="window", window=32, approx_err_rel_l2=0.1, seq_len=1024),
                    _row(variant="local_window", pattern="window", window=32, approx_err_rel_l2=0.3, seq_len=512)])
    errors = [p for p in picture_plan(frame) if p.kind == "error"]
    assert [(p.subject, p.variants, p.keys["seq_len"], p.error) for p in errors] == [
        ("linear", ("linear",), 512, 0.9), ("window(w=32)", (), 512, 0.3)]
    assert all(p.note == "" for p in errors)
    job = errors[0].job()
    assert job["what"] == ["error"] and job["variants"] == ["linear"] and job["heads"] == [0, 1, 2, 3]


def test_a_worst_case_too_large_to_redraw_gives_way_to_the_worst_within_bounds():
    huge = 2**20  # rows x keys x head_dim far beyond MAX_FLOPS
    frame = _frame([_row(variant="linear", exact=False, err_rel_l2=0.99, seq_len=huge),
                    _row(variant="linear", exact=False, err_rel_l2=0.5, seq_len=512)])
    (p,) = [p for p in picture_plan(frame) if p.kind == "error"]
    assert 4.0 * 32 * 4 * 2 * 1024 * huge > MAX_FLOPS
    assert p.keys["seq_len"] == 512 and "too large to compute again here" in p.note and "0.99" in p.note


@pytest.mark.parametrize("keys", [
    {"pattern": "block_sparse_causal", "block": 16, "local": 0, "stride": 2, "n_global": 1, "seq_len": 64},
    {"pattern": "window", "window": 8, "lengths": "10+20+15", "layout": "padded"},
    {"pattern": "causal", "seq_len": 64, "q_len": 4, "heads": 4, "kv_heads": 2},
])
def test_a_row_s_keys_make_its_case_again(keys, tmp_path):
    """row_keys of a sweep's row give back the very case measured (documents, decode, block layouts)."""
    cfg = {"variants": ["full"], "heads": 2, "head_dim": 8, "budget": 0.005, "warmup": 0, "min_runs": 1,
           "progress": "off", "results_dir": str(tmp_path), "run_name": "r", **keys}
    plan = plan_from_config(cfg, cuda_available=False)
    run_sweep(plan, cuda_available=False)
    (row,) = read_runs([plan.run_dir]).frame.to_dict("records")
    again = plan_from_config({**row_keys(row), "results_dir": str(tmp_path), "run_name": "s"}, load_variants=False)
    assert again.cases == plan.cases


def test_a_custom_layout_is_not_redrawn():
    assert row_keys(_row(pattern="block_sparse", pattern_label="block_sparse(block=8, custom layout ab12cd34)")) is None


def test_the_report_draws_its_pictures_and_links_them(tmp_path):
    cfg = {"variants": ["full", "linear", "local_window"], "pattern": ["causal", "window"], "window": 16,
           "seq_len": [32, 64], "heads": 2, "head_dim": 8, "inputs": "local", "budget": 0.005, "warmup": 0,
           "min_runs": 1, "progress": "off", "results_dir": str(tmp_path), "run_name": "r", "skip_unsupported": True}
    plan = plan_from_config(cfg, cuda_available=False)
    run_sweep(plan, cuda_available=False)
    md = write_report([plan.run_dir], tmp_path / "out").read_text()
    folder = tmp_path / "out" / "plots" / "attention"
    drawn = sorted(p.name for p in folder.glob("*.png"))
    log = (folder / "show.log").read_text()
    assert drawn == ["causal_mask.png", "window_w16_mask.png", "worst_error_linear.png",
                     "worst_weight_error_linear.png", "worst_window_w16_pattern_error.png"], log
    section = md[md.index("## Attention pictures"):md.index("## Scaling")]
    for name in drawn:
        assert f"plots/attention/{name}" in section
    assert "worst case cpu float32 B1 H2 N64 D8 causal inputs=local" in section
    assert not math.isnan(float(section.split("(error ")[1].split(")")[0]))
