"""Contention seen and recorded (issue 13.1, 13.4, 20.6): the per-sample detector, the measurement's summary and
its retry, the GPU's state through a fake NVML, thread counts that fit the free cores.

These test the mechanisms with fake clocks and fake readings; one test makes real contention (two busy processes
pinned to one core) and checks only that it is seen. Figures under load live in ``benchmarks/under_load.py``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.measure.contention import CONTENDED_FRACTION, Contention, summarize
from harness.measure.gpu import gpu_state, set_nvml
from harness.measure.machine import (
    BUSY_MEMORY_S,
    QuietGate,
    allowed_cores,
    allowed_cpus,
    busy_elsewhere,
    default_threads,
    free_cores,
    machine_busy_s,
    machine_quiet,
    others_limit,
    wait_for_quiet,
)
from harness.measure.other_processes import OthersMeter
from harness.measure.rounds import run_rounds
from harness.measure.samplers import CpuSampler
from harness.measure.stop_rule import StopRule
from harness.measure.usage import SampleUsage, UsageMeter, runq_wait_s
from harness.run.config import ConfigError, plan_from_config


# ----------------------------------------------------------------------------------------- fakes
class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeMeter(UsageMeter):
    """Readings from a script: each call of the fake callable is one sample with the given run-queue wait."""

    def __init__(self, clock: FakeClock, waits: list[float | None], cpu_per_s: float = 1.0) -> None:
        self.clock, self.waits, self.cpu_per_s = clock, list(waits), cpu_per_s
        self.wait_total, self.cpu, self.switches, self.i = 0.0, 0.0, 0, 0
        super().__init__(wall=clock, cpu=lambda: self.cpu, wait=lambda: self.wait_total, nivcsw=lambda: self.switches,
                         tids=lambda: ["1"])

    def advance(self, seconds: float) -> None:
        """One call of ``seconds``: the clock moves, CPU time and wait as scripted for this sample."""
        w = self.waits[self.i % len(self.waits)]
        self.i += 1
        self.clock.t += seconds
        self.cpu += seconds * self.cpu_per_s
        if w is None:
            self.switches += 1
        else:
            self.wait_total += w


def _sampler(ms: float, waits: list[float | None]) -> tuple[CpuSampler, FakeMeter]:
    clock = FakeClock()
    meter = FakeMeter(clock, waits)
    return CpuSampler(lambda: meter.advance(ms / 1e3), threads=1, meter=meter, clock=clock), meter


# ----------------------------------------------------------------------------------------- the per-sample rule
def test_a_sample_that_waited_for_a_core_is_disturbed() -> None:
    assert not SampleUsage(wall_s=0.010, cpu_s=0.010, wait_s=0.0, nivcsw=3).disturbed
    assert not SampleUsage(wall_s=0.010, cpu_s=0.010, wait_s=0.0004, nivcsw=0).disturbed  # 4% < 5%
    assert SampleUsage(wall_s=0.010, cpu_s=0.005, wait_s=0.0006, nivcsw=0).disturbed
    # an OpenMP stall: a thread waits at a barrier for a sibling that waits for a core; the summed wait of the
    # threads can exceed the sample's wall time
    assert SampleUsage(wall_s=0.047, cpu_s=0.031, wait_s=0.064, nivcsw=8).disturbed
    # without schedstat the coarse rule: any involuntary switch
    assert SampleUsage(wall_s=0.010, cpu_s=0.010, wait_s=None, nivcsw=1).disturbed
    assert not SampleUsage(wall_s=0.010, cpu_s=0.010, wait_s=None, nivcsw=0).disturbed


def test_summary_shares_and_the_contended_threshold() -> None:
    quiet = SampleUsage(0.010, 0.020, 0.0, 0)  # 2 threads, both busy all the time
    slow = SampleUsage(0.010, 0.010, 0.008, 2)
    c = summarize([quiet] * 3 + [slow], threads=2, load_before=1.0, load_after=2.0)
    assert c.samples == 4 and c.disturbed == 1 and c.detector == "runq_wait"
    assert c.cpu_share == pytest.approx(0.070 / (0.040 * 2))
    assert c.runq_wait_share == pytest.approx(0.008 / (0.040 * 2))
    assert not c.contended and c.note() == ""  # 1 of 4 is not more than a quarter
    c2 = summarize([quiet] * 2 + [slow] * 2, threads=2, load_before=1.0, load_after=2.0)
    assert c2.contended
    assert c2.note().startswith("contended: 2 of 4 samples waited on a run queue (cpu_share")
    cols = c2.columns()
    assert set(cols) == {"cpu_share", "runq_wait_share", "load_before", "load_after", "disturbed_samples",
                         "others_cores"}
    unknown = summarize([SampleUsage(0.01, 0.01, None, 1)] * 2, threads=1)
    assert unknown.detector == "nivcsw" and math.isnan(unknown.runq_wait_share) and unknown.contended
    # one waited-on sample is an event, not a state: a row of 3 samples with 1 disturbed (a third) is not contended
    # (a single preemption would otherwise have the whole case timed again); 2 of 3 are
    one = summarize([quiet] * 2 + [slow], threads=2)
    assert one.disturbed_fraction > CONTENDED_FRACTION and not one.contended
    assert summarize([quiet] + [slow] * 2, threads=2).contended


# ----------------------------------------------------------------------------------------- samples left out
def test_disturbed_samples_are_left_out_of_the_statistics_and_kept() -> None:
    """Every third sample waited 50% of its time; those samples are also 3x slower. The median comes from the
    quiet ones, the slow ones are kept as dropped, and with a third disturbed the measurement is contended."""
    clock = FakeClock()
    meter = FakeMeter(clock, [0.0, 0.0, 0.0015])
    sizes = iter([0.001, 0.001, 0.003] * 10)
    s = CpuSampler(lambda: meter.advance(next(sizes)), threads=1, meter=meter, clock=clock)
    rule = StopRule(budget_s=1.0, rel_ci=None, min_runs=3, max_runs=30)
    run_rounds([s], rule)
    r = s.result(rule)
    assert r.n_runs == 20 and len(r.dropped_ms) == 10 and r.total_calls == 30
    assert r.median_ms == pytest.approx(1.0) and r.samples_ms == [pytest.approx(1.0)] * 20
    assert r.dropped_ms == [pytest.approx(3.0)] * 10
    assert r.contended and r.contention is not None and r.contention.disturbed == 10
    assert r.stop_reason == "max_runs"


def test_all_samples_slowed_alike_are_still_contended() -> None:
    """Issue 20.6: every sample of a row slowed by a passing load (a tight IQR, nothing to drop): the statistics
    use all samples, since too few are quiet, and the row is contended, never quiet."""
    s, _ = _sampler(3.6, [0.0025])
    rule = StopRule(budget_s=0.02, rel_ci=None, min_runs=3)
    run_rounds([s], rule)
    r = s.result(rule)
    assert r.dropped_ms == [] and r.n_runs == s.n >= 3
    assert r.iqr_ms == pytest.approx(0.0) and not r.noisy
    assert r.contended


def test_a_contended_measurement_is_retried_when_the_machine_is_quiet_again() -> None:
    clock = FakeClock()
    meter = FakeMeter(clock, [0.0008] * 6 + [0.0] * 100)  # the first attempt's 6 samples waited 80%
    s = CpuSampler(lambda: meter.advance(0.001), threads=1, meter=meter, clock=clock)
    rule = StopRule(budget_s=0.006, rel_ci=None, min_runs=3)
    used, note = run_rounds([s], rule, retries=2, quiet=lambda: True)
    r = s.result(rule, retries=used, note=note)
    assert used == 1 and not r.contended and r.retries == 1 and note == ""


def test_a_busy_machine_is_not_retried_and_the_note_says_so() -> None:
    s, _ = _sampler(1.0, [0.0008])
    asked = []
    used, note = run_rounds([s], StopRule(budget_s=0.005, min_runs=3), retries=2,
                            quiet=lambda: asked.append(1) or False)
    assert used == 0 and asked == [1] and note == "not retried: the machine stayed busy"
    s2, _ = _sampler(1.0, [0.0008])
    used, note = run_rounds([s2], StopRule(budget_s=0.005, min_runs=3), retries=2, quiet=lambda: True)
    assert used == 2 and note == "still contended after 2 retries"  # bounded


def test_wait_for_quiet_polls_until_quiet_or_timeout() -> None:
    clock = FakeClock()
    states = iter([False, False, True])
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.t += s

    assert wait_for_quiet(1, 5.0, poll_s=0.5, quiet=lambda n: next(states), clock=clock, sleep=sleep)
    assert slept == [0.5, 0.5]
    assert not wait_for_quiet(1, 1.0, poll_s=0.5, quiet=lambda n: False, clock=clock, sleep=sleep)


def test_after_a_wait_in_vain_the_gate_only_looks() -> None:
    clock = FakeClock()
    looks: list[float] = []

    def sleep(s: float) -> None:
        clock.t += s

    def quiet(n: int) -> bool:
        looks.append(clock.t)
        return False

    gate = QuietGate(quiet=quiet, clock=clock, sleep=sleep)
    assert not gate.ready(1, 1.0) and len(looks) > 5  # polled for a second
    n = len(looks)
    assert not gate.ready(1, 1.0) and len(looks) == n + 1  # busy a moment ago: one look, no waiting
    clock.t += BUSY_MEMORY_S + 1
    assert not gate.ready(1, 1.0) and len(looks) > n + 2  # long after: it waits again


# ----------------------------------------------------------------------------------------- threads that fit
def test_default_threads_follow_the_allowed_cores_not_the_load() -> None:
    """Two runs of one command use one thread count: a busy machine is said (and marked contended), not followed."""
    assert free_cores(allowed=2, busy=0.0) == 2
    assert free_cores(allowed=2, busy=1.1) == 1
    assert free_cores(allowed=2, busy=5.5) == 1  # never below one
    assert free_cores(allowed=16, busy=0.2) == 16  # a shell and a clock are not a busy core
    threads, why = default_threads(2, allowed=2, busy=4.4)
    assert threads == 2 and "2 cores allowed" in why and "marked contended" in why
    assert default_threads(2, allowed=2, busy=0.0) == (2, "threads=2: torch's default 2, 2 cores allowed")
    assert default_threads(8, allowed=16, busy=0.0)[0] == 8  # torch's default when it fits
    assert default_threads(8, allowed=4, busy=0.0)[0] == 4  # never more than the cores it may use
    # busy = the larger of the load average and the runnable count, each minus this process
    assert busy_elsewhere(reads=3, runnable=lambda: 4, load=lambda: 1.5, sleep=lambda s: None) == 3.0
    assert busy_elsewhere(reads=3, runnable=lambda: None, load=lambda: 2.5, sleep=lambda s: None) == 1.5
    assert not machine_quiet(2, allowed=2, busy=lambda: 1.0)  # no core for the second thread
    # the core left free is busy: not quiet for the shared caches and memory either (see OthersMeter)
    assert not machine_quiet(1, allowed=2, busy=lambda: 1.0) and machine_quiet(1, allowed=2, busy=lambda: 0.2)
    assert machine_quiet(1, allowed=4, busy=lambda: 1.0)  # 3 cores left free, one of them busy


def test_threads_beyond_the_machine_are_refused_before_any_work(tmp_path) -> None:
    allowed = allowed_cores()
    with pytest.raises(ConfigError) as info:
        plan_from_config({"threads": 100000, "results_dir": str(tmp_path), "run_name": "r"}, cuda_available=False)
    assert "threads=100000" in str(info.value) and f"<= {allowed}" in str(info.value)
    plan = plan_from_config({"threads": allowed, "results_dir": str(tmp_path), "run_name": "r"},
                            cuda_available=False, load_variants=False)
    assert plan.threads == allowed
    for bad in (-0.5, 1.0, "x"):
        with pytest.raises(ConfigError, match="rel_ci="):
            plan_from_config({"rel_ci": bad, "results_dir": str(tmp_path), "run_name": "r"}, cuda_available=False,
                             load_variants=False)
    assert plan_from_config({"rel_ci": 0, "results_dir": str(tmp_path), "run_name": "r"}, cuda_available=False,
                            load_variants=False).rel_ci == 0.0


# ----------------------------------------------------------------------------------------- the GPU, through a fake NVML
def _fake_nvml(clock: float, max_clock: float, reasons: int, pids: list[int]) -> SimpleNamespace:
    return SimpleNamespace(
        NVML_CLOCK_SM=1,
        nvmlDeviceGetHandleByUUID=lambda u: ("uuid", u), nvmlDeviceGetHandleByIndex=lambda i: ("index", i),
        nvmlDeviceGetClockInfo=lambda h, kind: clock, nvmlDeviceGetMaxClockInfo=lambda h, kind: max_clock,
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: reasons,
        nvmlDeviceGetComputeRunningProcesses=lambda h: [SimpleNamespace(pid=p) for p in pids],
    )


def test_gpu_state_from_nvml_and_when_it_marks_contention() -> None:
    me = os.getpid()
    ok = gpu_state(0, "GPU-1234", nvml=_fake_nvml(1830, 1980, 0x1 | 0x4, [me]))
    assert ok == {"gpu_sm_clock_mhz": 1830.0, "gpu_sm_clock_max_mhz": 1980.0,
                  "gpu_throttle_reasons": "sw_power_cap", "gpu_other_processes": 0}  # idle bit ignored, self too
    assert not Contention(gpu=ok).contended
    hot = gpu_state(0, nvml=_fake_nvml(900, 1980, 0x40, [me]))
    c = Contention(gpu=hot)
    assert c.contended and "SM clock 900 of 1980 MHz (hw_thermal_slowdown)" in c.note()
    shared = Contention(gpu=gpu_state(0, nvml=_fake_nvml(1900, 1980, 0, [me, me + 1, me + 2])))
    assert shared.contended and "2 other process(es) on the GPU" in shared.note()
    broken = SimpleNamespace(nvmlDeviceGetHandleByIndex=lambda i: (_ for _ in ()).throw(RuntimeError("no driver")))
    assert gpu_state(0, nvml=broken) == {"gpu_state_error": "RuntimeError: no driver"}


def test_without_nvml_the_gpu_columns_are_empty(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # importing it fails, as where nvidia-ml-py is not installed
    set_nvml(None)
    try:
        assert gpu_state(0) == {}
    finally:
        set_nvml(None)  # the next use imports it again


# ----------------------------------------------------------------------------------------- real contention is seen
_PINNED = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    os.sched_setaffinity(0, {{{core}}})
    from harness.measure.rounds import run_rounds
    from harness.measure.samplers import CpuSampler
    from harness.measure.stop_rule import StopRule

    def spin():
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass

    s = CpuSampler(spin, threads=1)
    rule = StopRule(budget_s=0.4, min_runs=3)
    run_rounds([s], rule)
    c = s.contention()
    print(c.detector, c.disturbed, c.samples, round(c.runq_wait_share, 3))
""")


@pytest.mark.skipif(runq_wait_s() is None or not hasattr(os, "sched_setaffinity"),
                    reason="needs Linux schedstat and CPU affinity")
def test_a_busy_process_on_the_same_core_is_seen() -> None:
    """Two busy processes pinned to one core share it (the scheduler gives each about half): the timed one's
    samples wait on the run queue. Only this direction is asserted: on a shared machine a quiet run cannot be
    promised."""
    core = sorted(os.sched_getaffinity(0))[0]
    root = str(Path(__file__).resolve().parent.parent)
    hog = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        out = subprocess.run([sys.executable, "-c", _PINNED.format(root=root, core=core)], capture_output=True,
                             text=True, timeout=120, check=True).stdout.split()
    finally:
        hog.kill()
        hog.wait()
    detector, disturbed, samples, share = out[0], int(out[1]), int(out[2]), float(out[3])
    assert detector == "runq_wait"
    assert disturbed > samples * CONTENDED_FRACTION, out
    assert share > 0.2, out


# ----------------------------------------------------------------------------------------- other processes
def test_other_processes_busy_beside_the_measurement_make_it_contended() -> None:
    """A busy loop on the core a one-thread measurement leaves free takes no run-queue time from it (no sample
    waits), yet shares the caches and memory bandwidth: the row is contended because other processes kept the free
    core busy."""
    quiet = [SampleUsage(0.010, 0.010, 0.0, 0)] * 8
    hog = summarize(quiet, threads=1, others_s=0.098, others_wall_s=0.1, others_limit_cores=0.5)
    assert hog.others_cores == pytest.approx(0.98) and hog.contended and hog.disturbed == 0
    assert "other processes kept 1.0 cores busy beside it (limit 0.5" in hog.note()
    calm = summarize(quiet, threads=1, others_s=0.01, others_wall_s=0.1, others_limit_cores=0.5)
    assert not calm.contended and calm.note() == "" and calm.columns()["others_cores"] == pytest.approx(0.1)
    unknown = summarize(quiet, threads=1)
    assert math.isnan(unknown.others_cores) and not unknown.contended
    assert others_limit(1, allowed=2) == 0.5 and others_limit(8, allowed=64) == 28.0
    assert others_limit(2, allowed=2) == 0.5  # at least half a core


def test_others_meter_reads_the_span_of_the_batches_and_subtracts_this_process() -> None:
    """The first batch opens the span, the last one closes it: the machine busy 0.5 s over 1.1 s, 0.2 s of it this
    process (its CPU time between the batches counts as its own too)."""
    busy, own, wall = iter([100.0, 100.3, 100.5]), iter([5.0, 5.1, 5.2]), iter([0.0, 0.2, 1.1])
    m = OthersMeter(busy=lambda: next(busy), own=lambda: next(own), wall=lambda: next(wall), resolution_s=0.01,
                      cores=2)
    m.start()
    m.stop()
    m.start()  # the span is open: not read again
    m.stop()
    assert m.total_s == pytest.approx(0.3) and m.wall_s == pytest.approx(1.1)
    assert m.margin_s == pytest.approx(0.04)  # one tick per core at each end
    gone = OthersMeter(busy=lambda: None)
    gone.start()
    gone.stop()
    assert math.isnan(gone.total_s)
    assert machine_busy_s() is None or machine_busy_s() > 0


def test_a_load_that_starts_part_way_through_is_seen_in_its_stretch() -> None:
    """A busy loop on the other core during the last 0.3 s of a 1 s measurement: 0.3 cores over the span, under
    the limit, but the stretch it ran in reads a core, so the row is contended and says so."""
    t = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    m = OthersMeter(busy=lambda: t["busy"], own=lambda: t["own"], wall=lambda: t["wall"], resolution_s=0.01,
                      cores=2)
    for i in range(20):  # 20 batches of 50 ms; this process busy on one core throughout
        m.start()
        hog = 0.05 if i >= 14 else 0.0
        t["wall"] += 0.05
        t["own"] += 0.05
        t["busy"] += 0.05 + hog
        m.stop()
    assert m.total_s == pytest.approx(0.3) and m.wall_s == pytest.approx(1.0)
    assert m.peak_cores() == pytest.approx((0.3 - 0.04) / 0.3)  # the last 0.3 s: a core, less the ticks' margin
    c = summarize([SampleUsage(0.05, 0.05, 0.0, 0)] * 20, threads=1, others_s=m.total_s, others_wall_s=m.wall_s,
                    others_limit_cores=0.5, others_margin_s=m.margin_s, others_peak_cores=m.peak_cores())
    assert c.others_cores == pytest.approx(0.3) and c.contended
    assert "at least 0.9 cores busy during part of it (0.3 on average; limit 0.5" in c.note()
    quiet = OthersMeter(busy=lambda: 0.0, own=lambda: 0.0, wall=lambda: 0.0)
    quiet.start()
    quiet.stop()
    assert math.isnan(quiet.peak_cores())  # a span shorter than the window: not judged by stretches


def test_a_short_burst_of_another_process_is_not_contention() -> None:
    """50 ms of another process inside a 1 s measurement: within the ticks' margin over any 0.2 s stretch."""
    t = {"wall": 0.0, "busy": 0.0, "own": 0.0}
    m = OthersMeter(busy=lambda: t["busy"], own=lambda: t["own"], wall=lambda: t["wall"], resolution_s=0.01,
                      cores=2)
    for i in range(20):
        m.start()
        t["wall"] += 0.05
        t["own"] += 0.05
        t["busy"] += 0.05 + (0.05 if i == 7 else 0.0)
        m.stop()
    assert m.peak_cores() < 0.5
    c = summarize([SampleUsage(0.05, 0.05, 0.0, 0)] * 20, threads=1, others_s=m.total_s, others_wall_s=m.wall_s,
                    others_limit_cores=0.5, others_margin_s=m.margin_s, others_peak_cores=m.peak_cores())
    assert not c.contended


def test_coarse_readings_do_not_add_up_to_contention() -> None:
    """Batches of 3 ms read 0 or 1 tick of busy time per core. Read per batch and summed over 32 batches (each
    clipped at 0), the errors add up to phantom load on an idle machine; the span reads it once."""
    import random

    rng = random.Random(0)
    t, own = 0.0, 0.0

    def busy() -> float:  # one core where only this process runs, counted in 10 ms ticks
        return math.floor(own / 0.01) * 0.01  # the tick-sampled figure of this process's own CPU time

    def clock() -> float:
        return t

    def cpu() -> float:
        return own

    m = OthersMeter(busy=busy, own=cpu, wall=clock, resolution_s=0.01, cores=1)
    for _ in range(32):  # 32 batches of 3 ms of this process alone, 3 ms of another variant between them
        m.start()
        step = 0.003 + rng.uniform(0, 0.0005)
        t, own = t + step, own + step
        m.stop()
        t, own = t + 0.003, own + 0.003
    c = summarize([SampleUsage(0.003, 0.003, 0.0, 0)] * 32, threads=1, others_s=m.total_s,
                    others_wall_s=m.wall_s, others_limit_cores=0.5, others_margin_s=m.margin_s)
    assert c.others_cores < 0.1 and not c.contended
    hog = summarize([SampleUsage(0.003, 0.003, 0.0, 0)] * 32, threads=1, others_s=0.19, others_wall_s=0.2,
                      others_limit_cores=0.5, others_margin_s=0.02)
    assert hog.contended and hog.others_limit == pytest.approx(0.6)  # the margin raises the limit: 0.95 >= 0.6


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux /proc/stat only")
def test_busy_time_counts_only_the_cores_this_process_may_use() -> None:
    """On a shared node another container's cores must not count: the per-core lines of the affinity mask are
    summed; all of them together give the machine's figure."""
    every = frozenset(range(os.cpu_count() or 1))
    assert abs(machine_busy_s(every) - machine_busy_s()) < 1.0  # read a moment apart
    one = machine_busy_s(frozenset({0}))
    assert one is not None and one <= machine_busy_s() + 1.0
    assert machine_busy_s(frozenset({10**6})) is None  # no such core: unknown, never 0
    assert allowed_cpus() is None or allowed_cpus() <= every


def test_a_cpu_sampler_reads_other_processes_around_each_batch() -> None:
    readings = iter([10.0, 10.05, 11.05])  # the machine busy 1.05 s over the span of the two batches...
    own = iter([1.0, 1.0, 1.0])  # ...none of it this process
    walls = iter([0.0, 0.05, 1.05])
    meter = OthersMeter(busy=lambda: next(readings), own=lambda: next(own), wall=lambda: next(walls),
                          resolution_s=0.0)
    s = CpuSampler(lambda: None, threads=1, others=lambda: meter)
    s.take(0.0, 1, 0)
    s.take(0.0, 1, 1)
    c = s.contention()
    assert c.others_cores == pytest.approx(1.0) and c.others_limit == others_limit(1)
    assert c.contended is (1.0 >= others_limit(1))
