"""What a variant must respect inside a measurement: its output contract, and inputs it must not change.

- :func:`output_problem` / :func:`check_output`: the output is a tensor of the query's shape (with the value's
  head dim), dtype and device, as ``attnbench check`` demands. A violation names what was expected and what came.
- :class:`InputGuard`: keeps a bit-exact copy of the case's inputs (q, k, v and the backward's output gradient);
  :meth:`InputGuard.check` compares them (and a variant's own leaf copies) after a variant ran, restores them when
  they changed, and raises :class:`InputsModifiedError` naming the tensors, so the offender's row is an ``error``
  and the variants measured after it get the inputs the case claims.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterable, Sequence

import torch

__all__ = ["InputGuard", "InputsModifiedError", "OutputContractError", "check_output", "expected_shape",
           "output_problem", "same_bits"]


_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class OutputContractError(ValueError):
    """A variant's output is not a tensor of the expected shape, dtype and device."""


class InputsModifiedError(RuntimeError):
    """A variant changed its inputs in place."""


def expected_shape(q: torch.Tensor, v: torch.Tensor) -> tuple[int, ...]:
    """The output shape attention of ``q`` over ``v`` has: q's shape with v's last dimension."""
    return (*q.shape[:-1], v.shape[-1])


def output_problem(out: object, q: torch.Tensor, v: torch.Tensor) -> str:
    """'' when ``out`` meets the contract, else a sentence naming what was expected and what came.

    Args:
        out: what the variant returned.
        q, v: the inputs of the call (their shape, dtype and device are the expectation).
    """
    want_shape = expected_shape(q, v)
    want = f"a tensor of shape {want_shape}, dtype {_dt(q.dtype)}, on {q.device}"
    if not isinstance(out, torch.Tensor):
        return f"output contract: expected {want}; got {type(out).__name__} ({_short(out)})"
    bad = []
    if tuple(out.shape) != want_shape:
        bad.append(f"shape {tuple(out.shape)}")
    if out.dtype != q.dtype:
        bad.append(f"dtype {_dt(out.dtype)}")
    if out.device != q.device:
        bad.append(f"device {out.device}")
    return f"output contract: expected {want}; got {', '.join(bad)}" if bad else ""


def check_output(out: object, q: torch.Tensor, v: torch.Tensor) -> None:
    """Raise :class:`OutputContractError` when ``out`` breaks the output contract (see :func:`output_problem`)."""
    problem = output_problem(out, q, v)
    if problem:
        raise OutputContractError(problem)


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _short(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers, so NaN == NaN and -0.0 != 0.0 (an exact comparison)."""
    view = _INT_VIEW.get(t.element_size())
    return t.view(view) if view is not None and not t.is_complex() else t


@functools.lru_cache(maxsize=1)
def _memcmp():
    """The C library's ``memcmp`` (None where it cannot be loaded)."""
    try:
        fn = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return fn


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold identical bits (shape and dtype included).

    Contiguous CPU tensors are compared with ``memcmp`` (faster than ``torch.equal``, and the input guard runs
    after every batch of every variant); others with ``torch.equal`` of their integer views.
    """
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    cmp = _memcmp()
    if (cmp is not None and a.device.type == "cpu" and b.device.type == "cpu" and a.layout == torch.strided
            and b.layout == torch.strided and not a.is_nested and not b.is_nested and a.is_contiguous()
            and b.is_contiguous()):
        nbytes = a.numel() * a.element_size()
        return nbytes == 0 or cmp(a.data_ptr(), b.data_ptr(), nbytes) == 0
    return bool(torch.equal(_bits(a), _bits(b)))


class InputGuard:
    """A saved copy of named input tensors, to detect and undo in-place changes.

    Args:
        tensors: name -> tensor (e.g. ``{"q": q, "k": k, "v": v, "grad_out": g}``); None values are ignored.
    """

    def __init__(self, tensors: dict[str, torch.Tensor | None]) -> None:
        self.live = {n: t for n, t in tensors.items() if t is not None}
        self.saved = {n: t.detach().clone() for n, t in self.live.items()}

    def changed(self, leaves: Sequence[torch.Tensor] | None = None,
                leaf_names: Iterable[str] = ("q", "k", "v")) -> list[str]:
        """Names of the tensors whose bits differ from the saved copy; a variant's leaf copies of q, k, v (the
        tensors ``fwd_bwd`` and ``bwd`` differentiate) are compared with the saved q, k, v as ``q (leaf)``..."""
        out = [n for n, t in self.live.items() if not same_bits(t.detach(), self.saved[n])]
        for name, leaf in zip(leaf_names, leaves or ()):
            if name in self.saved and not same_bits(leaf.detach(), self.saved[name]):
                out.append(f"{name} (its own leaf copy)")
        return out

    def restore(self) -> None:
        """Copy the saved values back into the live tensors (in place, so every holder sees them)."""
        with torch.no_grad():
            for n, t in self.live.items():
                if not same_bits(t.detach(), self.saved[n]):
                    t.detach().copy_(self.saved[n])

    def check(self, when: str, leaves: Sequence[torch.Tensor] | None = None) -> None:
        """Raise :class:`InputsModifiedError` (after restoring the inputs) if anything changed.

        Args:
            when: when the change happened, for the message (e.g. ``during its first call``).
            leaves: the variant's own leaf copies of q, k, v, if any.
        """
        names = self.changed(leaves)
        if not names:
            return
        self.restore()
        raise InputsModifiedError(
            f"the variant modified its inputs in place: {', '.join(names)} changed {when} (the inputs were "
            "restored from a saved copy for the variants measured after it)")
