"""Crashes and hangs, with and without isolation: attributed, never repeated, no row lost or doubled (issue 14.3).

A fault-injection matrix. Each scenario runs a sweep of ``[full, <faulty>, causal]`` on two cases in a separate
process (the faults end processes), then runs the same sweep again, and checks the records: one per (case,
variant), the statuses and reasons, and that nothing is left in flight.

- segv, exit3 in process: the process dies and its marker names the variant; the rerun measures it in a child
  (``crashed``, saying what happened both times), and its other case in a child too;
- late_segv, in the timing rounds: dies while 3 variants are timed together; the rerun measures each of the 3 in
  a child: the culprit ``crashed``, the others ``ok``;
- hang in process with ``case_timeout_s``: the watchdog writes ``timeout`` and ends the process (124); the rerun
  goes on, with the hung variant's other case in a child (``timeout``);
- hang killed with SIGKILL, in process or isolated (the isolated child dies with the sweep): the rerun measures
  the hung item in a child (``timeout``), the rest ``ok`` (one case, two variants: it costs child processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.run.config import plan_from_config
from harness.run.inflight import INFLIGHT_DIR, WATCHDOG_EXIT
from harness.run.sweep import expected_ids
from tests.sweep_helpers import read_records

ROOT = Path(__file__).resolve().parents[1]
FAULTY = '''
"""Faulty variants for tests/test_crash_recovery.py."""
import os
import signal
import time

from harness import Variant, get_variant, register_variant
from harness.core.pattern import PATTERN_KINDS


class _Base(Variant):
    patterns = frozenset(PATTERN_KINDS)
    devices = frozenset({"cpu"})

    def forward(self, q, k, v, pattern):
        return get_variant("full").forward(q, k, v, pattern)


@register_variant
class Segv(_Base):
    name = "f_segv"

    def forward(self, q, k, v, pattern):
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)


@register_variant
class Exit3(_Base):
    name = "f_exit3"

    def forward(self, q, k, v, pattern):
        os._exit(3)


@register_variant
class Hang(_Base):
    name = "f_hang"

    def forward(self, q, k, v, pattern):
        while True:
            time.sleep(0.2)


@register_variant
class LateSegv(_Base):
    """Its setup (first call and memory probe: 2 calls) works; its first timed call segfaults."""
    name = "f_late_segv"
    calls = 0

    def forward(self, q, k, v, pattern):
        LateSegv.calls += 1
        if LateSegv.calls > 2:
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(5)
        return super().forward(q, k, v, pattern)
'''
#: The limit of the hang scenarios: long enough for the innocent variants' phases on a loaded 2-core machine.
LIMIT_S = 10
RUN = ("import json, sys\n"
       "from harness.run.config import plan_from_config\n"
       "from harness.run.sweep import run_sweep\n"
       "run_sweep(plan_from_config(json.loads(sys.argv[1]), cuda_available=False))\n")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals, /proc and prctl: Linux")


def _cfg(tmp_path: Path, faulty: str, **kw) -> dict:
    path = tmp_path / "faulty.py"
    if not path.exists():
        path.write_text(FAULTY)
    return {"results_dir": str(tmp_path / "res"), "run_name": "r", "variants_from": [str(path)],
            "variants": ["full", faulty, "causal"], "seq_len": [16, 24], "heads": 2, "head_dim": 8, "budget": 0.01,
            "warmup": 0, "min_runs": 1, "pattern": "causal", "mode": "fwd", "progress": "plain", **kw}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _start(cfg: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, json.dumps(cfg)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run(cfg: dict, timeout: float = 240) -> tuple[int, str]:
    proc = _start(cfg)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _markers(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run / INFLIGHT_DIR).glob("*.json"))]


def _wait_for_phase(run: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for doc in _markers(run) if (run / INFLIGHT_DIR).is_dir() else []:
            if doc.get("phase", "").startswith(text):
                return doc
        assert proc.poll() is None, f"the sweep ended ({proc.returncode}) before {text!r}: {proc.stderr.read()}"
        time.sleep(0.1)
    raise AssertionError(f"no marker reached {text!r} within {timeout} s")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's reaping is missing


def _check_rows(cfg: dict, faulty: str, status: str, needles: list[str]) -> dict:
    """One record per (case, variant); the others ok; the faulty variant's rows have ``status``."""
    plan = plan_from_config(cfg, cuda_available=False, load_variants=False)
    rows = read_records(plan.run_dir)
    ids = [r["record_id"] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids(plan), "a row lost or doubled"
    by = {(r["variant"], r["seq_len"]): r for r in rows}
    for n in cfg["seq_len"]:
        for v in cfg["variants"]:
            if v != faulty:
                assert by[(v, n)]["status"] == "ok", by[(v, n)]
        assert by[(faulty, n)]["status"] == status, by[(faulty, n)]
        for needle in needles:
            assert needle in by[(faulty, n)]["reason"], (needle, by[(faulty, n)]["reason"])
    assert not _markers(plan.run_dir), "something is still marked in flight"
    return by


@pytest.mark.slow
@pytest.mark.parametrize(("faulty", "first_rc", "child_says"), [
    ("f_segv", -signal.SIGSEGV, "SIGSEGV (11)"), ("f_exit3", 3, "exited with code 3")])
def test_a_crash_in_process_is_attributed_and_not_repeated(tmp_path, faulty, first_rc, child_says):
    cfg = _cfg(tmp_path, faulty)
    rc, err = _run(cfg)
    assert rc == first_rc, err
    run = Path(cfg["results_dir"]) / "r"
    (doc,) = _markers(run)  # the marker says what was running
    assert doc["phase"] == f"setup {faulty}" and list(doc["items"].values()) == ["full", faulty, "causal"]
    assert [doc["items"][r] for r in doc["current"]] == [faulty]
    assert not read_records(run)
    rc, err = _run(cfg)
    assert rc == 0, err
    assert f"while it was running (setup {faulty})" in err and f"| {faulty}; measuring it again in a child" in err
    by = _check_rows(cfg, faulty, "crashed", [child_says])
    first, second = by[(faulty, 16)], by[(faulty, 24)]
    assert f"measured in a child process because an earlier sweep process (pid {doc['pid']}" in first["reason"]
    assert first["previous_attempt"].startswith("an earlier sweep process")
    assert second["isolated_because"] == f"{faulty} crashed or hung a sweep process earlier in this run"
    assert by[("full", 16)]["status"] == "ok" and "child_wall_ms" not in by[("full", 16)]  # measured in process
    if faulty == "f_segv":  # a third run has nothing left to do
        rc, err = _run(cfg)
        assert rc == 0 and "measured 0" in err and "kept 6 existing" in err


@pytest.mark.slow
def test_a_crash_in_the_timing_rounds_is_found_among_the_variants_timed_together(tmp_path):
    cfg = _cfg(tmp_path, "f_late_segv", seq_len=[16])
    rc, err = _run(cfg)
    assert rc == -signal.SIGSEGV, err
    (doc,) = _markers(Path(cfg["results_dir"]) / "r")
    assert doc["phase"].startswith("timing 3 variants"), f"precondition: the crash must come in the rounds: {doc}"
    assert sorted(doc["items"][r] for r in doc["current"]) == ["causal", "f_late_segv", "full"]
    rc, err = _run(cfg)
    assert rc == 0, err
    by = _check_rows(cfg, "f_late_segv", "crashed", ["SIGSEGV (11)"])
    for v in ("full", "causal"):  # innocent, measured once in a child to find the culprit, and ok
        assert by[(v, 16)]["child_wall_ms"] > 0 and by[(v, 16)]["previous_attempt"]


@pytest.mark.slow
def test_a_hang_in_process_becomes_a_timeout_row_and_the_next_run_goes_on(tmp_path):
    cfg = _cfg(tmp_path, "f_hang", case_timeout_s=LIMIT_S)
    t0 = time.monotonic()
    rc, err = _run(cfg)
    assert rc == WATCHDOG_EXIT, err
    assert time.monotonic() - t0 < 90
    assert (f"| setup f_hang did not finish within {LIMIT_S} s (case_timeout_s={LIMIT_S}); recorded as a timeout "
            "row") in err
    run = Path(cfg["results_dir"]) / "r"
    (row,) = read_records(run)
    assert row["variant"] == "f_hang" and row["status"] == "timeout" and row["seq_len"] == 16
    assert (run / "results.csv").is_file()
    rc, err = _run(cfg)
    assert rc == 0, err
    assert "f_hang hung in an earlier sweep process" in err
    by = _check_rows(cfg, "f_hang", "timeout", [f"case_timeout_s={LIMIT_S}"])
    assert "in process (setup f_hang)" in by[("f_hang", 16)]["reason"]
    assert by[("f_hang", 24)]["child_wall_ms"] > 0  # measured in a child: the run did not hang again


@pytest.mark.slow
@pytest.mark.parametrize("isolate", [False, True])
def test_a_sweep_killed_during_a_hang_measures_it_in_a_child_and_leaves_no_orphan(tmp_path, isolate):
    # one case, two variants: the other scenarios show what happens at the next case
    cfg = _cfg(tmp_path, "f_hang", isolate=isolate, case_timeout_s=600, seq_len=[16], variants=["full", "f_hang"])
    proc = _start(cfg)
    run = Path(cfg["results_dir"]) / "r"
    phase = "child process for f_hang" if isolate else "setup f_hang"
    _wait_for_phase(run, phase, proc)
    children = []
    if isolate:  # the child is started and hanging
        t0 = time.monotonic()
        while not children and time.monotonic() - t0 < 60:
            children = [c for c in _children(proc.pid)
                        if b"harness.run.isolate" in Path(f"/proc/{c}/cmdline").read_bytes()]
            time.sleep(0.1)
        assert children, "no isolated child found"
        time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    t0 = time.monotonic()
    while any(_alive(c) for c in children) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    assert not any(_alive(c) for c in children), f"the isolated child {children} outlived its parent"
    rc, err = _run({**cfg, "case_timeout_s": LIMIT_S})
    assert rc == 0, err
    assert "while it was running" in err
    by = _check_rows({**cfg, "case_timeout_s": LIMIT_S}, "f_hang", "timeout", [f"case_timeout_s={LIMIT_S}"])
    assert "measured in a child process because an earlier sweep process" in by[("f_hang", 16)]["reason"]
