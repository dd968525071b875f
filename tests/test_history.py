"""attnbench history: steps found where they are and nowhere else, put down to the code or the machine, and the
command's files and exit codes (synthetic runs from benchmarks/history_steps.py, whose steps are known)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.history_steps import (
    CODE_STEP_RUN,
    MACHINE_STEP_RUN,
    STEPPING_VARIANT,
    build_runs,
    judge,
)
from harness.report.history import build_history, history_verdict, run_order
from harness.report.history_command import history_main, parse_step_rule
from harness.report.steps import MIN_POINTS, find_steps
from harness.store.reader import read_runs


# ---------------------------------------------------------------------------------------------- one series
def test_a_step_is_found_at_its_index_with_its_size():
    rng = np.random.default_rng(3)
    values = np.exp(0.01 * rng.standard_normal(30)) * np.where(np.arange(30) >= 12, 1.2, 1.0)
    steps = find_steps(values)
    assert [s.index for s in steps] == [12]
    assert steps[0].low < 1.2 < steps[0].high and abs(steps[0].ratio - 1.2) < 0.02
    assert steps[0].n_before == 12 and steps[0].n_after == 18


def test_noise_alone_and_one_outlier_make_no_step():
    rng = np.random.default_rng(4)
    values = np.exp(0.02 * rng.standard_normal(40))
    assert find_steps(values) == []
    values[20] *= 1.5  # one slow run is an outlier, not a change of level
    assert find_steps(values) == []


def test_a_constant_series_steps_on_a_percent_but_not_on_a_byte():
    flat = np.full(20, 1e6)
    assert find_steps(flat) == []
    assert find_steps(flat + np.where(np.arange(20) >= 10, 8, 0)) == []  # 8 bytes
    assert [s.index for s in find_steps(flat * np.where(np.arange(20) >= 10, 1.02, 1.0))] == [10]


def test_short_series_are_not_judged_and_bad_values_are_refused():
    assert find_steps([1.0, 2.0, 2.0, 2.0, 2.0][: MIN_POINTS - 1]) == []
    with pytest.raises(ValueError, match="finite and positive"):
        find_steps([1.0, float("nan")] * 4)
    assert find_steps([0.0] * 8, floor=1.0) == []


# ---------------------------------------------------------------------------------------------- a history
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("history") / "runs"
    build_runs(root)
    return root


def test_the_code_step_and_the_machine_step_are_told_apart(runs):
    hist = build_history(read_runs([runs]).frame)
    steps = hist.steps_frame()
    assert judge(steps) == dict.fromkeys(judge(steps), True), steps[["run", "variant", "cause", "ratio"]]
    code = steps[steps["cause"] == "code"]
    assert set(code["run"]) == {f"run{CODE_STEP_RUN:02d}"} and set(code["variant"]) == {STEPPING_VARIANT}
    assert (code["prev_run"] == f"run{CODE_STEP_RUN - 1:02d}").all() and code["commit"].str.len().eq(12).all()
    assert ((code["ratio_low"] > 1) & (code["ratio"] > 1.05)).all()
    machine = steps[steps["cause"] == "machine"]
    assert set(machine["run"]) == {f"run{MACHINE_STEP_RUN:02d}"}
    assert machine["yardstick_ratio"].between(1.04, 1.12).all()
    verdict = history_verdict(hist, 0.05)
    assert verdict.code == 1 and len(verdict.failing) == 2


def test_without_the_yardstick_no_step_is_put_down_to_the_machine(tmp_path):
    build_runs(tmp_path / "runs", code_step=False, yardstick=False)
    hist = build_history(read_runs([tmp_path / "runs"]).frame)
    assert {s.cause for s in hist.steps} == {"no yardstick"} and not hist.has_yardstick()
    assert history_verdict(hist, 0.05).code == 1  # nothing shows it was the machine: it fails


def test_a_machine_step_alone_is_inconclusive_and_no_step_passes(tmp_path):
    build_runs(tmp_path / "machine", code_step=False)
    verdict = history_verdict(build_history(read_runs([tmp_path / "machine"]).frame), 0.05)
    assert verdict.code == 3 and "yardstick" in verdict.reason
    build_runs(tmp_path / "flat", code_step=False, machine_step=False)
    verdict = history_verdict(build_history(read_runs([tmp_path / "flat"]).frame), 0.05)
    assert verdict.code == 0, verdict.reason


def test_runs_are_ordered_by_their_time_not_their_name():
    rows = pd.DataFrame({"run": ["b", "a", "c"], "git_commit": ["2", "1", "3"],
                         "timestamp": ["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00", ""]})
    envs = {"c": {"environment": {"timestamp": "2026-01-01T00:00:00+00:00"}}}
    assert [r.name for r in run_order(rows, envs)] == ["c", "b", "a"]
    assert [r.commit for r in run_order(rows, envs)] == ["3", "2", "1"]


# ---------------------------------------------------------------------------------------------- the command
def test_the_command_writes_its_files_and_exits_1(runs, tmp_path, capsys):
    out = tmp_path / "hist"
    assert history_main([str(runs), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"at run{CODE_STEP_RUN:02d}" in text and "machine" in text and "(exit 1)" in text
    steps = pd.read_csv(out / "steps.csv")
    assert len(steps) == 8 and set(steps["cause"]) == {"code", "machine"}
    series = pd.read_csv(out / "series.csv")
    assert len(series) == 30 * 6 and series["yardstick_ms"].notna().all()
    assert len(list((out / "plots").glob("step_*.png"))) == 2


def test_the_command_exit_codes(runs, tmp_path, capsys):
    out = ["--out", str(tmp_path / "h"), "--no-plots"]
    assert history_main([str(runs), "--fail", "step:50%", *out]) == 0
    assert "no step up by more than 50%" in capsys.readouterr().out
    assert history_main([str(runs), "--fail", "step:5", *out]) == 2
    assert "--fail='step:5' is not a valid rule (allowed: step:PERCENT%" in capsys.readouterr().err
    assert history_main([str(tmp_path / "nowhere"), *out]) == 2
    assert history_main([str(runs), "--last", "4", *out]) == 3  # 4 runs: nothing can be judged
    assert "inconclusive: no series has" in capsys.readouterr().out


def test_the_command_help(capsys):
    assert history_main(["--help"]) == 0
    assert "--fail step:PCT%" in capsys.readouterr().out


def test_parse_step_rule():
    assert parse_step_rule("step:5%") == 0.05 and parse_step_rule(" step:2.5% ") == 0.025
    for bad in ("median:5%", "step:-1%", "step:5"):
        with pytest.raises(ValueError, match="allowed: step:PERCENT%"):
            parse_step_rule(bad)
