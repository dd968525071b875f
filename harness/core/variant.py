"""The one interface every attention variant implements, and how it says what it supports.

A variant is a class with class attributes that declare its reach (patterns, devices, dtypes, largest head dim,
exact or approximate, backward) and a ``forward(q, k, v, pattern)`` that returns the attention output
``softmax(q kᵀ / sqrt(d) + mask) v`` for tensors shaped ``(batch, heads, seq_len, head_dim)``. Variants that can
say which weights they apply to ``v`` (the textbook one, the approximations) return them from the optional
``attention_weights``, for pictures.

``not_supported_reasons(case)`` turns the declarations into sentences a user can act on, e.g.
``"head_dim=256 (supported: <= 128)"``; an empty list means supported. Variants that depend on the environment
(a CUDA build, an importable package, a GPU generation) add their own reasons in ``extra_reasons``.

Setup work (building a mask or a block layout, compiling) belongs in ``prepare``; the harness times ``prepare``
plus the first call as setup cost, and only later calls as steady state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import ClassVar

import torch

from harness.core.case import Case, check_qkv, dtype_name
from harness.core.pattern import PATTERN_KINDS, Pattern

__all__ = ["AttentionFn", "DEFAULT_GRAD_TOLERANCES", "DEFAULT_TOLERANCES", "Variant", "case_for", "check_param",
           "fold_groups", "unfold_groups"]

#: What ``prepare`` returns: the steady-state callable ``fn(q, k, v) -> out``.
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

#: Default relative-L2 tolerances of the output against the float64 baseline, per dtype, for exact variants.
DEFAULT_TOLERANCES: Mapping[str, float] = MappingProxyType(
    {"float64": 1e-10, "float32": 2e-5, "float16": 5e-3, "bfloat16": 2e-2})
#: Default relative-L2 tolerances of dq, dk, dv.
DEFAULT_GRAD_TOLERANCES: Mapping[str, float] = MappingProxyType(
    {"float64": 1e-9, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2})


class Variant:
    """Base class of attention variants. Subclass, set the class attributes, implement ``forward``.

    Class attributes:
        name: unique registry name.
        description: one line for ``attnbench list``.
        patterns: pattern kinds it computes (see :data:`harness.core.pattern.PATTERN_KINDS`).
        devices: device types it runs on (``cpu``, ``cuda``).
        dtypes: dtype names it accepts.
        max_head_dim: largest head dim, or None for no limit.
        exact: False for approximations (their error is a property of the method, not a bug).
        supports_backward: whether gradients flow through ``forward``.
        supports_gqa: computes grouped-query heads (k and v with ``kv_heads < heads``); ``gqa_reason`` says why
            not otherwise. A variant that supports them by expanding k and v to every head must say so in its
            description: its memory shows the copy.
        supports_q_len: computes queries shorter than keys (``q_len < seq_len``, bottom-right aligned as
            :mod:`harness.core.pattern` defines); ``q_len_reason`` says why not otherwise.
        doc_layouts: the layouts of a variable-length batch it computes with document masks (``packed``,
            ``padded``; :mod:`harness.core.varlen`), or none; ``doc_layouts_reason`` says why not otherwise. A variant
            that declares none is never handed documents, so it cannot give a wrong answer for them.
        tolerances / grad_tolerances: relative-L2 tolerances per dtype used by the conformance suite.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    patterns: ClassVar[frozenset[str]] = frozenset({"full"})
    devices: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})
    dtypes: ClassVar[frozenset[str]] = frozenset({"float32", "bfloat16", "float16"})
    max_head_dim: ClassVar[int | None] = None
    exact: ClassVar[bool] = True
    supports_backward: ClassVar[bool] = True
    supports_gqa: ClassVar[bool] = False
    gqa_reason: ClassVar[str] = "not declared (supports_gqa = False)"
    supports_q_len: ClassVar[bool] = False
    q_len_reason: ClassVar[str] = "not declared (supports_q_len = False)"
    doc_layouts: ClassVar[frozenset[str]] = frozenset()
    doc_layouts_reason: ClassVar[str] = "not declared (doc_layouts is empty)"
    tolerances: ClassVar[Mapping[str, float]] = DEFAULT_TOLERANCES
    grad_tolerances: ClassVar[Mapping[str, float]] = DEFAULT_GRAD_TOLERANCES

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Freeze a subclass's own tolerance tables (a read-only copy): no variant can change another's bounds."""
        super().__init_subclass__(**kwargs)
        for attr in ("tolerances", "grad_tolerances"):
            table = cls.__dict__.get(attr)
            if table is not None and not isinstance(table, MappingProxyType):
                setattr(cls, attr, MappingProxyType(dict(table)))

    # ------------------------------------------------------------------ what it supports
    def not_supported_reasons(self, case: Case) -> list[str]:
        """Sentences saying why ``case`` cannot run here; empty when it can."""
        reasons: list[str] = []
        if case.pattern.kind not in self.patterns:
            reasons.append(f"pattern={case.pattern.kind} (supported: {_join(self.patterns, PATTERN_KINDS)})")
        if case.device_type not in self.devices:
            reasons.append(f"device={case.device_type} (supported: {_join(self.devices)})")
        if case.dtype not in self.dtypes:
            reasons.append(f"dtype={case.dtype} (supported: {_join(self.dtypes)})")
        if self.max_head_dim is not None and case.head_dim > self.max_head_dim:
            reasons.append(f"head_dim={case.head_dim} (supported: <= {self.max_head_dim})")
        if case.needs_backward and not self.supports_backward:
            reasons.append(f"mode={case.mode} needs a backward pass (supported: mode=fwd only)")
        if case.is_grouped and not self.supports_gqa:
            reasons.append(f"kv_heads={case.kv_heads} with heads={case.heads}: grouped-query heads are not "
                           f"computed by {self.name} (supported: kv_heads = heads): {self.gqa_reason}")
        if not case.is_square and not self.supports_q_len:
            reasons.append(f"q_len={case.q_len} with seq_len={case.seq_len}: queries shorter than keys are not "
                           f"computed by {self.name} (supported: q_len = seq_len): {self.q_len_reason}")
        if case.layout is not None and case.layout not in self.doc_layouts:
            spec = case.lengths if len(case.lengths) <= 60 else case.lengths[:57] + "..."
            reasons.append(f"layout={case.layout} (lengths={spec}): {self.name} does not compute the document masks "
                           f"of a {case.layout} batch (supported: "
                           f"{_join(self.doc_layouts) if self.doc_layouts else 'no documents'}): "
                           f"{self.doc_layouts_reason}")
        reasons.extend(self.extra_reasons(case))
        return reasons

    def extra_reasons(self, case: Case) -> list[str]:
        """Hook for reasons beyond the declarations (a missing package, CUDA build, GPU generation)."""
        return []

    def supports(self, case: Case) -> bool:
        return not self.not_supported_reasons(case)

    def tolerance(self, dtype: str, grad: bool = False) -> float:
        """Relative-L2 tolerance against the float64 baseline for ``dtype`` (output, or gradients)."""
        table = self.grad_tolerances if grad else self.tolerances
        return table.get(dtype, max(table.values()))

    # ------------------------------------------------------------------ computing
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        """Attention output for ``pattern``, same shape and dtype as ``q``. Implemented by each variant."""
        raise NotImplementedError(f"variant {self.name!r} does not implement forward()")

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          pattern: Pattern) -> torch.Tensor | None:
        """The weights this variant applies to ``v``, for pictures (``attnbench show``); never timed.

        Optional: the default returns None, meaning the variant has no weights to give (fused kernels never
        materialise them; the picture of what they compute is the exact float64 one). A variant that overrides it
        returns ``(batch, heads, q_len, seq_len)``, row ``i`` holding the weight of each key in output row ``i``,
        so that ``forward(q, k, v, pattern)`` equals ``weights @ v`` per head (query head ``h`` reading key/value
        head ``h // (heads // kv_heads)``) up to rounding. Exact variants give the softmax as they compute it in
        their dtype; approximations give the weights they really apply (linear attention's normalised feature
        products, Nyström's low-rank product, which may be negative). Memory: the whole matrix, once.
        """
        return None

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        """Do the setup work for ``case`` (masks, layouts, compilation) and return the steady-state callable.

        The default needs no setup. Override to move one-off work out of the timed calls.
        """
        return lambda q, k, v: self.forward(q, k, v, pattern)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 pattern: Pattern | None = None) -> torch.Tensor:
        """Validated entry point: checks the inputs and the declarations, then runs ``forward``."""
        pattern = Pattern() if pattern is None else pattern
        check_qkv(q, k, v)
        case = case_for(q, pattern, mode="fwd_bwd" if q.requires_grad or k.requires_grad or v.requires_grad else "fwd",
                        k=k)
        reasons = self.not_supported_reasons(case)
        if reasons:
            raise ValueError(f"variant {self.name!r} cannot run {case.describe()}: " + "; ".join(reasons))
        return self.forward(q, k, v, pattern)

    def __repr__(self) -> str:
        return f"<variant {self.name}>"


def check_param(key: str, value: object, minimum: int = 1) -> int:
    """Validate an integer constructor parameter of a variant (block size, chunk, features...).

    Returns:
        ``value``, when it is an integer (not a bool) of at least ``minimum``.

    Raises:
        ValueError: naming the key, the value and what is allowed.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key}={value!r} is out of range (allowed: an integer >= {minimum})")
    return value


def case_for(q: torch.Tensor, pattern: Pattern, mode: str = "fwd", seed: int = 0,
             k: torch.Tensor | None = None) -> Case:
    """The :class:`Case` describing tensors shaped like ``q`` (and ``k``: key/value heads and length; default:
    shaped like ``q``), used to check support for given tensors.

    Args:
        q: ``(batch, heads, q_len, head_dim)``.
        pattern: the pattern.
        mode: the mode.
        seed: the seed.
        k: ``(batch, kv_heads, seq_len, head_dim)``, or None for square self-attention with ``q``'s shape.

    Returns:
        The case.
    """
    b, h, lq, d = q.shape
    hkv, n = (h, lq) if k is None else (k.shape[1], k.shape[2])
    return Case(batch=b, heads=h, seq_len=n, head_dim=d, dtype=dtype_name(q.dtype), device=str(q.device),
                pattern=pattern, mode=mode, seed=seed, kv_heads=hkv, q_len=lq)


def fold_groups(q: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """``(B, H, Lq, D)`` -> ``(B, kv_heads, G * Lq, D)`` with ``G = H // kv_heads``: the query heads that share a
    key/value head stacked as rows (head ``h`` under key/value head ``h // G``), so one matmul per key/value head
    serves its group without copying K and V to every head. A view when ``q`` is contiguous.

    Args:
        q: queries ``(B, H, Lq, D)``.
        kv_heads: key/value heads (divides ``H``).

    Returns:
        ``(B, kv_heads, G * Lq, D)``; :func:`unfold_groups` undoes it.
    """
    b, h, lq, d = q.shape
    return q.reshape(b, kv_heads, (h // kv_heads) * lq, d)


def unfold_groups(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, Hkv, G * Lq, D)`` -> ``(B, heads, Lq, D)``: the inverse of :func:`fold_groups`.

    Args:
        x: a folded tensor.
        heads: query heads ``H``.

    Returns:
        ``(B, H, Lq, D)``.
    """
    b, hkv, rows, d = x.shape
    return x.reshape(b, heads, rows * hkv // heads, d)


def _join(values: frozenset[str], order: tuple[str, ...] | None = None) -> str:
    if order is not None:
        return ", ".join(v for v in order if v in values)
    return ", ".join(sorted(values))
