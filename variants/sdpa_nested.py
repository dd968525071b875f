"""``sdpa_nested_*``: ``scaled_dot_product_attention`` on nested (jagged) tensors: a packed batch without masks.

A packed batch of documents ``(1, heads, total, head_dim)`` is viewed as a jagged nested tensor of the documents
(``torch.nested.nested_tensor_from_jagged`` with the documents' offsets, ``(documents, heads, ragged, head_dim)``)
and handed to SDPA, which attends within each document by construction: no document mask, no padding. The
values are copied once per call to the ``(total, heads, head_dim)`` layout jagged tensors need (timed with the
call: that copy is part of what this path costs). Each variant pins one backend with ``sdpa_kernel``:

- ``sdpa_nested_math``: PyTorch's math backend (CPU and CUDA). On the CPU it is the only backend that takes jagged
  tensors; it converts them to a strided nested tensor and runs the math per document.
- ``sdpa_nested_flash``, ``sdpa_nested_efficient``: the FlashAttention-2 and memory-efficient kernels' varlen
  entry points (CUDA only; not run on this project's CPU machine: they need a GPU check).

Patterns: ``full`` and ``causal`` (``is_causal=True``, causal within each document). Only the packed layout (a
jagged tensor is that layout). What a backend refuses is asked of PyTorch: a probe call on tiny jagged tensors of
the case's device, dtype, head dim, grouping and grad mode, under the pinned backend; its "No viable backend"
answer comes with the reasons PyTorch logs for each backend (e.g. torch 2.13's math backend on jagged tensors:
"Nested tensors for query / key are not supported when is_causal=True"), which become the row's reason.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness import AttentionFn, Case, Pattern, Variant, case_for, register_variant
from variants._quiet import kept_log
from variants.sdpa import cuda_unavailable_reason

#: The logger PyTorch's jagged SDPA dispatch writes its per-backend reasons to.
_NESTED_LOGGER = "torch.nested._internal.sdpa"


@functools.lru_cache(maxsize=256)
def jagged_reasons(backend: SDPBackend, device: str, dtype: str, head_dim: int, causal: bool, backward: bool,
                   group: int) -> tuple[str, ...]:
    """Why PyTorch's jagged SDPA under ``backend`` cannot run this combination (empty when a probe call works).

    Args:
        backend: the pinned backend.
        device: the device.
        dtype: dtype name.
        head_dim: the head size.
        causal: ``is_causal``.
        backward: the mode needs gradients.
        group: query heads per key/value head (> 1: ``enable_gqa``).

    Returns:
        One sentence with PyTorch's reasons, or ``()``.
    """
    dt = getattr(torch, dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(1, 2 * group, 5, head_dim, generator=gen).to(device, dt).requires_grad_(backward)
    k = torch.randn(1, 2, 5, head_dim, generator=gen).to(device, dt).requires_grad_(backward)
    offsets = torch.tensor([0, 2, 5], device=device)
    with kept_log(_NESTED_LOGGER) as records:
        try:
            out = _attend(q, k, k, offsets, backend, causal, group > 1)
            if backward:
                out.sum().backward()
            return ()
        except Exception as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = "; ".join(dict.fromkeys(r.rstrip(":") for r in records if r and not r.endswith("because:")))
    what = (f"dtype={dtype}, head_dim={head_dim}, {'causal' if causal else 'full'}"
            + (", with backward" if backward else "")
            + (f", {group} query heads per key/value head" if group > 1 else ""))
    return (f"PyTorch {torch.__version__}'s jagged (nested-tensor) SDPA has no {backend.name} kernel for {what} "
            f"on {torch.device(device).type}: {text}" + (f" ({detail})" if detail else ""),)


def _jagged(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``(1, H, total, D)`` -> a jagged ``(documents, H, ragged, D)`` nested tensor (values copied contiguous)."""
    return torch.nested.nested_tensor_from_jagged(x[0].transpose(0, 1).contiguous(), offsets).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor, backend: SDPBackend,
            causal: bool, gqa: bool) -> torch.Tensor:
    kwargs = {"is_causal": True} if causal else {}
    if gqa:
        kwargs["enable_gqa"] = True
    with sdpa_kernel(backend):
        out = F.scaled_dot_product_attention(_jagged(q, offsets), _jagged(k, offsets), _jagged(v, offsets), **kwargs)
    return out.transpose(1, 2).values().transpose(0, 1).unsqueeze(0)


class _SdpaNestedBase(Variant):
    """Shared behaviour of the ``sdpa_nested_*`` variants; subclasses set ``backend``."""

    backend: ClassVar[SDPBackend] = SDPBackend.MATH
    patterns = frozenset({"full", "causal"})
    dtypes = frozenset({"float32", "bfloat16", "float16"})
    supports_gqa = True
    q_len_reason = "each document is a whole sequence of queries and keys"
    doc_layouts = frozenset({"packed"})
    doc_layouts_reason = "it takes the documents as one jagged (nested) tensor, which is the packed layout"

    def extra_reasons(self, case: Case) -> list[str]:
        if not case.pattern.has_documents:
            return ["lengths=null: sdpa_nested_* computes variable-length batches only (supported: "
                    "lengths=<documents>, layout=packed); one sequence per batch row is sdpa_*'s case"]
        if (case.layout not in self.doc_layouts or case.pattern.kind not in self.patterns
                or case.device_type not in self.devices or case.dtype not in self.dtypes):
            return []  # the declared reasons say it
        missing = cuda_unavailable_reason(case)
        if missing:
            return [missing]
        return list(jagged_reasons(self.backend, case.device, case.dtype, case.head_dim, case.pattern.is_causal,
                                   case.needs_backward, case.heads // case.kv_heads))

    def prepare(self, pattern: Pattern, case: Case) -> AttentionFn:
        offsets = torch.tensor(pattern.doc_starts(), device=case.device)
        backend, causal, gqa = self.backend, pattern.is_causal, case.is_grouped
        return lambda q, k, v: _attend(q, k, v, offsets, backend, causal, gqa)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        return self.prepare(pattern, case_for(q, pattern, k=k))(q, k, v)


@register_variant
class SdpaNestedMath(_SdpaNestedBase):
    name = "sdpa_nested_math"
    description = "SDPA on a jagged nested tensor of the documents (packed, no mask), math backend"
    backend = SDPBackend.MATH


@register_variant
class SdpaNestedFlash(_SdpaNestedBase):
    name = "sdpa_nested_flash"
    description = "SDPA on a jagged nested tensor of the documents, FlashAttention-2 varlen kernel (CUDA)"
    backend = SDPBackend.FLASH_ATTENTION
    devices = frozenset({"cuda"})


@register_variant
class SdpaNestedEfficient(_SdpaNestedBase):
    name = "sdpa_nested_efficient"
    description = "SDPA on a jagged nested tensor of the documents, memory-efficient varlen kernel (CUDA)"
    backend = SDPBackend.EFFICIENT_ATTENTION
    devices = frozenset({"cuda"})
