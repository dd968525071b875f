"""The accelerated variants (sdpa_*, xformers, flex): how they state support, their masks, and CUDA behaviour.

CPU tests check what needs no GPU: the reasons given here, xFormers' biases and FlexAttention's block masks
against the Pattern definitions. Tests marked ``cuda`` need a GPU and skip without one, saying so; they check
that each pinned backend really runs its own kernel, that PyTorch's and xFormers' own refusals become reasons,
and that FlexAttention is compiled (no recompilation in steady state) and reports the recompile limit as an
error instead of silently running eagerly. Correctness on every pattern and shape is the conformance suite's job.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness import Case, Pattern, get_variant
from harness.core.reference import ReferenceCache, reference_attention
from harness.inputs.make import make_inputs
from harness.measure.runner import MeasureConfig, measure_variant
from harness.testing import CONFORMANCE_PATTERNS
from variants import flex as flex_mod
from variants import xformers_attn

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason=f"needs a CUDA device (torch {torch.__version__} sees none)")
SDPA_NAMES = ("sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "sdpa_math")


def _xformers_or_skip():
    state = xformers_attn.xformers_state()
    if state.ops is None:
        pytest.skip(f"xformers is not importable: {state.import_error}")
    return state


# ---------------------------------------------------------------------------------------------------- CPU
@pytest.mark.parametrize("name", ["sdpa_efficient", "sdpa_cudnn", "xformers"])
def test_cuda_only_variants_say_so_on_cpu(name):
    reasons = get_variant(name).not_supported_reasons(Case(device="cpu", dtype="bfloat16"))
    assert "device=cpu (supported: cuda)" in reasons


@pytest.mark.parametrize("name", ["sdpa_flash", "sdpa_math"])
@pytest.mark.parametrize("pattern", ["full", "causal"])
def test_cpu_sdpa_variants_run_and_refuse_sparse_patterns(name, pattern):
    v = get_variant(name)
    case = Case(batch=1, heads=2, seq_len=33, head_dim=16, pattern=Pattern(pattern))
    assert v.supports(case)
    inputs = make_inputs(case)
    out = v.prepare(case.pattern, case)(inputs.q, inputs.k, inputs.v)
    ref = reference_attention(inputs.q, inputs.k, inputs.v, case.pattern).out
    assert float((out.double() - ref).norm() / ref.norm()) < 1e-5
    window = Case(pattern=Pattern("window", window=8))
    assert any("pattern=window" in r for r in v.not_supported_reasons(window))


@pytest.mark.skipif(HAS_CUDA, reason="checks the reason given on a machine without CUDA")
@pytest.mark.parametrize("name", ["sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "sdpa_math", "xformers", "flex"])
def test_cuda_case_without_cuda_names_the_build(name):
    reasons = get_variant(name).not_supported_reasons(Case(device="cuda", dtype="bfloat16"))
    assert any("device=cuda is not available" in r and torch.__version__ in r for r in reasons), reasons


def test_xformers_biases_match_the_patterns():
    state = _xformers_or_skip()
    for pattern in (Pattern("causal"), Pattern("window", window=5), Pattern("window_sym", window=4),
                    Pattern("window", window=40)):
        for n in (1, 7, 33):
            bias = xformers_attn.xformers_bias(state.ops, pattern)
            allowed = torch.isfinite(bias.materialize((n, n), dtype=torch.float32))
            assert torch.equal(allowed, pattern.dense_mask(n)), (pattern.label, n)
    assert xformers_attn.xformers_bias(state.ops, Pattern("full")) is None
    with pytest.raises(ValueError, match="block_sparse"):
        xformers_attn.xformers_bias(state.ops, CONFORMANCE_PATTERNS[4])


def test_xformers_not_found_message_is_condensed_per_operator():
    state = _xformers_or_skip()
    q = torch.randn(1, 8, 1, 16)
    with pytest.raises(NotImplementedError) as info:
        state.ops.memory_efficient_attention(q, q, q)
    text = xformers_attn.summarize_not_found(str(info.value))
    assert text.startswith("No operator found for `memory_efficient_attention_forward`")
    assert "device=cpu (supported: {'cuda'})" in text
    assert "\n" not in text


def test_xformers_extension_failure_names_the_versions():
    state = _xformers_or_skip()
    if not state.extension_error:
        pytest.skip(f"xformers {state.version}'s extensions loaded with torch {torch.__version__}")
    assert torch.__version__ in state.extension_error and "built for PyTorch" in state.extension_error


@pytest.mark.parametrize("n", [1, 67, 97, 130, 300])
@pytest.mark.parametrize("pattern", [p for p in CONFORMANCE_PATTERNS if p.kind != "full"]
                         + [Pattern("window", window=256), Pattern("window_sym", window=130)], ids=lambda p: p.label)
def test_flex_block_mask_matches_create_block_mask(pattern, n, monkeypatch):
    from torch.nn.attention.flex_attention import create_block_mask

    monkeypatch.setattr(flex_mod, "_MASK_CHUNK_ELEMS", 128 * 160)  # forces several row chunks from N = 160 on
    ours = flex_mod.build_block_mask(pattern, n, "cpu")
    theirs = create_block_mask(flex_mod.mask_mod_for(pattern, n, "cpu"), None, None, n, n, device="cpu")
    assert torch.equal(ours.to_dense(), theirs.to_dense())
    for attr in ("kv_num_blocks", "full_kv_num_blocks", "q_num_blocks", "full_q_num_blocks"):
        assert torch.equal(getattr(ours, attr), getattr(theirs, attr)), attr
    for num, idx in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
        a, b = getattr(ours, num)[0, 0], getattr(ours, idx)[0, 0]
        c, d = getattr(theirs, num)[0, 0], getattr(theirs, idx)[0, 0]
        for row in range(a.shape[0]):
            assert sorted(b[row, : a[row]].tolist()) == sorted(d[row, : c[row]].tolist())


def test_flex_block_mask_tiles_count_the_attended_pairs():
    """The tile maps of a long window, evaluated in chunks, cover exactly the attended pairs."""
    n, w = 5000, 256
    pattern = Pattern("window", window=w)
    partial, full = flex_mod.block_tiles(pattern, n, "cpu")
    assert not (partial & full).any()
    nb = math.ceil(n / 128)
    assert full.sum() > 0 and partial.shape == (nb, nb)
    # every attended pair lies in a partial or full tile, and full tiles hold only attended pairs
    mask = pattern.dense_mask(n)
    tiles = torch.nn.functional.pad(mask, (0, nb * 128 - n, 0, nb * 128 - n)).view(nb, 128, nb, 128).sum((1, 3))
    assert torch.equal(tiles > 0, partial | full)
    assert torch.equal(tiles == 128 * 128, full)


def test_flex_refuses_backward_on_cpu_with_pytorchs_reason():
    reasons = get_variant("flex").not_supported_reasons(Case(device="cpu", mode="fwd_bwd"))
    assert len(reasons) == 1 and "does not support backward on CPU" in reasons[0], reasons
    assert get_variant("flex").supports(Case(device="cpu", mode="fwd"))


@pytest.mark.slow
def test_flex_compiles_and_runs_forward_on_cpu():
    """Two compiles on the CPU (each takes seconds): a padded window and a causal block layout."""
    v = get_variant("flex")
    for pattern, dtype, n in ((Pattern("window_sym", window=9), "bfloat16", 130),
                              (CONFORMANCE_PATTERNS[5], "float32", 67)):
        case = Case(batch=1, heads=2, seq_len=n, head_dim=32, dtype=dtype, pattern=pattern)
        inputs = make_inputs(case)
        with torch.no_grad():
            out = v.prepare(pattern, case)(inputs.q, inputs.k, inputs.v)
        ref = reference_attention(inputs.q, inputs.k, inputs.v, pattern).out
        err = float((out.double() - ref).norm() / ref.norm())
        assert err < v.tolerance(dtype), (pattern.label, dtype, err)


# ---------------------------------------------------------------------------------------------------- CUDA
def _kernel_names(fn) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(("name", "marker"), [("sdpa_flash", "flash"), ("sdpa_efficient", "fmha"),
                                              ("sdpa_cudnn", "cudnn"), ("sdpa_math", "gemm")])
def test_pinned_sdpa_backend_runs_its_own_kernel(name, marker):
    v = get_variant(name)
    case = Case(batch=2, heads=4, seq_len=512, head_dim=64, dtype="bfloat16", device="cuda", pattern=Pattern("causal"))
    reasons = v.not_supported_reasons(case)
    if reasons:
        pytest.skip(f"{name} is not supported on this GPU: {reasons}")
    inputs = make_inputs(case)
    fn = v.prepare(case.pattern, case)
    names = _kernel_names(lambda: fn(inputs.q, inputs.k, inputs.v))
    joined = " | ".join(names).lower()
    print(f"{name}: {names}")
    assert marker in joined or (marker == "gemm" and ("gemm" in joined or "softmax" in joined)), names


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", ["sdpa_flash", "sdpa_cudnn"])
def test_sdpa_refusal_becomes_pytorchs_reason(name):
    v = get_variant(name)
    case = Case(batch=1, heads=1, seq_len=64, head_dim=1024, dtype="bfloat16", device="cuda")
    reasons = v.not_supported_reasons(case)
    print(f"{name}: {reasons}")
    assert reasons and all(r.strip() for r in reasons)
    assert "head_dim=1024" in reasons[0] and "PyTorch" in reasons[0]
    fp32 = v.not_supported_reasons(Case(device="cuda", dtype="float32"))
    assert any("dtype=float32 on cuda" in r for r in fp32), fp32


@pytest.mark.cuda
@needs_cuda
def test_xformers_on_cuda_runs_or_says_why_with_versions():
    state = _xformers_or_skip()
    v = get_variant("xformers")
    case = Case(batch=1, heads=2, seq_len=256, head_dim=64, dtype="bfloat16", device="cuda",
                pattern=Pattern("window", window=32))
    reasons = v.not_supported_reasons(case)
    print(f"xformers {state.version} on torch {torch.__version__}: {reasons or 'supported'}")
    if reasons:
        assert all(r.strip() for r in reasons)
        if state.extension_error:
            assert torch.__version__ in reasons[0]
        return
    inputs = make_inputs(case)
    out = v.prepare(case.pattern, case)(inputs.q, inputs.k, inputs.v)
    ref = reference_attention(inputs.q, inputs.k, inputs.v, case.pattern).out
    assert float((out.double() - ref).norm() / ref.norm()) < v.tolerance("bfloat16")


@pytest.mark.cuda
@needs_cuda
def test_flex_steady_state_does_not_recompile():
    from torch._dynamo.utils import counters

    v = get_variant("flex")
    case = Case(batch=2, heads=4, seq_len=1000, head_dim=64, dtype="bfloat16", device="cuda",
                pattern=Pattern("window", window=128))
    inputs = make_inputs(case)
    fn = v.prepare(case.pattern, case)
    before = dict(counters["stats"])
    with torch.no_grad():
        for _ in range(3):
            out = fn(inputs.q, inputs.k, inputs.v)
    torch.cuda.synchronize()
    assert dict(counters["stats"]).get("unique_graphs", 0) == before.get("unique_graphs", 0)
    ref = reference_attention(inputs.q, inputs.k, inputs.v, case.pattern).out
    assert float((out.double() - ref).norm() / ref.norm()) < v.tolerance("bfloat16")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", [*SDPA_NAMES, "xformers", "flex"])
def test_measure_runs_each_variant_on_cuda(name):
    v = get_variant(name)
    case = Case(batch=2, heads=4, seq_len=1024, head_dim=128, dtype="bfloat16", device="cuda",
                pattern=Pattern("causal"), mode="fwd_bwd")
    m = measure_variant(v, case, make_inputs(case), ReferenceCache(), MeasureConfig(budget_s=0.05))
    print(name, m.status, m.reason, m.time_ms_median, m.err_rel_l2, m.grad_err_rel_l2)
    if m.status == "unsupported":
        assert m.reason
        return
    assert m.status == "ok", m.reason
    assert m.err_rel_l2 < v.tolerance("bfloat16") and m.grad_err_rel_l2 < v.tolerance("bfloat16", grad=True)


@pytest.mark.cuda
@needs_cuda
def test_flex_recompile_limit_is_an_error_not_an_eager_fallback(monkeypatch):
    v = get_variant("flex")
    cfg = MeasureConfig(budget_s=0.05, errors=False)
    first = Case(batch=1, heads=2, seq_len=200, head_dim=64, dtype="bfloat16", device="cuda",
                 pattern=Pattern("causal"))
    assert measure_variant(v, first, make_inputs(first), ReferenceCache(), cfg).status == "ok"
    monkeypatch.setattr(flex_mod, "RECOMPILE_LIMIT", 1)
    second = Case(batch=1, heads=2, seq_len=232, head_dim=64, dtype="bfloat16", device="cuda",
                  pattern=Pattern("causal"))
    m = measure_variant(v, second, make_inputs(second), ReferenceCache(), cfg)
    print(m.status, m.reason)
    assert m.status == "error" and "RecompileLimit" in m.reason, (m.status, m.reason)
