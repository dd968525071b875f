"""What a sweep cannot run, found before any work and said once per variant (harness.run.declines)."""

from __future__ import annotations

from harness.core.registry import get_variant
from harness.run.config import plan_from_config
from harness.run.declines import find_declines, merge_reasons, plan_declines


def test_reasons_of_the_same_key_merge_into_one_part():
    text = merge_reasons(["pattern=full (supported: window, window_sym)",
                          "pattern=causal (supported: window, window_sym)",
                          "pattern=full (supported: window, window_sym)"])
    assert text == "pattern=full, causal (supported: window, window_sym)"


def test_a_reason_every_case_gives_is_the_whole_story():
    text = merge_reasons(["device=cpu (supported: cuda); pattern=window (supported: full, causal)",
                          "device=cpu (supported: cuda)"])
    assert text == "device=cpu (supported: cuda)"


def test_free_text_reasons_are_kept_whole_and_once():
    why = "mode=fwd_bwd needs a backward pass on the CPU, which FlexAttention refuses (torch 2: no backward)"
    assert merge_reasons([why, why]) == why
    assert merge_reasons(["a; b", "a"]) == "a"
    assert merge_reasons(["a", "b"]) == "a; b"


def test_a_semicolon_inside_brackets_belongs_to_its_reason():
    why = "(a decode kernel: supported q_len <= 16; prefill is another kernel's work)"
    text = merge_reasons([f"q_len=256 {why}", f"q_len=512 {why}", f"q_len=512 {why}; dtype=x (supported: y)"])
    assert text == f"q_len=256, 512 {why}; dtype=x (supported: y)"


def test_declines_of_a_plan_name_every_declined_pair_and_count_cases(tmp_path):
    cfg = {"variants": ["full", "causal", "local_window"], "pattern": ["full", "causal", "window"], "window": 4,
           "seq_len": [8, 16], "heads": 1, "head_dim": 4, "results_dir": str(tmp_path), "run_name": "d"}
    plan = plan_from_config(cfg, cuda_available=False)
    found = plan_declines(plan, False)
    assert {(c.pattern.kind, v) for c, v in found.pairs} == {
        ("full", "causal"), ("window", "causal"), ("full", "local_window"), ("causal", "local_window")}
    assert len(found.pairs) == 8 and found.count("full") == 0 and found.cases["causal"] == 6
    assert found.lines() == ["causal: 4 of 6 cases: pattern=full, window (supported: causal)",
                             "local_window: 4 of 6 cases: pattern=full, causal (supported: window, window_sym)"]


def test_cases_on_a_missing_device_are_left_to_the_sweep(tmp_path):
    cfg = {"variants": ["causal"], "pattern": "full", "device": ["cpu", "cuda"], "seq_len": 8, "heads": 1,
           "head_dim": 4, "results_dir": str(tmp_path), "run_name": "d"}
    plan = plan_from_config(cfg, cuda_available=False)
    found = find_declines(plan.cases, [get_variant("causal")], cuda_available=False)
    assert {c.device for c, _ in found.pairs} == {"cpu"} and found.cases["causal"] == 1
