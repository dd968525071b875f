"""harness.measure.contract.same_bits, which the input guard runs after every batch: exact bits, on every path."""

from __future__ import annotations

import torch

from harness.measure.contract import InputGuard, same_bits


def test_same_bits_is_bitwise_on_the_memcmp_path():
    a = torch.randn(8, 256, 64)
    assert same_bits(a, a.clone())
    nan = torch.tensor([float("nan"), 1.0])
    assert same_bits(nan, nan.clone())  # NaN has the same bits as itself
    assert not same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))  # equal values, other bits
    b = a.clone()
    b.view(-1).view(torch.int32)[-1] ^= 1  # the last bit of the last element
    assert not same_bits(a, b)
    assert not same_bits(a, a.clone().double()) and not same_bits(a, a.reshape(8, 64, 256))
    assert same_bits(torch.empty(0), torch.empty(0))


def test_same_bits_of_views_and_strided_tensors():
    base = torch.randn(64, 64)
    t = base.t()  # not contiguous: compared through torch.equal
    assert same_bits(t, t.clone()) and same_bits(t, t.contiguous())
    other = t.clone()
    other[3, 5] += 1
    assert not same_bits(t, other)
    assert same_bits(base[10:20], base[10:20].clone())  # a view with a storage offset
    assert not same_bits(base[10:20], base[11:21])


def test_input_guard_sees_a_one_bit_change_and_restores_it():
    q = torch.randn(1, 2, 32, 8)
    guard = InputGuard({"q": q, "k": None})
    q.view(-1).view(torch.int32)[100] ^= 1
    assert guard.changed() == ["q"]
    guard.restore()
    assert guard.changed() == []
