"""Seeded q, k, v and upstream gradient of a case, identical on every device (drawn on the CPU, then moved).

``gaussian`` inputs are standard normal; the other distributions come from :mod:`harness.inputs.distributions`.
A variable-length batch's packed sequence is drawn as a one-row case of all its tokens would be; a padded batch
scatters it into one row per document, its padding slots holding noise and the upstream gradient zero there.
"""

from __future__ import annotations

import torch

from harness.core import varlen
from harness.core.case import Case, Inputs
from harness.inputs.distributions import make_qkv

__all__ = ["make_inputs", "make_inputs_for"]


def make_inputs(case: Case) -> Inputs:
    """Draw the case's q, k, v and upstream gradient, seeded, identical on every device.

    ``gaussian`` inputs are standard normal; other distributions come from :mod:`harness.inputs.distributions` (which
    raises ``ValueError`` when it cannot make the case, e.g. ``real`` inputs longer than the model's context).
    """
    if case.pattern.has_documents:
        return _document_inputs(case)
    if case.inputs != "gaussian":
        return make_inputs_for(case, case.inputs)
    gen = torch.Generator(device="cpu").manual_seed(case.seed)
    shapes = (case.q_shape, case.kv_shape, case.kv_shape, case.q_shape)  # square MHA: four draws of case.shape
    tensors = [torch.randn(s, generator=gen, dtype=torch.float32) for s in shapes]
    q, k, v, g = (t.to(device=case.device, dtype=case.torch_dtype) for t in tensors)
    return Inputs(q, k, v, g)


def _document_inputs(case: Case) -> Inputs:
    """A variable-length batch's inputs: the packed sequence drawn as a one-row case of all the tokens would be;
    padded, scattered into one row per document, padding slots holding noise, the upstream gradient 0 there."""
    docs, total = case.documents, sum(case.documents)
    one_row = Case(batch=1, heads=case.heads, seq_len=total, head_dim=case.head_dim, dtype="float32", device="cpu",
                   seed=case.seed, inputs=case.inputs, kv_heads=case.kv_heads)
    packed = make_inputs(one_row)
    tensors = [packed.q, packed.k, packed.v, packed.grad_out]
    if case.layout == "padded":
        gen = torch.Generator(device="cpu").manual_seed(case.seed + 1)
        heads = (case.heads, case.kv_heads, case.kv_heads)
        tensors = [varlen.pad(t, docs, torch.randn((len(docs), h, max(docs), case.head_dim), generator=gen))
                   for t, h in zip(tensors[:3], heads)] + [varlen.pad(tensors[3], docs)]
    q, k, v, g = (t.to(device=case.device, dtype=case.torch_dtype) for t in tensors)
    return Inputs(q, k, v, g)


def _narrow(case: Case, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Square ``(B, H, N, D)`` draws cut to the case: the last ``q_len`` query rows (bottom-right), the first
    head of each group of ``heads // kv_heads`` as the key/value heads."""
    if not case.is_square:
        q, g = q[:, :, case.seq_len - case.q_len:].contiguous(), g[:, :, case.seq_len - case.q_len:].contiguous()
    if case.is_grouped:
        group = case.heads // case.kv_heads
        k, v = k[:, ::group].contiguous(), v[:, ::group].contiguous()
    return q, k, v, g


def make_inputs_for(case: Case, kind: str = "gaussian", **params) -> Inputs:
    """The case's :class:`Inputs` with q, k, v from the distribution ``kind``, on the case's device and dtype.

    The upstream gradient is the one :func:`make_inputs` draws (the fourth standard-normal tensor of the seed), so
    ``kind="gaussian"`` gives exactly ``make_inputs(case)``.

    Grouped heads and short queries are cut from the square draw (:attr:`Case.shape`): the last ``q_len`` rows
    of q, one key/value head per group (the group's first head).

    Args:
        case: the case (shape, seed, device, dtype).
        kind: ``gaussian``, ``local`` or ``real`` (see :func:`harness.inputs.distributions.make_qkv`).
        **params: the distribution's parameters.

    Returns:
        The inputs.

    Raises:
        ValueError: the distribution cannot make the case (its reason), or a bad kind or parameter.
    """
    q, k, v = make_qkv(kind, case.shape, case.seed, **params)
    gen = torch.Generator(device="cpu").manual_seed(case.seed)
    for _ in range(3):
        torch.randn(case.shape, generator=gen, dtype=torch.float32)
    g = torch.randn(case.shape, generator=gen, dtype=torch.float32)
    q, k, v, g = _narrow(case, q, k, v, g)
    q, k, v, g = (t.to(device=case.device, dtype=case.torch_dtype) for t in (q, k, v, g))
    return Inputs(q, k, v, g)
