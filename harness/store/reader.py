"""The one reader of results: runs, CSV files and folders of runs into one tidy DataFrame.

``attnbench report``, ``attnbench compare`` and :func:`load_results` all read through :func:`read_runs`, which
accepts, in any mix:

- a run directory: its ``records/`` are the truth (one JSON file per measurement, see :mod:`harness.store.records`);
  a missing, stale or damaged ``results.csv`` beside them is rebuilt from them. A run directory without
  ``records/`` is read from its ``results.csv``;
- a CSV file written by attnbench (``RUN/results.csv`` of a run that has ``records/`` is read from the
  records instead);
- a folder of runs (such as ``results/``): every run directory under it;
- a pytest-benchmark ``--benchmark-json`` file (:mod:`harness.store.pytest_bench`), or a single record file.

Nothing is dropped silently: a damaged record (unparsable, truncated) and a truncated CSV row are named, with
their path, in :attr:`RunData.problems`; damaged records do not count as existing (the store's ``ids()`` and
``has()`` agree), so a resume measures them again.

:func:`normalize` gives every row the public columns, numeric types, and the derived columns the reports group
on: ``run`` (``run_id``, else the directory or file name), ``pattern_label`` (the pattern with every parameter,
:func:`harness.store.columns.pattern_label`), ``case_key`` (:func:`harness.store.columns.case_key`: every parameter of
the case) and ``err_metric`` (``approx_err_rel_l2`` where set, else ``err_rel_l2``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.base.files import write_atomic
from harness.store import columns as _cols
from harness.store.columns import CASE_KEY, CASE_PARAMS, PUBLIC_COLUMNS
from harness.store.records import CSV_NAME, RECORDS_DIR, RunStore, frame, parse_record

__all__ = ["BOOL_COLUMNS", "DERIVED_COLUMNS", "ENV_FILE", "NUMERIC_COLUMNS", "SAMPLE_COLUMNS", "RunData", "find_runs",
           "is_run_dir", "latest_run", "load_results", "normalize", "read_csv_checked", "read_runs",
           "sampled_seconds", "tidy"]

#: Columns that are numbers (coerced; unparsable entries become NaN). Case parameters marked numeric are too.
NUMERIC_COLUMNS: tuple[str, ...] = (
    "window", "time_ms_median", "time_ms_iqr", "time_ms_min", "n_runs", "setup_ms", "peak_mem_bytes", "flops",
    "tflops", "pct_of_peak", "err_max_abs", "err_rel_l2", "err_mean_abs", "err_ratio_vs_textbook",
    "grad_err_rel_l2", "textbook_err_rel_l2", "approx_err_rel_l2", "approx_err_max_abs", "cpu_share",
    "time_ms_ci_low", "time_ms_ci_high", "speedup_vs_full", "speedup_ci_low", "speedup_ci_high",
    "mem_ratio_vs_full", "rel_noise", "yardstick_ms", "yardstick_ms_ci_low", "yardstick_ms_ci_high",
    "block", "local", "stride", "n_global",
)
#: True/False columns (``True``, ``1``, ``yes`` read as True; blank as False).
BOOL_COLUMNS: tuple[str, ...] = ("noisy", "contended")
#: Columns holding a JSON list of numbers (a list in a record, a JSON string in a CSV); read as tuples of floats.
SAMPLE_COLUMNS: tuple[str, ...] = ("time_samples_ms", "time_samples_dropped_ms", "yardstick_samples_ms")
#: Derived columns :func:`normalize` appends, in this order.
DERIVED_COLUMNS: tuple[str, ...] = ("run", "pattern_label", CASE_KEY, "err_metric")
ENV_FILE = "env.json"
_REPORT_MARKERS = ("report.md", "summary.csv")
_ALLOWED = "a run directory, a folder of runs, a results CSV, or a pytest-benchmark JSON file"


@dataclass
class RunData:
    """Rows of the runs read, each run's environment, and what was wrong with what was read.

    Args:
        frame: all rows, normalized (see :func:`normalize`).
        envs: run name -> the parsed ``env.json`` of that run.
        sources: the run directories and files read, in order.
        problems: one sentence per thing not read as it stood (a damaged record, a truncated CSV row, a rebuilt
            ``results.csv``), each naming its path.
    """

    frame: pd.DataFrame
    envs: dict[str, dict] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- normalize
def _text(col: pd.Series, default: str) -> pd.Series:
    return col.astype(object).where(col.notna(), default).astype(str).str.strip()


def _as_bool(x: object) -> bool:
    if isinstance(x, bool):
        return x
    if _cols.is_blank(x):
        return False
    return str(x).strip().lower() in ("true", "1", "1.0", "yes")


def _samples(x: object) -> tuple[float, ...] | None:
    if isinstance(x, list | tuple):
        vals = x
    elif isinstance(x, str) and x.strip().startswith("["):
        try:
            vals = json.loads(x)
        except ValueError:
            return None
    else:
        return None
    try:
        out = tuple(float(v) for v in vals)
    except (TypeError, ValueError):
        return None
    return out or None


def normalize(frame: pd.DataFrame, run: str = "") -> pd.DataFrame:
    """Give a frame of result rows every public column, numeric types and the derived report columns.

    Args:
        frame: rows as read from records or a results CSV (or built in memory).
        run: run name to use where ``run_id`` is missing.

    Returns:
        A new DataFrame: public columns first (in order), then the rest, then :data:`DERIVED_COLUMNS`.
    """
    df = frame.copy().reset_index(drop=True)
    for col in PUBLIC_COLUMNS:
        if col not in df.columns:
            df[col] = math.nan
    numeric = set(NUMERIC_COLUMNS) | {p.name for p in CASE_PARAMS if p.numeric}
    for col in numeric:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["status"] = _text(df["status"], "unknown").str.lower().replace("", "unknown")
    for col in ("reason", "variant", "device_name", "pattern"):
        df[col] = _text(df[col], "")
    for p in CASE_PARAMS:
        if p.name == "pattern_label":
            continue
        if p.name not in df.columns:
            df[p.name] = df[p.default_from] if p.default_from else (math.nan if p.default is None else p.default)
        elif p.default_from or p.default is not None:
            fill = df[p.default_from] if p.default_from else p.default
            df[p.name] = df[p.name].where(~df[p.name].map(_cols.is_blank), fill)
        if not p.numeric:
            df[p.name] = _text(df[p.name], "" if p.default is None else str(p.default))
        else:
            df[p.name] = pd.to_numeric(df[p.name], errors="coerce")
    for col in BOOL_COLUMNS:
        if col in df.columns:
            df[col] = df[col].map(_as_bool).astype(bool)
    for col in SAMPLE_COLUMNS:
        if col in df.columns:
            df[col] = df[col].map(_samples).astype(object)
    run_id = df["run_id"].map(lambda x: "" if _cols.is_blank(x) else str(x))
    df["run"] = run_id.where(run_id != "", run or "run")
    pattern_cols = ["pattern_label", "pattern"] + [p.name for p in _cols.PATTERN_PARAMS]
    records = df[[c for c in pattern_cols if c in df.columns]].to_dict("records")
    df["pattern_label"] = [_cols.pattern_label(r) for r in records]
    key_cols = list(dict.fromkeys([p.name for p in CASE_PARAMS] + [p.default_from for p in CASE_PARAMS
                                                                    if p.default_from] + ["device"]))
    df[CASE_KEY] = [_cols.case_key(r) for r in df[key_cols].to_dict("records")]
    err = df["err_rel_l2"]
    if "approx_err_rel_l2" in df.columns:
        err = df["approx_err_rel_l2"].where(df["approx_err_rel_l2"].notna(), err)
    df["err_metric"] = err
    rest = [c for c in df.columns if c not in PUBLIC_COLUMNS and c not in DERIVED_COLUMNS]
    return df[list(PUBLIC_COLUMNS) + rest + list(DERIVED_COLUMNS)]


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the derived columns :func:`normalize` adds (what a results CSV holds)."""
    return frame[[c for c in frame.columns if c not in DERIVED_COLUMNS or c == "pattern_label"]]


# ---------------------------------------------------------------------------------------------------- CSV files
def read_csv_checked(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Read a results CSV, dropping (and naming) rows that do not have one field per column.

    A file cut short (a copy interrupted, a disk full) ends in a row with fewer fields than the header; pandas
    would fill them with blanks and the report would show a phantom variant (``sdpa_ma``) with no figures.

    Args:
        path: the CSV file.

    Returns:
        ``(rows, problems)``: the complete rows, and one sentence per dropped row.

    Raises:
        ValueError: the file cannot be read or has no header.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read {str(p)!r}: {exc}") from None
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as exc:
        raise ValueError(f"{str(p)!r} is not a CSV file: {exc}") from None
    if not rows:
        raise ValueError(f"{str(p)!r} is empty (allowed: {_ALLOWED})")
    header, body = rows[0], rows[1:]
    bad = [i for i, r in enumerate(body) if len(r) != len(header)]
    problems = [f"{p}: row {i + 1} has {len(body[i])} of {len(header)} fields (a truncated or damaged line); "
                "dropped" for i in bad]
    if body and not text.endswith(("\n", "\r")) and len(body) - 1 not in bad:
        problems.append(f"{p}: does not end with a line break: its last row ({len(body)}) may be cut short")
    if not bad:
        return pd.read_csv(io.StringIO(text), low_memory=False), problems
    good = [r for i, r in enumerate(body) if i not in set(bad)]
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *good])
    buf.seek(0)
    return pd.read_csv(buf, low_memory=False), problems


def _csv_state(path: Path, rows: dict[str, dict]) -> str | None:
    """Why ``results.csv`` does not match the records (None when it does)."""
    if not path.is_file():
        return "missing"
    try:
        df, bad = read_csv_checked(path)
    except ValueError as exc:
        return f"unreadable ({exc})"
    if bad:
        return f"{len(bad)} truncated or damaged row(s)"
    if len(df) != len(rows):
        return f"{len(df)} rows for {len(rows)} records"
    if "record_id" in df.columns and "timestamp" in df.columns:
        have = {(_cols.value_text(i), _cols.value_text(t)) for i, t in zip(df["record_id"], df["timestamp"])}
        want = {(_cols.value_text(r.get("record_id", rid)), _cols.value_text(r.get("timestamp")))
                for rid, r in rows.items()}
        if have != want:
            return f"{len(want - have)} record(s) newer than it"
    return None


# ---------------------------------------------------------------------------------------------------- runs
def _is_report_dir(d: Path) -> bool:
    return any((d / m).is_file() for m in _REPORT_MARKERS)


def is_run_dir(path: str | Path) -> bool:
    """True for a directory holding ``records/``, or a ``results.csv`` that is not a report's output."""
    d = Path(path)
    return d.is_dir() and ((d / RECORDS_DIR).is_dir() or ((d / CSV_NAME).is_file() and not _is_report_dir(d)))


def find_runs(root: str | Path) -> list[Path]:
    """Run directories at or under ``root`` (not descending into a run, nor into hidden folders), sorted."""
    found: list[Path] = []

    def walk(d: Path) -> None:
        if is_run_dir(d):
            found.append(d)
            return
        try:
            children = sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
        except OSError:
            return
        for c in children:
            walk(c)

    walk(Path(root))
    return found


def _run_mtime(d: Path) -> float:
    times = [p.stat().st_mtime for p in (d / RECORDS_DIR, d / CSV_NAME, d / ENV_FILE) if p.exists()]
    return max(times, default=0.0)


def latest_run(root: str | Path = "results") -> Path:
    """The run under ``root`` written to last (by its records, ``results.csv`` or ``env.json``).

    Raises:
        ValueError: ``root`` does not exist or holds no run.
    """
    runs = find_runs(root) if Path(root).is_dir() else []
    if not runs:
        raise ValueError(f"no run found under {str(root)!r} (run a sweep first, or name a run: {_ALLOWED})")
    return max(runs, key=_run_mtime)


def _read_env(d: Path) -> dict | None:
    env = d / ENV_FILE
    if not env.is_file():
        return None
    try:
        return json.loads(env.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": f"could not read {env}: {exc}"}


def _read_run_dir(d: Path) -> tuple[pd.DataFrame, list[str]]:
    store = RunStore(d)
    if not store.records_dir.is_dir():
        return read_csv_checked(d / CSV_NAME)
    rows, damaged = store.read()
    problems = [str(x) for x in damaged]
    for rid, row in rows.items():
        row.setdefault("record_id", rid)
    state = _csv_state(d / CSV_NAME, rows)
    if state is not None and rows:
        try:
            write_atomic(d / CSV_NAME, _csv(list(rows.values())))
            problems.append(f"{d / CSV_NAME}: {state}; rebuilt from {RECORDS_DIR}/")
        except OSError as exc:
            problems.append(f"{d / CSV_NAME}: {state}; could not rebuild it ({exc}); read {RECORDS_DIR}/")
    return frame(list(rows.values())), problems


def _csv(rows: list[dict]) -> str:
    from harness.store.records import csv_text

    return csv_text(frame(rows))


@dataclass
class _Part:
    """One run or file read: its rows (normalized), where they came from, its env.json, what was wrong."""

    frame: pd.DataFrame
    source: Path
    env: dict | None = None
    problems: list[str] = field(default_factory=list)


def _read_json(path: Path) -> _Part:
    from harness.store.pytest_bench import is_pytest_benchmark_json, load_pytest_benchmark_json

    if is_pytest_benchmark_json(path):
        return _Part(normalize(load_pytest_benchmark_json(path), run=path.stem), path)
    try:
        row = parse_record(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is neither a record nor pytest-benchmark JSON ({exc}; allowed: "
                         f"{_ALLOWED})") from None
    return _Part(normalize(frame([row]), run=path.stem), path)


def _read_one(path: Path) -> list[_Part]:
    if not path.exists():
        raise ValueError(f"{str(path)!r} does not exist (allowed: {_ALLOWED})")
    if path.is_file() and path.suffix == ".json":
        return [_read_json(path)]
    if path.is_file():
        if not (path.name == CSV_NAME and (path.parent / RECORDS_DIR).is_dir()):
            df, problems = read_csv_checked(path)
            return [_Part(normalize(df, run=path.stem), path, _read_env(path.parent), problems)]
        path = path.parent  # the records beside it are the truth
    runs = [path] if is_run_dir(path) else find_runs(path)
    if not runs:
        raise ValueError(f"no results under {str(path)!r} (no {RECORDS_DIR}/ or {CSV_NAME} found; allowed: "
                         f"{_ALLOWED})")
    parts = []
    for d in runs:
        df, problems = _read_run_dir(d)
        parts.append(_Part(normalize(df, run=d.name), d, _read_env(d), problems))
    return parts


def read_runs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> RunData:
    """Read runs, CSV files and folders of runs into one :class:`RunData`.

    Args:
        paths: one path or several (see the module docstring for what each may be).

    Returns:
        The rows of all of them, normalized (see :func:`normalize`), the environments found, and the problems met.

    Raises:
        ValueError: no path given, a path does not exist, or holds no results.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise ValueError(f"no run given (allowed: one or more of {_ALLOWED})")
    parts = [part for item in items for part in _read_one(Path(item))]
    data = RunData(frame=pd.DataFrame())
    for part in parts:
        data.sources.append(part.source)
        data.problems.extend(part.problems)
        if part.env is not None:
            names = list(dict.fromkeys(part.frame["run"])) or [part.source.name]
            data.envs.update({str(n): part.env for n in names})
    frames = [p.frame for p in parts if len(p.frame)]
    if not frames:
        data.frame = normalize(pd.DataFrame(columns=list(PUBLIC_COLUMNS)))
        return data
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    rest = [c for c in df.columns if c not in PUBLIC_COLUMNS and c not in DERIVED_COLUMNS]
    data.frame = df[list(PUBLIC_COLUMNS) + rest + list(DERIVED_COLUMNS)]
    return data


def sampled_seconds(frame: pd.DataFrame) -> float:
    """Timed seconds of the rows read: the sum of every kept and dropped sample (0 when no samples were kept)."""
    return sum(sum(x) for col in SAMPLE_COLUMNS if col in frame.columns for x in frame[col].dropna()) / 1e3


def load_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Load one or many runs into one tidy DataFrame (one row per measurement).

    Problems met while reading (a damaged record, a truncated CSV row) are logged as warnings (logger
    ``attnbench.results``); use :func:`read_runs` to get them as a list.

    Args:
        paths: a run directory, a folder of runs (e.g. ``results/``), a results CSV, a pytest-benchmark JSON
            file, or a list of these.

    Returns:
        A DataFrame: the public columns first, then extra columns, then ``run``, ``pattern_label``, ``case_key``
        and ``err_metric``.

    Raises:
        ValueError: a path does not exist or holds no results.
    """
    import logging

    data = read_runs(paths)
    for problem in data.problems:
        logging.getLogger("attnbench.results").warning("attnbench: %s", problem)
    return data.frame
