"""Variants on variable-length batches: what each computes or declines, the chunked plan's skipping, FlexAttention's
document block masks, and a sweep's rows (the conformance kit holds every variant to the baseline on documents)."""

from __future__ import annotations

import pytest
import torch

from harness import get_variant, list_variants
from harness.core.case import Case
from harness.core.metrics import error_stats
from harness.core.pattern import Pattern
from harness.core.reference import reference_attention
from harness.core.varlen import real_tokens
from harness.inputs.make import make_inputs
from harness.run.config import plan_from_config
from harness.run.sweep import run_sweep
from tests.sweep_helpers import read_records
from variants.chunked import build_plan
from variants.flex import build_block_mask, flex_available


def test_every_variant_computes_documents_or_says_why():
    packed = Case(heads=2, head_dim=16, lengths="20+5+9", pattern=Pattern("causal"))
    padded = Case(heads=2, head_dim=16, lengths="20+5+9", layout="padded", pattern=Pattern("causal"))
    declined = {}
    for name in list_variants():
        v = get_variant(name)
        for case in (packed, padded):
            if case.layout in v.doc_layouts:
                continue
            reasons = v.not_supported_reasons(case)
            assert any(f"layout={case.layout}" in r and "not declared" not in r for r in reasons), (name, reasons)
            declined[name] = reasons
    assert {"causal", "local_window", "linear", "split_kv"} <= set(declined)
    for name in ("full", "chunked", "flex", "sdpa_flash", "sdpa_math"):
        assert get_variant(name).doc_layouts == {"packed", "padded"}, name


def test_block_sparse_takes_packed_documents_on_block_boundaries_only():
    v = get_variant("block_sparse")
    pat = Pattern("block_sparse_causal", block=16, local=1, stride=0, n_global=1)
    assert v.supports(Case(heads=2, head_dim=16, lengths="32+16+5", pattern=pat))
    reasons = v.not_supported_reasons(Case(heads=2, head_dim=16, lengths="30+16", pattern=pat))
    assert reasons == ["lengths=30+16: packed documents must start on block boundaries for block_sparse's layout grid "
                       "(supported: every length but the last a multiple of block=16)"]


def test_sdpa_nested_math_asks_pytorch_what_jagged_tensors_take():
    v = get_variant("sdpa_nested_math")
    full = Case(heads=2, head_dim=16, lengths="20+5+9", pattern=Pattern("full"), mode="fwd_bwd")
    assert v.supports(full)
    causal = Case(heads=2, head_dim=16, lengths="20+5+9", pattern=Pattern("causal"))
    if torch.__version__.startswith("2.13"):  # what torch 2.13's jagged math path says on the CPU
        (reason,) = v.not_supported_reasons(causal)
        assert "jagged" in reason and "is_causal=True" in reason, reason
    plain = v.not_supported_reasons(Case(heads=2, head_dim=16, seq_len=32))
    assert any("variable-length batches only" in r for r in plain)


def test_chunked_visits_only_the_tiles_of_each_document():
    docs = (32, 16, 48)
    pat = Pattern("causal").with_documents(docs)
    plan = build_plan(pat, sum(docs), 16, 16, torch.float32, "cpu")
    starts = pat.doc_starts()
    visited = 0
    for q0, q1, tiles in plan.chunks:
        for t in tiles:
            doc_q = max(i for i, s in enumerate(starts[:-1]) if s <= q0)
            assert starts[doc_q] <= t.k0 and t.k1 <= starts[doc_q + 1], (q0, t)  # never another document's keys
            assert t.partial == (t.k0 == q0)  # only the diagonal tile of a causal document needs a mask
            visited += (q1 - q0) * (t.k1 - t.k0)
    assert visited == sum(d // 16 * (d // 16 + 1) // 2 for d in docs) * 16 * 16


def test_chunked_on_a_padded_batch_computes_padding_too():
    pat = Pattern("full").with_documents((40, 8), "padded")
    plan = build_plan(pat, 40, 16, 16, torch.float32, "cpu")
    keys = sum((t.k1 - t.k0) * (q1 - q0) for q0, q1, tiles in plan.chunks for t in tiles)
    assert keys == 40 * 40  # every tile of the longest document, for every row
    masks = [t.masked_out for _, _, tiles in plan.chunks for t in tiles if t.partial]
    assert masks and all(m.shape[0] == 2 for m in masks)  # one mask per batch row


@pytest.mark.skipif(flex_available() is not None, reason="FlexAttention is not available")
def test_flex_block_masks_skip_tiles_outside_documents():
    docs = (200, 56, 300)
    packed = build_block_mask(Pattern("full").with_documents(docs), sum(docs), "cpu")
    padded = build_block_mask(Pattern("full").with_documents(docs, "padded"), max(docs), "cpu")
    n_tiles = lambda bm: int(bm.kv_num_blocks.sum() + bm.full_kv_num_blocks.sum())  # noqa: E731
    # packed, on the 128-grid: [0, 200) covers blocks 0-1, [200, 256) block 1, [256, 556) blocks 2-4
    squares = {(a, b) for blocks in ((0, 1), (1,), (2, 3, 4)) for a in blocks for b in blocks}
    assert n_tiles(packed) == len(squares) == 13  # of 25 tiles
    # padded: each row its own document's square (2x2, 1x1, 3x3) of the 3x3 grid of the longest
    assert padded.kv_num_blocks.shape[0] == 3
    assert n_tiles(padded) == 4 + 1 + 9


@pytest.mark.skipif(flex_available() is not None, reason="FlexAttention is not available")
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_flex_forward_on_documents_matches_the_baseline(layout):
    v = get_variant("flex")
    case = Case(heads=4, kv_heads=2, head_dim=16, lengths="40+130+5+67", layout=layout,
                pattern=Pattern("window", window=9))
    assert v.supports(case), v.not_supported_reasons(case)
    i = make_inputs(case)
    with torch.no_grad():
        out = v.prepare(case.pattern, case)(i.q, i.k, i.v)
    ref = reference_attention(i.q, i.k, i.v, case.pattern)
    assert error_stats(real_tokens(out, case.pattern), real_tokens(ref.out, case.pattern)).rel_l2 < 2e-6


def test_a_sweep_records_documents_padding_and_time_per_real_token(tmp_path):
    cfg = {"lengths": "20+5+9+2", "layout": ["packed", "padded"], "heads": 2, "head_dim": 16, "pattern": "causal",
           "variants": ["full", "chunked", "causal"], "budget": 0.005, "warmup": 0, "min_runs": 1, "progress": "off",
           "results_dir": str(tmp_path / "res"), "run_name": "r"}
    plan = plan_from_config(cfg, cuda_available=False)
    run_sweep(plan)
    rows = {(r["variant"], r["layout"]): r for r in read_records(plan.run_dir)}
    assert len(rows) == 6
    for layout in ("packed", "padded"):
        for name in ("full", "chunked"):
            r = rows[(name, layout)]
            assert r["status"] == "ok" and r["err_rel_l2"] < 1e-5, r["reason"]
            assert (r["doc_count"], r["doc_tokens"], r["doc_len_max"], r["lengths"]) == (4, 36, 20, "20+5+9+2")
            assert r["us_per_token"] == pytest.approx(1e3 * r["time_ms_median"] / 36)
        assert "layout=" in rows[("causal", layout)]["reason"] and rows[("causal", layout)]["status"] == "unsupported"
    packed, padded = rows[("full", "packed")], rows[("full", "padded")]
    assert (packed["batch"], packed["seq_len"], padded["batch"], padded["seq_len"]) == (1, 36, 4, 20)
    assert packed["padding_fraction"] == 0 and padded["padding_fraction"] == pytest.approx(1 - 36 / 80)
    assert packed["flops"] == padded["flops"] == 4 * 2 * 16 * (210 + 15 + 45 + 3)  # real pairs only
