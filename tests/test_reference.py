"""The float64 baseline against an independent dense computation, blocking, gradients and masked corners."""

from __future__ import annotations

import math

import pytest
import torch

from harness import Case, Pattern
from harness.core.reference import ReferenceCache, dense_rows, reference_attention, textbook_attention
from harness.inputs.make import make_inputs
from harness.testing import CONFORMANCE_PATTERNS


def _dense_naive(q, k, v, mask):
    """Independent plain computation: explicit loops over rows, no shared code with harness.core.reference."""
    q, k, v = q.double(), k.double(), v.double()
    b, h, n, d = q.shape
    out = torch.zeros_like(q)
    for i in range(n):
        allowed = mask[i]
        if not allowed.any():
            continue
        s = (q[:, :, i : i + 1] @ k[:, :, allowed].transpose(-1, -2)) / math.sqrt(d)
        p = torch.exp(s - s.max(dim=-1, keepdim=True).values)
        p = p / p.sum(-1, keepdim=True)
        out[:, :, i : i + 1] = p @ v[:, :, allowed]
    return out


def _explicit_mask(pattern: Pattern, n: int, q_len: int | None = None) -> torch.Tensor:
    """The mask written out from the definitions in harness.core.pattern's docstring, pair by pair; query row ``r``
    of ``q_len`` sits at position ``i = n - q_len + r`` (bottom-right)."""
    q_len = n if q_len is None else q_len
    m = torch.zeros(q_len, n, dtype=torch.bool)
    for r in range(q_len):
        i = n - q_len + r
        for j in range(n):
            if pattern.kind == "full":
                m[r, j] = True
            elif pattern.kind == "causal":
                m[r, j] = j <= i
            elif pattern.kind == "window":
                m[r, j] = 0 <= i - j < pattern.window
            elif pattern.kind == "window_sym":
                m[r, j] = abs(i - j) < pattern.window
            else:
                bi, bj = i // pattern.block, j // pattern.block
                on = abs(bi - bj) <= pattern.local
                on |= pattern.stride > 0 and bj % pattern.stride == pattern.stride - 1
                on |= bj < pattern.n_global or bi < pattern.n_global
                if pattern.kind == "block_sparse_causal":
                    on &= j <= i
                m[r, j] = bool(on)
    return m


@pytest.mark.parametrize("pattern", CONFORMANCE_PATTERNS, ids=lambda p: p.kind)
@pytest.mark.parametrize("n", [1, 5, 70])
def test_mask_matches_definition(pattern, n):
    assert torch.equal(pattern.dense_mask(n), _explicit_mask(pattern, n))
    assert pattern.attended_pairs(n) == int(_explicit_mask(pattern, n).sum())


_MORE_PATTERNS = (*CONFORMANCE_PATTERNS, Pattern("window", window=40), Pattern("window_sym", window=50),
                  Pattern("block_sparse_causal", block=7, local=0, stride=0, n_global=0))


@pytest.mark.parametrize("pattern", _MORE_PATTERNS, ids=lambda p: p.label)
@pytest.mark.parametrize("n", [1, 2, 9, 50])
def test_bottom_right_masks_pairs_and_key_bounds_follow_the_definition(pattern, n):
    """For every q_len: the mask, the pair count, key_bounds (a superset of each row block's keys) and
    common_key_bounds (keys every row of the block attends) agree with the pair-by-pair definition."""
    for q_len in sorted({x for x in (1, 2, 3, n // 2 or 1, n - 1 or 1, n) if x <= n}):
        want = _explicit_mask(pattern, n, q_len)
        assert torch.equal(pattern.dense_mask(n, q_len=q_len), want), q_len
        assert pattern.attended_pairs(n, q_len) == int(want.sum()), q_len
        for q0 in range(q_len):
            for q1 in range(q0 + 1, q_len + 1):
                block = want[q0:q1]
                lo, hi = pattern.key_bounds(q0, q1, n, q_len)
                cols = block.any(0).nonzero().flatten()
                assert len(cols) == 0 or (lo <= int(cols.min()) and int(cols.max()) < hi), (q_len, q0, q1)
                lo, hi = pattern.common_key_bounds(q0, q1, n, q_len)
                assert hi <= lo or bool(block[:, lo:hi].all()), (q_len, q0, q1)


def test_q_len_beyond_the_keys_is_refused():
    with pytest.raises(ValueError, match=r"q_len=9 is out of range \(allowed: an integer from 1 to seq_len=8"):
        Pattern("causal").dense_mask(8, q_len=9)


@pytest.mark.parametrize("pattern", CONFORMANCE_PATTERNS, ids=lambda p: p.kind)
@pytest.mark.parametrize("n", [1, 33, 100])
def test_reference_matches_naive(pattern, n):
    g = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(2, 2, n, 16, generator=g) for _ in range(3))
    want = _dense_naive(q, k, v, _explicit_mask(pattern, n))
    # a tiny block budget forces many query blocks and key ranges
    got = reference_attention(q, k, v, pattern, block_bytes=4096).out
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pattern", CONFORMANCE_PATTERNS, ids=lambda p: p.kind)
@pytest.mark.parametrize("key_chunk", [1024, 7], ids=["whole-rows", "online-softmax"])
def test_reference_gradients_match_autograd(pattern, key_chunk):
    n = 45
    g = torch.Generator().manual_seed(1)
    q, k, v, do = (torch.randn(1, 2, n, 8, generator=g, dtype=torch.float64) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = pattern.dense_mask(n)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    out = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
    out.backward(do)
    ref = reference_attention(q.detach(), k.detach(), v.detach(), pattern, grad_out=do, block_bytes=2048,
                              key_chunk=key_chunk)
    torch.testing.assert_close(ref.out, out.detach(), rtol=1e-10, atol=1e-12)
    for got, want in ((ref.dq, q.grad), (ref.dk, k.grad), (ref.dv, v.grad)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pattern", CONFORMANCE_PATTERNS, ids=lambda p: p.kind)
def test_reference_online_softmax_over_key_chunks_matches_naive(pattern):
    """Rows longer than a key chunk take the online softmax; the result is the same exact attention."""
    n = 100
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(1, 3, n, 16, generator=g) for _ in range(3))
    want = _dense_naive(q, k, v, _explicit_mask(pattern, n))
    for key_chunk in (1, 13, 64):
        got = reference_attention(q, k, v, pattern, block_bytes=8 * 3 * 40 * 64, key_chunk=key_chunk).out
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _textbook_dense(q, k, v, mask):
    """The textbook computation over the whole matrix, in the inputs' dtype (what the yardstick must equal)."""
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    p = torch.nan_to_num(torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1), nan=0.0)
    return torch.matmul(p, v)


@pytest.mark.parametrize("pattern", CONFORMANCE_PATTERNS, ids=lambda p: p.kind)
def test_textbook_is_the_textbook_computation_row_for_row(pattern):
    """Visiting only the attended keys changes nothing but the summation order: float64 textbook equals the
    dense textbook to 1e-13, float32 to float32 rounding, and bfloat16 stays bfloat16 arithmetic (same error
    against float64 as the dense textbook, within 10%)."""
    n = 150
    g = torch.Generator().manual_seed(12)
    q, k, v = (torch.randn(2, 2, n, 32, generator=g) for _ in range(3))
    mask = pattern.dense_mask(n)
    ref = reference_attention(q, k, v, pattern).out
    for dtype, tol in ((torch.float64, 1e-13), (torch.float32, 2e-6)):
        a, b, c = (t.to(dtype) for t in (q, k, v))
        got = textbook_attention(a, b, c, pattern, block_bytes=4096)
        assert got.dtype == dtype
        torch.testing.assert_close(got, _textbook_dense(a, b, c, mask), rtol=tol, atol=tol)
    a, b, c = (t.bfloat16() for t in (q, k, v))
    got = textbook_attention(a, b, c, pattern, block_bytes=4096)
    dense = _textbook_dense(a, b, c, mask)
    rel = float((got.double() - ref).norm() / ref.norm())
    rel_dense = float((dense.double() - ref).norm() / ref.norm())
    assert got.dtype == torch.bfloat16 and 1e-4 < rel
    assert abs(rel - rel_dense) < 0.1 * rel_dense, (rel, rel_dense)


def test_reference_reuses_one_score_buffer():
    """Tiles are views of one buffer per call: the allocator sees the same few large blocks, not one per tile."""
    n = 600
    g = torch.Generator().manual_seed(13)
    q, k, v = (torch.randn(1, 2, n, 16, generator=g, dtype=torch.float64) for _ in range(3))
    big = 64 * 1024  # bytes; every tile is smaller than this
    seen = []
    real_bmm = torch.bmm

    def spy(a, b, *, out=None):
        if out is not None:
            seen.append(out.untyped_storage().data_ptr())
        return real_bmm(a, b, out=out)

    torch.bmm = spy
    try:
        reference_attention(q, k, v, Pattern("causal"), block_bytes=big)
    finally:
        torch.bmm = real_bmm
    assert len(seen) > 10 and len(set(seen)) == 1, (len(seen), len(set(seen)))


def test_fully_masked_rows_give_zero_output_and_gradients():
    # a custom layout whose second query block attends to nothing
    p = Pattern("block_sparse", block=4, layout=((True, False), (False, False)))
    g = torch.Generator().manual_seed(3)
    q, k, v, do = (torch.randn(1, 1, 8, 4, generator=g) for _ in range(4))
    ref = reference_attention(q, k, v, p, grad_out=do)
    assert torch.isfinite(ref.out).all()
    assert torch.count_nonzero(ref.out[:, :, 4:]) == 0
    assert torch.count_nonzero(ref.dq[:, :, 4:]) == 0
    assert torch.count_nonzero(ref.dk[:, :, 4:]) == 0 and torch.count_nonzero(ref.dv[:, :, 4:]) == 0
    want = _dense_naive(q, k, v, _explicit_mask_from_layout(p, 8))
    torch.testing.assert_close(ref.out, want, rtol=1e-12, atol=1e-12)
    tb = textbook_attention(q, k, v, p)
    assert torch.isfinite(tb).all() and torch.count_nonzero(tb[:, :, 4:]) == 0


def _explicit_mask_from_layout(p, n):
    lay = torch.tensor(p.layout)
    return torch.stack([torch.stack([lay[i // p.block, j // p.block] for j in range(n)]) for i in range(n)])


def test_textbook_in_low_precision_is_close_but_not_exact():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 2, 64, 32, generator=g).bfloat16() for _ in range(3))
    ref = reference_attention(q, k, v).out
    tb = textbook_attention(q, k, v)
    rel = float((tb.double() - ref).norm() / ref.norm())
    assert tb.dtype == torch.bfloat16
    assert 1e-4 < rel < 2e-2


@pytest.mark.slow
def test_reference_long_sequence_bounded_memory():
    """N = 16384, 8 heads, head dim 64: the baseline runs on a 24 GB machine (spot-checked rows)."""
    n = 16384
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 8, n, 64, generator=g) for _ in range(3))
    ref = reference_attention(q, k, v, Pattern("causal")).out
    rows = [0, 1, 5000, n - 1]
    for i in rows:
        s = (q[:, :, i : i + 1].double() @ k[:, :, : i + 1].double().transpose(-1, -2)) / 8.0
        want = torch.softmax(s, -1) @ v[:, :, : i + 1].double()
        torch.testing.assert_close(ref[:, :, i : i + 1], want, rtol=1e-10, atol=1e-12)


def test_reference_on_a_subset_of_rows_equals_those_rows_of_the_whole():
    g = torch.Generator().manual_seed(14)
    q, k, v = (torch.randn(1, 2, 90, 8, generator=g) for _ in range(3))
    rows = torch.tensor([0, 1, 7, 40, 41, 89])
    for pattern in (Pattern("causal"), Pattern("full"), Pattern("window", window=5)):
        whole = reference_attention(q, k, v, pattern).out
        part = reference_attention(q, k, v, pattern, rows=rows, block_bytes=8 * 2 * 3 * 50).out
        torch.testing.assert_close(part, whole[:, :, rows], rtol=1e-13, atol=1e-13)


def test_dense_pass_covers_all_rows_when_cheap_and_a_spread_sample_when_not():
    short = Case(seq_len=512, heads=2, head_dim=16, pattern=Pattern("window", window=32))
    assert dense_rows(short) is None
    long = Case(seq_len=65536, heads=8, head_dim=64, pattern=Pattern("window", window=256))
    rows = dense_rows(long)
    assert rows is not None and 64 <= rows.numel() < 65536
    assert rows[0] < 65536 // rows.numel() and rows[-1] > 65536 - 65536 // rows.numel()  # spread over the length
    assert bool((rows[1:] > rows[:-1]).all())
    # its dense cost stays within the pattern's own attended FLOPs
    pairs = sum(int(r) + 1 for r in rows)
    assert pairs <= long.pattern.attended_pairs(65536)


def test_cache_dense_error_on_sampled_rows_matches_those_rows_of_the_full_pass(monkeypatch):
    import harness.core.reference as ref_mod

    case = Case(seq_len=300, heads=2, head_dim=8, pattern=Pattern("window", window=16))
    inputs = make_inputs(case)
    cache = ReferenceCache()
    out = cache.reference(case, inputs, with_grads=False).out.float()
    full_stats, n_rows = cache.dense_error(case, inputs, out)
    assert n_rows == 300
    monkeypatch.setattr(ref_mod, "_DENSE_MIN_FLOPS", 0.0)
    monkeypatch.setattr(ref_mod, "_DENSE_FLOP_FACTOR", 0.5)
    cache.clear()
    sampled, n_rows = cache.dense_error(case, inputs, out)
    rows = dense_rows(case)
    assert rows is not None and n_rows == rows.numel() < 300
    dense = reference_attention(inputs.q, inputs.k, inputs.v, Pattern("causal")).out
    want = float((out.double()[:, :, rows] - dense[:, :, rows]).norm() / dense[:, :, rows].norm())
    assert sampled.rel_l2 == pytest.approx(want, rel=1e-9)
    assert sampled.rel_l2 == pytest.approx(full_stats.rel_l2, rel=0.5)  # a sample of the same figure
    assert set(cache.seconds) == {"dense"} and cache.seconds["dense"] > 0 and cache.total_s > 0


@pytest.mark.parametrize("pattern", _MORE_PATTERNS, ids=lambda p: p.label)
@pytest.mark.parametrize("kv_heads,q_len", [(2, 57), (1, 1), (3, 5), (6, 57)])
def test_grouped_heads_and_short_queries_match_naive(pattern, kv_heads, q_len):
    """GQA/MQA and bottom-right short queries: against the naive computation on K and V expanded to all heads,
    with the pair-by-pair mask; in one tile, in many, and over key chunks."""
    n, h = 57, 6
    g = torch.Generator().manual_seed(kv_heads * 100 + q_len)
    q = torch.randn(2, h, q_len, 8, generator=g)
    k, v = (torch.randn(2, kv_heads, n, 8, generator=g) for _ in range(2))
    group = h // kv_heads
    want = _dense_naive(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                        _explicit_mask(pattern, n, q_len))
    for block_bytes, key_chunk in ((1 << 24, 1024), (2048, 1024), (4096, 5)):
        got = reference_attention(q, k, v, pattern, block_bytes=block_bytes, key_chunk=key_chunk).out
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    tb = textbook_attention(q.double(), k.double(), v.double(), pattern, block_bytes=4096)
    torch.testing.assert_close(tb, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pattern", CONFORMANCE_PATTERNS, ids=lambda p: p.kind)
@pytest.mark.parametrize("key_chunk", [1024, 6])
def test_grouped_short_query_gradients_match_autograd(pattern, key_chunk):
    """dk and dv of a shared key/value head sum over its query heads."""
    n, q_len, h, hkv = 40, 13, 4, 2
    gen = torch.Generator().manual_seed(21)
    q, do = (torch.randn(1, h, q_len, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    k, v = (torch.randn(1, hkv, n, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = pattern.dense_mask(n, q_len=q_len)
    s = (q @ k.repeat_interleave(2, 1).transpose(-1, -2)) / math.sqrt(8)
    p = torch.nan_to_num(torch.softmax(s.masked_fill(~mask, float("-inf")), -1), nan=0.0)
    out = p @ v.repeat_interleave(2, 1)
    out.backward(do)
    ref = reference_attention(q.detach(), k.detach(), v.detach(), pattern, grad_out=do, block_bytes=1024,
                              key_chunk=key_chunk)
    torch.testing.assert_close(ref.out, out.detach(), rtol=1e-10, atol=1e-12)
    for got, want in ((ref.dq, q.grad), (ref.dk, k.grad), (ref.dv, v.grad)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
