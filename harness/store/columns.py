"""The public CSV columns of a result row, and the one definition of what identifies a case.

A *case* is everything that defines what was measured apart from the variant: the shapes, the dtype, the
device, the attention pattern with all its parameters, the input distribution, the seed, the mode, and (on CPU)
the thread count. :data:`CASE_PARAMS` lists them; every table, plot, speedup, comparison and scaling fit groups
rows by :func:`case_key`, built from that tuple alone, so two rows share a key only when every parameter is
equal. Adding a case parameter is one line in :data:`CASE_PARAMS` (or :data:`PATTERN_PARAMS` for a parameter of
the pattern, which is written inside ``pattern_label``).

This module imports nothing heavy (no pandas), so the store can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CASE_COLUMNS", "CASE_KEY", "CASE_PARAMS", "PATTERN_PARAMS", "PUBLIC_COLUMNS", "CaseParam", "case_key",
           "case_text", "is_blank", "param_value", "pattern_label", "value_text"]

#: The public CSV columns, in this order; extra columns follow them.
PUBLIC_COLUMNS: tuple[str, ...] = (
    "run_id", "variant", "status", "reason", "device", "device_name", "dtype", "batch", "heads", "seq_len",
    "head_dim", "pattern", "window", "mode", "seed", "time_ms_median", "time_ms_iqr", "time_ms_min", "n_runs",
    "setup_ms", "peak_mem_bytes", "flops", "tflops", "pct_of_peak", "err_max_abs", "err_rel_l2", "err_mean_abs",
    "err_ratio_vs_textbook", "grad_err_rel_l2", "noisy", "torch_version", "harness_version", "git_commit",
    "timestamp",
)


@dataclass(frozen=True)
class CaseParam:
    """One parameter that defines a case.

    Args:
        name: its CSV column.
        numeric: its values are numbers (``512`` and ``512.0`` are one value).
        default: what a row lacking the value (an older run) reads as; ``None``: blank.
        default_from: another column whose value is the default (``kv_heads`` defaults to ``heads``).
        text: how a case's one-line description writes it, ``{}`` standing for the value (``"N{}"``).
        hide_default: the description leaves it out when it holds its default.
        cpu_only: part of the key on CPU rows only (the thread count does not change a GPU kernel's time).
    """

    name: str
    numeric: bool = True
    default: object = None
    default_from: str | None = None
    text: str = "{}"
    hide_default: bool = False
    cpu_only: bool = False


#: Parameters of the attention pattern, written inside ``pattern_label`` (``window(w=256)``,
#: ``block_sparse(block=64, local=1, stride=0, global=1)``), in this order. A row leaves blank the ones its
#: pattern kind does not use.
PATTERN_PARAMS: tuple[CaseParam, ...] = (
    CaseParam("window", text="w={}"),
    CaseParam("block", text="block={}"),
    CaseParam("local", text="local={}"),
    CaseParam("stride", text="stride={}"),
    CaseParam("n_global", text="global={}"),
)

#: Every parameter that defines a case (the variant aside), in the order a case is described. The pattern
#: enters as ``pattern_label``, which holds the kind and every parameter of :data:`PATTERN_PARAMS`.
#: Add a case parameter here, in one line; rows of older runs read as its ``default``.
CASE_PARAMS: tuple[CaseParam, ...] = (
    CaseParam("device", numeric=False, default=""),
    CaseParam("dtype", numeric=False, default=""),
    CaseParam("batch", text="B{}"),
    CaseParam("heads", text="H{}"),
    CaseParam("kv_heads", default_from="heads", text="KV{}", hide_default=True),
    CaseParam("seq_len", text="N{}"),
    CaseParam("q_len", default_from="seq_len", text="Q{}", hide_default=True),
    CaseParam("head_dim", text="D{}"),
    CaseParam("pattern_label", numeric=False, default=""),
    CaseParam("inputs", numeric=False, default="gaussian", text="inputs={}", hide_default=True),
    CaseParam("seed", default=0, text="seed={}", hide_default=True),
    CaseParam("mode", numeric=False, default=""),
    CaseParam("model", numeric=False, default="", text="model={}", hide_default=True),
    CaseParam("lengths", numeric=False, default="", text="lengths={}", hide_default=True),
    CaseParam("layout", numeric=False, default="", text="{}", hide_default=True),
    CaseParam("threads", text="{} threads", cpu_only=True),
    CaseParam("cpu_timer", numeric=False, default="per_call", text="timer={}", hide_default=True, cpu_only=True),
)

_DEFAULT_OF = {p.name: p for p in CASE_PARAMS}

#: The case columns, in order.
CASE_COLUMNS: tuple[str, ...] = tuple(p.name for p in CASE_PARAMS)
#: The derived column holding :func:`case_key`.
CASE_KEY = "case_key"


def is_blank(value: object) -> bool:
    """True for None, NaN, pandas' NA and empty or whitespace-only strings."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    try:  # pandas.NA, numpy floats
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def value_text(value: object) -> str:
    """A parameter value as key text: blank -> ``""``, integral numbers without ``.0``, other text stripped."""
    if is_blank(value):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float) or type(value).__module__ == "numpy":
        try:
            f = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return str(value).strip()
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value).strip()


def pattern_label(row: Mapping[str, object]) -> str:
    """The pattern of a row with its parameters, e.g. ``window(w=256)``; the same text as ``Pattern.label``.

    A row that recorded its ``pattern_label`` keeps it (it is the sweep's own name of the pattern, which can say
    more, e.g. ``custom layout b9957f3c``, a digest of the layout); otherwise it is built from ``pattern`` and
    :data:`PATTERN_PARAMS`.

    Args:
        row: a result row (a dict, or anything with ``.get``).

    Returns:
        The label (``""`` when the row has no pattern).
    """
    recorded = row.get("pattern_label")
    if not is_blank(recorded):
        return str(recorded).strip()
    kind = value_text(row.get("pattern"))
    parts = [p.text.format(value_text(row.get(p.name))) for p in PATTERN_PARAMS if not is_blank(row.get(p.name))]
    return f"{kind}({', '.join(parts)})" if parts and kind else kind


def param_value(row: Mapping[str, object], param: CaseParam) -> object:
    """The value of ``param`` in ``row``, its default where the row lacks it."""
    value = pattern_label(row) if param.name == "pattern_label" else row.get(param.name)
    if is_blank(value):
        value = row.get(param.default_from) if param.default_from else param.default
    return value


def _keyed(row: Mapping[str, object], param: CaseParam) -> str:
    if param.cpu_only and not value_text(row.get("device")).startswith("cpu"):
        return ""
    return value_text(param_value(row, param))


def case_key(row: Mapping[str, object], params: tuple[CaseParam, ...] = CASE_PARAMS) -> str:
    """The key of a row's case: every parameter of :data:`CASE_PARAMS` (defaults filled in), as one string.

    Two rows have the same key exactly when they measured the same case (any variant).

    Args:
        row: a result row.
        params: the parameters to key on (default: all of them).

    Returns:
        ``"device=cpu|dtype=float32|batch=1|...|threads=2"``.
    """
    return "|".join(f"{p.name}={_keyed(row, p)}" for p in params)


def case_text(row: Mapping[str, object]) -> str:
    """A case in one line for people: ``cpu float32 B1 H8 N1024 D64 causal fwd 2 threads``."""
    parts = []
    for p in CASE_PARAMS:
        text = _keyed(row, p)
        default = value_text(param_value(row, _DEFAULT_OF[p.default_from])) if p.default_from else value_text(p.default)
        if not text or (p.hide_default and text == default):
            continue
        parts.append(p.text.format(text))
    return " ".join(parts)
