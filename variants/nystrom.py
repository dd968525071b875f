"""``nystrom``: Nyströmformer attention with segment-mean landmarks (Xiong et al. 2021); approximate, full only.

With ``m`` landmarks ``q̃``, ``k̃`` (means of ``m`` contiguous, near-equal segments of the queries and keys) the
softmax matrix is approximated by the Nyström form

    softmax(Q Kᵀ/√d) V  ≈  softmax(Q K̃ᵀ/√d) · pinv(softmax(Q̃ K̃ᵀ/√d)) · (softmax(Q̃ Kᵀ/√d) V)

which costs O(N·m·D + m³). With ``m >= N`` every segment is one position, the three factors are all the full
softmax matrix ``P`` and ``P pinv(P) P = P``: the output is exact up to rounding.

The ``m x m`` pseudo-inverse is by default the paper's iterative method (``pinv="iterative"``: 6 iterations of
``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4`` from ``Z0 = Aᵀ / (‖A‖₁ ‖A‖∞)``). The landmark matrix ``A`` is
badly conditioned on random inputs (condition numbers of 1e4 to 1e7 measured at m = 64), and the few iterations
act as a regulariser: an exact float64 ``torch.linalg.pinv`` (``pinv="exact"``) amplifies the error of the
Nyström factors instead (rel. L2 of 1 to 100 against exact attention where the iterative form gives 0.1 to 0.8).
When ``m >= N`` the exact pinv is used whatever the setting (its product with ``B·V`` taken in float64), so the
result is exact.

The causal pattern is not offered: segment-mean landmarks mix future keys into every landmark, so the
approximation cannot respect the causal mask without changing the method.
"""

from __future__ import annotations

import math

import torch

from harness import Pattern, Variant, check_param, register_variant
from variants.linear import compute_dtype

#: Default number of landmarks.
DEFAULT_LANDMARKS = 64
PINV_METHODS: tuple[str, ...] = ("exact", "iterative")
_ITERATIONS = 6


def segment_means(x: torch.Tensor, m: int) -> torch.Tensor:
    """Means of ``m`` contiguous segments of ``x`` along the sequence (sizes differ by at most one).

    Args:
        x: ``(batch, heads, seq_len, d)``.
        m: number of segments, ``1 <= m <= seq_len``.

    Returns:
        ``(batch, heads, m, d)``.
    """
    n = x.shape[-2]
    # segment s covers positions [floor(s n / m), floor((s + 1) n / m)); position j's segment is the number of
    # segment starts <= j, minus one (exact integer arithmetic; no loop)
    pos = torch.arange(n, device=x.device)
    starts = (torch.arange(m, device=x.device) * n) // m
    seg_id = torch.searchsorted(starts, pos, right=True) - 1
    onehot = (seg_id.unsqueeze(0) == torch.arange(m, device=x.device).unsqueeze(1)).to(x.dtype)  # (m, N)
    seg = onehot / onehot.sum(dim=1, keepdim=True)
    return torch.matmul(seg, x)


def iterative_pinv(a: torch.Tensor, iterations: int = _ITERATIONS) -> torch.Tensor:
    """The Nyströmformer's iterative Moore–Penrose inverse of a batch of row-stochastic matrices ``a``."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    scale = a.abs().sum(dim=-1).amax(dim=-1) * a.abs().sum(dim=-2).amax(dim=-1)
    z = a.transpose(-1, -2) / scale[..., None, None]
    for _ in range(iterations):
        az = torch.matmul(a, z)
        z = 0.25 * torch.matmul(z, 13 * eye - torch.matmul(az, 15 * eye - torch.matmul(az, 7 * eye - az)))
    return z


@register_variant
class Nystrom(Variant):
    """Nyström approximation with segment-mean landmarks; full pattern only."""

    name = "nystrom"
    description = "Nystromformer, segment-mean landmarks and pseudo-inverse (Xiong et al. 2021); approximate"
    patterns = frozenset({"full"})
    exact = False
    gqa_reason = "its landmarks pair each query head with a key/value head of the same index"
    q_len_reason = "its landmarks are segment means of one square sequence of queries and keys"
    doc_layouts_reason = "its landmarks are segment means over the whole sequence, across documents and padding"
    # About 1.5x the largest rel. L2 observed on the conformance inputs (seeded Gaussian, output 0.57, grads 1.09);
    # the same bound for every dtype: half precision is computed in float32, and the method's error dwarfs rounding.
    tolerances = {"float64": 0.85, "float32": 0.85, "bfloat16": 0.85, "float16": 0.85}
    grad_tolerances = {"float64": 1.65, "float32": 1.65, "bfloat16": 1.65, "float16": 1.65}

    def __init__(self, num_landmarks: int = DEFAULT_LANDMARKS, pinv: str = "iterative") -> None:
        check_param("num_landmarks", num_landmarks)
        if pinv not in PINV_METHODS:
            raise ValueError(f"pinv={pinv!r} is not a known method (allowed: {', '.join(PINV_METHODS)})")
        self.num_landmarks = num_landmarks
        self.pinv = pinv

    @property
    def params(self) -> dict:
        """The method's parameters, for a result row."""
        return {"num_landmarks": self.num_landmarks, "pinv": self.pinv}

    def _factors(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """``(F, A, B, exact)``: the three softmax factors in the compute dtype (``F = softmax(Q K̃ᵀ/√d)``,
        ``A = softmax(Q̃ K̃ᵀ/√d)``, ``B = softmax(Q̃ Kᵀ/√d)``) and whether ``A`` is inverted exactly."""
        ct = compute_dtype(q.dtype)
        q, k = q.to(ct), k.to(ct)
        n, d = q.shape[-2], q.shape[-1]
        m = min(self.num_landmarks, n)
        scale = 1.0 / math.sqrt(d)
        q_l, k_l = segment_means(q, m), segment_means(k, m)
        f = torch.softmax(torch.matmul(q, k_l.transpose(-1, -2)) * scale, dim=-1)  # (B, H, N, m)
        a = torch.softmax(torch.matmul(q_l, k_l.transpose(-1, -2)) * scale, dim=-1)  # (B, H, m, m)
        b = torch.softmax(torch.matmul(q_l, k.transpose(-1, -2)) * scale, dim=-1)  # (B, H, m, N)
        return f, a, b, self.pinv == "exact" or m == n

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        f, a, b, exact = self._factors(q, k)
        bv = torch.matmul(b, v.to(f.dtype))  # (B, H, m, D)
        if exact:  # pinv and its product with B·V in float64, so P·pinv(P)·P stays P
            x = torch.matmul(torch.linalg.pinv(a.double()), bv.double()).to(f.dtype)
        else:
            x = torch.matmul(iterative_pinv(a), bv)
        out = torch.matmul(f, x)
        return out.to(v.dtype)

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        """``F · pinv(A) · B``: the low-rank matrix it applies to ``v`` (its entries may be negative)."""
        f, a, b, exact = self._factors(q, k)
        if exact:
            return torch.matmul(f, torch.matmul(torch.linalg.pinv(a.double()), b.double()).to(f.dtype))
        return torch.matmul(f, torch.matmul(iterative_pinv(a), b))
