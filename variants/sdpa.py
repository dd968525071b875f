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

Why a CUDA case is not supported is asked of PyTorch itself: the first time a (dtype, seq_len, head_dim,
causal, backward) combination is seen on a device, a probe call with batch = heads = 1 runs the pinned
backend; when PyTorch answers "No available kernel", the debug warnings it emits for that backend (e.g.
"Flash attention only supports gpu architectures in the range [sm80, sm121]") become the reasons. The answer
is cached per combination.
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness import Pattern, Variant, register_variant
from harness.inputs import Case

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

    def extra_reasons(self, case: Case) -> list[str]:
        missing = cuda_unavailable_reason(case)
        if missing:
            return [missing]
        allowed = self.cuda_dtypes if case.device_type == "cuda" else self.cpu_dtypes
        if allowed is not None and case.dtype not in allowed and case.dtype in self.dtypes:
            return [f"dtype={case.dtype} on {case.device_type} (the {self.backend.name} kernel supports: "
                    f"{', '.join(sorted(allowed))})"]
        if case.device_type == "cuda" and self.backend != SDPBackend.MATH:
            return list(_probe_cuda(self.backend, case.device, case.dtype, case.seq_len, case.head_dim,
                                    case.pattern.kind == "causal", case.needs_backward))
        return []

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        causal = pattern.kind == "causal"
        with sdpa_kernel(self.backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def prepare(self, pattern: Pattern, case: Case):
        backend, causal = self.backend, pattern.kind == "causal"

        def call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        return call


@functools.lru_cache(maxsize=512)
def _probe_cuda(backend: SDPBackend, device: str, dtype: str, seq_len: int, head_dim: int, causal: bool,
                backward: bool) -> tuple[str, ...]:
    """Ask PyTorch whether ``backend`` runs this combination; return its reasons when it does not.

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
    what = (f"dtype={dtype}, seq_len={seq_len}, head_dim={head_dim}, {'causal' if causal else 'full'}"
            f"{', with backward' if backward else ''}")
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
