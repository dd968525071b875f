"""The sweep configuration: its schema (every key, its type and default) and its conversion to typed objects.

:class:`SweepConfig` is the schema Hydra stores in its ConfigStore (``configs/`` registers it); the rest of the
harness never sees a ``DictConfig``. :func:`plan_from_config` takes the resolved config as a plain mapping,
validates every key (naming the key, the value and what is allowed) and returns a :class:`SweepPlan`: the
list of :class:`~harness.core.case.Case` objects, the resolved variant names and the measurement settings.

Axis keys (``device, dtype, batch, heads, seq_len, head_dim, pattern, window, block, local, stride, n_global,
mode, seed, inputs, kv_heads, q_len, model, lengths, layout``) take one value or a list; lists expand into the
cartesian product of cases inside one job (``seq_len=[512,1024]``). A Hydra multirun (``-m seq_len=512,1024``)
gives one job per value instead. Both write into the same run directory and produce the same rows. ``lengths``
(the documents of a variable-length batch, :mod:`harness.core.varlen`) reads a list of integers as one batch's
documents; a list of specs (``[100+300,lognormal/mean:512/max:4096/total:16384]``) sweeps them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.models import MODELS
from harness.core.names import DTYPE_NAMES, INPUT_KINDS, MODES, PATTERN_KINDS
from harness.core.varlen import LAYOUTS, parse_lengths
from harness.measure.machine import allowed_cores

if TYPE_CHECKING:
    from harness.core.case import Case

#: Device names a user may give; ``auto`` is CUDA when there is a device, otherwise the CPU.
DEVICE_CHOICES: tuple[str, ...] = ("cpu", "cuda", "auto")
PROGRESS_CHOICES: tuple[str, ...] = ("auto", "bar", "plain", "off")
#: Axis keys: each takes one value or a list of values.
AXES: tuple[str, ...] = (
    "device", "dtype", "batch", "heads", "seq_len", "head_dim", "pattern", "window", "block", "local", "stride",
    "n_global", "mode", "seed", "inputs", "kv_heads", "q_len", "model", "lengths", "layout",
)
DEFAULT_RUN_NAME = "${now:%Y-%m-%d_%H-%M-%S}"
#: Largest value of each integer key. Far beyond any machine, and small enough that no size or offset computed from
#: them overflows a 64-bit integer later (``seq_len=1e20`` is refused here, not an error row).
INT_MAX: dict[str, int] = {
    "batch": 2**20, "heads": 2**16, "seq_len": 2**24, "head_dim": 2**16, "window": 2**24, "block": 2**24,
    "local": 2**24, "stride": 2**24, "n_global": 2**24, "seed": 2**63 - 1, "tokens": 2**44, "warmup": 10**6,
    "min_runs": 10**6, "kv_heads": 2**16, "q_len": 2**24,
}
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


def _help(text: str, type_name: str) -> dict:
    return {"help": text, "type": type_name}


@dataclass
class SweepConfig:
    """Schema of a sweep (Hydra structured config). See ``docs/sweeps.md`` for every key.

    Axis keys are typed ``Any`` for OmegaConf because they accept ``T`` or ``list[T]`` (OmegaConf 2.3 has no
    unions); :func:`plan_from_config` enforces the element type given in each field's metadata.
    """

    variants: Any = field(default_factory=lambda: ["*"],
                          metadata=_help("variant names or wildcards (all selected run on every case)", "list[str]"))
    variants_from: Any = field(default_factory=list,
                               metadata=_help("extra .py files or modules that register variants", "list[str]"))
    device: Any = field(default="auto", metadata=_help("cpu, cuda or auto (cuda when present)", "str | list"))
    dtype: Any = field(default="float32", metadata=_help(f"one of {', '.join(DTYPE_NAMES)}", "str | list"))
    batch: Any = field(default=1, metadata=_help("batch size, >= 1", "int | list"))
    tokens: int = field(default=0, metadata=_help("if > 0: batch = max(1, tokens // seq_len), replacing batch", "int"))
    heads: Any = field(default=8, metadata=_help("attention heads, >= 1", "int | list"))
    seq_len: Any = field(default=1024, metadata=_help("sequence length N, >= 1", "int | list"))
    head_dim: Any = field(default=64, metadata=_help("head dimension D, >= 1", "int | list"))
    pattern: Any = field(default="full", metadata=_help(f"one of {', '.join(PATTERN_KINDS)}", "str | list"))
    window: Any = field(default=256, metadata=_help("window width w for window / window_sym, >= 1", "int | list"))
    block: Any = field(default=64, metadata=_help("block-sparse tile size, >= 1", "int | list"))
    local: Any = field(default=1, metadata=_help("block-sparse: neighbouring blocks on each side, >= 0", "int | list"))
    stride: Any = field(default=0, metadata=_help("block-sparse: every stride-th key block (0 = none)", "int | list"))
    n_global: Any = field(default=1, metadata=_help("block-sparse: leading global blocks, >= 0", "int | list"))
    mode: Any = field(default="fwd", metadata=_help(f"one of {', '.join(MODES)}", "str | list"))
    seed: Any = field(default=0, metadata=_help("seed of the input draw, >= 0", "int | list"))
    kv_heads: Any = field(default=None, metadata=_help("key/value heads, a divisor of heads (1 = multi-query); "
                                                       "null = heads", "int | list"))
    q_len: Any = field(default=None, metadata=_help("queries per sequence, 1..seq_len (1 = decode); seq_len stays "
                                                    "the key/value length; null = seq_len", "int | list"))
    model: Any = field(default=None, metadata=_help(f"a named model shape setting heads, kv_heads, head_dim (and "
                                                    f"window): {', '.join(MODELS)}; null = none", "str | list"))
    lengths: Any = field(default=None, metadata=_help("documents of a variable-length batch (sets batch and seq_len): "
                                                      "100+300+2000, lognormal/mean:512/max:4096/total:16384, "
                                                      "uniform/min:64/max:1024/n:16, zipf/..., text/...; see "
                                                      "docs/sweeps.md; null = one sequence per batch row",
                                                      "str | list"))
    layout: Any = field(default="packed", metadata=_help(f"with lengths: {' or '.join(LAYOUTS)} (one sequence with "
                                                         "a document mask, or one row per document padded to the "
                                                         "longest)", "str | list"))
    inputs: Any = field(default="gaussian", metadata=_help(f"input distribution, one of {', '.join(INPUT_KINDS)}",
                                                            "str | list"))
    budget: float = field(default=0.2, metadata=_help("time limit: seconds of steady-state timing per measurement, > 0",
                                                      "float"))
    rel_ci: float = field(default=0.02, metadata=_help("adaptive stop: the median's 95% CI narrower than this fraction "
                                                       "of it; 0 = spend the budget", "float"))
    warmup: int = field(default=1, metadata=_help("untimed calls after the setup call, >= 0", "int"))
    min_runs: int = field(default=3, metadata=_help("fewest timed calls, even past the budget, >= 1", "int"))
    threads: int = field(default=0, metadata=_help("CPU threads for torch (0 = torch's default, at most the free "
                                                   "cores)", "int"))
    cpu_timer: str = field(default="per_call",
                           metadata=_help("CPU timer: per_call (a sample per call) or blocked_autorange", "str"))
    results_dir: str = field(default="results", metadata=_help("where run directories go", "str"))
    run_name: str = field(default=DEFAULT_RUN_NAME,
                          metadata=_help("run directory name (default: a timestamp); reuse it to resume", "str"))
    progress: str = field(default="auto", metadata=_help("auto (bar on a terminal), bar, plain or off", "str"))
    isolate: bool = field(default=False,
                          metadata=_help("each (case, variant) in its own child process (timeouts, crashes)", "bool"))
    case_timeout_s: float = field(default=600.0,
                                  metadata=_help("limit of one measurement phase, seconds > 0; a hang past it is a "
                                                 "timeout row (in process: the process then ends)", "float"))
    skip_unsupported: bool = field(default=False,
                                   metadata=_help("no row for a (case, variant) the variant cannot run here; one "
                                                  "line per variant says what was skipped and why", "bool"))


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


# ---------------------------------------------------------------------------------------------------- checks
def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _as_list(key: str, value: object) -> list:
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(f"{key}=[] is empty (allowed: one value or a non-empty list)")
        return list(value)
    return [value]


def _int_value(key: str, value: object, minimum: int) -> int:
    given = value
    maximum = INT_MAX.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{key}={_fmt(value)} is not an integer (allowed: an integer >= {minimum}, or a list)")
    if value < minimum:
        raise ConfigError(f"{key}={given} is out of range (allowed: an integer >= {minimum})")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}={given} is out of range (allowed: an integer from {minimum} to {maximum})")
    return int(value)


def _choice_value(key: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{key}={_fmt(value)} is not a known {key} (allowed: {', '.join(allowed)})")
    return value


def _device_value(value: object) -> str:
    if isinstance(value, str) and re.fullmatch(r"cuda:\d+", value):
        return value
    return _choice_value("device", value, DEVICE_CHOICES)


def _axis(cfg: Mapping[str, Any], key: str, conv: Callable[[str, object], Any]) -> list:
    values = [conv(key, v) for v in _as_list(key, cfg[key])]
    return list(dict.fromkeys(values))  # duplicates removed, order kept


def resolve_device(device: str, cuda_available: bool) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; other names unchanged."""
    if device == "auto":
        return "cuda" if cuda_available else "cpu"
    return device


def _scalar(cfg: Mapping[str, Any], key: str, kind: type, check: Callable[[Any], bool], allowed: str) -> Any:
    value = cfg[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind) or not check(value):
        raise ConfigError(f"{key}={_fmt(value)} is not allowed (allowed: {allowed})")
    return value


def _names(key: str, value: object) -> list[str]:
    if value is None:
        items: list = []
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key} entry {_fmt(item)} is not a name (allowed: names or wildcards as strings)")
    return items


def check_run_name(run_name: object) -> str:
    """A run name must be one plain directory name."""
    if not isinstance(run_name, str) or not run_name or run_name in (".", "..") or "/" in run_name \
            or "\\" in run_name or run_name.startswith("${"):
        raise ConfigError(f"run_name={_fmt(run_name)} is not allowed (allowed: one directory name, no '/')")
    return run_name


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX_DEFAULT


def check_run_dir(results_dir: str, run_name: str) -> Path:
    """Check, creating nothing, that the run directory ``results_dir/run_name`` can be made and written.

    Every existing part of the path must be a directory; the deepest existing one must be writable (permissions,
    and not on a read-only filesystem); each new name must fit the filesystem (``NAME_MAX``, usually 255 bytes).

    Args:
        results_dir: the ``results_dir`` setting.
        run_name: the checked ``run_name``.

    Returns:
        The run directory, absolute.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    base = Path(results_dir).expanduser().absolute()
    run_dir = base / run_name

    def exists(path: Path) -> bool:
        try:
            return path.exists()
        except OSError:  # e.g. a name longer than the filesystem takes: it cannot exist
            return False

    existing = run_dir
    while not exists(existing) and existing != existing.parent:
        existing = existing.parent
    limit = _name_max(existing)
    for part in [run_dir, *run_dir.parents]:  # names to be created must fit the filesystem
        if part == existing:
            break
        size = len(part.name.encode("utf-8", "surrogateescape"))
        if size > limit:
            key, value = ("run_name", run_name) if part == run_dir else ("results_dir", results_dir)
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise ConfigError(f"{key}={shown!r}: the name {part.name[:40]!r}... is {size} bytes long (allowed: at "
                              f"most {limit} bytes per file name on this filesystem)")
    for part in [*reversed(run_dir.parents), run_dir]:  # every existing part must be a directory
        if part.exists() and not part.is_dir():
            key, value = ("run_name", run_name) if part == run_dir else ("results_dir", results_dir)
            raise ConfigError(f"{key}={value!r}: {part} exists and is not a directory (allowed: a directory, or a "
                              "path that can be created)")
        if part == existing:
            break
    read_only = False
    with contextlib.suppress(OSError, AttributeError):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    if read_only or not os.access(existing, os.W_OK | os.X_OK):
        why = "is on a read-only filesystem" if read_only else "is not writable by this user"
        key, value = ("run_name", run_name) if existing == run_dir else ("results_dir", results_dir)
        raise ConfigError(f"{key}={value!r}: {existing} {why} (allowed: a directory this user can write, or a path "
                          "that can be created there)")
    return run_dir


def plan_from_config(cfg: Mapping[str, Any], cuda_available: bool | None = None,
                     load_variants: bool = True) -> SweepPlan:
    """Validate a resolved sweep config and turn it into a :class:`SweepPlan`.

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
    defaults = {k: d for k, _, d, _ in schema_keys()}
    unknown = sorted(set(cfg) - set(defaults) - {"hydra"})
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} (allowed: {', '.join(defaults)})")
    c = {**defaults, **{k: v for k, v in cfg.items() if k != "hydra"}}
    if cuda_available is None:
        from harness.measure.env import cuda_available as _cuda

        cuda_available = _cuda()

    devices = [resolve_device(d, cuda_available) for d in _axis(c, "device", lambda k, v: _device_value(v))]
    devices = list(dict.fromkeys(devices))
    dtypes = _axis(c, "dtype", lambda k, v: _choice_value(k, v, DTYPE_NAMES))
    batches = _axis(c, "batch", lambda k, v: _int_value(k, v, 1))
    heads = _axis(c, "heads", lambda k, v: _int_value(k, v, 1))
    seq_lens = _axis(c, "seq_len", lambda k, v: _int_value(k, v, 1))
    head_dims = _axis(c, "head_dim", lambda k, v: _int_value(k, v, 1))
    patterns = _axis(c, "pattern", lambda k, v: _choice_value(k, v, PATTERN_KINDS))
    windows = _axis(c, "window", lambda k, v: _int_value(k, v, 1))
    blocks = _axis(c, "block", lambda k, v: _int_value(k, v, 1))
    locals_ = _axis(c, "local", lambda k, v: _int_value(k, v, 0))
    strides = _axis(c, "stride", lambda k, v: _int_value(k, v, 0))
    n_globals = _axis(c, "n_global", lambda k, v: _int_value(k, v, 0))
    modes = _axis(c, "mode", lambda k, v: _choice_value(k, v, MODES))
    seeds = _axis(c, "seed", lambda k, v: _int_value(k, v, 0))
    input_kinds = _axis(c, "inputs", lambda k, v: _choice_value(k, v, INPUT_KINDS))
    kv_heads_ = _axis(c, "kv_heads", lambda k, v: None if v is None else _int_value(k, v, 1))
    q_lens = _axis(c, "q_len", lambda k, v: None if v is None else _int_value(k, v, 1))
    models = _axis(c, "model", lambda k, v: None if v is None else MODELS[_choice_value(k, v, tuple(MODELS))])
    lengths_ = [_lengths_value(v) for v in _lengths_list(c["lengths"])]
    lengths_ = list(dict.fromkeys(lengths_))
    layouts = _axis(c, "layout", lambda k, v: _choice_value(k, v, LAYOUTS))
    if any(x is not None for x in lengths_) and any(x is not None for x in q_lens):
        raise ConfigError(f"q_len={_fmt(c['q_len'])} cannot be combined with lengths: each document is a whole "
                          "sequence (allowed: q_len=null with lengths)")
    tokens = _scalar(c, "tokens", int, lambda v: 0 <= v <= INT_MAX["tokens"],
                     f"an integer from 0 to {INT_MAX['tokens']}; 0 = use batch")
    budget = _scalar(c, "budget", float, lambda v: 0 < v <= MAX_SECONDS,
                     f"seconds, a number > 0 and <= {MAX_SECONDS:g}")
    warmup = _scalar(c, "warmup", int, lambda v: 0 <= v <= INT_MAX["warmup"],
                     f"an integer from 0 to {INT_MAX['warmup']}")
    min_runs = _scalar(c, "min_runs", int, lambda v: 1 <= v <= INT_MAX["min_runs"],
                       f"an integer from 1 to {INT_MAX['min_runs']}")
    rel_ci = _scalar(c, "rel_ci", float, lambda v: 0 <= v < 1, "a number in [0, 1); 0 = spend the whole budget")
    cores = allowed_cores()
    threads = _scalar(c, "threads", int, lambda v: 0 <= v <= cores,
                      f"an integer >= 0 and <= {cores}, the cores this process may run on; 0 = torch's default")
    cpu_timer = _choice_value("cpu_timer", c["cpu_timer"], CPU_TIMER_CHOICES)
    progress = _choice_value("progress", c["progress"], PROGRESS_CHOICES)
    isolate = c["isolate"]
    if not isinstance(isolate, bool):
        raise ConfigError(f"isolate={_fmt(isolate)} is not allowed (allowed: true or false)")
    skip_unsupported = c["skip_unsupported"]
    if not isinstance(skip_unsupported, bool):
        raise ConfigError(f"skip_unsupported={_fmt(skip_unsupported)} is not allowed (allowed: true or false)")
    case_timeout_s = _scalar(c, "case_timeout_s", float, lambda v: 0 < v <= MAX_SECONDS,
                             f"seconds, a number > 0 and <= {MAX_SECONDS:g}")
    results_dir = c["results_dir"]
    if not isinstance(results_dir, str) or not results_dir:
        raise ConfigError(f"results_dir={_fmt(results_dir)} is not allowed (allowed: a directory path)")
    run_name = check_run_name(c["run_name"])
    run_dir = check_run_dir(results_dir, run_name)
    variants_from = _names("variants_from", c["variants_from"])
    selection = _names("variants", c["variants"])

    from harness.core.case import Case  # torch: only when a plan is made, never for --help
    from harness.core.pattern import make_pattern

    pats = []
    for kind, w, b, lo, st, ng in itertools.product(patterns, windows, blocks, locals_, strides, n_globals):
        pats.append(make_pattern(kind, window=w, block=b, local=lo, stride=st, n_global=ng))
    pats = list(dict.fromkeys(pats))

    cases: list[Case] = []
    for dev, dt, inp, mdl, pat, lens, lay, bt, h, kv, d, n, ql, s, m in itertools.product(
            devices, dtypes, input_kinds, models, pats, lengths_, layouts, batches, heads, kv_heads_, head_dims,
            seq_lens, q_lens, seeds, modes):
        b = max(1, tokens // n) if tokens > 0 else bt
        if mdl is not None:  # a named model sets the head shape (and its window, for window patterns)
            h, kv, d = mdl.heads, mdl.kv_heads, mdl.head_dim
            if mdl.window is not None and pat.window is not None:
                pat = make_pattern(pat.kind, window=mdl.window)
        if lens is not None:  # the documents set batch and seq_len
            b, n = _document_shape(lens, lay, s)
        if b * h * n * d > MAX_ELEMENTS:
            raise ConfigError(f"batch x heads x seq_len x head_dim = {b} x {h} x {n} x {d} = {b * h * n * d} elements "
                              f"per tensor is too large (allowed: at most {MAX_ELEMENTS} = 2**40)")
        try:
            cases.append(Case(batch=b, heads=h, seq_len=n, head_dim=d, dtype=dt, device=dev, pattern=pat, mode=m,
                              seed=s, inputs=inp, kv_heads=kv, q_len=ql, model=mdl.name if mdl else "", lengths=lens,
                              layout=lay if lens is not None else None))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    cases = list(dict.fromkeys(cases))

    if load_variants:
        variants = resolve_variants(selection, variants_from)
    else:
        variants = selection
    return SweepPlan(cases=tuple(cases), variants=tuple(variants), run_dir=run_dir, run_id=run_name,
                     budget_s=float(budget), rel_ci=float(rel_ci), warmup=warmup, min_runs=min_runs, threads=threads,
                     cpu_timer=cpu_timer, progress=progress, variants_from=tuple(variants_from), isolate=isolate,
                     case_timeout_s=float(case_timeout_s),
                     skip_unsupported=skip_unsupported)


def _lengths_list(value: object) -> list:
    """The ``lengths`` axis: a list of integers is one batch's documents; any other list is one spec per entry."""
    if isinstance(value, list | tuple) and value and all(isinstance(x, int) and not isinstance(x, bool)
                                                         for x in value):
        return [list(value)]
    return _as_list("lengths", value)


def _lengths_value(value: object) -> str | None:
    """One ``lengths`` entry in its canonical spelling (None: no documents)."""
    if value is None:
        return None
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


def resolve_variants(selection: Sequence[str], variants_from: Sequence[str] = ()) -> list[str]:
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
