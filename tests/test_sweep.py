"""Config conversion and validation, and run_sweep without Hydra: statuses, resume, devices, shared inputs."""

from __future__ import annotations

import io
import math

import pytest

import harness.core.reference as reference_mod
import harness.run.outcome as outcome_mod
from harness.run.config import ConfigError, SweepConfig, plan_from_config, schema_keys
from harness.run.progress import Progress
from harness.run.sweep import expected_ids, run_sweep
from harness.store.records import RunStore
from tests.sweep_helpers import loaded_test_variants, read_records

TINY = {"seq_len": 8, "heads": 1, "head_dim": 4, "budget": 0.005, "warmup": 0, "min_runs": 1, "progress": "off"}


@pytest.fixture
def tvars(tmp_path):
    with loaded_test_variants(tmp_path) as path:
        yield path


def _plan(tmp_path, **kw):
    cfg = {**TINY, "results_dir": str(tmp_path / "res"), "run_name": "r", **kw}
    return plan_from_config(cfg, cuda_available=False)


# ---------------------------------------------------------------------------------------------------- config
def test_schema_has_type_default_and_help_for_every_key():
    keys = schema_keys()
    assert [k for k, *_ in keys] == [f for f in SweepConfig.__dataclass_fields__]
    for key, typ, _default, text in keys:
        assert typ and text, key


def test_lists_expand_into_cases_modes_adjacent_and_duplicates_removed(tmp_path):
    plan = _plan(tmp_path, seq_len=[8, 16], pattern=["full", "window"], window=[2, 4], mode=["fwd", "fwd_bwd"],
                 variants=["full"])
    # full ignores the window: 1 full + 2 windows = 3 patterns; x 2 lengths x 2 modes
    assert len(plan.cases) == 12
    assert len(set(plan.cases)) == 12
    assert [c.mode for c in plan.cases[:2]] == ["fwd", "fwd_bwd"]
    assert plan.cases[0].input_key() == plan.cases[1].input_key()
    assert plan.run_dir == (tmp_path / "res" / "r").absolute()
    assert plan.variants == ("full",)


def test_auto_device_and_tokens(tmp_path):
    assert {c.device for c in _plan(tmp_path, device="auto").cases} == {"cpu"}
    plan = plan_from_config({**TINY, "device": "auto", "run_name": "x"}, cuda_available=True, load_variants=False)
    assert {c.device for c in plan.cases} == {"cuda"}
    plan = _plan(tmp_path, tokens=64, seq_len=[8, 16, 128])
    assert [c.batch for c in plan.cases] == [8, 4, 1]


@pytest.mark.parametrize("key,value,allowed", [
    ("seq_len", 0, ">= 1"), ("heads", -1, ">= 1"), ("batch", 0, ">= 1"), ("head_dim", 0, ">= 1"),
    ("window", 0, ">= 1"), ("seq_len", "abc", "integer"), ("seq_len", [8, 0], ">= 1"),
    ("dtype", "float8", "bfloat16"), ("pattern", "diag", "block_sparse"), ("mode", "back", "fwd_bwd"),
    ("device", "tpu", "cuda"), ("budget", 0, "> 0"), ("threads", -1, ">= 0"), ("run_name", "a/b", "no '/'"),
    ("seed", -2, ">= 0"), ("seq_len", [], "non-empty"), ("cpu_timer", "fast", "per_call, blocked_autorange"),
])
def test_bad_values_name_key_value_and_allowed(tmp_path, key, value, allowed):
    with pytest.raises(ConfigError) as info:
        _plan(tmp_path, **{key: value})
    msg = str(info.value)
    assert key in msg and allowed in msg
    if value != []:
        assert str(value if not isinstance(value, list) else value[-1]) in msg


def test_cpu_timer_key_selects_the_timer_and_keeps_default_ids(tmp_path):
    from harness.measure.runner import CPU_TIMERS, MeasureConfig
    from harness.run.config import CPU_TIMER_CHOICES

    assert set(CPU_TIMER_CHOICES) == set(CPU_TIMERS) and CPU_TIMER_CHOICES[0] == MeasureConfig().cpu_timer
    default = _plan(tmp_path, run_name="d", variants=["full"], mode="fwd")
    assert default.cpu_timer == "per_call"
    blocked = _plan(tmp_path, run_name="b", variants=["full"], mode="fwd", cpu_timer="blocked_autorange")
    assert expected_ids(blocked).isdisjoint(expected_ids(default))
    run_sweep(blocked)
    run_sweep(default)
    (b_row,) = read_records(blocked.run_dir)
    (d_row,) = read_records(default.run_dir)
    assert "blocked_autorange" in b_row["timing_method"] and "blocked_autorange" not in d_row["timing_method"]
    assert {b_row["record_id"]} == expected_ids(blocked) and {d_row["record_id"]} == expected_ids(default)
    assert (b_row["cpu_timer"], d_row["cpu_timer"]) == ("blocked_autorange", "per_call")  # a case column


def test_skip_unsupported_writes_no_row_for_declined_pairs_and_says_why_once_per_variant(tmp_path):
    kw = dict(variants=["full", "causal", "local_window"], pattern=["full", "causal", "window"], window=4,
              seq_len=[8, 16], mode="fwd", progress="plain")
    plan = _plan(tmp_path, skip_unsupported=True, **kw)
    # full runs every pattern; causal only causal; local_window only window: 6 + 2 + 2 of 18 pairs
    assert plan.n_items == 10
    out = io.StringIO()
    result = run_sweep(plan, cuda_available=False, progress=Progress(plan.n_items, "plain", stream=out))
    rows = read_records(plan.run_dir)
    assert len(rows) == 10 and {r["status"] for r in rows} == {"ok"}
    assert {r["record_id"] for r in rows} == expected_ids(plan)
    assert result.not_run == 8 and result.statuses == {"ok": 10}
    text = out.getvalue()
    lines = [ln.strip() for ln in text.splitlines()]
    assert "causal: 4 of 6 cases: pattern=full, window (supported: causal)" in lines, text
    assert "local_window: 4 of 6 cases: pattern=full, causal (supported: window, window_sym)" in lines, text
    assert not any(ln.startswith("full:") for ln in lines)
    assert not any(": unsupported" in ln for ln in lines)  # no line per declined case
    assert "skipped 8 that cannot run here" in text and "[10/10]" in text
    # without the key: one unsupported row per declined pair, as before
    rows = read_records(run_sweep(_plan(tmp_path, run_name="rows", **kw), cuda_available=False).run_dir)
    assert len(rows) == 18 and sum(r["status"] == "unsupported" for r in rows) == 8


def test_rows_say_whether_the_variant_is_exact(tmp_path):
    plan = _plan(tmp_path, variants=["full", "linear"], mode="fwd")
    run_sweep(plan, cuda_available=False)
    assert {r["variant"]: r["exact"] for r in read_records(plan.run_dir)} == {"full": True, "linear": False}


def test_skip_unsupported_is_a_bool(tmp_path):
    with pytest.raises(ConfigError, match=r"skip_unsupported='yes' is not allowed \(allowed: true or false\)"):
        _plan(tmp_path, skip_unsupported="yes")


def test_unknown_variant_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"matches no variant \(known: .*full"):
        _plan(tmp_path, variants=["nope*"])


def test_unknown_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        _plan(tmp_path, seqlen=5)


# ---------------------------------------------------------------------------------------------------- statuses
def test_every_failure_becomes_a_row_and_the_sweep_goes_on(tmp_path, tvars):
    plan = _plan(tmp_path, mode=["fwd", "fwd_bwd"],
                 variants=["t_raise", "t_nan", "t_oom", "t_memerr", "t_fwdonly", "full"])
    result = run_sweep(plan, cuda_available=False)
    rows = read_records(plan.run_dir)
    assert len(rows) == 12 and result.measured == 12
    by = {(r["variant"], r["mode"]): r for r in rows}
    for mode in ("fwd", "fwd_bwd"):
        assert by["full", mode]["status"] == "ok"
        assert by["full", mode]["err_rel_l2"] < 1e-5
        assert by["t_raise", mode]["status"] == "error"
        assert "RuntimeError: boom from t_raise" in by["t_raise", mode]["reason"]
        assert by["t_nan", mode]["status"] == "numerics"
        assert by["t_oom", mode]["status"] == "oom"
        assert by["t_memerr", mode]["status"] == "oom"
    assert by["t_fwdonly", "fwd"]["status"] == "ok"
    assert by["t_fwdonly", "fwd_bwd"]["status"] == "unsupported"
    assert "mode=fwd_bwd" in by["t_fwdonly", "fwd_bwd"]["reason"]
    assert math.isnan(by["t_raise", "fwd"]["time_ms_median"])
    df = RunStore(plan.run_dir).rows()
    assert {r["record_id"] for r in df} == expected_ids(plan)
    assert (plan.run_dir / "results.csv").is_file() and (plan.run_dir / "env.json").is_file()


def test_inputs_and_baseline_made_once_per_case(tmp_path, tvars, monkeypatch):
    calls = {"inputs": 0, "ref": 0}
    real_inputs, real_ref = outcome_mod.make_inputs, reference_mod.reference_attention

    def counting_inputs(case):
        calls["inputs"] += 1
        return real_inputs(case)

    def counting_ref(*a, **k):
        calls["ref"] += 1
        return real_ref(*a, **k)

    monkeypatch.setattr(outcome_mod, "make_inputs", counting_inputs)
    monkeypatch.setattr(reference_mod, "reference_attention", counting_ref)
    plan = _plan(tmp_path, seq_len=[8, 16], variants=["full", "t_fwdonly", "t_slow"])
    monkeypatch.setenv("ATTNBENCH_TEST_SLOW_S", "0")
    run_sweep(plan, cuda_available=False)
    assert calls == {"inputs": 2, "ref": 2}


def test_truth_cost_on_every_row_of_a_case_and_said_in_the_output(tmp_path, tvars, monkeypatch):
    """baseline_ms: the seconds the case's truth took, one figure on every row of the case; a line says it when
    it took at least TRUTH_LINE_MS (0 here, so every case's line shows)."""
    import harness.run.sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "TRUTH_LINE_MS", 0.0)
    stream = io.StringIO()
    plan = _plan(tmp_path, seq_len=[8, 16], pattern="window", window=3, mode=["fwd", "fwd_bwd"],
                 variants=["full", "t_fwdonly", "chunked"])
    run_sweep(plan, cuda_available=False, progress=Progress(plan.n_items, "plain", stream=stream))
    rows = read_records(plan.run_dir)
    by_case: dict = {}
    for r in rows:
        by_case.setdefault((r["seq_len"], r["mode"]), set()).add(r["baseline_ms"])
    assert len(by_case) == 4
    for figures in by_case.values():
        assert len(figures) == 1 and next(iter(figures)) > 0
    text = stream.getvalue()
    assert text.count("truth of cpu float32 B1 H1 N16 D4 window(w=3) fwd: ") == 1, text
    assert "reference" in text and "textbook" in text and "dense" in text
    # the fwd_bwd case shares the fwd case's inputs: only the gradients are new
    assert "truth of cpu float32 B1 H1 N16 D4 window(w=3) fwd_bwd: " in text
    line = next(x for x in text.splitlines() if "N16 D4 window(w=3) fwd_bwd" in x and "truth of" in x)
    assert "textbook" not in line and "reference" in line


def test_a_cheap_truth_gets_no_console_line(tmp_path, tvars):
    """Truths under TRUTH_LINE_MS (1 s) stay out of the console: their cost is in baseline_ms and report.md."""
    stream = io.StringIO()
    plan = _plan(tmp_path, seq_len=[8], variants=["full"])
    run_sweep(plan, cuda_available=False, progress=Progress(plan.n_items, "plain", stream=stream))
    assert "truth of" not in stream.getvalue()
    assert read_records(plan.run_dir)[0]["baseline_ms"] < 1000.0


# ---------------------------------------------------------------------------------------------------- resume
def test_resume_measures_only_what_is_missing(tmp_path, tvars):
    plan = _plan(tmp_path, seq_len=[8, 16], variants=["full", "t_raise"])
    first = run_sweep(plan, cuda_available=False)
    assert (first.measured, first.skipped) == (4, 0)
    stamps = {r["record_id"]: r["timestamp"] for r in read_records(plan.run_dir)}
    again = run_sweep(plan, cuda_available=False)
    assert (again.measured, again.skipped) == (0, 4)
    victim = sorted(stamps)[0]
    (plan.run_dir / "records" / f"{victim}.json").unlink()
    third = run_sweep(plan, cuda_available=False)
    assert (third.measured, third.skipped) == (1, 3)
    rows = read_records(plan.run_dir)
    assert sorted(r["record_id"] for r in rows) == sorted(stamps)
    # a larger grid into the same run keeps what exists and adds the rest
    bigger = _plan(tmp_path, seq_len=[8, 16, 24], variants=["full", "t_raise"])
    fourth = run_sweep(bigger, cuda_available=False)
    assert (fourth.measured, fourth.skipped) == (2, 4)


# ---------------------------------------------------------------------------------------------------- devices
def test_cuda_alone_without_gpu_is_an_error_before_work(tmp_path):
    plan = _plan(tmp_path, device="cuda", variants=["full"])
    with pytest.raises(ConfigError, match="device=cuda: no CUDA device"):
        run_sweep(plan, cuda_available=False)
    assert not (plan.run_dir / "records").exists()


def test_cuda_cases_become_unsupported_in_a_grid(tmp_path):
    mixed = _plan(tmp_path, device=["cpu", "cuda"], variants=["full"])
    run_sweep(mixed, cuda_available=False)
    rows = {r["device"]: r for r in read_records(mixed.run_dir)}
    assert rows["cpu"]["status"] == "ok"
    assert rows["cuda"]["status"] == "unsupported" and "no CUDA device" in rows["cuda"]["reason"]
    alone = _plan(tmp_path, device="cuda", variants=["full"], run_name="g")
    run_sweep(alone, in_grid=True, cuda_available=False)  # one job of a multirun
    assert [r["status"] for r in read_records(alone.run_dir)] == ["unsupported"]


# ---------------------------------------------------------------------------------------------------- progress
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_lines_otherwise():
    tty = _Tty()
    p = Progress(3, "auto", tty)
    assert p.style == "bar"
    p.start("cpu N8 full fwd", "full")
    p.finish("cpu N8 full fwd", "full", "ok", "1 ms")
    p.start("cpu N16 full fwd", "sdpa")
    p.close()
    out = tty.getvalue()
    assert "\r" in out and "cpu N16 full fwd | sdpa | ETA" in out and "\n" not in out
    plain = io.StringIO()
    q = Progress(2, "auto", plain)
    assert q.style == "plain"
    q.start("c", "v")
    q.finish("c", "v", "ok", "1 ms")
    q.finish("c", "w", "", skipped=True)
    assert plain.getvalue().splitlines() == ["[1/2] c | v: ok 1 ms", "[2/2] c | w: exists, skipped"]


def test_inputs_that_cannot_be_made_become_rows_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = outcome_mod.make_inputs

    def failing(case):
        if case.seq_len == 8:
            raise MemoryError("cannot allocate the inputs (simulated)")
        return real(case)

    monkeypatch.setattr(outcome_mod, "make_inputs", failing)
    plan = _plan(tmp_path, seq_len=[8, 16], variants=["full"])
    run_sweep(plan, cuda_available=False)
    rows = {r["seq_len"]: r for r in read_records(plan.run_dir)}
    assert rows[8]["status"] == "oom" and "MemoryError: cannot allocate" in rows[8]["reason"]
    assert rows[16]["status"] == "ok"


def test_env_json_holds_torchs_collect_env_report_taken_once_per_run(tmp_path, monkeypatch):
    import json

    import harness.measure.env as env_mod

    monkeypatch.setenv(env_mod.ENV_CACHE_ENV, "off")
    plan = _plan(tmp_path, run_name="env", variants=["full"], mode="fwd")
    run_sweep(plan)
    doc = json.loads((plan.run_dir / "env.json").read_text())
    report = doc["collect_env"]
    assert "PyTorch version:" in report["text"] and report["seconds"] > 0
    monkeypatch.setattr(env_mod, "collect_env_report", lambda *a, **k: pytest.fail("collected twice in one run"))
    run_sweep(_plan(tmp_path, run_name="env", variants=["full"], mode="fwd", seed=1))  # resume, another case
    assert json.loads((plan.run_dir / "env.json").read_text())["collect_env"] == report


def test_collect_env_is_cached_per_machine_state_and_taken_again_when_it_changes(tmp_path, monkeypatch):
    import json

    import harness.measure.env as env_mod

    cache = tmp_path / "cache" / "collect_env.json"
    monkeypatch.setenv(env_mod.ENV_CACHE_ENV, str(cache))
    calls = []
    real = env_mod.collect_env_report
    monkeypatch.setattr(env_mod, "collect_env_report", lambda *a, **k: calls.append(1) or real(*a, **k))
    first_plan = _plan(tmp_path, run_name="first", variants=["full"], mode="fwd")
    run_sweep(first_plan)
    first = json.loads((first_plan.run_dir / "env.json").read_text())["collect_env"]
    key = env_mod.env_cache_key()
    entries = json.loads(cache.read_text())["entries"]
    assert len(calls) == 1 and "cached_from" not in first and entries[key]["text"] == first["text"]
    second_plan = _plan(tmp_path, run_name="second", variants=["full"], mode="fwd")
    run_sweep(second_plan)  # another run, same machine
    second = json.loads((second_plan.run_dir / "env.json").read_text())["collect_env"]
    assert len(calls) == 1 and second["text"] == first["text"] and second["cached_from"]
    monkeypatch.setattr(env_mod, "env_cache_key", lambda: key + "|a package installed since")
    assert "cached_from" not in env_mod.collect_env_cached() and len(calls) == 2
    monkeypatch.setattr(env_mod, "env_cache_key", lambda: key)  # the first interpreter again: still kept
    assert env_mod.collect_env_cached()["cached_from"] and len(calls) == 2
    assert len(json.loads(cache.read_text())["entries"]) == 2
    doc = json.loads(cache.read_text())
    doc["entries"][key]["taken"] = "2020-01-01T00:00:00+00:00"  # older than a day: taken again
    cache.write_text(json.dumps(doc))
    assert "cached_from" not in env_mod.collect_env_cached() and len(calls) == 3
    cache.write_text("{not json")  # a damaged cache is taken again, never an error
    assert "cached_from" not in env_mod.collect_env_cached() and len(calls) == 4
    monkeypatch.setenv(env_mod.ENV_CACHE_ENV, "off")
    assert env_mod.env_cache_path() is None and "cached_from" not in env_mod.collect_env_cached() and len(calls) == 5


def test_collect_env_report_gives_up_and_says_so(monkeypatch):
    import time

    from torch.utils import collect_env

    import harness.measure.env as env_mod

    monkeypatch.setattr(collect_env, "get_pretty_env_info", lambda: time.sleep(2) or "late")
    got = env_mod.collect_env_report(timeout_s=0.1)
    assert got["error"] == "torch.utils.collect_env did not finish within 0.1 s" and got["seconds"] < 1.5
    monkeypatch.setattr(collect_env, "get_pretty_env_info", lambda: 1 / 0)
    assert env_mod.collect_env_report()["error"].startswith("ZeroDivisionError")


def test_plain_progress_names_a_phase_only_when_it_lasts(monkeypatch):
    import time

    import harness.run.progress as progress_mod

    monkeypatch.setattr(progress_mod, "SLOW_PHASE_S", 0.05)
    out = io.StringIO()
    p = Progress(2, style="plain", stream=out)
    p.start("cpu N8 full fwd", "computing the float64 baseline")
    time.sleep(0.3)
    p.start("cpu N8 full fwd", "setup full")
    p.finish("cpu N8 full fwd", "full", "ok", "1 ms")  # quick: not named
    time.sleep(0.2)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines == ["[0/2] cpu N8 full fwd | computing the float64 baseline...",
                     "[1/2] cpu N8 full fwd | full: ok 1 ms"]


def test_collect_env_cache_keeps_the_newest_entries_only(tmp_path, monkeypatch):
    import json

    import harness.measure.env as env_mod

    cache = tmp_path / "collect_env.json"
    monkeypatch.setenv(env_mod.ENV_CACHE_ENV, str(cache))
    monkeypatch.setattr(env_mod, "collect_env_report", lambda *a, **k: {"text": "report", "seconds": 0.4})
    for i in range(env_mod.ENV_CACHE_ENTRIES + 3):
        monkeypatch.setattr(env_mod, "env_cache_key", lambda i=i: f"venv {i}")
        env_mod.collect_env_cached()
    kept = list(json.loads(cache.read_text())["entries"])
    assert kept == [f"venv {i}" for i in range(3, env_mod.ENV_CACHE_ENTRIES + 3)]
