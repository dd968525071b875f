"""Variable-length batches: the ``lengths`` key (which documents a batch holds) and the two layouts of a batch.

A batch of documents of different lengths reaches attention in one of two layouts (the key ``layout``):

- ``packed``: every document one after the other in one sequence, ``(1, heads, total, head_dim)``, with a
  document mask (each document attends only to itself, causally when the pattern is causal), as training with
  sequence packing and FlashAttention's varlen functions do;
- ``padded``: one batch row per document, ``(documents, heads, longest, head_dim)``, each padded to the longest
  with a padding mask, as a batch of requests of different lengths is served without packing.

Both hold the same tokens: the packed sequence is drawn once (seeded) and the padded batch scatters it into its
rows. Which pairs are attended is :class:`harness.core.pattern.Pattern`'s job (its ``documents``): a document is its
own sequence in either layout, so the two layouts have one truth.

The ``lengths`` grammar, one value (``lengths=[a,b]`` on the command line sweeps over specs ``a`` and ``b``)::

    100+300+2000                              three documents of these lengths (a single number: one document)
    [100,300,2000]                            the same, as a list of integers (YAML, Python, the command line)
    fixed/len:512/n:32                        32 documents of 512 tokens
    uniform/min:64/max:1024/n:16              lengths uniform in [min, max]
    lognormal/mean:512/max:4096/total:16384   long-tailed: lognormal with this mean (before clipping),
                                              sigma:1 (default), clipped to [min (default 1), max]
    zipf/a:1.5/min:16/max:4096/total:16384    power law P(L) ~ L^-a on [min, max]
    text/max:4096/total:16384                 token lengths of real documents: corpus:pydoc (the default and only
                                              corpus), the help topics shipped with Python (see below); min:1 and
                                              max (default: none) cut the lengths

Parameters are ``name:value`` after a ``/`` (no ``=`` and no ``,``, so the value needs no quoting on a Hydra
command line). Every distribution takes exactly one of ``n`` (documents) or ``total`` (tokens): with ``total``,
documents are drawn until they reach it and the last one is cut so that the tokens add up to ``total`` exactly
(as a packing data loader fills a fixed-size pack). Draws are seeded by the case's ``seed``.

Real text: ``corpus:pydoc`` is the 79 help topics of Python's own documentation (the module ``pydoc_data.topics``,
which CPython ships in its standard library: what ``help('if')`` prints), from 58 to 14216 tokens (mean 1443);
a token is a run of word characters or one punctuation mark (BERT's basic pre-tokenization, before WordPiece).
Documents are taken in a seeded random order, without repetition until the corpus is used up, and cut at ``max``.

:func:`doc_stats` gives the columns a row records (document count, mean, max, total tokens, the spread of lengths,
the padding fraction).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made, so the sweep's config checks stay light
    import torch

__all__ = ["LAYOUTS", "LengthSpec", "corpus_lengths", "doc_stats", "draw_lengths", "offsets", "pad", "parse_lengths",
           "real_tokens", "unpad", "valid_slots"]

#: Batch layouts (the key ``layout``).
LAYOUTS: tuple[str, ...] = ("packed", "padded")
#: Length distributions of the ``lengths`` grammar (plus explicit lists).
LENGTH_KINDS: tuple[str, ...] = ("fixed", "uniform", "lognormal", "zipf", "text")
#: Real-text corpora (``text/corpus:NAME``).
CORPORA: tuple[str, ...] = ("pydoc",)
#: Most documents one spec may give, and most tokens in all (the largest ``seq_len``).
MAX_DOCS = 2**20
MAX_TOKENS = 2**24

#: A parameter that may be left out (and is then left out of the canonical spelling too).
_OPTIONAL = "optional"
#: Parameters of each kind: name -> (type, default; None = required; _OPTIONAL = may be absent).
_PARAMS: dict[str, dict[str, tuple[type, object]]] = {
    "fixed": {"len": (int, None)},
    "uniform": {"min": (int, None), "max": (int, None)},
    "lognormal": {"mean": (float, None), "sigma": (float, 1.0), "min": (int, 1), "max": (int, None)},
    "zipf": {"a": (float, None), "min": (int, None), "max": (int, None)},
    "text": {"corpus": (str, "pydoc"), "min": (int, 1), "max": (int, _OPTIONAL)},
}
_COUNT_KEYS = ("n", "total")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_NAME = re.compile(r"^[a-z]+$")


def _syntax() -> str:
    return ("a list of lengths (100+300+2000 or [100,300,2000]) or KIND/name:value/... with KIND one of "
            f"{', '.join(LENGTH_KINDS)} and one of n:<documents> or total:<tokens> (e.g. "
            "lognormal/mean:512/max:4096/total:16384, uniform/min:64/max:1024/n:16, text/max:4096/total:16384)")


def _bad(value: object, why: str) -> ValueError:
    return ValueError(f"lengths={value!r}: {why} (allowed: {_syntax()})")


def _number(text: str) -> str:
    """A parameter value as canonical text: integers without ``.0``, floats by ``repr``."""
    f = float(text)
    return str(int(f)) if f.is_integer() else repr(f)


@dataclass(frozen=True)
class LengthSpec:
    """A parsed ``lengths`` value: explicit documents, or a distribution with its parameters.

    Args:
        kind: ``list`` (explicit documents) or one of :data:`LENGTH_KINDS`.
        docs: the documents of a ``list`` spec.
        params: the distribution's parameters (every one filled in, defaults included), sorted as the grammar
            lists them, and ``n`` or ``total``.
    """

    kind: str
    docs: tuple[int, ...] = ()
    params: tuple[tuple[str, object], ...] = ()

    @property
    def text(self) -> str:
        """The canonical spelling (what rows and record keys hold): ``100+300``, ``lognormal/mean:512/...``."""
        if self.kind == "list":
            return "+".join(map(str, self.docs))
        parts = [f"{k}:{_number(str(v)) if not isinstance(v, str) else v}" for k, v in self.params]
        return "/".join([self.kind, *parts])

    def param(self, name: str) -> object:
        return dict(self.params).get(name)

    def draw(self, seed: int) -> tuple[int, ...]:
        """The documents' lengths, deterministic for ``seed``.

        Args:
            seed: the case's seed.

        Returns:
            Lengths, each >= 1.
        """
        if self.kind == "list":
            return self.docs
        docs = _draw(self, seed)
        if sum(docs) > MAX_TOKENS:
            raise ValueError(f"lengths={self.text!r} drew {sum(docs)} tokens in all (allowed: at most {MAX_TOKENS}; "
                             "give total:<tokens> or a smaller n)")
        return docs


def parse_lengths(value: object) -> LengthSpec:
    """Parse a ``lengths`` value (see the module docstring).

    Args:
        value: a spec string, an integer (one document), or a list of integers (the documents).

    Returns:
        The :class:`LengthSpec`.

    Raises:
        ValueError: naming the value and what is allowed.
    """
    if isinstance(value, LengthSpec):
        return value
    if isinstance(value, bool):
        raise _bad(value, "not a length spec")
    if isinstance(value, int):
        return _explicit(value, [value])
    if isinstance(value, list | tuple):
        items = list(value)
        if not items:
            raise _bad(value, "an empty list has no documents")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            raise _bad(value, "a list of documents holds integers only")
        return _explicit(value, items)
    if not isinstance(value, str) or not value.strip():
        raise _bad(value, "not a length spec")
    text = value.strip()
    if re.fullmatch(r"[0-9+ ]+", text):
        pieces = [p.strip() for p in text.split("+")]
        if any(not p for p in pieces):
            raise _bad(value, "an empty length between '+' signs")
        return _explicit(value, [int(p) for p in pieces])
    kind, *rest = text.split("/")
    if kind not in LENGTH_KINDS:
        raise _bad(value, f"{kind!r} is not a length distribution")
    given: dict[str, str] = {}
    for part in rest:
        name, sep, raw = part.partition(":")
        if not sep or not name or not raw:
            raise _bad(value, f"{part!r} is not a name:value parameter")
        if name in given:
            raise _bad(value, f"the parameter {name} is given twice")
        given[name] = raw
    schema = _PARAMS[kind]
    unknown = sorted(set(given) - set(schema) - set(_COUNT_KEYS))
    if unknown:
        allowed = ", ".join([*schema, *_COUNT_KEYS])
        raise _bad(value, f"{kind} has no parameter {', '.join(unknown)} (its parameters: {allowed})")
    params: list[tuple[str, object]] = []
    for name, (typ, default) in schema.items():
        if name not in given:
            if default is None:
                raise _bad(value, f"{kind} needs {name}:<value>")
            if default != _OPTIONAL:
                params.append((name, default))
            continue
        params.append((name, _convert(value, name, given[name], typ)))
    counts = [k for k in _COUNT_KEYS if k in given]
    if len(counts) != 1:
        raise _bad(value, f"{kind} needs exactly one of n:<documents> or total:<tokens> (got "
                          f"{' and '.join(counts) or 'neither'})")
    count = _convert(value, counts[0], given[counts[0]], int)
    params.append((counts[0], count))
    spec = LengthSpec(kind, params=tuple(params))
    _check_params(value, spec)
    return spec


def _convert(value: object, name: str, raw: str, typ: type) -> object:
    if typ is str:
        if not _NAME.match(raw):
            raise _bad(value, f"{name}:{raw} is not a name")
        return raw
    try:
        number = float(raw)
    except ValueError:
        raise _bad(value, f"{name}:{raw} is not a number") from None
    if not math.isfinite(number):
        raise _bad(value, f"{name}:{raw} is not a finite number")
    if typ is int:
        if not number.is_integer():
            raise _bad(value, f"{name}:{raw} is not an integer")
        return int(number)
    return number


def _explicit(value: object, docs: list[int]) -> LengthSpec:
    if len(docs) > MAX_DOCS:
        raise _bad(value, f"{len(docs)} documents are too many (at most {MAX_DOCS})")
    bad = [d for d in docs if d < 1]
    if bad:
        raise _bad(value, f"document length {bad[0]} is out of range (each length is an integer >= 1)")
    if sum(docs) > MAX_TOKENS:
        raise _bad(value, f"{sum(docs)} tokens in all are too many (at most {MAX_TOKENS})")
    return LengthSpec("list", docs=tuple(int(d) for d in docs))


def _check_params(value: object, spec: LengthSpec) -> None:
    p = dict(spec.params)
    if "n" in p and not 1 <= p["n"] <= MAX_DOCS:
        raise _bad(value, f"n:{p['n']} is out of range (allowed: 1 to {MAX_DOCS} documents)")
    if "total" in p and not 1 <= p["total"] <= MAX_TOKENS:
        raise _bad(value, f"total:{p['total']} is out of range (allowed: 1 to {MAX_TOKENS} tokens)")
    for name in ("len", "min", "max"):
        if name in p and not 1 <= p[name] <= MAX_TOKENS:
            raise _bad(value, f"{name}:{p[name]} is out of range (allowed: 1 to {MAX_TOKENS})")
    if "min" in p and "max" in p and p["min"] > p["max"]:
        raise _bad(value, f"min:{p['min']} is larger than max:{p['max']}")
    if spec.kind == "lognormal":
        if not p["mean"] > 0:
            raise _bad(value, f"mean:{_number(str(p['mean']))} is out of range (allowed: > 0)")
        if not 0 <= p["sigma"] <= 10:
            raise _bad(value, f"sigma:{_number(str(p['sigma']))} is out of range (allowed: 0 to 10)")
    if spec.kind == "zipf" and not 0 < p["a"] <= 10:
        raise _bad(value, f"a:{_number(str(p['a']))} is out of range (allowed: > 0 and <= 10)")
    if spec.kind == "text" and p["corpus"] not in CORPORA:
        raise _bad(value, f"corpus:{p['corpus']} is not a known corpus (corpora: {', '.join(CORPORA)})")


# ---------------------------------------------------------------------------------------------------- drawing
@functools.lru_cache(maxsize=4)
def corpus_lengths(corpus: str = "pydoc") -> tuple[int, ...]:
    """Token lengths of the documents of a real-text corpus (see the module docstring).

    Args:
        corpus: ``pydoc``: the help topics of ``pydoc_data.topics`` (CPython's standard library).

    Returns:
        One length per document, in the corpus's (sorted-key) order.

    Raises:
        ValueError: unknown corpus, or the corpus is missing from this Python.
    """
    if corpus not in CORPORA:
        raise ValueError(f"corpus={corpus!r} is not a known corpus (allowed: {', '.join(CORPORA)})")
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # a Python built without its documentation data
        raise ValueError(f"corpus=pydoc: this Python has no pydoc_data.topics ({exc})") from None
    return tuple(max(1, len(_TOKEN.findall(topics[key]))) for key in sorted(topics))


def _draw(spec: LengthSpec, seed: int) -> tuple[int, ...]:
    import torch

    p = dict(spec.params)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n, total = p.get("n"), p.get("total")
    want = n if n is not None else max(1, int(total))  # documents to draw per batch of draws (total: refilled)
    out: list[int] = []
    count = 0
    order: list[int] = []
    while True:
        batch = min(max(16, want), 65536)
        if spec.kind == "fixed":
            lens = [p["len"]] * batch
        elif spec.kind == "uniform":
            lens = torch.randint(p["min"], p["max"] + 1, (batch,), generator=gen).tolist()
        elif spec.kind == "lognormal":
            s = p["sigma"]
            mu = math.log(p["mean"]) - s * s / 2  # the unclipped mean is `mean`
            x = torch.exp(mu + s * torch.randn(batch, generator=gen, dtype=torch.float64))
            lens = x.round().clamp(p["min"], p["max"]).long().tolist()
        elif spec.kind == "zipf":
            lens = _power_law(p["a"], p["min"], p["max"], batch, gen)
        else:
            corpus = corpus_lengths(p["corpus"])
            lens = []
            for _ in range(batch):
                if not order:
                    order = torch.randperm(len(corpus), generator=gen).tolist()
                lens.append(min(max(corpus[order.pop()], p["min"]), p.get("max", MAX_TOKENS)))
        for length in lens:
            if n is not None:
                out.append(int(length))
                if len(out) == n:
                    return tuple(out)
            else:
                length = min(int(length), total - count)
                out.append(length)
                count += length
                if count >= total:
                    return tuple(out)
        want = n - len(out) if n is not None else want


def _power_law(a: float, lo: int, hi: int, size: int, gen: torch.Generator) -> list[int]:
    """``size`` integers in ``[lo, hi]`` with ``P(L) ~ L^-a`` (inverse CDF of the continuous law on
    ``[lo, hi + 1)``, floored)."""
    import torch

    u = torch.rand(size, generator=gen, dtype=torch.float64)
    x0, x1 = float(lo), float(hi + 1)
    if abs(a - 1.0) < 1e-12:
        x = x0 * torch.exp(u * math.log(x1 / x0))
    else:
        e = 1.0 - a
        x = (x0 ** e + u * (x1 ** e - x0 ** e)) ** (1.0 / e)
    return x.floor().clamp(lo, hi).long().tolist()


def draw_lengths(value: object, seed: int = 0) -> tuple[int, ...]:
    """The documents of a ``lengths`` value for ``seed`` (parse and draw in one call).

    Args:
        value: a ``lengths`` value (see :func:`parse_lengths`).
        seed: the case's seed.

    Returns:
        The document lengths.
    """
    return parse_lengths(value).draw(seed)


# ---------------------------------------------------------------------------------------------------- figures
def doc_stats(docs: tuple[int, ...], layout: str) -> dict[str, float | int]:
    """What a row records about its documents.

    Args:
        docs: the document lengths.
        layout: ``packed`` or ``padded``.

    Returns:
        ``doc_count``, ``doc_len_mean``, ``doc_len_min``, ``doc_len_max``, ``doc_tokens`` (real tokens),
        ``doc_len_cv`` (standard deviation / mean: the spread of lengths), ``padding_fraction`` (the share of the
        tensors' token slots that are padding: ``1 - tokens / (documents x longest)`` padded, 0 packed).
    """
    n, total, top = len(docs), sum(docs), max(docs)
    mean = total / n
    var = sum((d - mean) ** 2 for d in docs) / n
    return {"doc_count": n, "doc_len_mean": mean, "doc_len_min": min(docs), "doc_len_max": top,
            "doc_tokens": total, "doc_len_cv": math.sqrt(var) / mean,
            "padding_fraction": 1.0 - total / (n * top) if layout == "padded" else 0.0}


# ---------------------------------------------------------------------------------------------------- layouts
@functools.lru_cache(maxsize=32)
def _valid(docs: tuple[int, ...], device: str) -> torch.Tensor:
    """``(documents, longest)`` boolean: True at the real token slots of the padded batch."""
    import torch

    lens = torch.tensor(docs, device=device)
    return torch.arange(max(docs), device=device)[None, :] < lens[:, None]


def valid_slots(docs: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """``(documents, longest)`` boolean mask of the real (not padding) token slots of a padded batch."""
    import torch

    return _valid(tuple(docs), str(torch.device(device)))


def pad(packed: torch.Tensor, docs: tuple[int, ...], fill: torch.Tensor | None = None) -> torch.Tensor:
    """A packed ``(1, H, total, D)`` tensor as a padded ``(documents, H, longest, D)`` batch.

    Args:
        packed: the packed tensor.
        docs: the document lengths (adding up to ``total``).
        fill: what padding slots hold, ``(documents, H, longest, D)`` (default zeros); it is not modified.

    Returns:
        A new tensor.
    """
    _, h, total, d = packed.shape
    if total != sum(docs):
        raise ValueError(f"a packed tensor of {total} tokens does not hold documents adding up to {sum(docs)}")
    shape = (len(docs), h, max(docs), d)
    out = packed.new_zeros(shape) if fill is None else fill.to(dtype=packed.dtype, device=packed.device).clone()
    out.transpose(1, 2)[valid_slots(docs, packed.device)] = packed[0].transpose(0, 1)
    return out


def unpad(padded: torch.Tensor, docs: tuple[int, ...]) -> torch.Tensor:
    """The real tokens of a padded ``(documents, H, longest, D)`` batch, packed: ``(1, H, total, D)``."""
    if padded.shape[0] != len(docs) or padded.shape[2] != max(docs):
        raise ValueError(f"a padded tensor of shape {tuple(padded.shape)} does not fit {len(docs)} documents of at "
                         f"most {max(docs)} tokens")
    return padded.transpose(1, 2)[valid_slots(docs, padded.device)].transpose(0, 1).unsqueeze(0)


def real_tokens(x: torch.Tensor, pattern: object) -> torch.Tensor:
    """The real tokens of ``x`` under ``pattern``: a padded batch's documents packed (padding left out); any other
    tensor as it is. What errors are computed on, so padding never counts.

    Args:
        x: an output, a gradient or an input, in the case's layout.
        pattern: the case's :class:`~harness.core.pattern.Pattern` (its ``documents`` and ``doc_layout``).

    Returns:
        ``x``, or its real tokens as ``(1, H, total, D)``.
    """
    docs = getattr(pattern, "documents", None)
    if docs is None or getattr(pattern, "doc_layout", "packed") != "padded":
        return x
    return unpad(x, docs)


def offsets(docs: tuple[int, ...]) -> tuple[int, ...]:
    """Start of each document in the packed sequence, and the end: ``(0, d0, d0 + d1, ..., total)``."""
    out = [0]
    for d in docs:
        out.append(out[-1] + d)
    return tuple(out)
