"""The float64 baseline against an independent dense computation, blocking, gradients and masked corners."""

from __future__ import annotations

import math

import pytest
import torch

from harness import Pattern, reference_attention, textbook_attention
from harness.testing import CONFORMANCE_PATTERNS


def _dense_naive(q, k, v, mask):
    """Independent plain computation: explicit loops over rows, no shared code with harness.reference."""
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


def _explicit_mask(pattern: Pattern, n: int) -> torch.Tensor:
    """The mask written out from the definitions in harness.pattern's docstring, pair by pair."""
    m = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if pattern.kind == "full":
                m[i, j] = True
            elif pattern.kind == "causal":
                m[i, j] = j <= i
            elif pattern.kind == "window":
                m[i, j] = 0 <= i - j < pattern.window
            elif pattern.kind == "window_sym":
                m[i, j] = abs(i - j) < pattern.window
            else:
                bi, bj = i // pattern.block, j // pattern.block
                on = abs(bi - bj) <= pattern.local
                on |= pattern.stride > 0 and bj % pattern.stride == pattern.stride - 1
                on |= bj < pattern.n_global or bi < pattern.n_global
                if pattern.kind == "block_sparse_causal":
                    on &= j <= i
                m[i, j] = bool(on)
    return m


@pytest.mark.parametrize("pattern", CONFORMANCE_PATTERNS, ids=lambda p: p.kind)
@pytest.mark.parametrize("n", [1, 5, 70])
def test_mask_matches_definition(pattern, n):
    assert torch.equal(pattern.dense_mask(n), _explicit_mask(pattern, n))
    assert pattern.attended_pairs(n) == int(_explicit_mask(pattern, n).sum())


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
def test_reference_gradients_match_autograd(pattern):
    n = 45
    g = torch.Generator().manual_seed(1)
    q, k, v, do = (torch.randn(1, 2, n, 8, generator=g, dtype=torch.float64) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = pattern.dense_mask(n)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    out = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ v
    out.backward(do)
    ref = reference_attention(q.detach(), k.detach(), v.detach(), pattern, grad_out=do, block_bytes=2048)
    torch.testing.assert_close(ref.out, out.detach(), rtol=1e-10, atol=1e-12)
    for got, want in ((ref.dq, q.grad), (ref.dk, k.grad), (ref.dv, v.grad)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


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
