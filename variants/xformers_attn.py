"""``xformers``: ``xformers.ops.memory_efficient_attention`` with xFormers' own layout and attention biases.

xFormers takes tensors shaped ``(batch, seq_len, heads, head_dim)``; the harness's ``(batch, heads, seq_len,
head_dim)`` tensors are passed as transposed views (no copy) and the output is transposed back the same way.
Patterns map to xFormers' biases, which it applies inside the kernel without materializing a mask:

- ``full``: no bias; ``causal``: ``LowerTriangularMask`` (``LowerTriangularFromBottomRightMask`` when queries
  are shorter than keys: the Pattern's bottom-right alignment);
- ``window`` (causal, width ``w``): ``LowerTriangularFromBottomRightLocalAttentionMask(w)`` (for square
  attention, bottom-right and top-left alignment coincide);
- ``window_sym`` (``|i - j| < w``): ``LocalAttentionFromBottomRightMask(window_left=w-1, window_right=w-1)``.

Packed documents (variable-length batches) use xFormers' block-diagonal biases, which skip every key outside a
query's document inside the kernel: ``BlockDiagonalMask.from_seqlens(lengths)`` (full), ``.make_causal()``
(causal within each document), and for a causal window ``.make_causal().make_local_attention(w)``. There is no
block-diagonal symmetric window, and a padded batch is not what these biases describe: both are declined with the
reason. Like everything here, this runs on CUDA only and needs a GPU check.

Grouped-query heads use xFormers' 5-D layout ``(B, M, G, H, K)`` (G: key/value heads, H: query heads per group)
with k and v expanded over H by stride-0 views, so no copy is made. This path, like the rest of the module,
runs on CUDA only and has not been run on this project's CPU machine: it needs a GPU check.

The module imports xFormers lazily, on the first support question or call, because importing it prints
warnings (the log lines are captured, not printed). Reasons come from xFormers itself: when its C++/CUDA
extensions fail to load, the versions it was built for and the ones found; and for each case, a probe call
(batch = heads = 1) whose "No operator found" answer lists every xFormers operator with why it declined.
"""

from __future__ import annotations

import functools
import importlib
import platform
import re
from dataclasses import dataclass
from types import ModuleType

import torch

from harness import Case, Pattern, Variant, register_variant
from variants._quiet import kept_log
from variants.sdpa import cuda_unavailable_reason

_OP_HEADER = re.compile(r"^`([^`]+)` is not supported because:\s*$")


@dataclass(frozen=True)
class XformersState:
    """What importing xFormers gave: the ``xformers.ops`` module (or None) and why its kernels are missing."""

    ops: ModuleType | None
    version: str = ""
    import_error: str = ""
    extension_error: str = ""
    log: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1)
def xformers_state() -> XformersState:
    """Import ``xformers.ops`` once, capturing its import-time log lines instead of printing them."""
    with kept_log("xformers") as records:
        try:
            xformers = importlib.import_module("xformers")
            ops = importlib.import_module("xformers.ops")
        except Exception as exc:  # not installed, or broken: becomes the reason
            return XformersState(None, import_error=f"{type(exc).__name__}: {exc}", log=tuple(records))
    version = getattr(xformers, "__version__", "?")
    return XformersState(ops, version, extension_error=_extension_error(version), log=tuple(records))


def _extension_error(version: str) -> str:
    """A sentence naming the versions involved when xFormers' compiled extension did not load."""
    try:
        cpp = importlib.import_module("xformers._cpp_lib")
    except Exception:
        return ""
    exc = getattr(cpp, "_cpp_library_load_exception", None)
    if exc is None:
        return ""
    meta = getattr(cpp, "_build_metadata", None) or getattr(exc, "build_info", None)
    this = f"this is torch {torch.__version__}, Python {platform.python_version()}"
    if meta is not None:
        try:
            built = (f"built for PyTorch {meta.torch_version} with CUDA {meta.cuda_version}, "
                     f"Python {meta.python_version}")
        except Exception:
            built = "built for another PyTorch/Python"
        return f"xformers {version}'s C++/CUDA extensions do not load: {built}; {this}"
    return f"xformers {version}'s C++/CUDA extensions do not load ({type(exc).__name__}); {this}"


def xformers_bias(ops: ModuleType, pattern: Pattern, square: bool = True):
    """The xFormers attention bias for ``pattern`` (None for full attention); ``square=False`` when queries are
    shorter than keys, whose causal triangle is bottom-right (``LowerTriangularFromBottomRightMask``)."""
    fmha = ops.fmha.attn_bias
    if pattern.has_documents:
        diagonal = fmha.BlockDiagonalMask.from_seqlens(list(pattern.documents))
        if pattern.kind == "full":
            return diagonal
        if pattern.kind == "causal":
            return diagonal.make_causal()
        if pattern.kind == "window":
            return diagonal.make_causal().make_local_attention(pattern.window)
        raise ValueError(f"pattern={pattern.kind!r} with documents has no xformers bias (supported: full, causal, "
                         "window)")
    if pattern.kind == "full":
        return None
    if pattern.kind == "causal":
        return fmha.LowerTriangularMask() if square else fmha.LowerTriangularFromBottomRightMask()
    if pattern.kind == "window":
        return fmha.LowerTriangularFromBottomRightLocalAttentionMask(pattern.window)
    if pattern.kind == "window_sym":
        return fmha.LocalAttentionFromBottomRightMask(window_left=pattern.window - 1,
                                                      window_right=pattern.window - 1)
    raise ValueError(f"pattern={pattern.kind!r} has no xformers bias (supported: full, causal, window, window_sym)")


def summarize_not_found(message: str) -> str:
    """Condense xFormers' "No operator found" message to ``op: reason, reason; op: ...``."""
    ops: list[str] = []
    current: list[str] | None = None
    for line in message.splitlines():
        head = _OP_HEADER.match(line.strip())
        if head:
            current = [head.group(1)]
            ops.append("")
        elif current is not None and line.startswith("    ") and line.strip():
            current.append(line.strip())
        if current is not None and ops:
            ops[-1] = f"{current[0]}: " + ", ".join(current[1:])
    first = message.strip().splitlines()[0] if message.strip() else "no operator found"
    first = first.rstrip(":").replace(" with inputs", "")
    return f"{first}: " + "; ".join(ops) if ops else first


@functools.lru_cache(maxsize=512)
def _probe(device: str, dtype: str, seq_len: int, head_dim: int, pattern: Pattern, backward: bool, group: int = 1,
           q_len: int | None = None) -> tuple[str, ...]:
    """xFormers' own reasons why this combination cannot run (empty when a probe call succeeds): batch 1, one
    key/value head with ``group`` query heads (the grouped layout when ``group > 1``), ``q_len`` queries."""
    state = xformers_state()
    ops = state.ops
    assert ops is not None
    lq = seq_len if q_len is None else q_len
    dt = getattr(torch, dtype)
    q = torch.randn(1, group, lq, head_dim, device=device, dtype=dt, requires_grad=backward)
    kv = torch.randn(1, 1, seq_len, head_dim, device=device, dtype=dt, requires_grad=backward)
    try:
        out = _call(ops, q, kv, kv, xformers_bias(ops, pattern, square=lq == seq_len))
        if backward:
            out.sum().backward()
        torch.cuda.synchronize(device)
        return ()
    except NotImplementedError as exc:
        reasons = [summarize_not_found(str(exc))]
    except Exception as exc:  # a failure past dispatch (e.g. a kernel that does not load) is still xFormers'
        reasons = [f"xformers {state.version} failed on a probe call: {type(exc).__name__}: "
                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"]
    if state.extension_error:
        reasons.insert(0, state.extension_error)
    return tuple(reasons)


@register_variant
class Xformers(Variant):
    name = "xformers"
    description = "xformers.ops.memory_efficient_attention, (B, N, H, D) layout, causal and local biases (CUDA)"
    patterns = frozenset({"full", "causal", "window", "window_sym"})
    devices = frozenset({"cuda"})
    dtypes = frozenset({"float32", "bfloat16", "float16"})
    supports_gqa = True
    supports_q_len = True
    doc_layouts = frozenset({"packed"})
    doc_layouts_reason = ("its block-diagonal biases describe documents packed into one sequence; a padded batch "
                          "would need a dense bias tensor")

    def extra_reasons(self, case: Case) -> list[str]:
        if case.device_type != "cuda" or case.pattern.kind not in self.patterns:
            return []  # the declared device / pattern reasons already say it
        if case.pattern.has_documents and case.pattern.kind == "window_sym":
            return ["pattern=window_sym with documents: xformers has no block-diagonal symmetric window bias "
                    "(supported with documents: full, causal, window)"]
        missing = cuda_unavailable_reason(case)
        if missing:
            return [missing]
        state = xformers_state()
        if state.ops is None:
            return [f"xformers is not importable ({state.import_error}); install it with `pip install xformers`"]
        return list(_probe(case.device, case.dtype, case.seq_len, case.head_dim, case.pattern, case.needs_backward,
                           case.heads // case.kv_heads, case.q_len))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        ops = xformers_state().ops
        return _call(ops, q, k, v, xformers_bias(ops, pattern, square=q.shape[2] == k.shape[2]))

    def prepare(self, pattern: Pattern, case: Case):
        ops = xformers_state().ops
        bias = xformers_bias(ops, pattern, square=case.is_square)
        return lambda q, k, v: _call(ops, q, k, v, bias)


def _call(ops: ModuleType, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias) -> torch.Tensor:
    """q ``(B, H, Lq, D)``, k and v ``(B, Hkv, N, D)`` in, ``(B, H, Lq, D)`` out.

    xFormers sees ``(B, M, H, K)`` views; with grouped heads its ``(B, M, G, H, K)`` layout, where G indexes the
    key/value heads and k, v are broadcast over each group's query heads by ``expand`` (stride 0, no copy).
    """
    b, h, lq, d = q.shape
    hkv, n = k.shape[1], k.shape[2]
    if hkv == h:
        out = ops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias)
        return out.transpose(1, 2)
    g = h // hkv
    q5 = q.view(b, hkv, g, lq, d).permute(0, 3, 1, 2, 4)  # (B, Lq, Hkv, G, D)
    k5 = k.transpose(1, 2).unsqueeze(3).expand(b, n, hkv, g, d)
    v5 = v.transpose(1, 2).unsqueeze(3).expand(b, n, hkv, g, d)
    out = ops.memory_efficient_attention(q5, k5, v5, attn_bias=bias)  # (B, Lq, Hkv, G, D)
    return out.permute(0, 2, 3, 1, 4).reshape(b, h, lq, d)
