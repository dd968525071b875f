"""``attnbench compare``: matching, noise-aware regression verdicts, unmatched rows, rule syntax."""

from __future__ import annotations

import pytest

from harness.report.compare import FailRule, compare_main, compare_runs, parse_fail_rule
from tests.report_fixtures import synthetic_rows, write_run


@pytest.fixture
def base_rows():
    return synthetic_rows(run_id="base", heads=(4,), patterns=("full", "causal"))


def _slower(rows, factor, variant="lin", seq_len=1024):
    new = rows.copy()
    sel = (new["variant"] == variant) & (new["seq_len"] == seq_len) & (new["status"] == "ok")
    for col in ("time_ms_median", "time_ms_min"):
        new.loc[sel, col] = new.loc[sel, col] * factor
    return new, int(sel.sum())


def test_identical_runs_pass(tmp_path, base_rows, capsys):
    a = write_run(tmp_path, "a", base_rows)
    b = write_run(tmp_path, "b", base_rows.assign(run_id="b"))
    c = compare_runs(a, b)
    assert not c.failed and len(c.matched) == len(base_rows)
    assert c.only_base.empty and c.only_new.empty
    assert compare_main([str(a), str(b), "--fail", "median:5%"]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_injected_20pct_regression_fails(tmp_path, base_rows, capsys):
    new, n = _slower(base_rows, 1.20)
    a, b = write_run(tmp_path, "a", base_rows), write_run(tmp_path, "b", new)
    c = compare_runs(a, b, ["median:5%"])
    assert c.failed and len(c.failures) == n == 2  # lin at N=1024, for both patterns
    assert (c.matched["verdict"] == "slower").sum() == n
    assert compare_main([str(a), str(b), "--fail", "median:5%"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "+20.0%" in out and "lin | cpu float32 B1 H4 N1024" in out


def test_regression_within_noise_passes(tmp_path, base_rows):
    new, _ = _slower(base_rows, 1.20)
    noisy_base = base_rows.assign(time_ms_iqr=base_rows["time_ms_median"] * 0.15)
    noisy_new = new.assign(time_ms_iqr=new["time_ms_median"] * 0.15)
    a, b = write_run(tmp_path, "a", noisy_base), write_run(tmp_path, "b", noisy_new)
    c = compare_runs(a, b, ["median:5%"])
    assert not c.failed  # +20% < IQR_base + IQR_new (~33%)
    assert set(c.matched.loc[c.matched["time_change"].round(2) == 0.2, "verdict"]) == {"unsure"}


def test_threshold_respected(tmp_path, base_rows):
    new, _ = _slower(base_rows, 1.20)
    a, b = write_run(tmp_path, "a", base_rows), write_run(tmp_path, "b", new)
    assert not compare_runs(a, b, ["median:25%"]).failed
    assert compare_runs(a, b, ["min:10%"]).failed


def test_faster_is_improvement_not_failure(tmp_path, base_rows):
    new, n = _slower(base_rows, 0.5)
    c = compare_runs(write_run(tmp_path, "a", base_rows), write_run(tmp_path, "b", new))
    assert not c.failed and (c.matched["verdict"] == "faster").sum() == n


def test_memory_rule(tmp_path, base_rows):
    new = base_rows.copy()
    sel = (new["variant"] == "full") & (new["seq_len"] == 512)
    new.loc[sel, "peak_mem_bytes"] *= 1.5
    a, b = write_run(tmp_path, "a", base_rows), write_run(tmp_path, "b", new)
    assert not compare_runs(a, b, ["median:5%"]).failed
    c = compare_runs(a, b, ["median:5%", "mem:10%"])
    assert c.failed and all("mem" in f for f in c.failures)
    assert any("+50.0%" in f for f in c.failures) and len(c.failures) == int(sel.sum())


def test_ok_to_failure_is_a_regression(tmp_path, base_rows):
    new = base_rows.copy()
    sel = (new["variant"] == "full") & (new["seq_len"] == 256)
    new.loc[sel, "status"] = "oom"
    new.loc[sel, "reason"] = "CUDA out of memory"
    c = compare_runs(write_run(tmp_path, "a", base_rows), write_run(tmp_path, "b", new))
    assert c.failed and any("ok -> oom (CUDA out of memory)" in f for f in c.failures)


def test_unmatched_rows_listed(tmp_path, base_rows, capsys):
    new = base_rows[base_rows["seq_len"] != 4096]
    extra = base_rows[base_rows["seq_len"] == 256].assign(variant="newcomer")
    import pandas as pd

    new = pd.concat([new, extra])
    a, b = write_run(tmp_path, "a", base_rows), write_run(tmp_path, "b", new)
    c = compare_runs(a, b)
    assert len(c.only_base) == int((base_rows["seq_len"] == 4096).sum())
    assert set(c.only_new["variant"]) == {"newcomer"}
    assert compare_main([str(a), str(b)]) == 0
    out = capsys.readouterr().out  # unmatched rows are counted, not listed
    assert "only in BASE: 8 row(s), not compared (--all lists them)" in out and "only in NEW: 2 row(s)" in out
    assert "newcomer" not in out
    assert compare_main([str(a), str(b), "--all"]) == 0
    out = capsys.readouterr().out
    assert "only in BASE (8 rows" in out and "only in NEW (2 rows" in out and "newcomer" in out


@pytest.mark.parametrize("text,want", [("median:5%", FailRule("median", 0.05)), ("mem:12.5%", FailRule("mem", 0.125)),
                                       ("min:0%", FailRule("min", 0.0))])
def test_parse_fail_rule(text, want):
    assert parse_fail_rule(text) == want


@pytest.mark.parametrize("text", ["median:5", "median5%", "mean:5%", ":5%", "median:-5%", "median:abc%", ""])
def test_bad_fail_rule_is_clear(text, tmp_path, base_rows, capsys):
    with pytest.raises(ValueError, match="--fail=") as exc:
        parse_fail_rule(text)
    assert "allowed" in str(exc.value)
    a = write_run(tmp_path, "a", base_rows)
    assert compare_main([str(a), str(a), "--fail", text]) == 2
    err = capsys.readouterr().err
    assert repr(text) in err and "allowed" in err


def test_missing_run_is_clear(tmp_path, capsys):
    assert compare_main([str(tmp_path / "x"), str(tmp_path / "y")]) == 2
    assert "does not exist" in capsys.readouterr().err
