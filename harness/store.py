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

``load_results`` reads one or many runs (a run directory, a directory of runs, CSV files) into a DataFrame
with the public columns first. pandas is imported only when needed, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.columns import PUBLIC_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from harness.inputs import Case

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
_TMP_SUFFIX = ".tmp"


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


# ---------------------------------------------------------------------------------------------------- atomic files
def _host_tag() -> str:
    return socket.gethostname().replace(".", "_") or "host"


def write_atomic(path: Path, text: str, durable: bool = False) -> None:
    """Write ``text`` to ``path`` so that readers see the old file, or the whole new one, never a part.

    Args:
        path: destination.
        text: content.
        durable: also ``fsync`` (survives power loss; a killed process is covered without it).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """:func:`write_atomic` of ``obj`` as indented JSON (NaN allowed)."""
    write_atomic(path, json.dumps(obj, indent=1, default=str) + "\n")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------------- the store
class RunStore:
    """The records of one run directory.

    Args:
        run_dir: the run directory (created on first write).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.records_dir = self.run_dir / RECORDS_DIR

    def path(self, rid: str) -> Path:
        return self.records_dir / f"{rid}.json"

    def has(self, rid: str) -> bool:
        """Whether the record ``rid`` exists (complete, since records appear atomically)."""
        return self.path(rid).exists()

    def ids(self) -> set[str]:
        """Ids of every complete record."""
        if not self.records_dir.is_dir():
            return set()
        return {p.stem for p in self.records_dir.glob("*.json") if not p.name.startswith(".")}

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
        host = _host_tag()
        removed = 0
        for p in self.records_dir.glob(f".*{_TMP_SUFFIX}"):
            parts = p.name[: -len(_TMP_SUFFIX)].split(".")
            # .<name>.json.<host>.<pid>.<token>
            if len(parts) < 4 or parts[-3] != host or not parts[-2].isdigit():
                continue
            if not pid_alive(int(parts[-2])):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed += 1
        return removed

    def rows(self) -> list[dict[str, Any]]:
        """Every complete record as a dict (unreadable files are skipped with a warning)."""
        out = []
        if not self.records_dir.is_dir():
            return out
        for p in sorted(self.records_dir.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:  # cannot happen with atomic writes; reported, never fatal
                import warnings

                warnings.warn(f"skipping unreadable record {p}: {exc}", stacklevel=2)
        return out

    def write_csv(self) -> Path:
        """Assemble ``results.csv`` from the records (atomically replaced); returns its path."""
        df = frame(self.rows())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / CSV_NAME
        write_atomic(path, df.to_csv(index=False))
        return path


# ---------------------------------------------------------------------------------------------------- tables
def order_columns(columns: Iterable[str]) -> list[str]:
    """Public columns first (DESIGN.md order), then the known extras, then the rest sorted by name."""
    cols = list(dict.fromkeys(columns))
    present = set(cols)
    first = [c for c in PUBLIC_COLUMNS] + [c for c in EXTRA_COLUMNS if c in present]
    rest = sorted(c for c in cols if c not in set(first))
    return first + rest


def frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with ordered columns (every public column present), sorted by case then variant."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    df = df.reindex(columns=order_columns(df.columns))
    keys = [k for k in _CASE_SORT if k in df.columns and df[k].notna().any()]
    if len(df) and keys:
        df = df.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    return df


def _run_dirs_under(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob(RECORDS_DIR) if p.is_dir()})


def _load_one(path: Path) -> list[pd.DataFrame]:
    import pandas as pd

    if not path.exists():
        raise ValueError(f"results path {str(path)!r} does not exist (allowed: a run directory, a directory of "
                         "runs, or CSV files)")
    if path.is_file():
        if path.suffix == ".csv":
            return [pd.read_csv(path)]
        if path.suffix == ".json":
            return [frame([json.loads(path.read_text(encoding="utf-8"))])]
        raise ValueError(f"results path {str(path)!r} is not a .csv or .json file")
    if (path / RECORDS_DIR).is_dir():
        return [frame(RunStore(path).rows())]
    if (path / CSV_NAME).is_file():
        return [pd.read_csv(path / CSV_NAME)]
    runs = _run_dirs_under(path)
    if not runs:
        csvs = sorted(path.rglob(CSV_NAME))
        if not csvs:
            raise ValueError(f"no results under {str(path)!r} (no {RECORDS_DIR}/ or {CSV_NAME} found)")
        return [pd.read_csv(p) for p in csvs]
    return [frame(RunStore(r).rows()) for r in runs]


def load_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Load one or many runs into one tidy DataFrame (one row per measurement).

    Args:
        paths: a run directory, a directory holding run directories (e.g. ``results/``), a ``results.csv``
            (or any CSV written by attnbench), or a list of these.

    Returns:
        A DataFrame with the public columns first (see ``PUBLIC_COLUMNS``), then extra columns.

    Raises:
        ValueError: a path does not exist or holds no results.
    """
    import pandas as pd

    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise ValueError("load_results() got no paths (allowed: a run directory, a directory of runs, CSV files)")
    frames: list[pd.DataFrame] = []
    for item in items:
        frames.extend(_load_one(Path(item)))
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame(columns=list(PUBLIC_COLUMNS))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return df.reindex(columns=order_columns(df.columns))
