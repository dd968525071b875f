"""The environment a run was measured in: versions, devices, CPU model, threads, git commit.

:func:`capture_env` returns a plain dict (written to ``env.json`` in the run directory); the per-row columns
(``device_name``, ``torch_version``, ``harness_version``, ``git_commit``) come from :func:`row_env`. The
slow parts (git, ``/proc/cpuinfo``) are computed once per process. :func:`collect_env_report` adds PyTorch's own
environment report (``python -m torch.utils.collect_env``: OS, compilers, CUDA/cuDNN, drivers, CPU flags, pip
packages); it runs tools such as ``lscpu``, ``nvidia-smi`` and ``pip``, so it is slow and the sweep captures it
once per run directory, before the first measurement. :func:`collect_env_cached` keeps the
last report on disk (``~/.cache/attnbench/collect_env.json``; ``ATTNBENCH_ENV_CACHE`` names another file, or
``off``) and reuses it for a day while nothing it describes can have changed: same host and boot, interpreter,
torch, ``PATH``, visible devices, and site-packages folders untouched since (installing or removing a package
changes them).
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["COLLECT_ENV_TIMEOUT_S", "ENV_CACHE_ENTRIES", "ENV_CACHE_ENV", "ENV_CACHE_MAX_AGE_S", "capture_env",
           "collect_env_cached", "collect_env_report", "cpu_model", "cuda_available", "device_name", "env_cache_key",
           "env_cache_path", "git_commit", "harness_version", "now_iso", "row_env", "user_cache_file"]

#: Longest wait for ``torch.utils.collect_env`` (it shells out to nvidia-smi, pip, ...) before giving up.
COLLECT_ENV_TIMEOUT_S = 60.0
#: Environment variable naming the cache file of :func:`collect_env_cached` (``off``: no cache).
ENV_CACHE_ENV = "ATTNBENCH_ENV_CACHE"
#: Oldest cached report :func:`collect_env_cached` reuses.
ENV_CACHE_MAX_AGE_S = 24 * 3600.0
#: Reports the cache keeps (one per :func:`env_cache_key`: interpreters, virtual environments), the newest.
ENV_CACHE_ENTRIES = 8


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (the one place the sweep asks; tests may patch it)."""
    import torch

    return bool(torch.cuda.is_available())


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the harness source tree (``-dirty`` appended when it has local changes); ``""`` outside git."""
    root = Path(__file__).resolve().parents[2]  # the folder holding the harness package
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False)
        if head.returncode != 0:
            return ""
        commit = head.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False)
        return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=16)
def device_name(device: str) -> str:
    """Human name of a device: the CPU model for ``cpu``, the GPU name for ``cuda[:i]``."""
    if device.split(":")[0] == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "unavailable"
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return torch.cuda.get_device_name(index)
    return cpu_model()


def harness_version() -> str:
    from harness import __version__

    return __version__


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def row_env(device: str) -> dict[str, str]:
    """The environment columns of one row measured on ``device``."""
    import torch

    return {
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "harness_version": harness_version(),
        "git_commit": git_commit(),
    }


def capture_env() -> dict:
    """Everything about this process's environment a reader of the results needs.

    Returns:
        A JSON-serialisable dict: python, platform, hostname, CPU model, cores, torch threads, torch, CUDA and
        cuDNN versions, the CUDA devices present, harness version and git commit, and the time.
    """
    import torch

    cuda = bool(torch.cuda.is_available())
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    cudnn = torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None
    return {
        "timestamp": now_iso(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "cuda_available": cuda,
        "cuda_devices": gpus,
        "harness_version": harness_version(),
        "git_commit": git_commit(),
        "argv": list(sys.argv),
    }


def collect_env_report(timeout_s: float = COLLECT_ENV_TIMEOUT_S) -> dict:
    """PyTorch's environment report (``torch.utils.collect_env.get_pretty_env_info()``), with its cost.

    Args:
        timeout_s: give up after this many seconds (the report then says so; the tool may finish in the
            background).

    Returns:
        ``{"text": report, "seconds": s}``, or ``{"error": why, "seconds": s}`` when it failed or took too long.
        Never raises.
    """
    box: dict = {}

    def work() -> None:
        try:
            from torch.utils import collect_env

            box["text"] = collect_env.get_pretty_env_info()
        except Exception as exc:  # a missing tool or an odd platform: said in env.json, never fatal
            box["error"] = f"{type(exc).__name__}: {exc}"[:500]

    t0 = time.perf_counter()
    worker = threading.Thread(target=work, name="attnbench-collect-env", daemon=True)
    worker.start()
    worker.join(timeout_s)
    seconds = round(time.perf_counter() - t0, 3)
    if worker.is_alive():
        return {"error": f"torch.utils.collect_env did not finish within {timeout_s:g} s", "seconds": seconds}
    return {**box, "seconds": seconds}


def user_cache_file(variable: str, name: str) -> Path | None:
    """A cache file of attnbench's: the path the environment ``variable`` names, None when it says ``off``, else
    ``$XDG_CACHE_HOME/attnbench/<name>`` (``~/.cache/attnbench/<name>``)."""
    value = os.environ.get(variable, "")
    if value.lower() in ("off", "0", "no", "false"):
        return None
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnbench" / name


def env_cache_path() -> Path | None:
    """The file :func:`collect_env_cached` keeps its report in (None when ``ATTNBENCH_ENV_CACHE=off``)."""
    return user_cache_file(ENV_CACHE_ENV, "collect_env.json")


def env_cache_key() -> str:
    """What a cached environment report must have been taken under to be reused (see the module's docstring)."""
    import site

    import torch

    boot = ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    folders = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    stamps = []
    for folder in dict.fromkeys(f for f in folders if f and ("site-packages" in f or "dist-packages" in f)):
        try:
            stamps.append(f"{folder}@{os.stat(folder).st_mtime_ns}")
        except OSError:
            continue
    parts = [socket.gethostname(), boot, sys.executable, torch.__version__, os.environ.get("PATH", ""),
             os.environ.get("CUDA_VISIBLE_DEVICES", "-"), *stamps]
    return "|".join(parts)


def _cache_key_and_path() -> tuple[Path | None, str]:
    path = env_cache_path()
    try:
        return path, (env_cache_key() if path is not None else "")
    except Exception:  # an odd platform: no cache, the report is still taken
        return None, ""


def _cache_entries(path: Path) -> dict:
    """The cache file's entries (key -> entry); empty when it is missing or damaged."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = doc.get("entries") if isinstance(doc, dict) else None
    return entries if isinstance(entries, dict) else {}


def _cached_entry(path: Path | None, key: str, t0: float) -> dict | None:
    if path is None or not path.is_file():
        return None
    entry = _cache_entries(path).get(key)
    try:
        taken = _dt.datetime.fromisoformat(entry["taken"])
        age = (_dt.datetime.now(_dt.timezone.utc) - taken).total_seconds()
        if isinstance(entry.get("text"), str) and 0 <= age <= ENV_CACHE_MAX_AGE_S:
            return {"text": entry["text"], "seconds": round(time.perf_counter() - t0, 3),
                    "cached_from": entry["taken"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def collect_env_cached(timeout_s: float = COLLECT_ENV_TIMEOUT_S,
                       on_collect: Callable[[], object] | None = None) -> dict:
    """The report a previous run took under the same :func:`env_cache_key` less than :data:`ENV_CACHE_MAX_AGE_S`
    ago (``"cached_from"``: when it was taken; ``"seconds"``: what reading it cost), else :func:`collect_env_report`
    (then kept in the cache, one entry per key: several interpreters or virtual environments on one machine, the
    newest :data:`ENV_CACHE_ENTRIES`). Never raises.

    Args:
        timeout_s: as in :func:`collect_env_report`.
        on_collect: called just before a new report is taken (not when the cache answers), e.g. to say it takes
            a while.
    """
    import json

    t0 = time.perf_counter()
    path, key = _cache_key_and_path()  # the key is read once: a miss writes under the key it looked up
    cached = _cached_entry(path, key, t0)
    if cached is not None:
        return cached
    if on_collect is not None:
        on_collect()
    report = collect_env_report(timeout_s)
    if path is not None and "text" in report:
        from harness.base.files import write_atomic

        entries = _cache_entries(path) if path.is_file() else {}
        entries.pop(key, None)
        entries[key] = {"taken": now_iso(), "text": report["text"], "seconds": report["seconds"]}
        kept = dict(list(entries.items())[-ENV_CACHE_ENTRIES:])  # insertion order: the newest last
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps({"entries": kept}))
        except OSError:
            pass
    return report
