"""The benchmark case: everything that determines a measurement's inputs and its exact answer, validated.

A :class:`Case` is frozen and hashable: device, dtype, shape, pattern, mode, seed and input distribution. The
same case always yields bit-identical inputs (:mod:`harness.inputs.make`). :class:`Inputs` holds one case's
tensors; :func:`check_qkv` validates tensors handed to a variant.

Shapes: q and the output are ``(batch, heads, q_len, head_dim)``; k and v are ``(batch, kv_heads, seq_len,
head_dim)``. ``kv_heads`` (default: ``heads``) divides ``heads``: query head ``h`` reads key/value head
``h // (heads // kv_heads)`` (grouped-query attention; ``kv_heads = 1`` is multi-query). ``q_len`` (default:
``seq_len``, which is always the key/value length) below ``seq_len`` is decode (1), speculative decode (a few)
or chunked prefill against a longer cache; its queries align bottom-right (:mod:`harness.core.pattern`).

Variable-length batches (``lengths``, ``layout``; :mod:`harness.core.varlen`): the documents are drawn from the
spec with the case's seed and set ``batch`` and ``seq_len``: packed, one sequence of all the tokens (``batch =
1``, ``seq_len`` = the total); padded, one row per document (``batch`` = the documents, ``seq_len`` = the
longest). The pattern carries the documents (``Pattern.documents``), so masks, the baseline and FLOP counts see
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.core import varlen
from harness.core.names import DEVICES, DTYPE_NAMES, INPUT_KINDS, MODES
from harness.core.pattern import DOC_LAYOUTS, Pattern

__all__ = ["Case", "DTYPES", "Inputs", "check_qkv", "dtype_name", "parse_dtype"]

DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """Map a dtype name (or a torch dtype) to a torch dtype, with a clear error for anything else."""
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise ValueError(f"dtype={name} is not supported (allowed: {', '.join(DTYPES)})")
        return name
    if not isinstance(name, str) or name not in DTYPES:
        raise ValueError(f"dtype={name!r} is not a known dtype (allowed: {', '.join(DTYPES)})")
    return DTYPES[name]


def _check_positive_int(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}={value!r} must be a positive integer")
    if value < 1:
        raise ValueError(f"{key}={value} is out of range (allowed: an integer >= 1)")


@dataclass(frozen=True)
class Case:
    """One benchmark case: the inputs every selected variant is measured on.

    Args:
        batch, heads, seq_len, head_dim: the shape of q, k and v, ``(batch, heads, seq_len, head_dim)`` when
            ``kv_heads`` and ``q_len`` keep their defaults.
        dtype: ``float32``, ``bfloat16``, ``float16`` (``float64`` for tests).
        device: ``cpu`` or ``cuda`` (``cuda:1`` etc. are accepted).
        pattern: which pairs are attended.
        mode: ``fwd``, ``bwd`` or ``fwd_bwd``.
        seed: seed of the input draw.
        inputs: the distribution q, k, v are drawn from: ``gaussian`` (standard normal), ``local`` (q and k
            correlated by position) or ``real`` (a pretrained transformer layer on real text); see
            :mod:`harness.inputs.distributions`.
        kv_heads: key/value heads (None: ``heads``); must divide ``heads``.
        q_len: queries per sequence (None: ``seq_len``); from 1 to ``seq_len``.
        model: the named model shape the case was built from (:mod:`harness.core.models`), or ``""``; a label that
            identifies the case (two models of one shape are two cases) and does not change the inputs.
        lengths: the documents of a variable-length batch, a :mod:`harness.core.varlen` spec (``lognormal/mean:512/
            max:4096/total:16384``, ``100+300``, a list of integers), kept in its canonical spelling; None: one
            sequence per batch row. It sets ``batch`` and ``seq_len`` (see the module docstring); ``q_len`` must
            stay unset (or equal to the derived ``seq_len``).
        layout: ``packed`` (default with ``lengths``) or ``padded``; None without ``lengths``.

    ``kv_heads`` and ``q_len`` hold integers after construction (their defaults filled in), so
    ``Case(heads=8) == Case(heads=8, kv_heads=8)``. ``dataclasses.replace`` carries them over as they are: give
    them again when changing ``heads`` or ``seq_len``.
    """

    batch: int = 1
    heads: int = 8
    seq_len: int = 1024
    head_dim: int = 64
    dtype: str = "float32"
    device: str = "cpu"
    pattern: Pattern = field(default_factory=Pattern)
    mode: str = "fwd"
    seed: int = 0
    inputs: str = "gaussian"
    kv_heads: int | None = None
    q_len: int | None = None
    model: str = ""
    lengths: str | None = None
    layout: str | None = None

    def __post_init__(self) -> None:
        self._documents()
        for key in ("batch", "heads", "seq_len", "head_dim"):
            _check_positive_int(key, getattr(self, key))
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        _check_positive_int("kv_heads", self.kv_heads)
        if self.heads % self.kv_heads:
            divisors = [x for x in range(1, self.heads + 1) if self.heads % x == 0]
            raise ValueError(f"kv_heads={self.kv_heads} does not divide heads={self.heads} (allowed: "
                             f"{', '.join(map(str, divisors))})")
        if self.q_len is None:
            object.__setattr__(self, "q_len", self.seq_len)
        _check_positive_int("q_len", self.q_len)
        if self.q_len > self.seq_len:
            raise ValueError(f"q_len={self.q_len} is out of range (allowed: 1 to seq_len={self.seq_len}, the "
                             "key/value length)")
        if isinstance(self.dtype, torch.dtype):
            object.__setattr__(self, "dtype", dtype_name(parse_dtype(self.dtype)))
        parse_dtype(self.dtype)
        if not isinstance(self.device, str) or self.device.split(":")[0] not in DEVICES:
            raise ValueError(f"device={self.device!r} is not a known device (allowed: {', '.join(DEVICES)})")
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not a known mode (allowed: {', '.join(MODES)})")
        if not isinstance(self.pattern, Pattern):
            raise ValueError(f"pattern={self.pattern!r} must be a harness.Pattern")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        self.pattern.check_fits(self.seq_len, self.q_len)
        if not isinstance(self.model, str):
            raise ValueError(f"model={self.model!r} must be a model name (a string) or ''")
        if not isinstance(self.inputs, str) or self.inputs not in INPUT_KINDS:
            raise ValueError(f"inputs={self.inputs!r} is not a known input distribution "
                             f"(allowed: {', '.join(INPUT_KINDS)})")

    def _documents(self) -> None:
        """Draw the documents of ``lengths`` and set ``batch``, ``seq_len`` and the pattern's documents."""
        from_pattern = self.lengths is None and isinstance(self.pattern, Pattern) and self.pattern.has_documents
        if from_pattern:  # a pattern with documents (tensors of a packed or padded batch: variant.case_for)
            object.__setattr__(self, "lengths", list(self.pattern.documents))
            object.__setattr__(self, "layout", self.pattern.doc_layout)
        if self.lengths is None:
            if self.layout is not None:
                raise ValueError(f"layout={self.layout!r} needs lengths=<documents> (allowed: layout unset)")
            return
        spec = varlen.parse_lengths(self.lengths)
        layout = "packed" if self.layout is None else self.layout
        if layout not in DOC_LAYOUTS:
            raise ValueError(f"layout={layout!r} is not a known layout (allowed: {', '.join(DOC_LAYOUTS)})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        if not isinstance(self.pattern, Pattern):
            raise ValueError(f"pattern={self.pattern!r} must be a harness.Pattern")
        docs = spec.draw(self.seed)
        batch, seq_len = (len(docs), max(docs)) if layout == "padded" else (1, sum(docs))
        if from_pattern and (self.batch, self.seq_len) != (batch, seq_len):
            raise ValueError(f"batch={self.batch}, seq_len={self.seq_len} do not fit {len(docs)} {layout} documents "
                             f"(allowed: batch={batch}, seq_len={seq_len})")
        if self.q_len is not None and self.q_len != seq_len:
            raise ValueError(f"q_len={self.q_len} cannot be combined with lengths={spec.text!r}: each document is a "
                             "whole sequence (allowed: q_len unset)")
        object.__setattr__(self, "lengths", spec.text)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "batch", batch)
        object.__setattr__(self, "seq_len", seq_len)
        object.__setattr__(self, "pattern", self.pattern.with_documents(docs, layout))

    @property
    def documents(self) -> tuple[int, ...] | None:
        """The documents' lengths of a variable-length batch (None otherwise)."""
        return self.pattern.documents

    @property
    def tokens(self) -> int:
        """Real query tokens of the case: ``batch x q_len``, or the documents' total (padding left out)."""
        docs = self.pattern.documents
        return sum(docs) if docs is not None else self.batch * self.q_len

    def attended_pairs(self) -> int:
        """Attended (query, key) pairs of the whole batch (every batch row; documents: real pairs only)."""
        pairs = self.pattern.attended_pairs(self.seq_len, self.q_len)
        return pairs if self.pattern.has_documents else self.batch * pairs

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def device_type(self) -> str:
        """``cuda:1`` -> ``cuda``."""
        return self.device.split(":")[0]

    @property
    def needs_backward(self) -> bool:
        return self.mode != "fwd"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(batch, heads, seq_len, head_dim)``: the square self-attention shape (what input distributions
        draw; documents: ``(1, heads, total tokens, head_dim)``, the packed sequence both layouts hold); q's shape
        is :attr:`q_shape`, k's and v's :attr:`kv_shape`."""
        if self.pattern.has_documents:
            return (1, self.heads, sum(self.pattern.documents), self.head_dim)
        return (self.batch, self.heads, self.seq_len, self.head_dim)

    @property
    def q_shape(self) -> tuple[int, int, int, int]:
        """Shape of q, of the output and of its gradient: ``(batch, heads, q_len, head_dim)``."""
        return (self.batch, self.heads, self.q_len, self.head_dim)

    @property
    def kv_shape(self) -> tuple[int, int, int, int]:
        """Shape of k and v: ``(batch, kv_heads, seq_len, head_dim)``."""
        return (self.batch, self.kv_heads, self.seq_len, self.head_dim)

    @property
    def is_grouped(self) -> bool:
        """Fewer key/value heads than query heads (GQA, MQA)."""
        return self.kv_heads != self.heads

    @property
    def is_square(self) -> bool:
        """As many queries as keys (``q_len == seq_len``)."""
        return self.q_len == self.seq_len

    def input_key(self) -> tuple:
        """Everything that determines the inputs and the reference (the mode does not)."""
        return (self.batch, self.heads, self.seq_len, self.head_dim, self.dtype, self.device, self.pattern, self.seed,
                self.inputs, self.kv_heads, self.q_len, self.lengths, self.layout)

    def describe(self) -> str:
        """Compact one-line description, e.g. ``cpu float32 B1 H8 N1024 D64 causal fwd`` (with ``KV2`` after the
        heads and ``Q1`` after the length when they are not the defaults)."""
        kv = f" KV{self.kv_heads}" if self.is_grouped else ""
        ql = f" Q{self.q_len}" if not self.is_square else ""
        return (
            f"{self.device} {self.dtype} B{self.batch} H{self.heads}{kv} N{self.seq_len}{ql} D{self.head_dim} "
            f"{self.pattern.label} {self.mode}" + ("" if self.inputs == "gaussian" else f" inputs={self.inputs}")
            + (f" model={self.model}" if self.model else "")
            + (f" lengths={self.lengths} {self.layout}" if self.lengths else "")
        )


@dataclass
class Inputs:
    """Seeded q, k, v (and the upstream gradient ``grad_out`` used for backward) of one case."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    grad_out: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.q, self.k, self.v, self.grad_out))


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Validate attention inputs; raise ``ValueError`` naming the offending value and what is allowed."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor (got {type(t).__name__})")
        if t.dim() != 4:
            raise ValueError(f"{name}.shape={tuple(t.shape)} must have 4 dims (batch, heads, seq_len, head_dim)")
        if not t.is_floating_point():
            raise ValueError(f"{name}.dtype={t.dtype} is not a floating-point dtype (allowed: {', '.join(DTYPES)})")
    shapes = f"q={tuple(q.shape)}, k={tuple(k.shape)}, v={tuple(v.shape)}"
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q, k, v shapes must be q=(batch, heads, q_len, head_dim) and k = v = (batch, kv_heads, "
                         f"seq_len, head_dim) (got {shapes})")
    if k.shape[1] < 1 or q.shape[1] % k.shape[1]:
        raise ValueError(f"kv_heads={k.shape[1]} does not divide heads={q.shape[1]} (got {shapes})")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"q_len={q.shape[2]} is larger than seq_len={k.shape[2]}, the key/value length "
                         f"(got {shapes})")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device (got q={q.device}, k={k.device}, v={v.device})")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype (got q={q.dtype}, k={k.dtype}, v={v.dtype})")
    if k.shape[2] < 1:
        raise ValueError(f"seq_len={k.shape[2]} is out of range (allowed: >= 1)")
    if q.shape[2] < 1:
        raise ValueError(f"q_len={q.shape[2]} is out of range (allowed: >= 1)")
    if q.shape[3] < 1:
        raise ValueError(f"head_dim={q.shape[3]} is out of range (allowed: >= 1)")
