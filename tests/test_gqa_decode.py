"""Grouped-query heads, short queries and decode: the case axes, their refusals, the variants' declarations,
native GQA memory, split-KV merging, bytes moved and which ceiling binds, and model shapes."""

from __future__ import annotations

import math

import pytest
import torch

from harness import Case, Pattern, get_variant, list_variants
from harness.core.flops import attention_flops
from harness.core.models import MODELS, get_model
from harness.core.reference import reference_attention
from harness.core.roofline import bytes_moved, roofline_figures
from harness.inputs.make import make_inputs
from harness.measure.memory import measure_peak
from harness.run.config import ConfigError, plan_from_config
from harness.store.columns import case_key, case_text
from harness.store.records import record_key
from harness.testing import CONFORMANCE_PATTERNS, check_case


# ---------------------------------------------------------------------------------------------------- the case
def test_defaults_leave_cases_inputs_and_record_keys_as_they_were():
    case = Case(batch=2, heads=4, seq_len=33, head_dim=8, seed=3)
    assert case == Case(batch=2, heads=4, seq_len=33, head_dim=8, seed=3, kv_heads=4, q_len=33)
    assert (case.kv_heads, case.q_len, case.model) == (4, 33, "")
    assert case.q_shape == case.kv_shape == case.shape
    key = record_key(case, "full")
    assert not {"kv_heads", "q_len", "model"} & set(key)
    gen = torch.Generator().manual_seed(3)
    want = [torch.randn(case.shape, generator=gen) for _ in range(4)]
    got = make_inputs(case)
    for a, b in zip((got.q, got.k, got.v, got.grad_out), want):
        assert torch.equal(a, b)


def test_grouped_short_case_shapes_key_and_text():
    case = Case(batch=2, heads=8, kv_heads=2, seq_len=64, q_len=1, head_dim=16, pattern=Pattern("causal"),
                model="llama3_8b")
    inputs = make_inputs(case)
    assert inputs.q.shape == inputs.grad_out.shape == (2, 8, 1, 16)
    assert inputs.k.shape == inputs.v.shape == (2, 2, 64, 16)
    assert case.describe() == "cpu float32 B2 H8 KV2 N64 Q1 D16 causal fwd model=llama3_8b"
    key = record_key(case, "full")
    assert (key["kv_heads"], key["q_len"], key["model"]) == (2, 1, "llama3_8b")
    row = {"device": "cpu", "dtype": "float32", "batch": 2, "heads": 8, "kv_heads": 2, "seq_len": 64, "q_len": 1,
           "head_dim": 16, "pattern": "causal", "mode": "fwd", "threads": 1, "model": "llama3_8b"}
    assert case_text(row) == "cpu float32 B2 H8 KV2 N64 Q1 D16 causal fwd model=llama3_8b 1 threads"
    old = {**row, "kv_heads": None, "q_len": None, "model": None, "heads": 8, "seq_len": 64}
    assert case_key(old) == case_key({**row, "kv_heads": 8, "q_len": 64, "model": ""})  # older rows: defaults


@pytest.mark.parametrize("kwargs,match", [
    ({"heads": 8, "kv_heads": 3}, r"kv_heads=3 does not divide heads=8 \(allowed: 1, 2, 4, 8\)"),
    ({"kv_heads": 0}, r"kv_heads=0 is out of range"),
    ({"seq_len": 16, "q_len": 17}, r"q_len=17 is out of range \(allowed: 1 to seq_len=16, the key/value length\)"),
    ({"q_len": 0}, r"q_len=0 is out of range"),
])
def test_bad_axes_are_refused_naming_value_and_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Case(**kwargs)


def test_config_keys_models_and_refusals():
    plan = plan_from_config({"model": ["llama3_8b", "falcon_7b"], "seq_len": 64, "q_len": [1, 4], "run_name": "x",
                             "variants": ["full"]}, cuda_available=False)
    shapes = {(c.model, c.heads, c.kv_heads, c.head_dim, c.q_len) for c in plan.cases}
    assert shapes == {("llama3_8b", 32, 8, 128, 1), ("llama3_8b", 32, 8, 128, 4), ("falcon_7b", 71, 1, 64, 1),
                      ("falcon_7b", 71, 1, 64, 4)}
    plan = plan_from_config({"model": "mistral_7b", "pattern": ["causal", "window"], "seq_len": 8192, "q_len": 1,
                             "run_name": "x", "variants": ["full"]}, cuda_available=False)
    assert {c.pattern.label for c in plan.cases} == {"causal", "window(w=4096)"}  # the model's window
    with pytest.raises(ConfigError, match=r"kv_heads=3 does not divide heads=8"):
        plan_from_config({"heads": 8, "kv_heads": 3, "run_name": "x"}, cuda_available=False, load_variants=False)
    with pytest.raises(ConfigError, match=r"model='llama9' is not a known model \(allowed: llama3_8b"):
        plan_from_config({"model": "llama9", "run_name": "x"}, cuda_available=False, load_variants=False)


def test_model_shapes_are_consistent():
    for m in MODELS.values():
        assert m.heads % m.kv_heads == 0 and m.source
    assert (get_model("llama3_70b").heads, get_model("qwen2_5_7b").group, get_model("falcon_7b").kv_heads) == (64, 7, 1)
    with pytest.raises(ValueError, match="not a known model"):
        get_model("gpt5")


# ---------------------------------------------------------------------------------------------------- variants
@pytest.mark.parametrize("name", list_variants())
def test_every_variant_declares_grouped_heads_and_short_queries_in_words(name):
    v = get_variant(name)
    case = Case(heads=4, kv_heads=2, seq_len=64, q_len=3, head_dim=16, pattern=Pattern("causal"))
    reasons = " ".join(v.not_supported_reasons(case))
    if not v.supports_gqa:
        assert "kv_heads=2 with heads=4" in reasons and v.gqa_reason and "not declared" not in v.gqa_reason
    if not v.supports_q_len:
        assert "q_len=3 with seq_len=64" in reasons and v.q_len_reason and "not declared" not in v.q_len_reason


@pytest.mark.parametrize("pattern", [p for p in CONFORMANCE_PATTERNS if p.kind in
                                     ("full", "causal", "window", "window_sym")], ids=lambda p: p.kind)
@pytest.mark.parametrize("q_len", [1, 5])
def test_split_kv_merges_many_splits_exactly(pattern, q_len):
    """With chunks of 7 keys a decode case has ~20 splits, some fully masked for some rows; the merge is exact."""
    from variants.split_kv import SplitKV

    case = Case(batch=2, heads=6, kv_heads=2, seq_len=130, q_len=q_len, head_dim=16, pattern=pattern)
    inputs = make_inputs(case)
    want = reference_attention(inputs.q, inputs.k, inputs.v, pattern).out
    got = SplitKV(chunk=7).prepare(pattern, case)(inputs.q, inputs.k, inputs.v)
    assert float((got.double() - want).norm() / want.norm()) < 1e-6
    assert check_case(SplitKV(chunk=7), case).status == "pass"


def _expanded(name: str):
    """The variant run on K and V repeated to every head (what native GQA avoids)."""
    inner = get_variant(name)

    def call(fn):
        def run(q, k, v):
            g = q.shape[1] // k.shape[1]
            return fn(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1))
        return run
    return inner, call


@pytest.mark.parametrize("name", ["full", "chunked"])
def test_native_grouped_heads_use_less_memory_than_expanding_k_and_v(name):
    """Decode with 4 query heads per key/value head: the native call allocates at most 1/4 of the expanded one."""
    case = Case(batch=2, heads=8, kv_heads=2, seq_len=4096, q_len=1, head_dim=64, pattern=Pattern("causal"))
    mha = Case(batch=2, heads=8, seq_len=4096, q_len=1, head_dim=64, pattern=Pattern("causal"))
    inputs = make_inputs(case)
    inner, wrap = _expanded(name)
    native = inner.prepare(case.pattern, case)
    expanded = wrap(inner.prepare(mha.pattern, mha))
    with torch.no_grad():
        torch.testing.assert_close(native(inputs.q, inputs.k, inputs.v), expanded(inputs.q, inputs.k, inputs.v))
        peak_native = measure_peak(lambda: native(inputs.q, inputs.k, inputs.v)).peak_bytes
        peak_expanded = measure_peak(lambda: expanded(inputs.q, inputs.k, inputs.v)).peak_bytes
    kv_copy = 2 * 2 * 8 * 4096 * 64 * 4  # K and V at 8 heads, float32
    assert peak_expanded >= kv_copy
    assert peak_native <= peak_expanded / 4, (peak_native, peak_expanded)


# ---------------------------------------------------------------------------------------------------- figures
def test_flops_and_bytes_follow_the_short_queries_and_grouped_heads():
    case = Case(batch=2, heads=8, kv_heads=2, seq_len=100, q_len=10, head_dim=16, pattern=Pattern("causal"))
    pairs = sum(range(91, 101))  # bottom-right: row i attends 91 + i keys
    assert attention_flops(case) == 4.0 * 2 * 8 * 16 * pairs
    assert bytes_moved(case) == 4 * (2 * 2 * 8 * 10 * 16 + 2 * 2 * 2 * 100 * 16)
    bwd = Case(batch=2, heads=8, kv_heads=2, seq_len=100, q_len=10, head_dim=16, mode="bwd", dtype="bfloat16")
    assert bytes_moved(bwd) == 2 * (4 * 2 * 8 * 10 * 16 + 4 * 2 * 2 * 100 * 16)


def test_decode_is_memory_bound_and_prefill_compute_bound():
    decode = Case(batch=8, heads=32, kv_heads=8, seq_len=4096, q_len=1, head_dim=128, pattern=Pattern("causal"))
    prefill = Case(batch=1, heads=32, kv_heads=8, seq_len=4096, head_dim=128, pattern=Pattern("causal"))
    matmul, copy = 0.2, 10.0  # TFLOP/s, GB/s: ridge 20 FLOP/byte
    d = roofline_figures(decode, attention_flops(decode), 100.0, matmul, copy)
    p = roofline_figures(prefill, attention_flops(prefill), 100.0, matmul, copy)
    assert d["bound"] == "memory" and p["bound"] == "compute"
    assert d["ridge_intensity"] == pytest.approx(20.0)
    assert d["arith_intensity"] == pytest.approx(attention_flops(decode) / bytes_moved(decode))
    assert d["achieved_gbps"] == pytest.approx(bytes_moved(decode) / 0.1 / 1e9)
    assert d["pct_of_copy_ceiling"] == pytest.approx(100 * d["achieved_gbps"] / copy)
    none = roofline_figures(decode, attention_flops(decode), math.nan)
    assert math.isnan(none["achieved_gbps"]) and none["bound"] == ""


@pytest.mark.parametrize("preset,device,largest", [("decode", "cpu", 32768), ("gpu_decode", "cuda", 131072)])
def test_decode_presets_compose_to_decode_cases(preset, device, largest):
    from harness.run import launch

    grid = launch.build_grid([f"preset={preset}"], cuda_available=True)
    cases = [c for p in grid.plans for c in p.cases]
    assert cases and all(c.q_len == 1 and c.kv_heads == 8 and c.head_dim == 128 and c.device == device
                         for c in cases)
    assert max(c.seq_len for c in cases) == largest and {c.model for c in cases} >= {"llama3_8b"}


# ---------------------------------------------------------------------------------------------------- figures
def _decode_frame():
    import pandas as pd

    rows = []
    for n in (1024, 2048, 4096):
        for variant, gbps, status, exact in (("full", 4.0, "ok", True), ("split_kv", 8.0, "ok", True),
                                             ("block_sparse", math.nan, "unsupported", True),
                                             ("linear", 14.0, "ok", False)):
            case = Case(batch=1, heads=8, kv_heads=2, seq_len=n, q_len=1, head_dim=64, pattern=Pattern("causal"))
            # linear's useful FLOPs are exact attention's: far above the roof at decode's intensity
            flops = attention_flops(case) * (40.0 if variant == "linear" else 1.0)
            t = bytes_moved(case) / (gbps * 1e9) * 1e3 if status == "ok" else math.nan
            fig = roofline_figures(case, flops, t, 0.1, 16.0)
            rows.append(dict(run_id="r", variant=variant, status=status, device="cpu", device_name="cpu-x",
                             dtype="float32", batch=1, heads=8, kv_heads=2, seq_len=n, q_len=1, head_dim=64,
                             pattern="causal", mode="fwd", seed=0, threads=1, model="", exact=exact,
                             contended=variant == "split_kv" and n == 2048, time_ms_median=t,
                             tflops=flops / (t * 1e-3) / 1e12, matmul_ceiling_tflops=0.1, copy_ceiling_gbps=16.0,
                             err_rel_l2=0.7 if not exact else 1e-7, **fig))
    rows.append({**rows[0], "q_len": 1024, "seq_len": 1024, "variant": "chunked"})  # a square row: no decode
    return pd.DataFrame(rows)


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_decode_figures_draw_the_decode_rows_in_the_report_style():
    from harness.report import figures, roofline_plots
    from harness.report.draw import style

    frame = _decode_frame()
    assert roofline_plots.figure_names(frame) == ["decode_time", "decode_gbps", "roofline"]
    assert set(roofline_plots.FIGURES) <= set(figures.figure_names(frame))
    assert len(roofline_plots.decode_rows(frame)) == 12
    styles = style.variant_styles(frame)
    gbps = roofline_plots.FIGURE_MAKERS["decode_gbps"](frame, [], styles)
    ax = gbps.axes[0]
    assert ax.get_ylabel() == "achieved bandwidth (GB/s, log)" and ax.get_xlabel().startswith("context length")
    split = [ln for ln in ax.get_lines() if ln.get_label() == "split_kv"]
    assert [round(y, 6) for y in split[0].get_ydata()] == [8.0, 8.0, 8.0]
    assert split[0].get_color() == styles["split_kv"].color
    points = [ln for ln in ax.get_lines() if ln.get_gid() in (style.POINTS_GID, style.HOLLOW_GID)
              and ln.get_color() == styles["split_kv"].color]
    assert {ln.get_marker() for ln in points} == {styles["split_kv"].marker}
    assert sum(len(ln.get_xdata()) for ln in points if ln.get_gid() == style.HOLLOW_GID) == 1  # contended: hollow
    assert any(set(ln.get_ydata()) == {16.0} for ln in ax.get_lines())  # the measured copy ceiling
    legend = _legend_texts(gbps)
    assert "linear (approx., err 0.7)" in legend and not any(t.startswith("block_sparse") for t in legend)
    assert "block_sparse (unsupported 3)" in gbps.get_supxlabel()  # said once, not drawn
    assert "B1 H8 KV2 Q1 D64" in gbps.get_suptitle() and "1 thread" in gbps.get_suptitle()
    time = roofline_plots.FIGURE_MAKERS["decode_time"](frame, [], styles)
    assert time.axes[0].get_ylabel() == "median time (µs, log)"  # 0.26 ms to 1 ms: in µs


def test_roofline_leaves_approximations_out_and_never_draws_a_point_above_the_ceiling():
    from harness.report import roofline_plots
    from harness.report.draw import style

    frame = _decode_frame()
    styles = style.variant_styles(frame)
    roof = roofline_plots.FIGURE_MAKERS["roofline"](frame, [], styles)
    ax = roof.axes[0]
    assert ax.get_ylabel() == "achieved GFLOP/s (useful, log)"  # 0.1 TFLOP/s ceiling: a CPU's unit
    points = [ln for ln in ax.get_lines() if ln.get_gid() in (style.POINTS_GID, style.HOLLOW_GID)]
    assert sum(len(ln.get_xdata()) for ln in points) == 7  # full's 3 + split_kv's 3 + the square row; no linear
    assert {ln.get_color() for ln in points} == {styles[v].color for v in ("full", "split_kv", "chunked")}
    ceiling = max(ax.get_lines(), key=lambda ln: len(ln.get_xdata()))
    assert max(ceiling.get_ydata()) == pytest.approx(100.0)  # the matmul roof, in GFLOP/s
    for ln in points:
        for x, y in zip(ln.get_xdata(), ln.get_ydata()):
            assert y <= min(x * 16.0, 100.0) * 1.001, (ln.get_color(), x, y)
    assert "Approximations not drawn (linear)" in roof.get_supxlabel()
    legend = _legend_texts(roof)
    assert not any(t.startswith("linear") for t in legend) and "full (baseline)" in legend
    title = ax.get_title()
    assert title.startswith("cpu-x (cpu), float32, 1 thread") and "copy 16 GB/s, matmul 100 GFLOP/s" in title
    with pytest.raises(ValueError, match="not a report figure"):
        from harness.report.figures import make_figure

        make_figure("nope", frame, [], styles)
    square_only = frame[frame["q_len"] == frame["seq_len"]]
    assert roofline_plots.figure_names(square_only) == ["roofline"]


def test_a_window_or_block_layout_counts_only_the_keys_its_queries_reach():
    from harness.core.pattern import make_pattern
    from harness.core.roofline import keys_read

    window = make_pattern("window", window=128)
    blocks = make_pattern("block_sparse_causal", block=64, local=1, stride=0, n_global=1)
    assert keys_read(Case(seq_len=1024, q_len=1, pattern=Pattern("causal"))) == 1024
    assert keys_read(Case(seq_len=1024, q_len=1, pattern=window)) == 128  # a decode query's last w keys
    assert keys_read(Case(seq_len=1024, q_len=4, pattern=window)) == 131
    assert keys_read(Case(seq_len=1024, pattern=window)) == 1024  # prefill reaches every key
    assert keys_read(Case(seq_len=1024, q_len=1, pattern=blocks)) == 3 * 64  # its block, a neighbour, a global
    decode = Case(batch=2, heads=8, kv_heads=2, seq_len=1024, q_len=1, head_dim=16, pattern=window)
    assert bytes_moved(decode) == 4 * (2 * 2 * 8 * 1 * 16 + 2 * 2 * 2 * 128 * 16)
