"""The results store: one small JSON record per (case, variant, mode), written atomically; CSVs assembled from them.

Layout of a run directory::

    <results_dir>/<run_name>/
        records/<record_id>.json   one row each; the name is a stable hash of (case, variant, mode, threads)
        results.csv                all records as one tidy table (rebuilt at the end of every job)
        env.json                   environment + resolved config
        .hydra/ , attnbench.log    Hydra's config copies and the log (multirun: jobs/<n>/ per job)

A record is written to a temporary file in ``records/`` and moved into place with ``os.replace``, which is atomic
on POSIX: a process killed at any instant (SIGKILL included) leaves either the complete record or none, plus at
most a stray ``.*.tmp`` file that readers ignore and the next run of the same host removes. Because each record is
its own file, concurrent writers (parallel Hydra launchers) never interleave; resuming a run measures only the
records that do not exist yet.

Records are the truth: a damaged record file (unparsable or truncated, which atomic writes never leave but a disk
or a hand can) is named in a warning and does not count as existing, so a resume measures it again. Reading runs
for reports (a run, a folder of runs, CSV files) is :mod:`harness.store.reader`'s job. pandas is imported only
when needed, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from harness.base.files import TMP_SUFFIX, host_tag, pid_alive, write_atomic
from harness.store.columns import PUBLIC_COLUMNS

__all__ = ["CSV_NAME", "EXTRA_COLUMNS", "KEYLESS_CPU_TIMER", "RECORDS_DIR", "DamagedRecord", "RunStore", "csv_text",
           "frame", "order_columns", "parse_record", "record_id", "record_key", "warn_damaged"]

if TYPE_CHECKING:
    import pandas as pd

    from harness.core.case import Case

#: Extra columns with a fixed place after the public ones; any other extra column follows, sorted by name.
EXTRA_COLUMNS: tuple[str, ...] = (
    "pattern_label", "inputs", "block", "local", "stride", "n_global", "threads", "budget_s", "timing_method",
    "memory_method", "approx_err_rel_l2", "approx_err_max_abs", "textbook_err_rel_l2", "dq_err_rel_l2",
    "dk_err_rel_l2", "dv_err_rel_l2", "measure_wall_ms",
    "cuda_version", "hostname", "record_id",
)
_CASE_SORT = ["run_id", "device", "dtype", "inputs", "pattern_label", "batch", "heads", "head_dim", "seq_len", "seed",
              "mode", "variant"]
RECORDS_DIR = "records"
CSV_NAME = "results.csv"


# ---------------------------------------------------------------------------------------------------- identity
#: The CPU timer of records made before ``cpu_timer`` was a key: it stays out of their key (their ids are kept).
KEYLESS_CPU_TIMER = "per_call"


def record_key(case: Case, variant: str, threads: int = 0, cpu_timer: str = KEYLESS_CPU_TIMER) -> dict[str, Any]:
    """What identifies a record: the case (mode included), the variant and the configured measurement settings.

    Args:
        case: the case.
        variant: the variant's name.
        threads: the configured thread count (0 = torch's default).
        cpu_timer: the CPU timer; part of the key of CPU cases only, and only when it is not
            :data:`KEYLESS_CPU_TIMER` (so existing record ids stay as they were).

    Returns:
        A JSON-able dict.
    """
    p = case.pattern
    key: dict[str, Any] = {
        "variant": variant, "device": case.device, "dtype": case.dtype, "batch": case.batch, "heads": case.heads,
        "seq_len": case.seq_len, "head_dim": case.head_dim, "pattern": p.kind, "mode": case.mode, "seed": case.seed,
        "threads": threads,
    }
    if case.inputs != "gaussian":  # gaussian keys stay as they were before the key existed
        key["inputs"] = case.inputs
    if case.is_grouped:  # kv_heads, q_len and model enter only when set, so existing record ids stay
        key["kv_heads"] = case.kv_heads
    if not case.is_square:
        key["q_len"] = case.q_len
    if case.model:
        key["model"] = case.model
    if case.lengths:  # documents of a variable-length batch; absent otherwise, so existing record ids stay
        key["lengths"], key["batch_layout"] = case.lengths, case.layout
    if case.device_type == "cpu" and cpu_timer != KEYLESS_CPU_TIMER:
        key["cpu_timer"] = cpu_timer
    if p.kind in ("window", "window_sym"):
        key["window"] = p.window
    if p.kind in ("block_sparse", "block_sparse_causal"):
        key.update(block=p.block, local=p.local, stride=p.stride, n_global=p.n_global)
        if p.layout is not None:
            key["layout"] = [[int(x) for x in row] for row in p.layout]
    return key


def record_id(case: Case, variant: str, threads: int = 0, cpu_timer: str = KEYLESS_CPU_TIMER) -> str:
    """Stable file name stem of a record: a hash of :func:`record_key` (same on every machine and run)."""
    blob = json.dumps(record_key(case, variant, threads, cpu_timer), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------------- the store
_log = logging.getLogger("attnbench.store")
_warned: set[str] = set()


class DamagedRecord(NamedTuple):
    """A record file that cannot be read as a record: it does not count as existing, so a resume measures it again.

    Args:
        path: the file.
        problem: what is wrong with it (``unparsable JSON: ...``, ``empty file``, ``not a JSON object``).
    """

    path: Path
    problem: str

    def __str__(self) -> str:
        return (f"damaged record {self.path} ({self.problem}): not counted; a resume of the run measures it "
                f"again")


def parse_record(text: str) -> dict[str, Any]:
    """The row a record file's text holds.

    Raises:
        ValueError: the text is empty, not JSON, or not a JSON object with ``variant`` and ``status``.
    """
    if not text.strip():
        raise ValueError("empty file")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"unparsable JSON: {exc}") from None
    if not isinstance(row, dict):
        raise ValueError(f"not a JSON object but {type(row).__name__}")
    missing = [k for k in ("variant", "status") if k not in row]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} field")
    return row


def warn_damaged(damaged: Iterable[DamagedRecord]) -> None:
    """Log each damaged record once per process (logger ``attnbench.store``, level WARNING)."""
    for d in damaged:
        if str(d.path) not in _warned:
            _warned.add(str(d.path))
            _log.warning("attnbench: %s", d)


class RunStore:
    """The records of one run directory.

    A record counts as existing only when it parses (:func:`parse_record`): :meth:`ids`, :meth:`has`,
    :meth:`read` and :meth:`rows` agree, so a resume measures a damaged record again and replaces it.

    Args:
        run_dir: the run directory (created on first write).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.records_dir = self.run_dir / RECORDS_DIR

    def path(self, rid: str) -> Path:
        return self.records_dir / f"{rid}.json"

    def _files(self) -> list[Path]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p for p in self.records_dir.glob("*.json") if not p.name.startswith("."))

    @staticmethod
    def _load(path: Path) -> dict[str, Any]:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text: {exc}") from None
        return parse_record(text)

    def has(self, rid: str) -> bool:
        """Whether the record ``rid`` exists and is readable (a damaged one does not count)."""
        try:
            self._load(self.path(rid))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            warn_damaged([DamagedRecord(self.path(rid), str(exc))])
            return False
        return True

    def ids(self) -> set[str]:
        """Ids of every readable record (damaged ones are logged once and left out)."""
        rows, damaged = self.read()
        warn_damaged(damaged)
        return set(rows)

    def read(self) -> tuple[dict[str, dict[str, Any]], list[DamagedRecord]]:
        """Every record: id -> row for the readable ones, and the damaged ones (not logged here).

        Returns:
            ``(rows by id, damaged records)``.
        """
        rows: dict[str, dict[str, Any]] = {}
        damaged: list[DamagedRecord] = []
        for p in self._files():
            try:
                rows[p.stem] = self._load(p)
            except FileNotFoundError:  # replaced or removed meanwhile
                continue
            except (OSError, ValueError) as exc:
                damaged.append(DamagedRecord(p, str(exc)))
        return rows, damaged

    def write(self, rid: str, row: Mapping[str, Any]) -> Path:
        """Write one record atomically (replacing an existing one with the same id)."""
        self.records_dir.mkdir(parents=True, exist_ok=True)
        path = self.path(rid)
        write_atomic(path, json.dumps(dict(row), default=str) + "\n")
        return path

    def clean_stale_temps(self) -> int:
        """Remove temporary files left by killed processes of this host; returns how many were removed."""
        if not self.records_dir.is_dir():
            return 0
        host = host_tag()
        removed = 0
        for p in self.records_dir.glob(f".*{TMP_SUFFIX}"):
            parts = p.name[: -len(TMP_SUFFIX)].split(".")
            # .<name>.json.<host>.<pid>.<token>
            if len(parts) < 4 or parts[-3] != host or not parts[-2].isdigit():
                continue
            if not pid_alive(int(parts[-2])):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed += 1
        return removed

    def rows(self) -> list[dict[str, Any]]:
        """Every readable record as a dict (damaged ones are logged once and left out)."""
        rows, damaged = self.read()
        warn_damaged(damaged)
        return list(rows.values())

    def write_csv(self, rows: list[Mapping[str, Any]] | None = None) -> Path:
        """Assemble ``results.csv`` from the records (atomically replaced); returns its path.

        Args:
            rows: the records' rows when the caller has just read them (default: read them now).
        """
        df = frame(self.rows() if rows is None else rows)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / CSV_NAME
        write_atomic(path, csv_text(df))
        return path


# ---------------------------------------------------------------------------------------------------- tables
def order_columns(columns: Iterable[str]) -> list[str]:
    """Public columns first (in the order of PUBLIC_COLUMNS), then the known extras, then the rest by name."""
    cols = list(dict.fromkeys(columns))
    present = set(cols)
    first = [c for c in PUBLIC_COLUMNS] + [c for c in EXTRA_COLUMNS if c in present]
    rest = sorted(c for c in cols if c not in set(first))
    return first + rest


def frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with ordered columns (every public column present), sorted by case then variant.

    List- or dict-valued cells (``time_samples_ms``: a record's raw timing samples) become JSON strings, as they
    are in ``results.csv``, so a table reads the same from records or from the CSV.
    """
    import pandas as pd

    df = pd.DataFrame([{k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()} for r in rows])
    df = df.reindex(columns=order_columns(df.columns))
    keys = [k for k in _CASE_SORT if k in df.columns and df[k].notna().any()]
    if len(df) and keys:
        df = df.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    return df


def csv_text(df: pd.DataFrame) -> str:
    """``df`` as CSV text; list and dict cells (``time_samples_ms``, ...) are written as JSON strings."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda x: isinstance(x, list | tuple | dict)).any():
            out[col] = out[col].map(lambda x: json.dumps(list(x) if isinstance(x, tuple) else x)
                                    if isinstance(x, list | tuple | dict) else x)
    return out.to_csv(index=False)
