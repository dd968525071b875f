"""Property tests: hostile values for the config, Case, Pattern and every variant's entry point raise only ValueError.

The documented contract: bad input is a ``ValueError`` (``ConfigError`` for the config) whose message names the
value; anything else (TypeError, IndexError, a torch RuntimeError...) escaping these entry points is a bug.
Example counts are modest so the file stays quick; ``ATTNBENCH_HYPOTHESIS_EXAMPLES=2000`` runs a deeper
search.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.core.case import Case, check_qkv
from harness.core.pattern import PATTERN_KINDS, Pattern
from harness.core.registry import get_variant, list_variants
from harness.run.config import AXES, ConfigError, SweepPlan, plan_from_config

N_EXAMPLES = int(os.environ.get("ATTNBENCH_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(max_examples=N_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------------- values
ints = st.one_of(st.integers(-3, 3), st.sampled_from([0, 1, 2**31, 2**63, -(2**63), 10**30]))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-300, 1e300, 2.5]))
texts = st.one_of(st.text(max_size=6), st.sampled_from(["", "cpu", "cuda", "cuda:0", "cuda:x", "full", "causal",
                                                        "window", "fwd", "float32", "auto", "..", "a/b", "${x}"]))
scalars = st.one_of(ints, floats, texts, st.booleans(), st.none())
hostile = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(texts, scalars, max_size=2),
                    st.tuples(scalars), st.just(object()), st.just(b"\x00"))
# keys of the config other than variants_from (importing arbitrary module names has side effects of its own)
CONFIG_KEYS = [*AXES, "variants", "tokens", "budget", "warmup", "min_runs", "threads", "results_dir", "run_name",
               "progress", "isolate", "case_timeout_s", "no_such_key"]


@SETTINGS
@given(cfg=st.dictionaries(st.sampled_from(CONFIG_KEYS), hostile, max_size=3), cuda=st.booleans(),
       load=st.booleans())
def test_config_validation_raises_only_config_error(cfg, cuda, load):
    if load and "variants" not in cfg:
        cfg["variants"] = ["full"]
    try:
        plan = plan_from_config(cfg, cuda_available=cuda, load_variants=load)
    except ConfigError as exc:
        assert str(exc)
        event("ConfigError")
        return
    event("valid plan")
    assert isinstance(plan, SweepPlan) and plan.cases
    assert all(c.seq_len >= 1 and c.heads >= 1 and c.batch >= 1 for c in plan.cases)
    assert plan.budget_s > 0 and math.isfinite(plan.budget_s) and plan.case_timeout_s > 0


small_ints = st.one_of(st.integers(-2, 70), st.sampled_from([2**40]))


@SETTINGS
@given(kind=st.one_of(st.sampled_from(PATTERN_KINDS), texts, ints), window=st.one_of(st.none(), small_ints, floats,
                                                                                    texts),
       block=st.one_of(small_ints, floats, texts), local=st.one_of(small_ints, st.none()),
       stride=small_ints, n_global=small_ints)
def test_pattern_raises_only_value_error(kind, window, block, local, stride, n_global):
    try:
        p = Pattern(kind=kind, window=window, block=block, local=local, stride=stride, n_global=n_global)
    except ValueError as exc:
        assert str(exc)
        return
    assert p.kind in PATTERN_KINDS and p.label


case_values = {
    "batch": st.one_of(small_ints, floats, texts, st.none()),
    "heads": st.one_of(small_ints, st.booleans()),
    "seq_len": st.one_of(small_ints, floats),
    "head_dim": small_ints,
    "dtype": st.one_of(st.sampled_from(["float32", "bfloat16", "float16", "float64", "int8", ""]), texts,
                       st.sampled_from([torch.float32, torch.int32, torch.complex64]), st.none(), ints,
                       st.lists(texts, max_size=2)),
    "device": st.one_of(st.sampled_from(["cpu", "cuda", "cuda:1", "tpu", "cpu:0"]), texts, ints, st.none()),
    "mode": st.one_of(st.sampled_from(["fwd", "bwd", "fwd_bwd", "FWD"]), texts, ints, st.none(),
                      st.lists(texts, max_size=2)),
    "seed": st.one_of(small_ints, floats, texts),
    "inputs": st.one_of(st.sampled_from(["gaussian", "local", "real", "uniform"]), texts, ints, st.none(),
                        st.lists(texts, max_size=2)),
    "pattern": st.one_of(st.builds(Pattern, kind=st.sampled_from(["full", "causal"])),
                         st.just(Pattern("window", window=4)), st.just(Pattern("block_sparse", block=4)),
                         texts, st.none()),
}


@SETTINGS
@given(kw=st.fixed_dictionaries({}, optional=case_values))
def test_case_raises_only_value_error(kw):
    try:
        case = Case(**kw)
    except ValueError as exc:
        assert str(exc)
        return
    assert case.seq_len >= 1 and case.describe()


def test_case_unhashable_values_are_value_errors():
    """Unhashable values (``Case(dtype=[...])``) are ValueErrors, not TypeErrors (a case the property test found)."""
    for kw in ({"dtype": ["float32"]}, {"mode": ["fwd"]}, {"inputs": {"a": 1}}, {"device": ["cpu"]}):
        with pytest.raises(ValueError):
            Case(**kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- tensors
def _tensor(draw, shape, dtype):
    return torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 9)))).to(dtype)


DTYPE_CHOICES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int32, torch.bool,
                 torch.complex64]


@st.composite
def qkv(draw):
    """q, k, v: tiny plausible tensors, and in about half the draws one hostile change: a mismatched or empty
    shape, a wrong rank, a non-float or mixed dtype, or something that is not a tensor."""
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=4, max_size=4)))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float16, torch.bfloat16, torch.float64]))
    q, k, v = (_tensor(draw, shape, dtype) for _ in range(3))
    which = draw(st.integers(0, 2))
    change = draw(st.sampled_from(["none"] * 6 + ["shape", "empty", "rank", "dtype", "mixed", "object", "seq"]))
    event(f"qkv: {change}")
    tensors = [q, k, v]
    if change == "shape":
        other = tuple(draw(st.lists(st.integers(1, 6), min_size=4, max_size=4)))
        tensors[which] = _tensor(draw, other, dtype)
    elif change == "empty":
        dims = list(shape)
        dims[draw(st.integers(0, 3))] = 0
        tensors = [_tensor(draw, tuple(dims), dtype) for _ in range(3)]
    elif change == "rank":
        ndim = draw(st.sampled_from([0, 1, 3, 5]))
        tensors = [_tensor(draw, shape[:ndim] if ndim < 4 else (*shape, 2), dtype) for _ in range(3)]
    elif change == "dtype":
        bad = draw(st.sampled_from([torch.int32, torch.bool, torch.uint8, torch.complex64]))
        tensors = [torch.complex(t.float(), t.float()) if bad is torch.complex64 else t.to(bad) for t in tensors]
    elif change == "mixed":
        tensors[which] = tensors[which].to(draw(st.sampled_from(DTYPE_CHOICES[:4])))
    elif change == "object":
        tensors[which] = draw(st.sampled_from([None, 1.0, "q", shape, tensors[which].tolist()]))
    elif change == "seq":
        tensors = [t.flatten().tolist() for t in tensors]
    return tuple(tensors)


@SETTINGS
@given(tensors=qkv())
def test_check_qkv_raises_only_value_error(tensors):
    try:
        check_qkv(*tensors)
    except ValueError as exc:
        assert str(exc)


PATTERNS = [Pattern(), Pattern("causal"), Pattern("window", window=2), Pattern("window_sym", window=3),
            Pattern("block_sparse", block=2, local=0, stride=2, n_global=1),
            Pattern("block_sparse_causal", block=4, local=1, stride=0, n_global=0)]
#: flex compiles a kernel per shape and pattern (seconds each on CPU), so random shapes would take minutes; its entry
#: point is the same Variant.__call__ (check_qkv + not_supported_reasons) that the other variants exercise.
SLOW_TO_COMPILE = ("flex",)
VARIANT_NAMES = [n for n in list_variants() if n not in SLOW_TO_COMPILE]


@settings(max_examples=2 * N_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(VARIANT_NAMES), tensors=qkv(),
       pattern=st.one_of(st.sampled_from(PATTERNS), st.sampled_from([None, "causal", 3])),
       grad=st.booleans())
def test_every_variant_call_raises_only_value_error(name, tensors, pattern, grad):
    variant = get_variant(name)
    if grad:
        tensors = tuple(t.detach().requires_grad_(True) if isinstance(t, torch.Tensor) and t.is_floating_point()
                        else t for t in tensors)
    try:
        out = variant(*tensors, pattern)
    except ValueError as exc:
        assert str(exc)
        event("ValueError")
        return
    event("computed")
    q = tensors[0]
    assert isinstance(out, torch.Tensor) and out.shape == q.shape and out.dtype == q.dtype
