"""The sweep configuration: its schema (every key, its type, default and allowed values) and its conversion to a plan.

:class:`SweepConfig` is the schema Hydra stores in its ConfigStore (``configs/`` registers it); the rest of the
harness never sees a ``DictConfig``. Each field carries its rule (the values it takes, with their ranges) next to
its default and help line, so the checks, ``attnbench sweep --help`` and the schema cannot drift apart.
:func:`plan_from_config` takes the resolved config as a plain mapping, checks every key with its rule (the message
names the key, the value and what is allowed) and returns a :class:`SweepPlan`: the list of
:class:`~harness.core.case.Case` objects, the resolved variant names and the measurement settings.

Axis keys (:data:`AXES`: ``device, dtype, batch, heads, seq_len, head_dim, pattern, window, block, local, stride,
n_global, mode, seed, kv_heads, q_len, model, lengths, layout, inputs``) take one value or a list; lists expand into
the cartesian product of cases inside one job (``seq_len=[512,1024]``). A Hydra multirun (``-m seq_len=512,1024``)
gives one job per value instead. Both write into the same run directory and produce the same rows. ``lengths``
(the documents of a variable-length batch, :mod:`harness.core.varlen`) reads a list of integers as one batch's
documents; a list of specs (``[100+300,lognormal/mean:512/max:4096/total:16384]``) sweeps them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.models import MODELS
from harness.core.names import DTYPE_NAMES, INPUT_KINDS, MODES, PATTERN_KINDS
from harness.core.varlen import LAYOUTS, parse_lengths
from harness.measure.machine import allowed_cores

if TYPE_CHECKING:
    from harness.core.case import Case

__all__ = ["AXES", "CPU_TIMER_CHOICES", "INT_MAX", "ConfigError", "SweepConfig", "SweepPlan", "plan_from_config",
           "schema_keys"]

DEFAULT_RUN_NAME = "${now:%Y-%m-%d_%H-%M-%S}"
#: Most elements in one of q, k, v (batch x heads x seq_len x head_dim): 2**40, 4 TiB in float32.
MAX_ELEMENTS = 2**40
#: Longest time setting (budget, case_timeout_s), seconds: about 11.6 days.
MAX_SECONDS = 1e6
#: Longest file name component when the filesystem does not say (POSIX NAME_MAX on Linux, macOS, Windows).
NAME_MAX_DEFAULT = 255
#: CPU timers (:data:`harness.measure.runner.CPU_TIMERS`), the default first.
CPU_TIMER_CHOICES: tuple[str, ...] = ("per_call", "blocked_autorange")


class ConfigError(ValueError):
    """Bad input in the sweep configuration; raised before any work starts."""


def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _as_list(key: str, value: object) -> list:
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(f"{key}=[] is empty (allowed: one value or a non-empty list)")
        return list(value)
    return [value]


# ---------------------------------------------------------------------------------------------------- rules
# What one key takes. Each field of SweepConfig holds its rule; ``check(key, value)`` returns the value converted
# (axes: the list of values, duplicates removed) or raises ConfigError naming the key, the value and what is
# allowed. Integer upper bounds are far beyond any machine and small enough that no size or offset computed from
# them overflows a 64-bit integer later (``seq_len=1e20`` is refused here, not an error row).
@dataclass(frozen=True)
class Integer:
    """One integer of an axis, from ``minimum`` to ``maximum`` (an integral float counts); None when ``nullable``."""

    minimum: int
    maximum: int
    nullable: bool = False
    type_name = "int"

    def check(self, key: str, value: object) -> int | None:
        if value is None and self.nullable:
            return None
        given = value
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"{key}={_fmt(value)} is not an integer (allowed: an integer >= {self.minimum}, "
                                  "or a list)")
            value = int(value)
        if value < self.minimum:
            raise ConfigError(f"{key}={given} is out of range (allowed: an integer >= {self.minimum})")
        if value > self.maximum:
            raise ConfigError(f"{key}={given} is out of range (allowed: an integer from {self.minimum} to "
                              f"{self.maximum})")
        return int(value)


@dataclass(frozen=True)
class Choice:
    """One of ``choices`` (or a text matching ``also``, a regular expression); None when ``nullable``."""

    choices: tuple[str, ...]
    nullable: bool = False
    also: str = ""
    type_name = "str"

    def check(self, key: str, value: object) -> str | None:
        if value is None and self.nullable:
            return None
        if self.also and isinstance(value, str) and re.fullmatch(self.also, value):
            return value
        if not isinstance(value, str) or value not in self.choices:
            raise ConfigError(f"{key}={_fmt(value)} is not a known {key} (allowed: {', '.join(self.choices)})")
        return value


@dataclass(frozen=True)
class Axis:
    """An axis key: one value or a non-empty list, each checked by ``element``; duplicates removed, order kept."""

    element: Integer | Choice

    @property
    def type_name(self) -> str:
        return f"{self.element.type_name} | list"

    def check(self, key: str, value: object) -> list:
        return list(dict.fromkeys(self.element.check(key, v) for v in _as_list(key, value)))


@dataclass(frozen=True)
class Lengths:
    """The ``lengths`` axis: a list of integers is one batch's documents; any other list is one spec per entry.

    Each entry is kept in its canonical spelling (None: no documents).
    """

    type_name = "str | list"

    def check(self, key: str, value: object) -> list:
        if isinstance(value, list | tuple) and value and all(isinstance(x, int) and not isinstance(x, bool)
                                                             for x in value):
            entries: list = [list(value)]
        else:
            entries = _as_list(key, value)
        return list(dict.fromkeys(None if v is None else _lengths_text(v) for v in entries))


def _number(key: str, value: object, kind: type, ok: Callable[[Any], bool], allowed: str) -> Any:
    """``value`` as one number of ``kind`` (an int counts as a float, a bool as neither) for which ``ok`` holds."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
        raise ConfigError(f"{key}={_fmt(value)} is not allowed (allowed: {allowed})")
    return value


@dataclass(frozen=True)
class Count:
    """One integer from ``minimum`` to ``maximum``; ``note`` says what a special value means."""

    minimum: int
    maximum: int
    note: str = ""
    type_name = "int"

    def check(self, key: str, value: object) -> int:
        allowed = f"an integer from {self.minimum} to {self.maximum}" + (f"; {self.note}" if self.note else "")
        return _number(key, value, int, lambda v: self.minimum <= v <= self.maximum, allowed)


@dataclass(frozen=True)
class Threads:
    """CPU threads: from 0 (torch's default) to the cores this process may run on (read at each check)."""

    type_name = "int"

    def check(self, key: str, value: object) -> int:
        cores = allowed_cores()
        return _number(key, value, int, lambda v: 0 <= v <= cores,
                       f"an integer >= 0 and <= {cores}, the cores this process may run on; 0 = torch's default")


@dataclass(frozen=True)
class Seconds:
    """A time in seconds, > 0 and <= ``maximum``."""

    maximum: float = MAX_SECONDS
    type_name = "float"

    def check(self, key: str, value: object) -> float:
        return _number(key, value, float, lambda v: 0 < v <= self.maximum,
                       f"seconds, a number > 0 and <= {self.maximum:g}")


@dataclass(frozen=True)
class Fraction:
    """A number in [0, 1); ``note`` says what 0 means."""

    note: str
    type_name = "float"

    def check(self, key: str, value: object) -> float:
        return _number(key, value, float, lambda v: 0 <= v < 1, f"a number in [0, 1); {self.note}")


@dataclass(frozen=True)
class Flag:
    """``true`` or ``false``."""

    type_name = "bool"

    def check(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={_fmt(value)} is not allowed (allowed: true or false)")
        return value


@dataclass(frozen=True)
class Folder:
    """A directory path (checked with the run name, without creating anything: :func:`_check_run_dir`)."""

    type_name = "str"

    def check(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}={_fmt(value)} is not allowed (allowed: a directory path)")
        return value


@dataclass(frozen=True)
class RunName:
    """One plain directory name: not empty, ``.`` or ``..``, no separator, not an unresolved ``${...}``."""

    type_name = "str"

    def check(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value \
                or value.startswith("${"):
            raise ConfigError(f"{key}={_fmt(value)} is not allowed (allowed: one directory name, no '/')")
        return value


@dataclass(frozen=True)
class Names:
    """Names or wildcards: one text or a list of non-empty texts (None: none)."""

    type_name = "list[str]"

    def check(self, key: str, value: object) -> list[str]:
        items = [] if value is None else list(value) if isinstance(value, list | tuple) else [value]
        for item in items:
            if not isinstance(item, str) or not item:
                raise ConfigError(f"{key} entry {_fmt(item)} is not a name (allowed: names or wildcards as strings)")
        return items


def _key(default: Any, rule: Any, text: str) -> Any:
    """A schema field: its default, the rule its values must pass, and its help line (the type comes from the rule)."""
    meta = {"help": text, "type": rule.type_name, "rule": rule}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------------------------------- schema
@dataclass
class SweepConfig:
    """Schema of a sweep (Hydra structured config). See ``docs/sweeps.md`` for every key.

    Axis keys are typed ``Any`` for OmegaConf because they accept ``T`` or ``list[T]`` (OmegaConf 2.3 has no
    unions); each field's rule (in its metadata) enforces the element type and range.
    """

    variants: Any = _key(["*"], Names(), "variant names or wildcards (all selected run on every case)")
    variants_from: Any = _key([], Names(), "extra .py files or modules that register variants")
    device: Any = _key("auto", Axis(Choice(("cpu", "cuda", "auto"), also=r"cuda:\d+")),
                       "cpu, cuda or auto (cuda when present)")
    dtype: Any = _key("float32", Axis(Choice(DTYPE_NAMES)), f"one of {', '.join(DTYPE_NAMES)}")
    batch: Any = _key(1, Axis(Integer(1, 2**20)), "batch size, >= 1")
    tokens: int = _key(0, Count(0, 2**44, "0 = use batch"),
                       "if > 0: batch = max(1, tokens // seq_len), replacing batch")
    heads: Any = _key(8, Axis(Integer(1, 2**16)), "attention heads, >= 1")
    seq_len: Any = _key(1024, Axis(Integer(1, 2**24)), "sequence length N, >= 1")
    head_dim: Any = _key(64, Axis(Integer(1, 2**16)), "head dimension D, >= 1")
    pattern: Any = _key("full", Axis(Choice(PATTERN_KINDS)), f"one of {', '.join(PATTERN_KINDS)}")
    window: Any = _key(256, Axis(Integer(1, 2**24)), "window width w for window / window_sym, >= 1")
    block: Any = _key(64, Axis(Integer(1, 2**24)), "block-sparse tile size, >= 1")
    local: Any = _key(1, Axis(Integer(0, 2**24)), "block-sparse: neighbouring blocks on each side, >= 0")
    stride: Any = _key(0, Axis(Integer(0, 2**24)), "block-sparse: every stride-th key block (0 = none)")
    n_global: Any = _key(1, Axis(Integer(0, 2**24)), "block-sparse: leading global blocks, >= 0")
    mode: Any = _key("fwd", Axis(Choice(MODES)), f"one of {', '.join(MODES)}")
    seed: Any = _key(0, Axis(Integer(0, 2**63 - 1)), "seed of the input draw, >= 0")
    kv_heads: Any = _key(None, Axis(Integer(1, 2**16, nullable=True)),
                         "key/value heads, a divisor of heads (1 = multi-query); null = heads")
    q_len: Any = _key(None, Axis(Integer(1, 2**24, nullable=True)),
                      "queries per sequence, 1..seq_len (1 = decode); seq_len stays the key/value length; null = "
                      "seq_len")
    model: Any = _key(None, Axis(Choice(tuple(MODELS), nullable=True)),
                      f"a named model shape setting heads, kv_heads, head_dim (and window): {', '.join(MODELS)}; "
                      "null = none")
    lengths: Any = _key(None, Lengths(),
                        "documents of a variable-length batch (sets batch and seq_len): 100+300+2000, "
                        "lognormal/mean:512/max:4096/total:16384, uniform/min:64/max:1024/n:16, zipf/..., text/...; "
                        "see docs/sweeps.md; null = one sequence per batch row")
    layout: Any = _key("packed", Axis(Choice(LAYOUTS)),
                       f"with lengths: {' or '.join(LAYOUTS)} (one sequence with a document mask, or one row per "
                       "document padded to the longest)")
    inputs: Any = _key("gaussian", Axis(Choice(INPUT_KINDS)), f"input distribution, one of {', '.join(INPUT_KINDS)}")
    budget: float = _key(0.2, Seconds(), "time limit: seconds of steady-state timing per measurement, > 0")
    rel_ci: float = _key(0.02, Fraction("0 = spend the whole budget"),
                         "adaptive stop: the median's 95% CI narrower than this fraction of it; 0 = spend the budget")
    warmup: int = _key(1, Count(0, 10**6), "untimed calls after the setup call, >= 0")
    min_runs: int = _key(3, Count(1, 10**6), "fewest timed calls, even past the budget, >= 1")
    threads: int = _key(0, Threads(), "CPU threads for torch (0 = torch's default, at most the free cores)")
    cpu_timer: str = _key("per_call", Choice(CPU_TIMER_CHOICES),
                          "CPU timer: per_call (a sample per call) or blocked_autorange")
    results_dir: str = _key("results", Folder(), "where run directories go")
    run_name: str = _key(DEFAULT_RUN_NAME, RunName(), "run directory name (default: a timestamp); reuse it to resume")
    progress: str = _key("auto", Choice(("auto", "bar", "plain", "off")), "auto (bar on a terminal), bar, plain or off")
    isolate: bool = _key(False, Flag(), "each (case, variant) in its own child process (timeouts, crashes)")
    case_timeout_s: float = _key(600.0, Seconds(), "limit of one measurement phase, seconds > 0; a hang past it is a "
                                                   "timeout row (in process: the process then ends)")
    skip_unsupported: bool = _key(False, Flag(), "no row for a (case, variant) the variant cannot run here; one line "
                                                 "per variant says what was skipped and why")


#: Axis keys: each takes one value or a list of values.
AXES: tuple[str, ...] = tuple(f.name for f in fields(SweepConfig) if isinstance(f.metadata["rule"], Axis | Lengths))
#: Largest value of each integer key with a fixed bound.
INT_MAX: dict[str, int] = {
    f.name: rule.maximum for f in fields(SweepConfig)
    for rule in [getattr(f.metadata["rule"], "element", f.metadata["rule"])] if isinstance(rule, Integer | Count)
}


def schema_keys() -> list[tuple[str, str, Any, str]]:
    """``(key, type, default, help)`` of every config key, in schema order (for ``--help`` and the docs)."""
    out = []
    for f in fields(SweepConfig):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        out.append((f.name, f.metadata.get("type", ""), default, f.metadata.get("help", "")))
    return out


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: what to measure, how, and where the records go.

    Args:
        cases: the cases, deduplicated, ordered so cases sharing inputs (differing only in mode) are adjacent.
        variants: resolved variant names.
        run_dir: the run directory (``results_dir / run_name``), absolute.
        run_id: the run's name (the ``run_id`` column).
        budget_s, warmup, min_runs: measurement settings.
        rel_ci: adaptive stopping target (0: fixed budget).
        threads: torch CPU threads to set (0 = torch's default, capped at the cores free when the sweep starts).
        cpu_timer: how CPU cases are timed: ``per_call`` or ``blocked_autorange`` (part of a CPU record's key
            when not ``per_call``).
        progress: ``auto``, ``bar``, ``plain`` or ``off``.
        variants_from: files/modules imported to register variants (already imported by the conversion).
        isolate: run each (case, variant) in a child process (:mod:`harness.run.isolate`).
        case_timeout_s: with ``isolate``, the wall-clock limit of one measurement in its child.
        skip_unsupported: write no row for the (case, variant) pairs a variant declines (:mod:`harness.run.declines`).
    """

    cases: tuple[Case, ...]
    variants: tuple[str, ...]
    run_dir: Path
    run_id: str
    budget_s: float = 0.2
    rel_ci: float = 0.02
    warmup: int = 1
    min_runs: int = 3
    threads: int = 0
    cpu_timer: str = "per_call"
    progress: str = "auto"
    variants_from: tuple[str, ...] = ()
    isolate: bool = False
    case_timeout_s: float = 600.0
    skip_unsupported: bool = False

    @property
    def n_items(self) -> int:
        """Number of (case, variant) measurements the plan asks for (less the skipped ones)."""
        n = len(self.cases) * len(self.variants)
        if self.skip_unsupported:
            from harness.run.declines import plan_declines

            n -= len(plan_declines(self).pairs)
        return n


# ---------------------------------------------------------------------------------------------------- the plan
def plan_from_config(cfg: Mapping[str, Any], cuda_available: bool | None = None,
                     load_variants: bool = True) -> SweepPlan:
    """Validate a resolved sweep config and turn it into a :class:`SweepPlan`.

    Every key is checked by its field's rule, in schema order; then the keys that constrain each other (``q_len``
    with ``lengths``, the run directory, each case's size and shape), then the variants.

    Args:
        cfg: the resolved config as a plain mapping (keys of :class:`SweepConfig`; missing keys take defaults;
            a ``hydra`` key is ignored).
        cuda_available: whether ``device=auto`` means CUDA (default: ask torch).
        load_variants: import ``variants_from`` and resolve ``variants`` against the registry.

    Returns:
        The plan, with ``run_dir`` made absolute.

    Raises:
        ConfigError: a key has a bad value or is unknown; the message names the key, the value and what is
            allowed.
    """
    c = _with_defaults(cfg)
    if cuda_available is None:
        from harness.measure.env import cuda_available as _cuda

        cuda_available = _cuda()
    v = _checked(c)
    v["device"] = list(dict.fromkeys(_resolve_device(d, cuda_available) for d in v["device"]))
    run_dir = _check_run_dir(v["results_dir"], v["run_name"])
    cases = _cases(v)
    variants = _resolve_variants(v["variants"], v["variants_from"]) if load_variants else v["variants"]
    return SweepPlan(cases=tuple(cases), variants=tuple(variants), run_dir=run_dir, run_id=v["run_name"],
                     budget_s=v["budget"], rel_ci=v["rel_ci"], warmup=v["warmup"], min_runs=v["min_runs"],
                     threads=v["threads"], cpu_timer=v["cpu_timer"], progress=v["progress"],
                     variants_from=tuple(v["variants_from"]), isolate=v["isolate"], case_timeout_s=v["case_timeout_s"],
                     skip_unsupported=v["skip_unsupported"])


def _with_defaults(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` (less a ``hydra`` key) over the schema's defaults; an unknown key is refused."""
    defaults = {k: d for k, _, d, _ in schema_keys()}
    unknown = sorted(set(cfg) - set(defaults) - {"hydra"})
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} (allowed: {', '.join(defaults)})")
    return {**defaults, **{k: v for k, v in cfg.items() if k != "hydra"}}


def _checked(c: Mapping[str, Any]) -> dict[str, Any]:
    """Every key through its field's rule, in schema order; then ``q_len`` against ``lengths``."""
    out = {f.name: f.metadata["rule"].check(f.name, c[f.name]) for f in fields(SweepConfig)}
    if any(x is not None for x in out["lengths"]) and any(x is not None for x in out["q_len"]):
        raise ConfigError(f"q_len={_fmt(c['q_len'])} cannot be combined with lengths: each document is a whole "
                          "sequence (allowed: q_len=null with lengths)")
    return out


def _resolve_device(device: str, cuda_available: bool) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; other names unchanged."""
    if device == "auto":
        return "cuda" if cuda_available else "cpu"
    return device


# ---------------------------------------------------------------------------------------------------- the cases
#: The keys that make a pattern.
_PATTERN_KEYS = ("pattern", "window", "block", "local", "stride", "n_global")
#: The case grid's axes, outermost first (``pattern`` holds the patterns made of :data:`_PATTERN_KEYS`). ``mode``
#: is innermost so the cases that share inputs, differing only in mode, are adjacent (their inputs are drawn once).
_GRID = ("device", "dtype", "inputs", "model", "pattern", "lengths", "layout", "batch", "heads", "kv_heads",
         "head_dim", "seq_len", "q_len", "seed", "mode")


def _points(axes: Mapping[str, Sequence]) -> Iterator[dict[str, Any]]:
    """Every combination of the axes' values (the cartesian product, last axis fastest), as ``{axis: value}``."""
    for values in itertools.product(*axes.values()):
        yield dict(zip(axes, values, strict=True))


def _cases(v: Mapping[str, Any]) -> list[Case]:
    """The cases of the checked keys ``v``: one per grid point, duplicates removed, in grid order."""
    from harness.core.pattern import make_pattern  # torch: only when a plan is made, never for --help

    patterns = [make_pattern(p["pattern"], window=p["window"], block=p["block"], local=p["local"],
                             stride=p["stride"], n_global=p["n_global"])
                for p in _points({k: v[k] for k in _PATTERN_KEYS})]
    axes = {k: v[k] for k in _GRID} | {"pattern": list(dict.fromkeys(patterns))}
    return list(dict.fromkeys(_case(point, v["tokens"]) for point in _points(axes)))


def _case(p: Mapping[str, Any], tokens: int) -> Case:
    """The case of one grid point: ``tokens`` sets the batch, a named model the head shape (and its window, for
    window patterns), the documents of ``lengths`` the batch and sequence length."""
    from harness.core.case import Case
    from harness.core.pattern import make_pattern

    batch = max(1, tokens // p["seq_len"]) if tokens > 0 else p["batch"]
    heads, kv_heads, head_dim, seq_len, pattern = p["heads"], p["kv_heads"], p["head_dim"], p["seq_len"], p["pattern"]
    model = MODELS[p["model"]] if p["model"] is not None else None
    if model is not None:
        heads, kv_heads, head_dim = model.heads, model.kv_heads, model.head_dim
        if model.window is not None and pattern.window is not None:
            pattern = make_pattern(pattern.kind, window=model.window)
    if p["lengths"] is not None:
        batch, seq_len = _document_shape(p["lengths"], p["layout"], p["seed"])
    elements = batch * heads * seq_len * head_dim
    if elements > MAX_ELEMENTS:
        raise ConfigError(f"batch x heads x seq_len x head_dim = {batch} x {heads} x {seq_len} x {head_dim} = "
                          f"{elements} elements per tensor is too large (allowed: at most {MAX_ELEMENTS} = 2**40)")
    try:
        return Case(batch=batch, heads=heads, seq_len=seq_len, head_dim=head_dim, dtype=p["dtype"], device=p["device"],
                    pattern=pattern, mode=p["mode"], seed=p["seed"], inputs=p["inputs"], kv_heads=kv_heads,
                    q_len=p["q_len"], model=model.name if model else "", lengths=p["lengths"],
                    layout=p["layout"] if p["lengths"] is not None else None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _lengths_text(value: object) -> str:
    """One ``lengths`` entry in its canonical spelling."""
    try:
        return parse_lengths(value).text
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _document_shape(lengths: str, layout: str, seed: int) -> tuple[int, int]:
    """``(batch, seq_len)`` of the documents drawn for ``seed`` in ``layout``."""
    try:
        docs = parse_lengths(lengths).draw(seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return (len(docs), max(docs)) if layout == "padded" else (1, sum(docs))


# ---------------------------------------------------------------------------------------------------- run dir
def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX_DEFAULT


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name longer than the filesystem takes: it cannot exist
        return False


def _check_run_dir(results_dir: str, run_name: str) -> Path:
    """Check, creating nothing, that the run directory ``results_dir/run_name`` can be made and written.

    Every existing part of the path must be a directory; the deepest existing one must be writable (permissions,
    and not on a read-only filesystem); each new name must fit the filesystem (``NAME_MAX``, usually 255 bytes).

    Args:
        results_dir: the ``results_dir`` setting.
        run_name: the checked ``run_name``.

    Returns:
        The run directory, absolute.

    Raises:
        ConfigError: naming the key (``run_name`` for the run directory itself, else ``results_dir``), the value
            and what is allowed.
    """
    run_dir = Path(results_dir).expanduser().absolute() / run_name

    def named(part: Path) -> tuple[str, str]:
        return ("run_name", run_name) if part == run_dir else ("results_dir", results_dir)

    existing = run_dir
    while not _exists(existing) and existing != existing.parent:
        existing = existing.parent
    limit = _name_max(existing)
    for part in [run_dir, *run_dir.parents]:  # names to be created must fit the filesystem
        if part == existing:
            break
        size = len(part.name.encode("utf-8", "surrogateescape"))
        if size > limit:
            key, value = named(part)
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise ConfigError(f"{key}={shown!r}: the name {part.name[:40]!r}... is {size} bytes long (allowed: at "
                              f"most {limit} bytes per file name on this filesystem)")
    for part in [*reversed(run_dir.parents), run_dir]:  # every existing part must be a directory
        if part.exists() and not part.is_dir():
            key, value = named(part)
            raise ConfigError(f"{key}={value!r}: {part} exists and is not a directory (allowed: a directory, or a "
                              "path that can be created)")
        if part == existing:
            break
    read_only = False
    with contextlib.suppress(OSError, AttributeError):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    if read_only or not os.access(existing, os.W_OK | os.X_OK):
        why = "is on a read-only filesystem" if read_only else "is not writable by this user"
        key, value = named(existing)
        raise ConfigError(f"{key}={value!r}: {existing} {why} (allowed: a directory this user can write, or a path "
                          "that can be created there)")
    return run_dir


# ---------------------------------------------------------------------------------------------------- variants
def _resolve_variants(selection: Sequence[str], variants_from: Sequence[str] = ()) -> list[str]:
    """Import ``variants_from`` and resolve names/wildcards to registered variant names.

    Raises:
        ConfigError: a file or module cannot be imported, or an entry matches no variant (lists the known ones).
    """
    from harness.core.registry import load_variants_from, select_variants

    for src in variants_from:
        try:
            load_variants_from(src)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        except Exception as exc:  # an import error in the user's file is bad input, reported with its type
            raise ConfigError(f"variants_from={src!r}: importing it failed: {type(exc).__name__}: {exc}") from None
    try:
        return select_variants(list(selection))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
