"""Read pytest-benchmark's JSON (``--benchmark-json``, ``--benchmark-save``) into rows of attnbench's CSV.

``pytest benchmarks --benchmark-only`` times every variant with pytest-benchmark's fixture (regression tracking
in CI: ``--benchmark-autosave`` / ``--benchmark-compare-fail``); this module turns those runs into the same tidy
table as a sweep, so ``attnbench report`` gives them the same CSV and plots.

Columns derived, where the JSON holds what they need:

- ``variant`` and the case fields (``device``, ``dtype``, ``batch``, ``heads``, ``seq_len``, ``head_dim``,
  ``pattern``, ``window``, ``mode``, ``seed``) from the benchmark's ``extra_info``, then its ``params``;
- ``time_ms_median``, ``time_ms_iqr``, ``time_ms_min`` from its stats (seconds there, ms here), ``n_runs`` = rounds
  (each round is the mean of ``iterations`` calls), ``noisy`` = IQR / median > 10 %;
- ``flops`` from ``extra_info`` or the case, then ``tflops``; ``err_*`` when the benchmark recorded them;
- ``git_commit`` and ``timestamp`` from the file's ``commit_info`` and ``datetime``; ``device_name`` from
  ``extra_info`` or, on CPU, the machine's processor; ``run_id`` is the file's stem; ``status`` is ``ok`` (pytest-
  benchmark records only benchmarks that ran).

Every other public column is present and empty (NaN); ``source`` = ``pytest-benchmark`` marks these rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.core.case import Case
from harness.core.flops import attention_flops
from harness.core.pattern import make_pattern
from harness.store.columns import PUBLIC_COLUMNS

__all__ = ["is_pytest_benchmark_json", "load_pytest_benchmark_json"]

_CASE_FIELDS = ("device", "dtype", "batch", "heads", "seq_len", "head_dim", "pattern", "window", "mode", "seed")
_COPIED_FIELDS = ("device_name", "flops", "err_max_abs", "err_rel_l2", "err_mean_abs", "err_ratio_vs_textbook",
                  "grad_err_rel_l2", "torch_version", "harness_version", "peak_mem_bytes", "setup_ms", "threads")
_NOISY_IQR_RATIO = 0.10


def is_pytest_benchmark_json(path: str | Path) -> bool:
    """True when ``path`` is a JSON file written by pytest-benchmark (it has ``benchmarks`` and ``machine_info``)."""
    p = Path(path)
    if not p.is_file() or p.suffix != ".json":
        return False
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and "machine_info" in data


def _case_flops(fields: dict) -> float:
    """FLOPs from the case fields; NaN when they do not describe a case the harness can rebuild."""
    try:
        pattern = make_pattern(fields["pattern"], window=_int_or_none(fields.get("window")))
        case = Case(batch=int(fields["batch"]), heads=int(fields["heads"]), seq_len=int(fields["seq_len"]),
                    head_dim=int(fields["head_dim"]), dtype=fields["dtype"], device=fields["device"],
                    pattern=pattern, mode=fields["mode"])
        return attention_flops(case)
    except (KeyError, TypeError, ValueError):
        return math.nan


def _int_or_none(x: object) -> int | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return int(x)  # type: ignore[arg-type]


def _row(bench: dict, data: dict, run_id: str) -> dict:
    stats = bench.get("stats") or {}
    extra = bench.get("extra_info") or {}
    params = bench.get("params") or {}
    row: dict = dict.fromkeys(PUBLIC_COLUMNS, math.nan)
    row.update(run_id=run_id, status="ok", reason="", source="pytest-benchmark",
               benchmark_name=bench.get("fullname") or bench.get("name", ""), benchmark_group=bench.get("group"))
    row["variant"] = extra.get("variant") or params.get("variant") or params.get("name") or bench.get("name", "")
    for key in _CASE_FIELDS:
        value = extra.get(key, params.get(key))
        if value is not None:
            row[key] = value
    for key in _COPIED_FIELDS:
        if extra.get(key) is not None:
            row[key] = extra[key]
    to_ms = lambda key: float(stats[key]) * 1e3 if stats.get(key) is not None else math.nan
    row["time_ms_median"], row["time_ms_iqr"], row["time_ms_min"] = to_ms("median"), to_ms("iqr"), to_ms("min")
    row["time_ms_mean"], row["time_ms_stddev"] = to_ms("mean"), to_ms("stddev")
    row["n_runs"] = int(stats.get("rounds", 0))
    row["iterations"] = int(stats.get("iterations", 1))
    median = row["time_ms_median"]
    row["noisy"] = bool(median > 0 and row["time_ms_iqr"] / median > _NOISY_IQR_RATIO) if median == median else False
    try:  # the pattern's own label; a window recorded for a kind that has none does not split cases
        pattern = make_pattern(row["pattern"], window=_int_or_none(row.get("window")))
        row["pattern_label"] = pattern.label
        if pattern.kind not in ("window", "window_sym"):
            row["window"] = math.nan
    except (KeyError, TypeError, ValueError):
        pass
    if not (isinstance(row["flops"], float | int) and math.isfinite(row["flops"])):
        row["flops"] = _case_flops(row)
    if math.isfinite(row["flops"]) and median > 0:
        row["tflops"] = row["flops"] / (median * 1e-3) / 1e12
    if row["device_name"] in ("", None) or row["device_name"] != row["device_name"]:
        cpu = (data.get("machine_info") or {}).get("cpu") or {}
        row["device_name"] = cpu.get("brand_raw", "") if str(row["device"]).startswith("cpu") else ""
    row["git_commit"] = (data.get("commit_info") or {}).get("id") or ""
    row["timestamp"] = data.get("datetime") or ""
    return row


def load_pytest_benchmark_json(path: str | Path) -> pd.DataFrame:
    """Rows of the public CSV from a pytest-benchmark JSON file, or from every ``*.json`` under a folder.

    Args:
        path: a file written by ``--benchmark-json=FILE`` or ``--benchmark-save`` / ``--benchmark-autosave``, or
            a folder of them (such as ``.benchmarks/``).

    Returns:
        One row per benchmark with :data:`PUBLIC_COLUMNS` first, then ``source``, ``benchmark_name``,
        ``benchmark_group``, ``time_ms_mean``, ``time_ms_stddev``, ``iterations`` and whatever else was recorded.

    Raises:
        ValueError: the path does not exist, a file is not valid JSON, or it is not pytest-benchmark output.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.json") if is_pytest_benchmark_json(f))
        if not files:
            raise ValueError(f"{str(path)!r}: folder holds no pytest-benchmark JSON files")
        return pd.concat([load_pytest_benchmark_json(f) for f in files], ignore_index=True)
    if not p.is_file():
        raise ValueError(f"{str(path)!r}: no such file (expected pytest-benchmark's --benchmark-json output)")
    try:
        data = json.loads(p.read_text())
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not (isinstance(data, dict) and isinstance(data.get("benchmarks"), list)):
        raise ValueError(f"{str(path)!r} is not pytest-benchmark output (expected a JSON object with a "
                         f"'benchmarks' list)")
    rows = [_row(b, data, p.stem) for b in data["benchmarks"]]
    frame = pd.DataFrame(rows, columns=None if rows else list(PUBLIC_COLUMNS))
    extra = [c for c in frame.columns if c not in PUBLIC_COLUMNS]
    return frame[list(PUBLIC_COLUMNS) + extra]
