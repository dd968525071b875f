"""Read result rows of one or more runs (run directories or CSV files) into one tidy DataFrame for reports.

This is the report side's small reader; the results store (``harness.store``) owns how runs are written. It
accepts a run directory (holding ``results.csv`` and optionally ``env.json``) or a CSV file, fills in public
columns a file lacks, coerces numbers, and adds derived columns the reports group on:

- ``run``: which run a row came from (``run_id`` when present, else the directory or file name);
- ``pattern_label``: the pattern with its window, e.g. ``window(w=256)``;
- ``err_metric``: the error a report shows, ``approx_err_rel_l2`` where that column exists and is set, else
  ``err_rel_l2``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.columns import PUBLIC_COLUMNS

#: Columns that are numbers (coerced; unparsable entries become NaN).
NUMERIC_COLUMNS: tuple[str, ...] = (
    "batch", "heads", "seq_len", "head_dim", "window", "seed", "time_ms_median", "time_ms_iqr", "time_ms_min",
    "n_runs", "setup_ms", "peak_mem_bytes", "flops", "tflops", "pct_of_peak", "err_max_abs", "err_rel_l2",
    "err_mean_abs", "err_ratio_vs_textbook", "grad_err_rel_l2", "textbook_err_rel_l2", "approx_err_rel_l2",
    "approx_err_max_abs",
)
#: What identifies the inputs of a case (the variant and the mode are not part of it).
CASE_COLUMNS: tuple[str, ...] = (
    "device", "dtype", "batch", "heads", "seq_len", "head_dim", "pattern_label", "inputs", "seed",
)
#: Where a report looks for the results of a run directory.
RESULTS_FILE = "results.csv"
ENV_FILE = "env.json"


@dataclass
class RunData:
    """Rows of the runs read, and each run's environment (``env.json``) where one was found.

    Args:
        frame: all rows, with the derived columns ``run``, ``pattern_label`` and ``err_metric``.
        envs: run name -> the parsed ``env.json`` of that run.
        sources: the files read, in order.
    """

    frame: pd.DataFrame
    envs: dict[str, dict] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)


def _resolve(path: str | Path) -> tuple[Path, Path | None]:
    """(results CSV, env.json or None) of a run directory or CSV file."""
    p = Path(path)
    if p.is_dir():
        csv = p / RESULTS_FILE
        if not csv.is_file():
            raise ValueError(f"run directory {str(p)!r} has no {RESULTS_FILE} (allowed: a run directory "
                             f"holding {RESULTS_FILE}, or a CSV file)")
        env = p / ENV_FILE
        return csv, env if env.is_file() else None
    if p.is_file():
        env = p.parent / ENV_FILE
        return p, env if env.is_file() else None
    raise ValueError(f"{str(p)!r} does not exist (allowed: a run directory holding {RESULTS_FILE}, or a CSV file)")


def _pattern_label(pattern: object, window: object) -> str:
    text = "" if pattern is None or (isinstance(pattern, float) and math.isnan(pattern)) else str(pattern)
    if "(" in text:
        return text
    if isinstance(window, int | float) and not (isinstance(window, float) and math.isnan(window)) and window > 0:
        return f"{text}(w={int(window)})"
    return text


def _text(col: pd.Series, default: str) -> pd.Series:
    return col.astype(object).where(col.notna(), default).astype(str)


def normalize(frame: pd.DataFrame, run: str = "") -> pd.DataFrame:
    """Give a frame of result rows every public column, numeric types and the derived report columns.

    Args:
        frame: rows as read from a results CSV (or built in memory).
        run: run name to use where ``run_id`` is missing.

    Returns:
        A new DataFrame: public columns first (in order), then the rest, then ``run``, ``pattern_label``,
        ``err_metric``.
    """
    df = frame.copy()
    for col in PUBLIC_COLUMNS:
        if col not in df.columns:
            df[col] = math.nan
    for col in NUMERIC_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["status"] = _text(df["status"], "ok").str.strip().str.lower()
    for col in ("reason", "variant", "device", "device_name", "dtype", "pattern", "mode"):
        df[col] = _text(df[col], "")
    # runs from before the `inputs` key, and pytest-benchmark rows, drew gaussian inputs
    df["inputs"] = _text(df["inputs"], "gaussian") if "inputs" in df.columns else "gaussian"
    run_id = df["run_id"].astype("string").fillna(run or "")
    df["run"] = run_id.where(run_id != "", run or "run").astype(str)
    df["pattern_label"] = [_pattern_label(p, w) for p, w in zip(df["pattern"], df["window"])]
    err = df["err_rel_l2"]
    if "approx_err_rel_l2" in df.columns:
        err = df["approx_err_rel_l2"].where(df["approx_err_rel_l2"].notna(), err)
    df["err_metric"] = err
    rest = [c for c in df.columns if c not in PUBLIC_COLUMNS and c not in ("run", "pattern_label", "err_metric")]
    return df[list(PUBLIC_COLUMNS) + rest + ["run", "pattern_label", "err_metric"]]


def _read_runs(paths: list[str | Path] | tuple[str | Path, ...] | str | Path) -> RunData:
    """Read run directories and/or CSV files into one :class:`RunData`.

    Args:
        paths: run directories (each holding ``results.csv``, optionally ``env.json``), CSV files, or
            pytest-benchmark ``--benchmark-json`` files (read by :mod:`harness.pytest_bench`).

    Returns:
        The rows of all of them, normalized (see :func:`normalize`), and the environments found.

    Raises:
        ValueError: no path given, a path does not exist, or a directory holds no ``results.csv``.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise ValueError("no run given (allowed: one or more run directories or CSV files)")
    frames, envs, sources = [], {}, []
    for path in paths:
        if Path(path).is_file() and Path(path).suffix == ".json":
            from harness.pytest_bench import is_pytest_benchmark_json, load_pytest_benchmark_json

            if not is_pytest_benchmark_json(path):
                raise ValueError(f"{str(path)!r} is not pytest-benchmark JSON (allowed: a run directory, a CSV "
                                 f"file, or a --benchmark-json file)")
            frames.append(normalize(load_pytest_benchmark_json(path), run=Path(path).stem))
            sources.append(Path(path))
            continue
        csv, env = _resolve(path)
        name = csv.parent.name if csv.name == RESULTS_FILE else csv.stem
        raw = pd.read_csv(csv)
        frame = normalize(raw, run=name)
        frames.append(frame)
        sources.append(csv)
        if env is not None:
            try:
                envs[name] = json.loads(env.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                envs[name] = {"error": f"could not read {env}: {exc}"}
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return RunData(frame=frame, envs=envs, sources=sources)
