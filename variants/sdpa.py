"""``sdpa_*``: PyTorch's ``scaled_dot_product_attention``, pinned to one backend each, never falling back.

Each variant enters ``torch.nn.attention.sdpa_kernel`` with exactly one ``SDPBackend`` around every call, so
PyTorch either runs that kernel or raises; it never silently picks another one.

- ``sdpa_flash``: FlashAttention-2 on CUDA (float16/bfloat16); on the CPU, PyTorch's own CPU flash kernel
  (float32, bfloat16, float16, no head-dim limit).
- ``sdpa_efficient``: the memory-efficient (xFormers/CUTLASS) kernel, CUDA only.
- ``sdpa_cudnn``: cuDNN's fused attention, CUDA only (float16/bfloat16, recent GPUs).
- ``sdpa_math``: PyTorch's reference composite ("math") implementation, on any device.

Patterns: ``full`` and ``causal`` (``is_causal=True``, the top-left triangle, which is this project's causal
mask for square attention).

Grouped-query heads: ``enable_gqa=True`` (torch >= 2.5), k and v passed with their own head count. Queries
shorter than keys (``q_len < seq_len``) follow the Pattern's bottom-right alignment: ``full`` needs nothing;
``causal`` with one query attends to every key (no mask); with several queries, SDPA's ``is_causal`` would be
top-left, so the bottom-right mask is given explicitly: ``torch.nn.attention.bias.causal_lower_right`` for
``sdpa_flash`` on CUDA (which runs the flash kernel itself, and only where PyTorch's flash check accepts the case,
so the pinned backend is what runs), and the Pattern's own boolean mask (``attn_mask``) for the other backends and
the CPU flash kernel. Whether a backend takes grouped heads, a mask or a short query is asked of PyTorch's
public checks like everything else.

Variable-length batches (packed or padded, :mod:`harness.core.varlen`): the Pattern's mask as ``attn_mask``, one per
batch row of a padded batch (``(rows, 1, N, N)``, padding queries attending to every key so that their discarded
rows stay finite). The kernel computes every tile of the ``N x N`` matrix, masked or not: what packing costs a
dense kernel with a document mask, and what padding costs it. ``sdpa_nested_*`` is SDPA on jagged tensors instead.

Why a CUDA case is not supported is asked of PyTorch itself, through its public support checks:
``torch.backends.cuda.can_use_flash_attention``, ``can_use_efficient_attention`` and ``can_use_cudnn_attention``,
called with ``debug=True`` on an ``SDPAParams`` of the case (batch = heads = 1, empty tensors of the case's
sequence length, head dim and dtype, ``requires_grad`` when the mode has a backward). No kernel runs. When a
check says no, the sentences it warns with (e.g. "Flash attention only supports gpu architectures in the range
[sm80, sm121]") become the reason. The answer is cached per (device, dtype, seq_len, head_dim, causal, backward).
Only a torch without these functions falls back to the old way: a probe call of the pinned backend, whose
"No available kernel" error and debug warnings give the reason.
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness import Case, Pattern, Variant, register_variant


@functools.lru_cache(maxsize=1)
def _has_enable_gqa() -> bool:
    """Whether this torch's ``scaled_dot_product_attention`` takes ``enable_gqa`` (torch >= 2.5)."""
    x = torch.zeros(1, 2, 1, 1)
    try:
        F.scaled_dot_product_attention(x, x[:, :1], x[:, :1], enable_gqa=True)
    except TypeError:
        return False
    return True

#: Warning headers PyTorch emits before "No available kernel", per backend (the text before " kernel not used").
_HEADER_NAMES: dict[SDPBackend, str] = {
    SDPBackend.FLASH_ATTENTION: "flash attention",
    SDPBackend.EFFICIENT_ATTENTION: "memory efficient",
    SDPBackend.CUDNN_ATTENTION: "cudnn attention",
    SDPBackend.MATH: "math",
}
_HEADER = re.compile(r"^\s*(.+?) kernel not used because:?\s*$", re.IGNORECASE)
_TRIGGERED = re.compile(r"\s*\(Triggered internally at .*\)\s*$", re.DOTALL)


def cuda_unavailable_reason(case: Case) -> str | None:
    """A reason when ``case`` asks for CUDA and this process has none; None otherwise."""
    if case.device_type != "cuda" or torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"device=cuda is not available: torch {torch.__version__} is built without CUDA"
    return f"device=cuda is not available: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"


class _SdpaBase(Variant):
    """Shared behaviour of the ``sdpa_*`` variants; subclasses set ``backend`` and the CUDA dtypes."""

    backend: ClassVar[SDPBackend] = SDPBackend.MATH
    patterns = frozenset({"full", "causal"})
    devices = frozenset({"cpu", "cuda"})
    dtypes = frozenset({"float32", "bfloat16", "float16"})
    #: dtypes the backend's CUDA kernel accepts (None: all declared dtypes).
    cuda_dtypes: ClassVar[frozenset[str] | None] = None
    #: dtypes it accepts on the CPU (None: all declared dtypes).
    cpu_dtypes: ClassVar[frozenset[str] | None] = None
    supports_gqa = True
    supports_q_len = True
    doc_layouts = frozenset({"packed", "padded"})

    def extra_reasons(self, case: Case) -> list[str]:
        missing = cuda_unavailable_reason(case)
        if missing:
            return [missing]
        allowed = self.cuda_dtypes if case.device_type == "cuda" else self.cpu_dtypes
        if allowed is not None and case.dtype not in allowed and case.dtype in self.dtypes:
            return [f"dtype={case.dtype} on {case.device_type} (the {self.backend.name} kernel supports: "
                    f"{', '.join(sorted(allowed))})"]
        if case.is_grouped and not _has_enable_gqa():
            return [f"kv_heads={case.kv_heads} with heads={case.heads}: torch {torch.__version__}'s "
                    "scaled_dot_product_attention has no enable_gqa (added in torch 2.5)"]
        if case.device_type == "cuda" and self.backend != SDPBackend.MATH:
            how = _causal_how(self.backend, case)
            return list(cuda_kernel_reasons(self.backend, case.device, case.dtype, case.seq_len, case.head_dim,
                                            how == "is_causal", case.needs_backward,
                                            group=case.heads // case.kv_heads, q_len=case.q_len,
                                            mask=how in ("mask", "documents")))
        return []

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, _case_of(q, k, pattern))(q, k, v)

    def prepare(self, pattern: Pattern, case: Case):
        backend = self.backend
        kwargs = sdpa_arguments(backend, pattern, case)

        def call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, **kwargs)

        return call


def _case_of(q: torch.Tensor, k: torch.Tensor, pattern: Pattern) -> Case:
    from harness import case_for

    return case_for(q, pattern, k=k)


def _causal_how(backend: SDPBackend, case: Case) -> str:
    """How a case's mask reaches SDPA: ``none``, ``is_causal`` (square), ``lower_right`` (CUDA flash: torch's
    ``causal_lower_right`` bias), ``mask`` (the Pattern's bottom-right boolean mask) or ``documents`` (the
    Pattern's document or padding masks, one per batch row)."""
    if case.pattern.has_documents:
        return "documents"
    if case.pattern.kind != "causal" or case.q_len == 1:  # one query, bottom-right: it sees every key
        return "none"
    if case.is_square:
        return "is_causal"
    if backend == SDPBackend.FLASH_ATTENTION and case.device_type == "cuda":
        return "lower_right"
    return "mask"


def sdpa_arguments(backend: SDPBackend, pattern: Pattern, case: Case) -> dict:
    """Keyword arguments of ``scaled_dot_product_attention`` for ``case`` under ``backend``.

    Args:
        backend: the pinned backend.
        pattern: ``full`` or ``causal``.
        case: the case (its kv_heads and q_len decide GQA and the mask).

    Returns:
        ``is_causal``, ``attn_mask`` and ``enable_gqa`` as needed (the mask built here, once).
    """
    kwargs: dict = {}
    if case.is_grouped:
        kwargs["enable_gqa"] = True
    how = _causal_how(backend, case)
    if how == "is_causal":
        kwargs["is_causal"] = True
    elif how == "lower_right":
        from torch.nn.attention.bias import causal_lower_right

        kwargs["attn_mask"] = causal_lower_right(case.q_len, case.seq_len)
    elif how == "mask":
        kwargs["attn_mask"] = pattern.dense_mask(case.seq_len, case.device, q_len=case.q_len)
    elif how == "documents":
        kwargs["attn_mask"] = pattern.batch_dense_mask(case.seq_len, case.device, fill_padding_rows=True)[:, None]
    return kwargs


#: PyTorch's public support check of each fused backend (``torch.backends.cuda``), by function name.
_SUPPORT_CHECKS: dict[SDPBackend, str] = {
    SDPBackend.FLASH_ATTENTION: "can_use_flash_attention",
    SDPBackend.EFFICIENT_ATTENTION: "can_use_efficient_attention",
    SDPBackend.CUDNN_ATTENTION: "can_use_cudnn_attention",
}


def support_check(backend: SDPBackend):
    """PyTorch's public ``can_use_*_attention`` function for ``backend``, or None where this torch lacks it.

    Args:
        backend: a fused backend (flash, efficient, cudnn).

    Returns:
        The function ``(params, debug) -> bool``, or None (no such function, or no ``SDPAParams``).
    """
    name = _SUPPORT_CHECKS.get(backend)
    if name is None or not hasattr(torch.backends.cuda, "SDPAParams"):
        return None
    return getattr(torch.backends.cuda, name, None)


def sdpa_params(q: torch.Tensor, causal: bool, k: torch.Tensor | None = None, mask: torch.Tensor | None = None):
    """``torch.backends.cuda.SDPAParams`` for attention of ``q`` on ``k`` (default: self-attention on ``q``), with
    an optional mask, no dropout; ``enable_gqa`` when ``k`` has fewer heads.

    torch 2.5 added ``enable_gqa`` as a seventh argument; older versions take six.
    """
    cls = torch.backends.cuda.SDPAParams
    k = q if k is None else k
    gqa = k.shape[1] != q.shape[1]
    try:
        return cls(q, k, k, mask, 0.0, causal, gqa)
    except TypeError:
        return cls(q, k, k, mask, 0.0, causal)


@functools.lru_cache(maxsize=512)
def cuda_kernel_reasons(backend: SDPBackend, device: str, dtype: str, seq_len: int, head_dim: int, causal: bool,
                        backward: bool, group: int = 1, q_len: int | None = None,
                        mask: bool = False) -> tuple[str, ...]:
    """Why PyTorch's ``backend`` kernel cannot run this combination (empty when it can), asked of PyTorch.

    Args:
        backend: the pinned fused backend.
        device: the CUDA device.
        dtype: dtype name.
        seq_len, head_dim: the case's shape (batch and heads do not enter the support rules).
        causal: ``is_causal``.
        backward: the mode needs gradients.
        group: query heads per key/value head (> 1: ``enable_gqa``, asked with ``group`` query heads and one
            key/value head).
        q_len: queries (default ``seq_len``).
        mask: a boolean ``(q_len, seq_len)`` mask is passed (``attn_mask``).

    Returns:
        One sentence naming the case and PyTorch's reasons, or ``()``. A torch without the public check falls
        back to a probe call (:func:`_probe_cuda`).
    """
    check = support_check(backend)
    lq = seq_len if q_len is None else q_len
    if check is None:
        if group > 1 or lq != seq_len or mask:
            return (f"torch {torch.__version__} has no public SDPA support check to ask about grouped heads or "
                    "short queries",)
        return _probe_cuda(backend, device, dtype, seq_len, head_dim, causal, backward)
    try:
        dt = getattr(torch, dtype)
        q = torch.empty(1, group, lq, head_dim, device=device, dtype=dt, requires_grad=backward)
        k = torch.empty(1, 1, seq_len, head_dim, device=device, dtype=dt, requires_grad=backward) if (
            group > 1 or lq != seq_len) else None
        m = torch.ones(lq, seq_len, device=device, dtype=torch.bool) if mask else None
        params = sdpa_params(q, causal, k, m)
    except Exception:  # could not even build the question (e.g. no memory): let the real call report it
        return ()
    with warnings.catch_warnings(record=True) as caught, sdpa_kernel(backend):  # the backend enabled, as in a call
        warnings.simplefilter("always")
        ok = bool(check(params, True))
    if ok:
        return ()
    messages = [_TRIGGERED.sub("", str(w.message)).strip() for w in caught]
    detail = "; ".join(dict.fromkeys(m for m in messages if m))
    if not detail:
        detail = f"torch.backends.cuda.{_SUPPORT_CHECKS[backend]} returned False without a reason"
    what = _what(dtype, seq_len, head_dim, causal, backward)
    if group > 1:
        what += f", {group} query heads per key/value head"
    if lq != seq_len:
        what += f", q_len={lq}"
    if mask:
        what += " with the bottom-right causal mask as attn_mask"
    return (f"PyTorch {torch.__version__} has no {backend.name} kernel for {what}: {detail}",)


def _what(dtype: str, seq_len: int, head_dim: int, causal: bool, backward: bool) -> str:
    return (f"dtype={dtype}, seq_len={seq_len}, head_dim={head_dim}, {'causal' if causal else 'full'}"
            f"{', with backward' if backward else ''}")


@functools.lru_cache(maxsize=512)
def _probe_cuda(backend: SDPBackend, device: str, dtype: str, seq_len: int, head_dim: int, causal: bool,
                backward: bool) -> tuple[str, ...]:
    """Fallback for a torch without the public support checks: run ``backend`` and read why it refused.

    A probe with batch = heads = 1 (the kernels' support rules do not depend on them) runs forward, and
    backward when asked, under the pinned backend. "No available kernel" turns into the debug warnings PyTorch
    printed for that backend. Any other failure (out of memory, a kernel error) is not a support question: the
    probe returns no reason and the real call reports it.
    """
    dt = getattr(torch, dtype)
    try:
        q = torch.randn(1, 1, seq_len, head_dim, device=device, dtype=dt, requires_grad=backward)
    except Exception:  # the probe itself could not allocate: let the real call report what happens
        return ()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q, q, q, is_causal=causal)
                if backward:
                    out.sum().backward()
            torch.cuda.synchronize(device)
            return ()
        except RuntimeError as exc:
            text = str(exc)
            if "No available kernel" not in text and "No viable backend" not in text:
                if backward and "backward" in text.lower():
                    return (f"the {backend.name} kernel has no backward for this case: {_first_line(text)}",)
                return ()
    return (_explain(backend, [str(w.message) for w in caught], dtype, seq_len, head_dim, causal, backward),)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _explain(backend: SDPBackend, messages: list[str], dtype: str, seq_len: int, head_dim: int, causal: bool,
             backward: bool) -> str:
    """Pick this backend's section out of PyTorch's debug warnings and make one sentence of it."""
    want = _HEADER_NAMES[backend]
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for raw in messages:
        msg = _TRIGGERED.sub("", raw).strip()
        head = _HEADER.match(msg)
        if head:
            current = head.group(1).strip().lower()
            sections.setdefault(current, [])
        elif current is not None and msg:
            sections[current].append(msg)
    mine = next((lines for name, lines in sections.items() if want in name), None)
    what = _what(dtype, seq_len, head_dim, causal, backward)
    if mine:
        detail = "; ".join(dict.fromkeys(mine))
    else:
        detail = "; ".join(dict.fromkeys(_TRIGGERED.sub("", m).strip() for m in messages)) or "no reason given"
    return f"PyTorch {torch.__version__} has no {backend.name} kernel for {what}: {detail}"


@register_variant
class SdpaFlash(_SdpaBase):
    name = "sdpa_flash"
    description = "F.scaled_dot_product_attention pinned to FlashAttention-2 (CUDA) / the CPU flash kernel"
    backend = SDPBackend.FLASH_ATTENTION
    cuda_dtypes = frozenset({"float16", "bfloat16"})


@register_variant
class SdpaEfficient(_SdpaBase):
    name = "sdpa_efficient"
    description = "F.scaled_dot_product_attention pinned to the memory-efficient kernel (CUDA)"
    backend = SDPBackend.EFFICIENT_ATTENTION
    devices = frozenset({"cuda"})


@register_variant
class SdpaCudnn(_SdpaBase):
    name = "sdpa_cudnn"
    description = "F.scaled_dot_product_attention pinned to cuDNN fused attention (CUDA)"
    backend = SDPBackend.CUDNN_ATTENTION
    devices = frozenset({"cuda"})
    cuda_dtypes = frozenset({"float16", "bfloat16"})


@register_variant
class SdpaMath(_SdpaBase):
    name = "sdpa_math"
    description = "F.scaled_dot_product_attention pinned to PyTorch's composite math implementation"
    backend = SDPBackend.MATH
