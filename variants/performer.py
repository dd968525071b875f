"""``performer``: FAVOR+ positive orthogonal random features (Choromanski et al. 2021); approximate.

The softmax kernel ``exp(q·k / sqrt(d))`` is estimated without bias by ``φ(x)·φ(y)`` with ``x = q / d^¼``,
``y = k / d^¼`` and the positive random features

    φ(x) = exp(W x - |x|² / 2) / sqrt(M),    W = M rows ω_r

whose rows come in blocks of ``d`` exactly orthogonal directions (QR of a Gaussian matrix), each row rescaled
to the length of an independent Gaussian vector (so each ω_r is marginally N(0, I)). The attention output is
then computed as linear attention over these features (:func:`variants.linear.kernel_attention`), full or
causal through chunked prefix sums, in O(N·M·D).

Stabilisers that cancel exactly: every query row's features are divided by that row's largest exponent, and the
keys' features by the largest exponent over all keys of the (batch, head); each is a constant factor of a
numerator and its denominator.

The random draw is deterministic: ``W`` depends only on ``(seed, head_dim, num_features)`` through
:meth:`Performer.draw_seed`, and the same ``W`` is used for every head, batch and call. ``params`` gives what a
result row should record. The estimator's variance grows like ``exp(|x|² + |y|²)``, so on raw Gaussian inputs
with large head dims the error is large; it falls as ``num_features`` grows.
"""

from __future__ import annotations

import math

import torch

from harness import Pattern, Variant, check_param, register_variant
from variants.linear import DEFAULT_CHUNK, compute_dtype, kernel_attention, kernel_weights

#: Default number of random features.
DEFAULT_FEATURES = 256
#: Default base seed of the random draw.
DEFAULT_SEED = 0


def orthogonal_gaussian_rows(num_rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``num_rows x dim`` float64 matrix: blocks of ``dim`` orthogonal rows, each row as long as a N(0, I) draw.

    Args:
        num_rows: number of features ``M`` (any positive integer; the last block is truncated).
        dim: head dim ``d``.
        generator: CPU generator that makes the draw reproducible.

    Returns:
        The projection ``W`` on the CPU in float64.
    """
    blocks = []
    for _ in range(math.ceil(num_rows / dim)):
        g = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        qmat, r = torch.linalg.qr(g)
        qmat = qmat * torch.sign(torch.diagonal(r)).unsqueeze(0)  # a uniformly random rotation (Haar)
        blocks.append(qmat.T)  # rows orthonormal
    w = torch.cat(blocks, dim=0)[:num_rows]
    norms = torch.linalg.vector_norm(torch.randn(num_rows, dim, generator=generator, dtype=torch.float64), dim=1)
    return w * norms.unsqueeze(1)


def positive_features(x: torch.Tensor, w: torch.Tensor, is_query: bool) -> torch.Tensor:
    """FAVOR+ features of ``x`` (already scaled by ``d^-¼``), stabilised by a cancelling constant.

    Args:
        x: ``(batch, heads, seq_len, d)``.
        w: projection ``(M, d)`` in the dtype of ``x``.
        is_query: stabilise per row (queries) or per (batch, head) over all rows (keys).

    Returns:
        ``(batch, heads, seq_len, M)`` non-negative features.
    """
    proj = torch.matmul(x, w.T)  # (B, H, N, M)
    expo = proj - 0.5 * (x * x).sum(dim=-1, keepdim=True)
    if is_query:
        stab = expo.amax(dim=-1, keepdim=True)
    else:
        stab = expo.amax(dim=(-1, -2), keepdim=True)
    return torch.exp(expo - stab.detach()) * (1.0 / math.sqrt(w.shape[0]))


@register_variant
class Performer(Variant):
    """FAVOR+ (positive orthogonal random features), full or causal (chunked prefix sums)."""

    name = "performer"
    description = "Performer FAVOR+, positive orthogonal random features (Choromanski et al. 2021); approximate"
    patterns = frozenset({"full", "causal"})
    exact = False
    gqa_reason = "its random features pair each query head with a key/value head of the same index"
    q_len_reason = "its causal prefix sums run over one sequence that is both the queries and the keys"
    doc_layouts_reason = "its random-feature sums run over every key of the sequence, with no document or padding mask"
    # About 1.5x the largest rel. L2 observed on the conformance inputs (Gaussian, output 2.75, grads 5.99 at D=128);
    # the same bound for every dtype: half precision is computed in float32, and the method's error dwarfs rounding.
    tolerances = {"float64": 4.0, "float32": 4.0, "bfloat16": 4.0, "float16": 4.0}
    grad_tolerances = {"float64": 9.0, "float32": 9.0, "bfloat16": 9.0, "float16": 9.0}

    def __init__(self, num_features: int = DEFAULT_FEATURES, seed: int = DEFAULT_SEED,
                 chunk: int = DEFAULT_CHUNK) -> None:
        for key, value, low in (("num_features", num_features, 1), ("seed", seed, 0), ("chunk", chunk, 1)):
            check_param(key, value, low)
        self.num_features = num_features
        self.seed = seed
        self.chunk = chunk
        self._cache: dict[tuple, torch.Tensor] = {}

    def draw_seed(self, head_dim: int) -> int:
        """The seed of the generator that draws ``W`` for ``head_dim`` (recorded with results)."""
        return (self.seed * 1_000_003 + head_dim * 10_007 + self.num_features) % (2**63)

    @property
    def params(self) -> dict:
        """The method's parameters, for a result row (the draw seed also depends on the head dim)."""
        return {"num_features": self.num_features, "feature_seed": self.seed, "chunk": self.chunk}

    def projection(self, head_dim: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The random projection ``W`` (``num_features x head_dim``), drawn once per head dim and cached."""
        key = (head_dim, str(device), dtype)
        if key not in self._cache:
            gen = torch.Generator(device="cpu").manual_seed(self.draw_seed(head_dim))
            w = orthogonal_gaussian_rows(self.num_features, head_dim, gen)
            self._cache[key] = w.to(device=device, dtype=dtype)
        return self._cache[key]

    def features(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(φ(q), φ(k))`` in the compute dtype: the features :meth:`forward` uses."""
        ct = compute_dtype(q.dtype)
        d = q.shape[-1]
        w = self.projection(d, q.device, ct)
        scale = d ** -0.25
        return positive_features(q.to(ct) * scale, w, True), positive_features(k.to(ct) * scale, w, False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        fq, fk = self.features(q, k)
        out = kernel_attention(fq, fk, v.to(fq.dtype), causal=pattern.kind == "causal", chunk=self.chunk)
        return out.to(q.dtype)

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        """Its normalised random-feature products: the estimate of the softmax weights it applies."""
        fq, fk = self.features(q, k)
        return kernel_weights(fq, fk, causal=pattern.kind == "causal")
