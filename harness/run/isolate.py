"""Run one (case, variant) measurement in a child process, so a hang or a crash costs one row, not the sweep.

With ``isolate=true`` the sweep hands each supported (case, variant) to :func:`run_isolated`. It starts a fresh
interpreter (``python -m harness.run.isolate JOB RESULT READY``) that imports the variants (built-ins, plugins and the
sweep's ``variants_from``), draws the seeded inputs of the case itself (deterministic: the same tensors as in the
parent), computes the float64 baseline, measures with :func:`harness.run.outcome.measure_one` exactly as an in-process
sweep does, and leaves the :class:`~harness.measure.runner.Measurement` in a result file (pickle, moved into place
atomically). The parent waits with ``os.wait4``, which also returns the child's resource usage:

- a result file -> that measurement (any status the in-process sweep gives: ``ok``, ``oom``, ``error``...);
- no result within ``timeout_s`` of the child saying it is ready (imports done, variant loaded) -> the whole
  process group is killed with SIGKILL and the row is ``timeout``;
- the child dies without a result (a signal such as SIGSEGV, ``os._exit(3)``, the kernel's OOM killer) -> the row
  is ``crashed`` and its reason names the signal or the exit code, plus the innermost Python frame that
  :mod:`faulthandler` printed, when there is one.

Every row of an isolated case has two extra columns: ``child_maxrss_bytes``, the child's peak resident set size
(``ru_maxrss`` from ``wait4``: the whole interpreter, torch included, so far more than a tiny case needs), and
``child_wall_ms``, the child's wall time from start to exit (interpreter start-up included).

Start-up (Python, torch, the variants) is not counted in ``timeout_s``; it has its own limit, ``startup_timeout_s``.
Isolation is POSIX only (``os.wait4``, process groups).

A child never outlives its parent: on Linux it asks the kernel for SIGKILL when the parent dies
(``prctl(PR_SET_PDEATHSIG)``, which works even while the child is stuck in C code); elsewhere a thread polls the
parent's pid and kills the child's process group when it changes. Either way a SIGKILL of the sweep while a child
hangs leaves nothing running.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.case import Case
from harness.measure.runner import MeasureConfig, Measurement, failure

__all__ = ["STARTUP_TIMEOUT_S", "IsolatedJob", "IsolatedOutcome", "run_isolated"]

#: Limit on the child's start-up (interpreter, torch and variant imports) before the case clock starts.
STARTUP_TIMEOUT_S = 300.0
#: Environment variable that tells the child its parent's pid (to die with it).
_PARENT_PID_ENV = "ATTNBENCH_ISOLATE_PARENT"
_PR_SET_PDEATHSIG = 1
_REASON_MAX = 500


@dataclass
class IsolatedJob:
    """What the child measures.

    Args:
        case: the case (the child draws its inputs from the case's seed).
        variant: the registered name of the variant.
        variants_from: files/modules the child imports to find ``variant`` (as given to the sweep).
        mcfg: the measurement settings.
        threads: the thread count recorded when a failure leaves no measured one.
    """

    case: Case
    variant: str
    variants_from: tuple[str, ...] = ()
    mcfg: MeasureConfig | None = None
    threads: int = 0


@dataclass
class IsolatedOutcome:
    """What happened to one isolated measurement.

    Args:
        measurement: the row's figures; ``status`` ``timeout``/``crashed`` when the child gave no result.
        seconds: time spent on the case itself (the child's own measurement time, or the parent's clock from the
            child's ready signal to its end when it gave no result).
        wall_s: the child's whole life, start-up included.
        maxrss_bytes: the child's peak resident set size (NaN when unknown).
        exit: ``result``, ``timeout``, ``startup_timeout``, ``signal`` or ``exit_code``.
        returncode: like ``subprocess``: the exit code, or minus the signal number.
    """

    measurement: Measurement
    seconds: float
    wall_s: float
    maxrss_bytes: float
    exit: str
    returncode: int | None


# ---------------------------------------------------------------------------------------------------- the parent
def _child_env() -> dict[str, str]:
    """The environment of the child: the parent's, with the parent's extra ``sys.path`` entries on PYTHONPATH.

    Entries under the interpreter's own prefixes (stdlib, site-packages) are left to the child; the rest (the
    project checkout, a tests directory, the current directory) are passed so the child imports the same code.
    """
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    extra: list[str] = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if any(path == p or path.startswith(p + os.sep) for p in prefixes) or path in extra:
            continue
        extra.append(path)
    env = dict(os.environ)
    old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(extra + old))
    env.setdefault("PYTHONFAULTHANDLER", "1")
    env[_PARENT_PID_ENV] = str(os.getpid())
    return env


def _maxrss_bytes(usage: object | None) -> float:
    if usage is None:
        return math.nan
    value = float(getattr(usage, "ru_maxrss", math.nan))
    return value if sys.platform == "darwin" else value * 1024.0  # Linux reports kilobytes


def _last_frame(log_text: str) -> str:
    """The innermost Python frame in a faulthandler dump (it prints the most recent call first)."""
    m = re.search(r'File "([^"]+)", line (\d+) in (\S+)', log_text)
    if not m:
        return ""
    return f"{Path(m.group(1)).name}:{m.group(2)} in {m.group(3)}"


def _log_tail(log_text: str) -> str:
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip() and not ln.startswith("USDT:")]
    return lines[-1] if lines else ""


def _crash_reason(returncode: int, log_text: str) -> str:
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        reason = f"child killed by signal {name} ({sig})"
        if sig == signal.SIGKILL:
            reason += " (sent by someone else: the kernel's OOM killer sends SIGKILL)"
    else:
        reason = f"child exited with code {returncode} without a result"
    frame = _last_frame(log_text)
    if frame:
        reason += f"; last Python frame {frame}"
    else:
        tail = _log_tail(log_text)
        if tail:
            reason += f"; last output: {tail}"
    return reason[:_REASON_MAX]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def run_isolated(job: IsolatedJob, timeout_s: float, startup_timeout_s: float = STARTUP_TIMEOUT_S,
                 log_path: Path | None = None) -> IsolatedOutcome:
    """Measure ``job`` in a fresh child process with a wall-clock limit.

    Args:
        job: the case, the variant and the settings.
        timeout_s: limit, in seconds, from the child's ready signal (imports done) to its result.
        startup_timeout_s: limit on the child's start-up before the ready signal.
        log_path: where to keep the child's output when it gave no result (None: not kept).

    Returns:
        An :class:`IsolatedOutcome`; its measurement carries ``child_maxrss_bytes`` and ``child_wall_ms`` in
        ``extra``. Never raises for the child's behaviour.

    Raises:
        ValueError: ``timeout_s`` or ``startup_timeout_s`` is not a number > 0.
    """
    for key, value in (("timeout_s", timeout_s), ("startup_timeout_s", startup_timeout_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{key}={value!r} is out of range (allowed: seconds, a number > 0)")
    with tempfile.TemporaryDirectory(prefix="attnbench-isolate-") as tmp:
        files = _ChildFiles(Path(tmp))
        files.job.write_bytes(pickle.dumps(job))
        t0 = time.monotonic()
        proc = _start_child(files)
        end = _wait(proc, files.ready, t0, timeout_s, startup_timeout_s)
        t_end = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(end.status)
        wall_s = t_end - t0
        maxrss = _maxrss_bytes(end.usage)
        result = None if end.limit_hit else _read_result(files.result)
        log_text = files.log.read_text(encoding="utf-8", errors="replace")
        if result is not None:
            m, seconds, how = result["measurement"], float(result["seconds"]), "result"
        else:
            m, how = _no_result(job, end.limit_hit, proc, log_text, timeout_s, startup_timeout_s)
            seconds = t_end - end.started if end.started is not None else 0.0
            if log_path is not None:
                with contextlib.suppress(OSError):
                    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
                    Path(log_path).write_text(log_text, encoding="utf-8")
        m.extra["child_maxrss_bytes"] = maxrss
        m.extra["child_wall_ms"] = wall_s * 1e3
        return IsolatedOutcome(measurement=m, seconds=seconds, wall_s=wall_s, maxrss_bytes=maxrss, exit=how,
                               returncode=proc.returncode)


@dataclass
class _ChildFiles:
    """The files a child and its parent share, in a temporary folder: the job in, the result and the ready signal
    out, and the child's output."""

    folder: Path

    def __post_init__(self) -> None:
        self.job, self.result, self.ready = self.folder / "job.pkl", self.folder / "result.pkl", self.folder / "ready"
        self.log = self.folder / "child.log"


def _start_child(files: _ChildFiles) -> subprocess.Popen:
    """``python -m harness.run.isolate JOB RESULT READY`` in a session of its own, its output into the log."""
    with open(files.log, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "harness.run.isolate", str(files.job), str(files.result), str(files.ready)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
            start_new_session=True)


@dataclass
class _Ended:
    """How the wait for a child ended.

    Args:
        status: the wait status (``os.wait4``).
        usage: its resource usage.
        started: when the child said it was ready (``time.monotonic``; None: never).
        limit_hit: ``timeout`` or ``startup_timeout`` when the parent killed it, else empty.
    """

    status: int
    usage: Any
    started: float | None
    limit_hit: str


def _wait(proc: subprocess.Popen, ready: Path, t0: float, timeout_s: float, startup_timeout_s: float) -> _Ended:
    """Wait for the child to end, killing its process group at a limit; never leaves it behind (Ctrl-C included)."""
    status = usage = None
    started: float | None = None
    limit_hit = ""
    try:
        delay = 0.002
        while True:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
                break
            now = time.monotonic()
            if started is None and ready.exists():
                started = now
            if started is None and now - t0 > startup_timeout_s:
                limit_hit = "startup_timeout"
            elif started is not None and now - started > timeout_s:
                limit_hit = "timeout"
            if limit_hit:
                _kill_group(proc.pid)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
    finally:
        if status is None:  # interrupted (Ctrl-C) while waiting: never leave the child behind
            _kill_group(proc.pid)
            with contextlib.suppress(ChildProcessError):
                os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
    return _Ended(status=status, usage=usage, started=started, limit_hit=limit_hit)


def _read_result(path: Path) -> dict | None:
    """The child's result file, or None (none, torn or foreign)."""
    if not path.exists():
        return None
    with contextlib.suppress(Exception):
        return pickle.loads(path.read_bytes())
    return None


def _no_result(job: IsolatedJob, limit_hit: str, proc: subprocess.Popen, log_text: str, timeout_s: float,
               startup_timeout_s: float) -> tuple[Measurement, str]:
    """The row of a child that gave no result, and how it ended (``timeout``, ``startup_timeout``, ``signal``,
    ``exit_code``)."""
    if limit_hit == "timeout":
        return Measurement(status="timeout", threads=job.threads,
                           reason=f"no result within case_timeout_s={timeout_s:g} s; the child (pid {proc.pid}) and "
                                  f"its process group were killed"), "timeout"
    if limit_hit == "startup_timeout":
        return Measurement(status="timeout", threads=job.threads,
                           reason=f"the child did not start within {startup_timeout_s:g} s (interpreter, torch and "
                                  f"variant imports); it was killed"), "startup_timeout"
    m = Measurement(status="crashed", threads=job.threads, reason=_crash_reason(proc.returncode, log_text))
    return m, "signal" if proc.returncode < 0 else "exit_code"


# ---------------------------------------------------------------------------------------------------- the child
def _die_with_parent(parent_pid: int) -> str:
    """Make this process end when ``parent_pid`` does; returns how (``pdeathsig``, ``poll``).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then a check that the parent did not die before the call.
    Elsewhere: a daemon thread that polls ``os.getppid()`` and kills this process group when the parent is gone.

    Args:
        parent_pid: the parent's pid, as it told the child.

    Returns:
        The mechanism in use.
    """
    how = "poll"
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                how = "pdeathsig"
    if os.getppid() != parent_pid:  # the parent died before we asked: go now
        os._exit(1)
    if how == "poll":
        import threading

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            with contextlib.suppress(OSError):
                os.killpg(0, signal.SIGKILL)
            os._exit(1)

        threading.Thread(target=watch, name="attnbench-parent-watch", daemon=True).start()
    return how


def _write_result(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(payload))
    os.replace(tmp, path)


def _preload(case: Case) -> None:
    """Import what a measurement imports lazily, so the case clock does not count module imports."""
    with contextlib.suppress(Exception):
        import torch.autograd.profiler  # noqa: F401  (CPU peak memory)
        if case.device_type == "cpu":
            import torch.utils.benchmark  # noqa: F401  (CPU timing)


def _child_main(argv: list[str]) -> int:
    """The child's entry point: ``python -m harness.run.isolate JOB RESULT READY``.

    Loads the job, imports the variants, touches ``READY`` (the case clock starts), measures, writes ``RESULT``.

    Returns:
        0 when a result was written; 2 on bad arguments.
    """
    if len(argv) != 3:
        print("usage: python -m harness.run.isolate JOB.pkl RESULT.pkl READY", file=sys.stderr)
        return 2
    import faulthandler

    faulthandler.enable()
    parent = os.environ.get(_PARENT_PID_ENV, "")
    if parent.isdigit():
        _die_with_parent(int(parent))
    job_path, result_path, ready_path = (Path(a) for a in argv)
    job: IsolatedJob = pickle.loads(job_path.read_bytes())

    from harness.core.registry import get_variant, load_variants_from
    from harness.run.outcome import CaseInputs, measure_one

    mcfg = job.mcfg or MeasureConfig()
    _preload(job.case)
    try:
        for src in job.variants_from:
            load_variants_from(src)
        variant = get_variant(job.variant)
    except Exception as exc:  # the variant cannot be found in the child: a row, never a crash
        ready_path.touch()
        _write_result(result_path, {"measurement": failure(exc, job.threads), "seconds": 0.0})
        return 0
    ready_path.touch()
    cache = CaseInputs()
    try:
        m, seconds = measure_one(variant, job.case, cache, mcfg, job.threads)
    finally:
        cache.release()
    _write_result(result_path, {"measurement": m, "seconds": seconds})
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
