"""Registry behaviour: wildcards, sorting, unknown and duplicate names, input validation errors."""

from __future__ import annotations

import pytest
import torch

from harness import Case, Pattern, Variant, get_variant, list_variants, register_variant
from harness.core.registry import select_variants, unregister_variant


def test_list_is_sorted_and_filters_with_wildcards():
    names = list_variants()
    assert "full" in names
    assert list_variants("ful*") == ["full"]
    assert list_variants("no_such_*") == []
    assert names == sorted(names)


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown variant 'nope' \(known: .*full"):
        get_variant("nope")
    with pytest.raises(ValueError, match="matches no variant"):
        select_variants(["full", "zzz*"])


def test_bang_entries_remove_variants_from_the_selection():
    everything = select_variants(["*"])
    assert select_variants(["*", "!flex"]) == [n for n in everything if n != "flex"]
    assert select_variants(["!sdpa_*", "*"]) == [n for n in everything if not n.startswith("sdpa_")]
    with pytest.raises(ValueError, match="matches no variant"):
        select_variants(["*", "!zzz*"])
    with pytest.raises(ValueError, match="selects nothing"):
        select_variants(["full", "!full"])


def test_duplicate_name_is_refused():
    @register_variant
    class Once(Variant):
        name = "test_dup_once"
        description = "x"

    try:
        with pytest.raises(ValueError, match="already registered"):

            @register_variant
            class Twice(Variant):
                name = "test_dup_once"
                description = "y"
    finally:
        unregister_variant("test_dup_once")


def test_reasons_name_the_value_and_what_is_allowed():
    class Narrow(Variant):
        name = "narrow"
        patterns = frozenset({"full"})
        dtypes = frozenset({"float32"})
        max_head_dim = 64
        devices = frozenset({"cuda"})
        supports_backward = False

    case = Case(head_dim=128, dtype="bfloat16", pattern=Pattern("causal"), mode="fwd_bwd")
    reasons = Narrow().not_supported_reasons(case)
    text = " | ".join(reasons)
    assert "head_dim=128 (supported: <= 64)" in text
    assert "dtype=bfloat16 (supported: float32)" in text
    assert "pattern=causal (supported: full)" in text
    assert "device=cpu (supported: cuda)" in text
    assert "mode=fwd_bwd" in text
    assert len(reasons) == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_len": 0}, r"seq_len=0 is out of range \(allowed: an integer >= 1\)"),
        ({"heads": -2}, r"heads=-2 is out of range"),
        ({"batch": 1.5}, r"batch=1.5 must be a positive integer"),
        ({"dtype": "int8"}, r"dtype='int8' is not a known dtype \(allowed: float32"),
        ({"device": "tpu"}, r"device='tpu' is not a known device"),
        ({"mode": "both"}, r"mode='both' is not a known mode \(allowed: fwd, bwd, fwd_bwd\)"),
    ],
)
def test_bad_case_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Case(**kwargs)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Pattern("diagonal"), r"pattern='diagonal' is not a known pattern \(allowed: full, causal"),
        (lambda: Pattern("window", window=0), r"window=0 is out of range"),
        (lambda: Pattern("window"), r"needs window"),
        (lambda: Case(seq_len=100, pattern=Pattern("block_sparse", block=64, layout=((True,),))),
         r"block layout of shape 1x1 does not fit seq_len=100 with block=64 \(allowed: a 2x2 layout"),
    ],
)
def test_bad_patterns(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", list_variants())
def test_bad_tensors_are_rejected_with_clear_errors(name):
    v = get_variant(name)
    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match=r"q, k, v shapes must be q=\(batch, heads, q_len, head_dim\)"):
        v(q, torch.randn(1, 2, 9, 16), q)
    with pytest.raises(ValueError, match=r"kv_heads=3 does not divide heads=2"):
        kv = torch.randn(1, 3, 8, 16)
        v(q, kv, kv)
    with pytest.raises(ValueError, match=r"q_len=8 is larger than seq_len=4"):
        kv = torch.randn(1, 2, 4, 16)
        v(q, kv, kv)
    with pytest.raises(ValueError, match=r"not a floating-point dtype"):
        v(q.long(), q.long(), q.long())
    with pytest.raises(ValueError, match=r"must have 4 dims"):
        v(q[0], q[0], q[0])
    with pytest.raises(ValueError, match=r"seq_len=0 is out of range"):
        e = torch.randn(1, 2, 0, 16)
        v(e, e, e)
