"""Variable-length batches: the ``lengths`` grammar, the two layouts, document masks in Pattern, the baseline."""

from __future__ import annotations

import itertools

import pytest
import torch

from harness.core import varlen
from harness.core.case import Case
from harness.core.flops import attention_flops
from harness.core.pattern import Pattern
from harness.core.reference import reference_attention, textbook_attention
from harness.inputs.make import make_inputs
from harness.run.config import ConfigError, plan_from_config
from harness.store.records import record_id, record_key

PATTERNS = (
    Pattern("full"),
    Pattern("causal"),
    Pattern("window", window=3),
    Pattern("window_sym", window=2),
    Pattern("block_sparse", block=2, local=0, stride=2, n_global=1),
    Pattern("block_sparse_causal", block=2, local=1, stride=0, n_global=1),
)
DOCS = (5, 1, 7, 3)


# ---------------------------------------------------------------------------------------------------- grammar
@pytest.mark.parametrize(("given", "canonical"), [
    ("100+300+2000", "100+300+2000"),
    ([100, 300, 2000], "100+300+2000"),
    (7, "7"),
    ("fixed/len:512/n:4", "fixed/len:512/n:4"),
    ("uniform/max:1024/min:64/n:16", "uniform/min:64/max:1024/n:16"),
    ("lognormal/mean:512/max:4096/total:16384", "lognormal/mean:512/sigma:1/min:1/max:4096/total:16384"),
    ("lognormal/mean:512.0/sigma:0.5/max:4096/n:3", "lognormal/mean:512/sigma:0.5/min:1/max:4096/n:3"),
    ("zipf/a:1.5/min:16/max:4096/total:100", "zipf/a:1.5/min:16/max:4096/total:100"),
    ("text/max:4096/total:16384", "text/corpus:pydoc/min:1/max:4096/total:16384"),
])
def test_canonical_spelling(given, canonical):
    spec = varlen.parse_lengths(given)
    assert spec.text == canonical
    assert varlen.parse_lengths(spec.text) == spec  # the canonical spelling parses to itself


@pytest.mark.parametrize(("given", "says"), [
    ("lognormal/mean:512/max:4096", "exactly one of n:<documents> or total:<tokens> (got neither)"),
    ("lognormal/mean:512/max:4096/n:3/total:9", "(got n and total)"),
    ("gamma/n:3", "'gamma' is not a length distribution"),
    ("uniform/min:5/max:3/n:2", "min:5 is larger than max:3"),
    ("uniform/min:5/n:2", "uniform needs max:<value>"),
    ("uniform/min:5/max:9/n:2/foo:1", "uniform has no parameter foo"),
    ("uniform/min:5/max:9/n:x", "n:x is not a number"),
    ("uniform/min:5/max:9/n:2.5", "n:2.5 is not an integer"),
    ("uniform/min:5/max:9/n:0", "n:0 is out of range"),
    ("uniform/min:5/max:9/n", "'n' is not a name:value parameter"),
    ("text/corpus:wiki/total:10", "corpus:wiki is not a known corpus"),
    ("zipf/a:0/min:1/max:9/n:3", "a:0 is out of range"),
    ("3+0", "document length 0 is out of range"),
    ("3++4", "an empty length between '+' signs"),
    ([], "an empty list has no documents"),
    ([3, "a"], "a list of documents holds integers only"),
    (True, "not a length spec"),
])
def test_bad_specs_name_the_value_and_what_is_allowed(given, says):
    with pytest.raises(ValueError) as err:
        varlen.parse_lengths(given)
    text = str(err.value)
    assert text.startswith(f"lengths={given!r}: ") and says in text, text
    assert "(allowed: a list of lengths" in text


@pytest.mark.parametrize("spec", ["uniform/min:64/max:1024/n:16", "lognormal/mean:512/max:4096/total:16384",
                                  "zipf/a:1.5/min:16/max:4096/total:16384", "text/max:4096/total:16384",
                                  "fixed/len:100/total:1050"])
def test_draws_are_seeded_bounded_and_fill_the_total(spec):
    parsed = varlen.parse_lengths(spec)
    a, b, c = parsed.draw(0), parsed.draw(0), parsed.draw(1)
    assert a == b and (a != c or parsed.kind == "fixed")
    p = dict(parsed.params)
    lo, hi = p.get("min", p.get("len")), p.get("max", p.get("len"))
    if "total" in p:
        assert sum(a) == p["total"]
        assert all(lo <= d <= hi for d in a[:-1]) and 1 <= a[-1] <= hi  # the last document is cut to fit
    else:
        assert len(a) == p["n"] and all(lo <= d <= hi for d in a)


def test_long_tailed_draws_have_their_mean_and_a_tail():
    docs = varlen.draw_lengths("lognormal/mean:512/max:100000/n:20000", seed=3)
    mean = sum(docs) / len(docs)
    assert 480 < mean < 545  # sigma 1: the sample mean of 20000 draws is within a few percent of 512
    assert max(docs) > 8 * 512  # a long tail
    zipf = varlen.draw_lengths("zipf/a:1.5/min:16/max:4096/n:20000", seed=3)
    assert sorted(zipf)[len(zipf) // 2] < 64 and max(zipf) > 2000  # most short, a few very long


def test_text_lengths_are_token_counts_of_python_help_topics():
    from pydoc_data.topics import topics

    corpus = varlen.corpus_lengths("pydoc")
    assert len(corpus) == len(topics) >= 50
    assert corpus[sorted(topics).index("if")] == len(varlen._TOKEN.findall(topics["if"]))
    docs = varlen.draw_lengths("text/n:10", seed=0)
    assert len(set(docs)) == 10 and set(docs) <= set(corpus)  # whole documents, no repetition before the end


def test_doc_stats():
    s = varlen.doc_stats((5, 1, 7, 3), "padded")
    assert (s["doc_count"], s["doc_tokens"], s["doc_len_max"], s["doc_len_min"]) == (4, 16, 7, 1)
    assert s["doc_len_mean"] == 4.0 and s["padding_fraction"] == pytest.approx(1 - 16 / 28)
    assert varlen.doc_stats((5, 1, 7, 3), "packed")["padding_fraction"] == 0.0
    assert varlen.doc_stats((4, 4), "padded")["doc_len_cv"] == 0.0


def test_pad_and_unpad_are_inverse():
    x = torch.randn(1, 2, sum(DOCS), 3)
    p = varlen.pad(x, DOCS)
    assert p.shape == (4, 2, 7, 3) and torch.equal(p[1, :, 1:], torch.zeros(2, 6, 3))
    assert torch.equal(p[2], x[0, :, 6:13])
    assert torch.equal(varlen.unpad(p, DOCS), x)


# ---------------------------------------------------------------------------------------------------- the case
def test_lengths_set_batch_and_seq_len_and_both_layouts_hold_the_same_tokens():
    packed = Case(heads=4, kv_heads=2, head_dim=8, lengths=list(DOCS), pattern=Pattern("causal"), mode="fwd_bwd")
    padded = Case(heads=4, kv_heads=2, head_dim=8, lengths="5+1+7+3", layout="padded", pattern=Pattern("causal"),
                  mode="fwd_bwd")
    assert (packed.batch, packed.seq_len, packed.layout, packed.lengths) == (1, 16, "packed", "5+1+7+3")
    assert (padded.batch, padded.seq_len, padded.q_len) == (4, 7, 7)
    assert packed.documents == padded.documents == DOCS and packed.tokens == padded.tokens == 16
    a, b = make_inputs(packed), make_inputs(padded)
    for x, y in zip((a.q, a.k, a.v, a.grad_out), (b.q, b.k, b.v, b.grad_out)):
        assert torch.equal(varlen.unpad(y, DOCS), x)
    valid = varlen.valid_slots(DOCS)
    assert b.grad_out.transpose(1, 2)[~valid].abs().sum() == 0  # a loss over real tokens only
    assert b.k.transpose(1, 2)[~valid].abs().sum() > 0  # padding holds noise, not zeros
    assert "lengths=5+1+7+3 padded" in padded.describe()


def test_case_refusals():
    with pytest.raises(ValueError, match=r"layout='sideways' is not a known layout \(allowed: packed, padded\)"):
        Case(lengths="5+3", layout="sideways")
    with pytest.raises(ValueError, match=r"layout='padded' needs lengths=<documents>"):
        Case(layout="padded")
    with pytest.raises(ValueError, match=r"q_len=3 cannot be combined with lengths='5\+3'"):
        Case(lengths="5+3", q_len=3)
    with pytest.raises(ValueError, match="a custom block layout has one size"):
        Case(lengths="4+4", pattern=Pattern("block_sparse", block=4, layout=((True, False), (True, True))))


def test_a_case_from_tensors_of_a_padded_batch():
    pat = Pattern("causal").with_documents(DOCS, "padded")
    case = Case(batch=4, heads=2, seq_len=7, head_dim=8, pattern=pat)
    assert (case.lengths, case.layout) == ("5+1+7+3", "padded")
    with pytest.raises(ValueError, match=r"batch=1, seq_len=7 do not fit 4 padded documents \(allowed: batch=4"):
        Case(batch=1, heads=2, seq_len=7, head_dim=8, pattern=pat)


# ---------------------------------------------------------------------------------------------------- the masks
def _explicit(pattern: Pattern, docs: tuple[int, ...], layout: str) -> torch.Tensor:
    """``(rows, N, N)`` masks written out from the definition, one loop per pair (the test's own truth)."""
    base = pattern.base
    if layout == "padded":
        n = max(docs)
        out = torch.zeros(len(docs), n, n, dtype=torch.bool)
        for b, length in enumerate(docs):
            out[b, :length, :length] = base.dense_mask(length)
        return out
    n = sum(docs)
    out = torch.zeros(1, n, n, dtype=torch.bool)
    s = 0
    for length in docs:
        out[0, s:s + length, s:s + length] = base.dense_mask(length)
        s += length
    return out


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.kind)
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_masks_bounds_and_pair_counts_follow_the_definition(pattern, layout):
    p = pattern.with_documents(DOCS, layout)
    n = max(DOCS) if layout == "padded" else sum(DOCS)
    want = _explicit(pattern, DOCS, layout)
    assert torch.equal(p.batch_dense_mask(n), want)
    assert p.attended_pairs(n) == int(want.sum())
    if layout == "packed":
        assert torch.equal(p.dense_mask(n), want[0])
    else:
        with pytest.raises(ValueError, match="one mask per batch row"):
            p.mask_fn(n)
    for q0, q1 in itertools.combinations(range(n + 1), 2):
        rows_list = [None] if layout == "packed" else [None, *range(len(DOCS))]
        for row in rows_list:
            m = want[0 if row is None else row][q0:q1] if layout == "packed" or row is not None else \
                want[:, q0:q1].reshape(-1, n)
            lo, hi = p.key_bounds(q0, q1, n, batch_row=row)
            attended = m.any(dim=0).nonzero().flatten().tolist()
            assert all(lo <= j < hi for j in attended), (q0, q1, row, lo, hi)
            clo, chi = p.common_key_bounds(q0, q1, n, batch_row=row)
            if clo < chi:
                assert bool(m[:, clo:chi].all()), (q0, q1, row, clo, chi)


def test_block_layout_of_aligned_documents_is_block_diagonal():
    p = Pattern("block_sparse_causal", block=4, local=0, stride=0, n_global=1).with_documents((8, 4, 5))
    lay = p.block_layout(17)
    own = p.base.block_layout(8)
    assert torch.equal(lay[:2, :2], own) and torch.equal(lay[2:3, 2:3], own[:1, :1])
    assert torch.equal(lay[3:5, 3:5], own[:2, :2]) and not lay[3:, :3].any() and not lay[:3, 3:].any()
    unaligned = Pattern("block_sparse", block=4).with_documents((5, 4))
    with pytest.raises(ValueError, match="do not start on multiples of block=4"):
        unaligned.block_layout(9)


# ---------------------------------------------------------------------------------------------------- the truth
@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.kind)
def test_baseline_computes_each_document_on_its_own_in_either_layout(pattern):
    outs = {}
    for layout in ("packed", "padded"):
        case = Case(heads=4, kv_heads=2, head_dim=8, dtype="float64", lengths=list(DOCS), layout=layout,
                    pattern=pattern, mode="fwd_bwd")
        i = make_inputs(case)
        ref = reference_attention(i.q, i.k, i.v, case.pattern, grad_out=i.grad_out)
        outs[layout] = [varlen.real_tokens(t, case.pattern) for t in (ref.out, ref.dq, ref.dk, ref.dv)]
        if layout == "padded":  # padding: output 0, no gradient
            valid = varlen.valid_slots(DOCS)
            for t in (ref.out, ref.dq, ref.dk, ref.dv):
                assert t.transpose(1, 2)[~valid].abs().sum() == 0
        tb = textbook_attention(i.q.float(), i.k.float(), i.v.float(), case.pattern)
        assert (varlen.real_tokens(tb, case.pattern).double() - outs[layout][0]).abs().max() < 1e-5
    s = 0
    for length in DOCS:  # each document as its own one-row sequence, through the plain (document-free) baseline
        sl = slice(s, s + length)
        q, k, v, g = _doc_inputs(pattern, sl)
        one = reference_attention(q, k, v, pattern, grad_out=g)
        for got, want in zip((t[:, :, sl] for t in outs["packed"]), (one.out, one.dq, one.dk, one.dv)):
            assert torch.allclose(got, want, atol=1e-12)
        s += length
    for a, b in zip(outs["packed"], outs["padded"]):
        assert torch.equal(a, b)


def _doc_inputs(pattern, sl):
    case = Case(heads=4, kv_heads=2, head_dim=8, dtype="float64", lengths=list(DOCS), pattern=pattern,
                mode="fwd_bwd")
    i = make_inputs(case)
    return [t[:, :, sl] for t in (i.q, i.k, i.v, i.grad_out)]


def test_flops_count_real_pairs_only_so_padding_waste_shows():
    packed = Case(heads=2, head_dim=16, lengths="100+10+1", pattern=Pattern("causal"))
    padded = Case(heads=2, head_dim=16, lengths="100+10+1", layout="padded", pattern=Pattern("causal"))
    pairs = 100 * 101 // 2 + 10 * 11 // 2 + 1
    assert attention_flops(packed) == attention_flops(padded) == 4 * 2 * 16 * pairs


# ---------------------------------------------------------------------------------------------------- keys
def test_record_ids_stay_without_lengths_and_change_with_them():
    plain = Case(heads=2, seq_len=64)
    assert "lengths" not in record_key(plain, "full") and "batch_layout" not in record_key(plain, "full")
    a = Case(heads=2, lengths="40+24")
    b = Case(heads=2, lengths="40+24", layout="padded")
    c = Case(heads=2, lengths="24+40")
    assert record_key(a, "full")["lengths"] == "40+24" and record_key(b, "full")["batch_layout"] == "padded"
    assert len({record_id(x, "full") for x in (plain, a, b, c)}) == 4


def test_config_sweeps_specs_and_layouts():
    plan = plan_from_config({"lengths": ["100+50", "uniform/min:8/max:16/n:3"], "layout": ["packed", "padded"],
                             "run_name": "x", "results_dir": "/tmp/attnbench-varlen-test"},
                            cuda_available=False, load_variants=False)
    got = [(c.lengths, c.layout, c.batch, c.seq_len) for c in plan.cases]
    assert got[:2] == [("100+50", "packed", 1, 150), ("100+50", "padded", 2, 100)]
    assert len(got) == 4 and got[2][0] == "uniform/min:8/max:16/n:3"
    one = plan_from_config({"lengths": [100, 50], "run_name": "x", "results_dir": "/tmp/attnbench-varlen-test"},
                           cuda_available=False, load_variants=False)
    assert [c.lengths for c in one.cases] == ["100+50"]  # a list of integers is one batch's documents


@pytest.mark.parametrize(("cfg", "says"), [
    ({"lengths": "uniform/min:5/max:3/n:2"}, "lengths='uniform/min:5/max:3/n:2': min:5 is larger than max:3"),
    ({"lengths": "5+3", "q_len": 3}, "q_len=3 cannot be combined with lengths"),
    ({"lengths": "5+3", "layout": "ragged"}, "layout='ragged' is not a known layout (allowed: packed, padded)"),
])
def test_config_refusals(cfg, says):
    with pytest.raises(ConfigError) as err:
        plan_from_config({**cfg, "run_name": "x", "results_dir": "/tmp/attnbench-varlen-test"}, cuda_available=False,
                         load_variants=False)
    assert says in str(err.value)


# ---------------------------------------------------------------------------------------------------- the report
def _row(variant, layout, us, mem, lengths="5+1+7+3", status="ok", cv=0.5, exact=True):
    return {"variant": variant, "layout": layout, "lengths": lengths, "status": status, "us_per_token": us,
            "peak_mem_bytes": mem, "doc_tokens": 16, "doc_count": 4, "doc_len_mean": 4.0, "doc_len_max": 7,
            "doc_len_cv": cv, "padding_fraction": 0.0 if layout == "packed" else 1 - 16 / 28, "device": "cpu",
            "dtype": "float32", "heads": 2, "head_dim": 8, "pattern_label": "causal", "mode": "fwd", "seed": 0,
            "batch": 1 if layout == "packed" else 4, "seq_len": 16 if layout == "packed" else 7, "exact": exact,
            "err_rel_l2": 1e-7, "time_ms_median": us * 16e-3}


def test_pad_or_pack_table_sets_layouts_side_by_side_and_names_the_fastest():
    import pandas as pd

    from harness.report.varlen_report import pad_or_pack_figure, pad_or_pack_markdown, pad_or_pack_table

    frame = pd.DataFrame([
        _row("chunked", "packed", 2.0, 1600), _row("chunked", "padded", 5.0, 3200),
        _row("flex", "packed", 1.0, 800), _row("flex", "padded", 1.5, 1600),
        _row("causal", "packed", float("nan"), float("nan"), status="unsupported"),
        _row("causal", "padded", float("nan"), float("nan"), status="unsupported"),
        _row("linear", "packed", 0.1, 100, exact=False),
        {"variant": "full", "status": "ok", "lengths": None, "layout": None, "seq_len": 64},  # not a batch of docs
    ])
    table = pad_or_pack_table(frame).set_index("variant")
    assert sorted(table.index) == ["chunked", "flex"]  # declined-only and approximate variants are left out
    assert table.loc["chunked", "padded_over_packed"] == 2.5 and table.loc["flex", "best"] == "packed"
    assert table.loc["chunked", "best"] == "" and table.loc["flex", "packed_mem_per_token"] == 50
    text = "\n".join(pad_or_pack_markdown(frame))
    assert "## Pad or pack" in text and "| `flex` | **1** | 1.5 | 1.50x |" in text
    assert "Best: `flex` packed, 1 us per real token." in text
    assert "(4 docs, mean 4, max 7; padded: 43% padding)" in text
    fig = pad_or_pack_figure(frame)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4  # 2 variants x 2 layouts; time and memory panels
    assert pad_or_pack_markdown(frame[frame["variant"] == "full"]) == []
