"""Approximation bounds of linear, performer and nystrom, and exactness of each against its own definition.

The conformance suite checks the approximate variants against exact softmax attention with loose, observed
tolerances (on Gaussian inputs linear attention is no closer to softmax than the mean of v is). The checks that
a broken implementation cannot pass live here:

- linear / performer causal (chunked prefix sums) equal a slow explicit per-position form of the same kernel
  attention, for outputs and gradients, for chunk sizes that do and do not divide N;
- Performer's error against exact softmax falls as the number of random features grows (Monte Carlo rate);
- Nyström with as many landmarks as positions is exact;
- deliberately broken variants (wrong scale, mis-masked chunks, transposed product) fail these same checks.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness import Pattern, get_variant
from harness.core.reference import reference_attention
from harness.inputs.distributions import make_qkv
from variants.linear import LinearAttention, elu_feature_map, kernel_attention
from variants.nystrom import Nystrom, iterative_pinv, segment_means
from variants.performer import Performer, positive_features

FULL, CAUSAL = Pattern("full"), Pattern("causal")


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref.double()).norm() / ref.double().norm())


def _explicit_kernel_attention(fq, fk, v, causal):
    """Slow reference: for each position i, weights φq_i·φk_j over j <= i (or all j), normalised, in float64."""
    fq, fk, v = fq.double(), fk.double(), v.double()
    n = fq.shape[-2]
    rows = []
    for i in range(n):
        hi = i + 1 if causal else n
        w = (fq[..., i: i + 1, :] * fk[..., :hi, :]).sum(-1)  # (B, H, hi)
        rows.append((w.unsqueeze(-1) * v[..., :hi, :]).sum(-2) / w.sum(-1, keepdim=True))
    return torch.stack(rows, dim=-2)


def _inputs(n=150, d=16, seed=0, heads=2):
    return make_qkv("gaussian", (2, heads, n, d), seed)


# ---------------------------------------------------------------------------------------------- linear
@pytest.mark.parametrize("chunk", [1, 7, 64, 200])
@pytest.mark.parametrize("pattern", [FULL, CAUSAL], ids=["full", "causal"])
def test_linear_equals_its_explicit_definition(chunk, pattern):
    q, k, v = _inputs()
    got = LinearAttention(chunk=chunk).forward(q, k, v, pattern)
    want = _explicit_kernel_attention(elu_feature_map(q), elu_feature_map(k), v, pattern.kind == "causal")
    assert _rel(got, want) < 1e-5


def test_linear_causal_gradients_equal_the_explicit_form():
    q, k, v = (t.double().requires_grad_() for t in _inputs(n=70, d=8))
    g = torch.randn(q.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    LinearAttention(chunk=16).forward(q, k, v, CAUSAL).backward(g)
    fast = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    _explicit_kernel_attention(elu_feature_map(q), elu_feature_map(k), v, True).backward(g)
    for a, b in zip(fast, (q.grad, k.grad, v.grad)):
        assert _rel(a, b) < 1e-10


def test_linear_last_causal_row_is_the_full_row():
    q, k, v = _inputs(n=100)
    lin = LinearAttention(chunk=32)
    torch.testing.assert_close(lin.forward(q, k, v, CAUSAL)[..., -1, :], lin.forward(q, k, v, FULL)[..., -1, :],
                               rtol=1e-5, atol=1e-5)


class _MisMaskedLinear(LinearAttention):
    """Broken on purpose: the intra-chunk mask also admits the next position (a future key)."""

    def forward(self, q, k, v, pattern):
        fq, fk = elu_feature_map(q), elu_feature_map(k)
        if pattern.kind != "causal":
            return kernel_attention(fq, fk, v, False)
        n = q.shape[-2]
        w = (fq @ fk.transpose(-1, -2)).masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(1), 0.0)
        return (w @ v) / w.sum(-1, keepdim=True)


def test_a_mis_masked_linear_fails_the_explicit_check():
    q, k, v = _inputs()
    got = _MisMaskedLinear().forward(q, k, v, CAUSAL)
    want = _explicit_kernel_attention(elu_feature_map(q), elu_feature_map(k), v, True)
    assert _rel(got, want) > 1e-2


# ---------------------------------------------------------------------------------------------- performer
@pytest.mark.parametrize("chunk", [5, 64])
@pytest.mark.parametrize("pattern", [FULL, CAUSAL], ids=["full", "causal"])
def test_performer_equals_its_quadratic_form_with_the_same_features(chunk, pattern):
    q, k, v = _inputs(n=130, d=16)
    perf = Performer(num_features=64, seed=1, chunk=chunk)
    fq, fk = perf.features(q, k)
    want = _explicit_kernel_attention(fq, fk, v, pattern.kind == "causal")
    assert _rel(perf.forward(q, k, v, pattern), want) < 1e-5


def _performer_errors(make, features=(16, 256, 2048), seeds=range(5), pattern=FULL):
    """Mean rel. L2 error against exact softmax on a fixed, moderately scaled input, per feature count."""
    q, k, v = make_qkv("gaussian", (1, 4, 128, 16), 0)
    q, k = 0.5 * q, 0.5 * k  # |q|^2 / sqrt(d) about 1: the regime where FAVOR+ is accurate
    ref = reference_attention(q, k, v, pattern).out
    return [sum(_rel(make(m, s).forward(q, k, v, pattern), ref) for s in seeds) / len(seeds) for m in features]


@pytest.mark.parametrize("pattern", [FULL, CAUSAL], ids=["full", "causal"])
def test_performer_error_falls_as_features_grow(pattern):
    e16, e256, e2048 = _performer_errors(lambda m, s: Performer(num_features=m, seed=s), pattern=pattern)
    print(f"performer mean rel L2 ({pattern.kind}): 16 features {e16:.4f}, 256 {e256:.4f}, 2048 {e2048:.4f}")
    assert e16 > e256 > e2048
    assert e16 / e2048 > 4  # 1/sqrt(M) would give 11.3
    assert e2048 < 0.12


class _WrongScalePerformer(Performer):
    """Broken on purpose: scales q and k by d^-1/2 each (the softmax scale applied twice)."""

    def features(self, q, k):
        d = q.shape[-1]
        w = self.projection(d, q.device, q.dtype)
        return positive_features(q / math.sqrt(d), w, True), positive_features(k / math.sqrt(d), w, False)


class _GarbageFeaturePerformer(Performer):
    """Broken on purpose: positive features that do not depend on the input's direction."""

    def features(self, q, k):
        fq, fk = super().features(q, k)
        return fq.flip(-1), fk


@pytest.mark.parametrize("broken", [_WrongScalePerformer, _GarbageFeaturePerformer])
def test_broken_performers_fail_the_bound(broken):
    e16, e256, e2048 = _performer_errors(lambda m, s: broken(num_features=m, seed=s), seeds=range(2))
    print(f"{broken.__name__}: 16 features {e16:.4f}, 256 {e256:.4f}, 2048 {e2048:.4f}")
    assert not (e2048 < 0.12 and e16 / e2048 > 4), (e16, e256, e2048)


def test_performer_draw_is_seeded_orthogonal_and_recorded():
    a, b, c = Performer(num_features=40, seed=3), Performer(num_features=40, seed=3), Performer(40, seed=4)
    wa, wb, wc = a.projection(16), b.projection(16), c.projection(16)
    assert wa.shape == (40, 16) and torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.draw_seed(16) != a.draw_seed(32)
    block = wa[:16].double()
    gram = block @ block.T
    off = gram - torch.diag(torch.diagonal(gram))
    assert float(off.abs().max()) < 1e-4 * float(gram.diagonal().max())  # rows of a block are orthogonal
    assert a.params == {"num_features": 40, "feature_seed": 3, "chunk": 64}
    with pytest.raises(ValueError, match=r"num_features=0 is out of range \(allowed: an integer >= 1\)"):
        Performer(num_features=0)


# ---------------------------------------------------------------------------------------------- nystrom
@pytest.mark.parametrize("n", [1, 37, 64, 100])
@pytest.mark.parametrize("pinv", ["iterative", "exact"])
def test_nystrom_with_as_many_landmarks_as_positions_is_exact(n, pinv):
    q, k, v = make_qkv("gaussian", (1, 3, n, 32), n)
    ref = reference_attention(q, k, v).out
    for m in (n, n + 5):
        err = _rel(Nystrom(num_landmarks=m, pinv=pinv).forward(q, k, v, FULL), ref)
        assert err < 1e-4, f"n={n} landmarks={m}: rel L2 {err:.3g}"


def test_nystrom_error_falls_with_landmarks():
    q, k, v = make_qkv("gaussian", (1, 4, 256, 32), 0)
    ref = reference_attention(q, k, v).out
    errs = [_rel(Nystrom(num_landmarks=m).forward(q, k, v, FULL), ref) for m in (4, 64, 255)]
    print("nystrom rel L2 at 4, 64, 255 landmarks (N=256):", [round(e, 4) for e in errs])
    assert errs[0] > errs[1] > errs[2]


def test_nystrom_landmarks_are_segment_means():
    x = torch.arange(10, dtype=torch.float64).view(1, 1, 10, 1)
    got = segment_means(x, 3).flatten()
    torch.testing.assert_close(got, torch.tensor([1.0, 4.0, 7.5], dtype=torch.float64))  # [0..2] [3..5] [6..9]


def test_iterative_pinv_approaches_the_inverse():
    a = torch.softmax(torch.randn(2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), -1)
    z = iterative_pinv(a, iterations=30)
    torch.testing.assert_close(z, torch.linalg.pinv(a), rtol=1e-6, atol=1e-6)


class _TransposedNystrom(Nystrom):
    """Broken on purpose: the kernel's landmark factor transposed."""

    def forward(self, q, k, v, pattern):
        n, d = q.shape[-2:]
        s = 1 / math.sqrt(d)
        ql, kl = segment_means(q, n), segment_means(k, n)
        f = torch.softmax(q @ kl.transpose(-1, -2) * s, -1)
        a = torch.softmax(ql @ kl.transpose(-1, -2) * s, -1)
        bv = torch.softmax(ql @ k.transpose(-1, -2) * s, -1) @ v
        return f.transpose(-1, -2) @ (torch.linalg.pinv(a) @ bv)


def test_a_transposed_nystrom_fails_the_exactness_check():
    q, k, v = make_qkv("gaussian", (1, 3, 37, 32), 37)
    ref = reference_attention(q, k, v).out
    assert _rel(_TransposedNystrom(num_landmarks=37).forward(q, k, v, FULL), ref) > 1e-2


# ---------------------------------------------------------------------------------------------- all three
@pytest.mark.parametrize("name", ["linear", "performer", "nystrom"])
def test_declared_approximate_with_honest_patterns(name):
    v = get_variant(name)
    assert v.exact is False
    assert "full" in v.patterns
    assert v.patterns <= {"full", "causal"}
    assert isinstance(v.params, dict) and v.params


@pytest.mark.parametrize("name", ["linear", "performer", "nystrom"])
def test_backward_reaches_every_input_in_half_precision(name):
    q, k, v = (t.bfloat16().requires_grad_() for t in make_qkv("gaussian", (1, 2, 70, 32), 2))
    out = get_variant(name)(q, k, v, FULL)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all()
