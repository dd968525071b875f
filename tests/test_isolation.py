"""isolate=true: every (case, variant) in a child process; hangs, crashes, NaN, OOM and exceptions become rows."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from harness.core.case import Case
from harness.core.registry import unregister_variant
from harness.measure.runner import MeasureConfig
from harness.run.config import ConfigError, plan_from_config
from harness.run.isolate import IsolatedJob, run_isolated
from harness.run.sweep import expected_ids, run_sweep
from tests.sweep_helpers import read_records

#: Loaded by path only (never imported here), so the parent and the child register them the same way.
MISBEHAVING = Path(__file__).with_name("misbehaving_variants.py").resolve()
#: variant -> the status an isolated sweep must record for it.
EXPECTED_STATUS: dict[str, str] = {
    "t_hang": "timeout",
    "t_segv": "crashed",
    "t_exit3": "crashed",
    "t_nanout": "numerics",
    "t_alloc": "oom",
    "t_boom": "error",
}
TINY = {"seq_len": 16, "heads": 2, "head_dim": 8, "budget": 0.01, "warmup": 0, "min_runs": 1, "progress": "off",
        "mode": "fwd_bwd", "pattern": "causal"}
TIMEOUT_S = 8.0  # generous: a loaded 2-core machine; the hang costs this much once


@pytest.fixture
def misbehaving():
    """The misbehaving variants' file; afterwards they are gone (a `*` selection must never reach t_hang)."""
    import harness.core.registry as registry

    yield str(MISBEHAVING)
    for name in EXPECTED_STATUS:
        unregister_variant(name)
    registry._from_cache.pop(f"file:{MISBEHAVING}", None)


def _plan(tmp_path, run_name, **kw):
    cfg = {**TINY, "results_dir": str(tmp_path / "res"), "run_name": run_name, **kw}
    return plan_from_config(cfg, cuda_available=False)


@pytest.mark.slow
def test_one_isolated_sweep_survives_every_fault_and_keeps_the_good_rows(tmp_path, misbehaving, capsys):
    faults = sorted(EXPECTED_STATUS)
    plan = _plan(tmp_path, "iso", isolate=True, case_timeout_s=TIMEOUT_S, variants=["full", *faults],
                 variants_from=[misbehaving])
    assert set(plan.variants) == {"full", *faults}
    result = run_sweep(plan)
    rows = read_records(plan.run_dir)
    expected = expected_ids(plan)
    assert sorted(r["record_id"] for r in rows) == sorted(expected)  # one row each, none lost or doubled
    by_variant = {r["variant"]: r for r in rows}
    statuses = {v: r["status"] for v, r in by_variant.items()}
    assert statuses == {"full": "ok", **EXPECTED_STATUS}
    assert result.statuses == Counter(statuses.values())

    assert "SIGSEGV (11)" in by_variant["t_segv"]["reason"]
    assert "misbehaving_variants.py" in by_variant["t_segv"]["reason"]  # faulthandler's innermost frame
    assert "exited with code 3" in by_variant["t_exit3"]["reason"]
    assert f"case_timeout_s={TIMEOUT_S:g}" in by_variant["t_hang"]["reason"]
    assert "allocate" in by_variant["t_alloc"]["reason"]
    assert "boom from t_boom" in by_variant["t_boom"]["reason"]
    assert by_variant["t_nanout"]["reason"].startswith("output contains NaN or Inf")  # (+ "; contended: ..." if so)
    assert math.isnan(by_variant["t_nanout"]["err_rel_l2"])
    hang_ms = by_variant["t_hang"]["measure_wall_ms"]
    assert TIMEOUT_S * 1e3 <= hang_ms < (TIMEOUT_S + 5) * 1e3
    for row in rows:  # every row, misbehaving or not, is complete
        assert row["child_maxrss_bytes"] > 50e6, row["variant"]  # python + torch: far above 50 MB
        assert row["child_wall_ms"] > 0 and row["concurrent_jobs"] == 0
        assert row["seq_len"] == 16 and row["mode"] == "fwd_bwd" and row["pattern"] == "causal"
        assert row["run_id"] == "iso" and row["torch_version"] and row["timestamp"]

    # the good row is complete and agrees with the same case measured in process
    plain = _plan(tmp_path, "plain", variants=["full"])
    run_sweep(plain)
    (ref,) = read_records(plain.run_dir)
    good = by_variant["full"]
    assert "child_maxrss_bytes" not in ref
    for key in ("err_rel_l2", "err_max_abs", "grad_err_rel_l2", "dq_err_rel_l2", "dk_err_rel_l2", "dv_err_rel_l2",
                "flops", "textbook_err_rel_l2"):
        assert good[key] == pytest.approx(ref[key], rel=1e-9, abs=0), key
    assert good["err_rel_l2"] < 1e-5 and good["grad_err_rel_l2"] < 1e-4
    for key in ("time_ms_median", "time_ms_min", "setup_ms", "peak_mem_bytes", "tflops"):
        assert math.isfinite(good[key]) and good[key] > 0, key
    assert good["n_runs"] >= 1 and good["timing_method"] and good["memory_method"]

    # resuming measures nothing: failures count as done
    again = run_sweep(plan)
    assert again.measured == 0 and again.skipped == len(expected)
    summary = {k: sum(1 for s in EXPECTED_STATUS.values() if s == k) for k in set(EXPECTED_STATUS.values())}
    with capsys.disabled():
        print(f"\n[isolation] faults injected: {dict(sorted(Counter(faults).items()))} "
              f"-> statuses {dict(sorted(summary.items()))}; rows expected {len(expected)}, written {len(rows)}")


def test_a_variant_the_child_cannot_import_is_an_error_row(tmp_path):
    from harness import Variant, register_variant

    @register_variant
    class OnlyHere(Variant):  # defined in this test: the child never imports it
        name = "t_only_in_parent"
        patterns = frozenset({"full", "causal"})

        def forward(self, q, k, v, pattern):
            raise AssertionError("never runs in the parent either")

    try:
        plan = _plan(tmp_path, "r", isolate=True, case_timeout_s=60.0, variants=["t_only_in_parent"], mode="fwd")
        run_sweep(plan)
    finally:
        unregister_variant("t_only_in_parent")
    (row,) = read_records(plan.run_dir)
    assert row["status"] == "error" and "unknown variant 't_only_in_parent'" in row["reason"]


def test_unsupported_cases_are_answered_without_a_child(tmp_path, monkeypatch):
    import harness.run.isolate as iso

    monkeypatch.setattr(iso, "run_isolated", lambda *a, **k: pytest.fail("a child was started"))
    plan = _plan(tmp_path, "r", isolate=True, variants=["full"], dtype="float64", mode="fwd")
    run_sweep(plan)
    (row,) = read_records(plan.run_dir)
    assert row["status"] == "unsupported" and "dtype=float64" in row["reason"]


def test_an_input_distribution_reason_is_answered_without_a_child(tmp_path, monkeypatch):
    """``real`` inputs longer than the model's context: declined by the one support check, no child started."""
    import harness.run.isolate as iso

    monkeypatch.setattr(iso, "run_isolated", lambda *a, **k: pytest.fail("a child was started"))
    plan = _plan(tmp_path, "r", isolate=True, variants=["full"], inputs="real", seq_len=1024, heads=2,
                 head_dim=32, mode="fwd")
    run_sweep(plan)
    (row,) = read_records(plan.run_dir)
    assert row["status"] == "unsupported" and "seq_len=1024 (supported: <= 512" in row["reason"]


def test_startup_limit_and_argument_checks():
    job = IsolatedJob(case=Case(seq_len=8, heads=1, head_dim=4), variant="full", mcfg=MeasureConfig(budget_s=0.01))
    out = run_isolated(job, timeout_s=30.0, startup_timeout_s=0.05)
    assert out.measurement.status == "timeout" and out.exit == "startup_timeout"
    assert "did not start within 0.05 s" in out.measurement.reason
    assert out.returncode == -9
    for bad in (0, -1.0, math.nan, "5", True):
        with pytest.raises(ValueError, match="timeout_s="):
            run_isolated(job, timeout_s=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("key,value,allowed", [
    ("isolate", "yes", "true or false"), ("isolate", 1, "true or false"), ("case_timeout_s", 0, "> 0"),
    ("case_timeout_s", -5, "> 0"), ("case_timeout_s", math.inf, "> 0"), ("case_timeout_s", "10", "> 0"),
])
def test_bad_isolation_keys_are_config_errors(tmp_path, key, value, allowed):
    with pytest.raises(ConfigError) as info:
        _plan(tmp_path, "r", **{key: value})
    assert key in str(info.value) and allowed in str(info.value)


def test_isolation_keys_defaults(tmp_path):
    plan = _plan(tmp_path, "r")
    assert plan.isolate is False and plan.case_timeout_s == 600.0
    plan = _plan(tmp_path, "r", isolate=True, case_timeout_s=3)
    assert plan.isolate is True and plan.case_timeout_s == 3.0
