"""The callable the harness times for a case's mode, built from a prepared variant and the case's inputs.

- ``fwd``: the forward under ``no_grad`` (no graph is built, as in inference).
- ``fwd_bwd``: forward and backward on leaf copies of the inputs (``call.leaves``), so the case's own tensors
  never collect gradients and each call starts from none.
- ``bwd``: the backward alone. Each backward needs a fresh forward graph, so the forward is ``call.prepare_each``,
  which the timers run untimed right before each timed call.

The first output is checked against the output contract (:func:`harness.measure.contract.check_output`) before
any backward uses it, so a wrong output is reported as itself and not as a failed backward.
"""

from __future__ import annotations

import torch

from harness.core.case import Case, Inputs
from harness.measure.contract import check_output

__all__ = ["clear_grads", "make_call"]


def make_call(fn, case: Case, inputs: Inputs):
    """The callable the harness times for the case's mode: ``fn`` (a prepared variant) applied to ``inputs``.

    ``fwd``: the forward under ``no_grad``; ``fwd_bwd``: forward and backward on leaf copies of the inputs (their
    tensors are ``call.leaves``); ``bwd``: the backward alone, with the forward graph built by
    ``call.prepare_each`` outside the timed region. The first output is checked against the output contract
    (:func:`harness.measure.contract.check_output`), before any backward uses it.
    """
    checked = [False]

    def check(out):
        if not checked[0]:
            check_output(out, inputs.q, inputs.v)
            checked[0] = True
        return out

    if case.mode == "fwd":
        def call():
            with torch.no_grad():
                return check(fn(inputs.q, inputs.k, inputs.v))
        return call
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (inputs.q, inputs.k, inputs.v))
    if case.mode == "fwd_bwd":
        def call():
            q.grad = k.grad = v.grad = None
            out = check(fn(q, k, v))
            out.backward(inputs.grad_out)
            return out
        call.leaves = (q, k, v)  # type: ignore[attr-defined]
        return call

    # bwd: the backward pass alone, given a forward graph built outside the timed region
    state: dict = {}

    def build():
        q.grad = k.grad = v.grad = None
        state["out"] = check(fn(q, k, v))

    def call():
        if "out" not in state:
            build()
        out = state.pop("out")
        out.backward(inputs.grad_out)
        return out
    call.prepare_each = build  # type: ignore[attr-defined]
    call.leaves = (q, k, v)  # type: ignore[attr-defined]
    return call


def clear_grads(call) -> None:
    """Drop the leaves' gradients so neither memory nor time counts freeing the previous ones."""
    for leaf in getattr(call, "leaves", ()) or ():
        leaf.grad = None
