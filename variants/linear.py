"""``linear``: linear attention with the feature map elu(x) + 1 (Katharopoulos et al. 2020); approximate.

Softmax attention weighs key ``j`` for query ``i`` by ``exp(q_i·k_j / sqrt(d))``. Linear attention replaces that
weight by ``φ(q_i)·φ(k_j)`` with a positive feature map ``φ``, so the output

    out_i = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / (φ(q_i)ᵀ Σ_j φ(k_j))

costs O(N·M·D) instead of O(N²·D) (``M`` = feature dimension). Here ``φ(x) = elu(x) + 1`` applied to q and k
as given (no 1/sqrt(d) scaling, as in the paper), so ``M = head_dim``. It is a different similarity, not an
estimate of softmax: its error against exact attention is large and does not shrink with N.

The causal form sums only over ``j <= i``. It is computed with chunked prefix sums (the form used by fast
linear-attention kernels): the sequence is cut into chunks of ``chunk`` positions; each chunk's state
``Σ_j φ(k_j) v_jᵀ`` is built with one batched matmul, an exclusive ``cumsum`` over chunks gives every chunk the
state of all earlier chunks, and the pairs inside a chunk are done as a small masked quadratic product. No
Python loop runs over positions or chunks. :func:`kernel_attention` is shared with ``performer``, and so is
:func:`kernel_weights`, the weights it applies (``attention_weights``, for pictures).

Half-precision inputs are computed in float32 and the output cast back (the feature sums would lose too much
in bfloat16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Pattern, Variant, check_param, register_variant

#: Positions per chunk of the causal prefix-sum form.
DEFAULT_CHUNK = 64
_TINY = 1e-30  # floor of the normaliser (never reached with strictly positive features)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """The paper's positive feature map ``elu(x) + 1``."""
    return F.elu(x) + 1.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the approximate variants compute in: float32 for half-precision inputs, else the input's."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def kernel_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, causal: bool,
                     chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Normalised kernelised attention ``Σ_j (φq_i·φk_j) v_j / Σ_j φq_i·φk_j`` over all j, or ``j <= i``.

    Args:
        phi_q, phi_k: non-negative features, ``(batch, heads, seq_len, M)``.
        v: values, ``(batch, heads, seq_len, D)``.
        causal: sum over ``j <= i`` only (chunked prefix sums), else over every key.
        chunk: chunk length of the causal form.

    Returns:
        ``(batch, heads, seq_len, D)`` in the dtype of the inputs.
    """
    if not causal:
        kv = torch.matmul(phi_k.transpose(-1, -2), v)  # (B, H, M, D)
        z = phi_k.sum(dim=-2)  # (B, H, M)
        num = torch.matmul(phi_q, kv)
        den = torch.matmul(phi_q, z.unsqueeze(-1))  # (B, H, N, 1)
        return num / den.clamp_min(_TINY)
    if chunk < 1:
        raise ValueError(f"chunk={chunk} is out of range (allowed: an integer >= 1)")
    b, h, n, m = phi_q.shape
    d = v.shape[-1]
    c = min(chunk, n)
    pad = (-n) % c
    if pad:  # zero key features add nothing; padded query rows are dropped at the end
        phi_q, phi_k, v = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, v))
    nc = (n + pad) // c
    fq = phi_q.reshape(b, h, nc, c, m)
    fk = phi_k.reshape(b, h, nc, c, m)
    vc = v.reshape(b, h, nc, c, d)
    # state of each chunk alone, then the exclusive prefix over chunks (state of everything before the chunk)
    states = torch.matmul(fk.transpose(-1, -2), vc)  # (B, H, nc, M, D)
    sums = fk.sum(dim=-2)  # (B, H, nc, M)
    prev_states = torch.cumsum(states, dim=2) - states
    prev_sums = torch.cumsum(sums, dim=2) - sums
    # pairs inside a chunk: masked quadratic form
    tri = torch.ones(c, c, dtype=torch.bool, device=v.device).tril()
    w = torch.matmul(fq, fk.transpose(-1, -2)).masked_fill(~tri, 0.0)  # (B, H, nc, c, c)
    num = torch.matmul(fq, prev_states) + torch.matmul(w, vc)
    den = torch.matmul(fq, prev_sums.unsqueeze(-1)).squeeze(-1) + w.sum(dim=-1)  # (B, H, nc, c)
    out = num / den.clamp_min(_TINY).unsqueeze(-1)
    return out.reshape(b, h, nc * c, d)[:, :, :n]


def kernel_weights(phi_q: torch.Tensor, phi_k: torch.Tensor, causal: bool) -> torch.Tensor:
    """The weights :func:`kernel_attention` applies to ``v``: ``φq_i·φk_j / Σ_j' φq_i·φk_j'`` over all ``j``, or
    ``j <= i``; ``(batch, heads, seq_len, seq_len)``, for pictures (it materialises the whole matrix)."""
    w = torch.matmul(phi_q, phi_k.transpose(-1, -2))
    if causal:
        n = w.shape[-1]
        w = w.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=w.device).tril(), 0.0)
    return w / w.sum(dim=-1, keepdim=True).clamp_min(_TINY)


@register_variant
class LinearAttention(Variant):
    """Linear attention, φ(x) = elu(x) + 1, full or causal (chunked prefix sums)."""

    name = "linear"
    description = "linear attention, feature map elu(x)+1 (Katharopoulos et al. 2020); approximate, O(N)"
    patterns = frozenset({"full", "causal"})
    exact = False
    gqa_reason = "its feature maps pair each query head with a key/value head of the same index"
    q_len_reason = "its causal prefix sums run over one sequence that is both the queries and the keys"
    doc_layouts_reason = "its feature sums run over every key of the sequence, with no document or padding mask"
    # About 1.5x the largest rel. L2 observed on the conformance inputs (seeded Gaussian, output 0.78, grads 0.98);
    # the same bound for every dtype: half precision is computed in float32, and the method's error dwarfs rounding.
    tolerances = {"float64": 1.2, "float32": 1.2, "bfloat16": 1.2, "float16": 1.2}
    grad_tolerances = {"float64": 1.5, "float32": 1.5, "bfloat16": 1.5, "float16": 1.5}

    def __init__(self, chunk: int = DEFAULT_CHUNK) -> None:
        self.chunk = check_param("chunk", chunk)

    @property
    def params(self) -> dict:
        """The method's parameters, for a result row."""
        return {"feature_map": "elu+1", "chunk": self.chunk}

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        ct = compute_dtype(q.dtype)
        fq, fk = elu_feature_map(q.to(ct)), elu_feature_map(k.to(ct))
        out = kernel_attention(fq, fk, v.to(ct), causal=pattern.kind == "causal", chunk=self.chunk)
        return out.to(q.dtype)

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        """Its normalised feature products (:func:`kernel_weights`), in the compute dtype."""
        ct = compute_dtype(q.dtype)
        return kernel_weights(elu_feature_map(q.to(ct)), elu_feature_map(k.to(ct)), causal=pattern.kind == "causal")
