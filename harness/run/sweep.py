"""Run a sweep: for each case make the inputs once, share the float64 baseline, measure every selected variant.

:func:`run_sweep` is a plain function of a :class:`~harness.run.config.SweepPlan` (Hydra only builds the plan). For
each (case, variant) it writes one record to the run directory's store, whatever happens: ``ok``,
``unsupported`` (with the variant's reasons, or a missing device), ``oom``, ``error``, ``numerics``, ``timeout``
or ``crashed``. A record that already exists is skipped, so running the same plan into the same directory again
resumes it. At the end (and on Ctrl-C) ``results.csv`` is rebuilt from all records of the run directory.

A case on a device this machine lacks (``cuda`` without a GPU) is an error when it is all the sweep asked for;
when the sweep is part of a larger grid (``in_grid=True``: a Hydra multirun, or a list of devices of which one is
present) such cases become ``unsupported`` rows naming the missing device.

With ``plan.isolate`` each supported (case, variant) is measured in a child process (:mod:`harness.run.isolate`):
a hang becomes a ``timeout`` row, a crash of the interpreter a ``crashed`` row. Without it, what is in flight is
kept on disk (:mod:`harness.run.inflight`): a rerun after a crash measures the (case, variant) that was running
once in a child process (its row says what happened), and a phase running past ``case_timeout_s`` ends the
process with a ``timeout`` row instead of hanging forever. Every row also records ``concurrent_jobs``, the number
of other jobs of the run measuring on the same device of this host at the time (:mod:`harness.run.sharing`); the
job warns the first time it is above zero.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import socket
import sys
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.files import write_json_atomic
from harness.core.case import Case
from harness.core.names import BASELINE
from harness.core.varlen import doc_stats
from harness.measure import env as _env
from harness.measure import runner as _measure
from harness.measure.allocator import steady_malloc
from harness.measure.machine import default_threads
from harness.measure.runner import declined
from harness.run.config import ConfigError, SweepPlan
from harness.run.inflight import InFlight, Suspect, Watchdog, leftovers
from harness.run.outcome import CaseInputs
from harness.run.progress import Progress, current
from harness.store.records import RunStore, record_id

__all__ = ["TRUTH_LINE_MS", "SweepResult", "expected_ids", "no_device_message", "run_sweep"]

#: A case's truth (float64 baseline, yardstick) gets a console line when it took at least this long.
TRUTH_LINE_MS = 1000.0


@dataclass
class SweepResult:
    """What a sweep did.

    Args:
        run_dir: the run directory.
        csv_path: the assembled ``results.csv``.
        measured: records written by this call.
        skipped: records that existed already (resume).
        statuses: count of each status among the records written by this call.
        wall_s: wall time of the call.
        measure_s: time spent inside the measurements (setup, timing, errors, the baseline).
        contended: rows written by this call that were measured under contention (the ``contended`` column).
        not_run: (case, variant) pairs skipped because the variant cannot run them (``skip_unsupported``).
    """

    run_dir: Path
    csv_path: Path | None = None
    measured: int = 0
    skipped: int = 0
    statuses: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    measure_s: float = 0.0
    contended: int = 0
    not_run: int = 0


def no_device_message(device: str) -> str:
    """The reason of a case on a device this machine lacks (an error, or the ``unsupported`` row in a grid)."""
    return (f"device={device}: no CUDA device here (torch.cuda.is_available() is False); allowed on this "
            f"machine: cpu, auto")


def _summary(m: _measure.Measurement) -> str:
    if m.status == "ok":
        return f"{m.time_ms_median:.3g} ms, err {m.err_rel_l2:.2g}"
    return m.reason[:120]


def _make_row(plan: SweepPlan, case: Case, variant: str, m: _measure.Measurement, rid: str,
             wall_ms: float) -> dict[str, Any]:
    """The record of one measurement: public columns, then extras (block layout, threads, methods...)."""
    row = m.as_row()
    p = case.pattern
    blocky = p.kind in ("block_sparse", "block_sparse_causal")
    import torch

    row.update(
        run_id=plan.run_id, variant=variant, status=m.status, reason=m.reason, device=case.device,
        dtype=case.dtype, batch=case.batch, heads=case.heads, seq_len=case.seq_len, head_dim=case.head_dim,
        pattern=p.kind, window=p.window if p.kind in ("window", "window_sym") else None, mode=case.mode,
        seed=case.seed, timestamp=_env.now_iso(), pattern_label=p.label, inputs=case.inputs,
        kv_heads=case.kv_heads, q_len=case.q_len, model=case.model,
        block=p.block if blocky else None, local=p.local if blocky else None,
        stride=p.stride if blocky else None, n_global=p.n_global if blocky else None,
        threads=m.threads or torch.get_num_threads(), budget_s=plan.budget_s, measure_wall_ms=wall_ms,
        cpu_timer=plan.cpu_timer if case.device_type == "cpu" else None,
        cuda_version=torch.version.cuda, hostname=socket.gethostname(), record_id=rid,
    )
    if case.documents is not None:  # a variable-length batch: its documents, padding and time per real token
        row.update(lengths=case.lengths, layout=case.layout, **doc_stats(case.documents, case.layout))
        row["us_per_token"] = 1e3 * m.time_ms_median / case.tokens if math.isfinite(m.time_ms_median) else math.nan
    row.update(_env.row_env(case.device))
    return row


def _collect_env_once(run_dir: Path, env: dict, prog: Progress | None = None) -> dict:
    """PyTorch's environment report for this run: the one already in ``run_dir/env.json`` when it was taken on
    this host with this torch (a resumed run, another job of a multirun), else a new one
    (:func:`harness.measure.env.collect_env_cached`: a fresh report, or the machine's cached one).

    Args:
        run_dir: the run directory.
        env: this process's :func:`harness.measure.env.capture_env`.
        prog: told when a new report is taken (it takes a while).

    Returns:
        ``{"text": ..., "seconds": ...}`` (or ``"error"`` instead of ``"text"``).
    """
    import json

    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        old = json.loads((run_dir / "env.json").read_text(encoding="utf-8"))
        report, old_env = old.get("collect_env"), old.get("environment", {})
        if (isinstance(report, dict) and "text" in report and old_env.get("hostname") == env["hostname"]
                and old_env.get("torch_version") == env["torch_version"]):
            return report
    say = None if prog is None else (lambda: prog.message(
        f"{run_dir.name}: recording the environment (torch.utils.collect_env, once per run)..."))
    return _env.collect_env_cached(on_collect=say)


def run_sweep(plan: SweepPlan, *, in_grid: bool = False, job_dir: Path | None = None,
              resolved_config: dict | None = None, progress: Progress | None = None,
              cuda_available: bool | None = None, write_csv: bool = True) -> SweepResult:
    """Measure every (case, variant) of ``plan`` that has no record yet, writing one record each.

    Args:
        plan: the validated sweep (see :func:`harness.run.config.plan_from_config`).
        in_grid: this call is one job of a larger grid (a Hydra multirun): cases on a missing device become
            ``unsupported`` rows instead of an error.
        job_dir: where this job's ``env.json`` goes (default: the run directory).
        resolved_config: the resolved config, saved in ``env.json``.
        progress: the display (default: the installed one, else a new one for this plan).
        cuda_available: override CUDA detection (tests).
        write_csv: rebuild ``results.csv`` at the end (the CLI does it once after a multirun instead).

    Returns:
        A :class:`SweepResult`.

    Raises:
        ConfigError: every case asks for a device this machine lacks and the call is not part of a grid.
    """
    import torch

    t_start = time.perf_counter()
    cuda = _env.cuda_available() if cuda_available is None else cuda_available
    missing = {c.device for c in plan.cases if c.device_type == "cuda" and not cuda}
    if missing and all(c.device_type == "cuda" for c in plan.cases) and not in_grid:
        raise ConfigError(no_device_message(sorted(missing)[0]))

    store = RunStore(plan.run_dir)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    store.clean_stale_temps()
    threads, threads_why = _choose_threads(plan)
    own = progress is None and current() is None
    prog = progress or current() or Progress(plan.n_items, plan.progress)
    env_doc = _env_doc(plan, in_grid, resolved_config, threads_why, prog, cuda)
    _write_env(plan.run_dir, Path(job_dir) if job_dir is not None else plan.run_dir, env_doc)
    if not plan.threads and threads < torch.get_num_threads():
        prog.message(f"{plan.run_id}: {threads_why}")
    sweep = _Sweep(plan, store, prog, cuda, missing, threads)
    try:
        for case in plan.cases:
            sweep.run_case(case)
        for path in sweep.found.markers:  # a dead process's marker goes once each of its items has a row
            _forget_if_done(path, store)
    finally:
        sweep.close()
        if write_csv:
            sweep.result.csv_path = store.write_csv()
        sweep.result.wall_s = time.perf_counter() - t_start
        if own:
            prog.close()
    prog.message(_summary_line(plan.run_id, sweep.result))
    return sweep.result


def _choose_threads(plan: SweepPlan) -> tuple[int, str]:
    """The torch CPU threads of this sweep and why: the asked number (set here), else torch's default capped at the
    cores other work leaves free."""
    import torch

    if plan.threads:
        torch.set_num_threads(plan.threads)
        return plan.threads, f"threads={plan.threads} (asked)"
    return default_threads(torch.get_num_threads())


def _env_doc(plan: SweepPlan, in_grid: bool, resolved_config: dict | None, threads_why: str, prog: Progress,
             cuda: bool) -> dict:
    """What ``env.json`` holds: the environment, the run and its config, threads, allocator, torch's report, and
    (``skip_unsupported``) what is skipped, one line per variant, for the report's "Not measured"."""
    env = _env.capture_env()
    doc = {"environment": env, "run_id": plan.run_id, "run_dir": str(plan.run_dir), "in_grid": in_grid,
           "variants": list(plan.variants), "n_cases": len(plan.cases), "config": resolved_config,
           "threads": threads_why, "allocator": steady_malloc(),
           "collect_env": _collect_env_once(plan.run_dir, env, prog)}
    if plan.skip_unsupported:
        from harness.run.declines import plan_declines

        doc["skipped"] = plan_declines(plan, cuda).lines()
    return doc


def _write_env(run_dir: Path, job_dir: Path, doc: dict) -> None:
    """``env.json`` into the job's directory, and into the run directory when that has none yet."""
    job_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(job_dir / "env.json", doc)
    if job_dir != run_dir and not (run_dir / "env.json").exists():
        write_json_atomic(run_dir / "env.json", doc)


def _summary_line(run_id: str, result: SweepResult) -> str:
    """The sweep's last line: what was measured (by status), kept, skipped and contended."""
    stats = ", ".join(f"{k}={v}" for k, v in sorted(result.statuses.items())) or "none"
    line = f"{run_id}: measured {result.measured} ({stats}), kept {result.skipped} existing"
    if result.not_run:
        line += f"; skipped {result.not_run} that cannot run here (listed above)"
    if result.contended:
        line += (f"; {result.contended} row(s) contended (timed while other work took this process's cores; see "
                 "the contended column)")
    return line


class _Sweep:
    """One :func:`run_sweep` call's state while it goes through the cases: what exists, what an earlier process
    left in flight, the shared inputs, the watchdog and the sharing monitor.

    Args:
        plan: the sweep.
        store: the run directory's records.
        prog: the display.
        cuda: whether CUDA cases can run here.
        missing: devices of the plan this machine lacks (their cases are ``unsupported`` rows).
        threads: the torch CPU threads in use.
    """

    def __init__(self, plan: SweepPlan, store: RunStore, prog: Progress, cuda: bool, missing: set[str],
                 threads: int) -> None:
        from harness.core.registry import get_variant
        from harness.run.sharing import SharingMonitor

        self.plan, self.store, self.prog, self.missing, self.threads = plan, store, prog, missing, threads
        self.mcfg = _measure.MeasureConfig(budget_s=plan.budget_s, warmup=plan.warmup, min_runs=plan.min_runs,
                                           threads=threads, rel_ci=plan.rel_ci or None, cpu_timer=plan.cpu_timer)
        self.variants = [get_variant(n) for n in plan.variants]
        self.result = SweepResult(run_dir=plan.run_dir)
        self.skip = _announce_skipped(plan, cuda, prog) if plan.skip_unsupported else set()
        self.result.not_run = len(self.skip)
        self.cache = CaseInputs()
        self.existing = store.ids()
        self.flight = InFlight(plan.run_dir)
        self.found = leftovers(plan.run_dir, store.has)
        self.left = self.found.suspects
        self.risky = set(self.found.hung)  # variants measured in child processes from now on
        _announce(prog, plan, self.found)
        self.watchdog = None if plan.isolate else Watchdog(_RowWriter.on_hang)
        self.faults = _print_faults()  # a segfault in process prints the Python stack that was running
        self.leaks = _measure.LeakLedger()
        self.monitor = SharingMonitor(plan.run_dir, {c.device for c in plan.cases if c.device not in missing})
        self.warned: set[str] = set()

    def run_case(self, case: Case) -> None:
        """Every variant of ``case`` without a row: after a crash in a child, on a missing device as
        ``unsupported``, isolated one child each, or together in this process."""
        todo = self._todo(case)
        if not todo:
            return
        sharing = [] if case.device in self.missing else self.monitor.sharing(case.device)
        self._warn_sharing(case.device, sharing)
        write = _RowWriter(self.plan, self.store, self.result, self.prog, case, len(sharing), flight=self.flight,
                           watchdog=self.watchdog)
        redo = [(v, rid) for v, rid in todo if case.device not in self.missing and not self.plan.isolate
                and ((rid in self.left and self.left[rid].running) or v.name in self.risky)]
        for variant, rid in redo:
            self._measure_again(case, variant, rid, write)
        todo = [item for item in todo if item not in redo]
        if not todo:
            return
        write.begin(todo)
        if case.device in self.missing:
            for variant, rid in todo:
                self.prog.start(case.describe(), variant.name)
                write(variant, _measure.Measurement(status="unsupported", reason=no_device_message(case.device),
                                                    threads=self.threads), 0.0, rid)
        elif self.plan.isolate:  # one child per variant: timed one after another, never interleaved
            for variant, rid in todo:
                write.phase(f"child process for {variant.name}", variant.name)
                m, secs = self._in_child(case, variant)
                write(variant, _after_crash(m, self.left[rid]) if rid in self.left else m, secs, rid)
        else:
            _measure_case(case, todo, self.cache, self.mcfg, self.threads, self.leaks, write)
        write.end()

    def _todo(self, case: Case) -> list[tuple[Any, str]]:
        """``(variant, record id)`` of the variants of ``case`` without a record (the others are counted as kept;
        pairs ``skip_unsupported`` skips, said once per variant already, are left out)."""
        todo = []
        for variant in self.variants:
            if (case, variant.name) in self.skip:
                continue
            rid = record_id(case, variant.name, self.plan.threads, self.plan.cpu_timer)
            if rid in self.existing or self.store.has(rid):
                self.result.skipped += 1
                self.prog.finish(case.describe(), variant.name, "", skipped=True)
            else:
                todo.append((variant, rid))
        return todo

    def _warn_sharing(self, device: str, sharing: list[int]) -> None:
        """The first time other jobs of the run measure on ``device``: a line (or a warning without progress)."""
        from harness.run.sharing import SharedDeviceWarning, sharing_warning

        if not sharing or device in self.warned:
            return
        self.warned.add(device)
        if self.prog.style in ("plain", "bar"):
            self.prog.message(sharing_warning(device, sharing))
        else:
            warnings.warn(sharing_warning(device, sharing), SharedDeviceWarning, stacklevel=4)

    def _measure_again(self, case: Case, variant: Any, rid: str, write: _RowWriter) -> None:
        """An item that was running when a process died, or of a variant that crashed or hung: in a child."""
        write.begin([(variant, rid)], f"child process for {variant.name} (after a crash)")
        m, secs = self._in_child(case, variant)
        m = _after_crash(m, self.left[rid]) if rid in self.left else _isolated_after_crash(m, variant.name)
        if m.status in ("crashed", "timeout"):
            self.risky.add(variant.name)
        write(variant, m, secs, rid)

    def _in_child(self, case: Case, variant: Any) -> tuple[_measure.Measurement, float]:
        """One measurement in a child process (declined cases are answered here, without a child)."""
        from harness.run.isolate import IsolatedJob, run_isolated

        refused = declined(variant, case, self.threads)  # every reason, before any child is started
        if refused is not None:
            return refused, 0.0
        job = IsolatedJob(case=case, variant=variant.name, variants_from=self.plan.variants_from, mcfg=self.mcfg,
                          threads=self.threads)
        out = run_isolated(job, self.plan.case_timeout_s)
        return out.measurement, out.seconds

    def close(self) -> None:
        """Stop the watchdog and the fault handler this sweep turned on, drop the markers and the held inputs."""
        if self.watchdog is not None:
            self.watchdog.close()
        if self.faults:
            faulthandler.disable()
        self.flight.end()
        self.monitor.close()
        self.cache.release()


def _announce_skipped(plan: SweepPlan, cuda: bool, prog: Progress) -> set:
    """The (case, variant name) pairs ``skip_unsupported`` skips, said once per variant
    (:mod:`harness.run.declines`)."""
    from harness.run.declines import plan_declines

    found = plan_declines(plan, cuda)
    if found.pairs:
        prog.message(f"{plan.run_id}: {len(found.pairs)} (case, variant) pair(s) cannot run here and are skipped "
                     "(skip_unsupported=true; false writes them as unsupported rows):")
        for line in found.lines():
            prog.message(f"  {line}")
    return found.pairs


@dataclass
class _RowWriter:
    """Writes the rows of one case: the record, the counts of the result, the progress line."""

    plan: SweepPlan
    store: RunStore
    result: SweepResult
    prog: Progress
    case: Case
    concurrent_jobs: int
    baseline_ms: float = math.nan
    flight: InFlight | None = None
    watchdog: Watchdog | None = None

    def __post_init__(self) -> None:
        self.items: dict[str, tuple[Any, str]] = {}  # variant name -> (variant, record id), of what is in flight

    def begin(self, todo: list[tuple[Any, str]], phase: str = "starting") -> None:
        """The items of ``todo`` are in flight (a durable marker); ``phase`` concerns all of them when given."""
        self.items = {v.name: (v, rid) for v, rid in todo}
        if self.flight is not None:
            current = [rid for _, rid in todo] if phase != "starting" else []
            self.flight.begin(self.case.describe(), [(rid, v.name) for v, rid in todo], phase, current)
        if phase != "starting":
            self.prog.start(self.case.describe(), phase)

    def end(self) -> None:
        """The case is over (every row written)."""
        if self.watchdog is not None:
            self.watchdog.disarm()
        if self.flight is not None:
            self.flight.end()

    def __call__(self, variant: Any, m: _measure.Measurement, secs: float, rid: str) -> None:
        m.extra["concurrent_jobs"] = self.concurrent_jobs
        m.extra["exact"] = bool(getattr(variant, "exact", True))  # approximations are drawn and ranked apart
        if math.isfinite(self.baseline_ms) or "baseline_ms" not in m.extra:
            m.extra["baseline_ms"] = self.baseline_ms
        self.store.write(rid, _make_row(self.plan, self.case, variant.name, m, rid, secs * 1e3))
        if self.flight is not None:
            self.flight.done(rid)
        r = self.result
        r.measured += 1
        r.measure_s += secs
        r.statuses[m.status] += 1
        r.contended += bool(m.contended)
        self.prog.finish(self.case.describe(), variant.name, m.status, _summary(m))

    def phase(self, text: str, variant: str | None = None) -> None:
        """A phase of the case starts (``setup X``, ``timing N variants in rounds``, ``child process for X``).

        Args:
            text: what starts, for the progress line and the in-flight marker.
            variant: the one variant the phase concerns, or None when it concerns every variant still without a row.
        """
        self.prog.start(self.case.describe(), text)
        if self.flight is None:
            return
        pending = self.flight.pending()
        if variant in self.items and self.items[variant][1] in pending:  # one variant's phase
            current = [self.items[variant][1]]
        else:  # the interleaved rounds: every variant still without a row
            current = list(pending)
        self.flight.phase(text, current)
        if self.watchdog is not None and current:
            self.watchdog.arm(self.plan.case_timeout_s * len(current), self)

    def on_hang(self, limit_s: float) -> None:
        """The watchdog's thread, when the running phase passed its limit: the rows it can write, and a message."""
        assert self.flight is not None
        current, text = self.flight.current(), self.flight.phase_text()
        by_rid = {rid: v for v, rid in self.items.values()}
        known = len(current) == 1 and current[0] in by_rid
        if known:
            self.flight.hung(by_rid[current[0]].name)
            m = _measure.Measurement(status="timeout", reason=(
                f"no result within case_timeout_s={self.plan.case_timeout_s:g} s in process ({text}); the sweep "
                "process was ended, since a call running in process cannot be stopped (isolate=true keeps going "
                "past hangs)"))
            self(by_rid[current[0]], m, limit_s, current[0])
        names = ", ".join(sorted(v for v, (_, rid) in self.items.items() if rid in current))
        what = ("recorded as a timeout row" if known else
                f"the next run measures {names} one by one in child processes to find which hangs")
        print(f"\nattnbench: {self.case.describe()} | {text} did not finish within {limit_s:g} s "
              f"(case_timeout_s={self.plan.case_timeout_s:g}); {what}. This process stops here: a call running in "
              "process cannot be interrupted. Run the same command again to go on; isolate=true keeps going past "
              "hangs.", file=sys.__stderr__ or sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            self.store.write_csv()


def _print_faults() -> bool:
    """Turn on :mod:`faulthandler` (to the real stderr) unless it is on; returns whether this call did."""
    if faulthandler.is_enabled():
        return False
    try:
        stream = sys.__stderr__
        if stream is None:
            return False
        faulthandler.enable(file=stream)
    except (ValueError, OSError, AttributeError):  # no usable file descriptor (an embedding)
        return False
    return True


def _announce(prog: Progress, plan: SweepPlan, found: Any) -> None:
    """Say which items an earlier process left in flight, and what happens to them now."""
    for s in found.suspects.values():
        if s.running:
            prog.message(f"{plan.run_id}: {s.describe()}: {s.case} | {s.variant}; measuring it again in a child "
                         f"process")
    for name in sorted(found.hung):
        prog.message(f"{plan.run_id}: {name} hung in an earlier sweep process (case_timeout_s); its remaining cases "
                     f"are measured in child processes")


def _isolated_after_crash(m: _measure.Measurement, variant: str) -> _measure.Measurement:
    m.extra["isolated_because"] = f"{variant} crashed or hung a sweep process earlier in this run"
    return m


def _after_crash(m: _measure.Measurement, suspect: Suspect) -> _measure.Measurement:
    """The row of an item measured again after a crash: what happened both times."""
    m.extra["previous_attempt"] = suspect.describe()
    if m.status in ("crashed", "timeout"):
        m.reason = f"{m.reason}; measured in a child process because {suspect.describe()}"[:1000]
    return m


def _forget_if_done(path: Path, store: RunStore) -> None:
    import json

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if all(store.has(rid) for rid in doc["items"]):
            path.unlink()


def _measure_case(case: Case, todo: list[tuple[Any, str]], cache: CaseInputs, mcfg: _measure.MeasureConfig,
                  threads: int, leaks: _measure.LeakLedger, write: _RowWriter) -> None:
    """The variants of one case in this process: declined ones at once, the rest together (interleaved rounds).

    Every row is written as soon as it is complete (:func:`harness.measure.runner.measure_case`); a crash while the case
    is being timed loses only the rows still being timed, which a resume measures again.
    """
    rids = {id(v): rid for v, rid in todo}
    ready, refused_rows = [], []
    for variant, rid in todo:
        refused = declined(variant, case, threads)
        if refused is None:
            ready.append(variant)
        else:
            refused_rows.append((variant, refused, rid))
    inputs, inputs_error = None, None
    if ready:
        try:
            inputs = cache.get(case)
        except Exception as exc:
            inputs_error = exc
    if inputs is not None:  # the case's truth, before its rows: each row carries what it cost (baseline_ms)
        write.phase("computing the float64 baseline")
        ms, line = cache.refs.prepare_case(case, inputs, ready, mcfg.errors)
        write.baseline_ms = ms
        if line and ms >= TRUTH_LINE_MS:  # a costly truth is worth a line; the rest is in baseline_ms and report.md
            write.prog.message(line)
        if math.isfinite(ms):
            write.result.measure_s += ms / 1e3
    for variant, refused, rid in refused_rows:
        write.phase(variant.name, variant.name)
        write(variant, refused, 0.0, rid)
    if inputs is None:
        for variant in ready:
            write(variant, _measure.failure(inputs_error, threads), 0.0, rids[id(variant)])
        return
    _measure.measure_case(ready, case, inputs, cache.refs, mcfg,
                          on_row=lambda v, m, secs: write(v, m, secs, rids[id(v)]), baseline=BASELINE,
                          seed=zlib.crc32(case.describe().encode()), leaks=leaks, on_phase=write.phase)


def expected_ids(plan: SweepPlan) -> set[str]:
    """Record ids a complete run of ``plan`` has (for checks and tests; pairs ``skip_unsupported`` skips have none)."""
    skip = set()
    if plan.skip_unsupported:
        from harness.run.declines import plan_declines

        skip = plan_declines(plan).pairs
    return {record_id(c, v, plan.threads, plan.cpu_timer) for c in plan.cases for v in plan.variants
            if (c, v) not in skip}

