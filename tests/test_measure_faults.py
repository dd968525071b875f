"""Nothing silently wrong inside a measurement (issue 14.1, 14.2; 20.3): a fault-injection matrix of variants that
change their inputs in place, break the output contract or leave memory behind, measured beside innocent ones in
one sweep, in process and isolated. Every row is asserted: its status, its message, and that the variants measured
after an offender got the inputs the case claims. Also the memory probe's exactness without a full collection.
"""

from __future__ import annotations

import gc
import math
import sys
from pathlib import Path

import pytest
import torch

from harness.core.registry import unregister_variant
from harness.measure.memory import measure_peak
from harness.run.config import plan_from_config
from harness.run.sweep import expected_ids, run_sweep
from tests.sweep_helpers import read_records

FAULTY = Path(__file__).with_name("faulty_variants.py").resolve()
TINY = {"seq_len": 64, "heads": 2, "head_dim": 16, "budget": 0.02, "warmup": 1, "min_runs": 3, "progress": "off",
        "threads": 1}
CONTRACT = "output contract: expected a tensor of shape (1, 2, 64, 16), dtype float32, on cpu; got "
#: variant -> (status, text its reason must contain), per mode; innocent variants must read ok with a tiny error.
EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    "t_zero_v": {"fwd": ("error", "modified its inputs in place: v changed during its first call"),
                 "fwd_bwd": ("error", "v (its own leaf copy) changed during its first call")},
    # fwd_bwd: autograd sees the change first (q is saved for the backward) and says so itself
    "t_scale_q_later": {"fwd": ("error", "q changed while it was timed"),
                        "fwd_bwd": ("error", "modified by an inplace operation")},
    "t_float64_out": {m: ("error", CONTRACT + "dtype float64") for m in ("fwd", "fwd_bwd")},
    "t_int64_out": {m: ("error", CONTRACT + "dtype int64") for m in ("fwd", "fwd_bwd")},
    "t_none_out": {m: ("error", CONTRACT + "NoneType (None)") for m in ("fwd", "fwd_bwd")},
    "t_short_out": {m: ("error", CONTRACT + "shape (1, 2, 64, 15)") for m in ("fwd", "fwd_bwd")},
}
INNOCENT = ("full", "sdpa_math")


def _loaded():
    """The faulty variants' module as the registry loaded it (by path, never imported here)."""
    return next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(FAULTY))


@pytest.fixture
def faulty():
    import harness.core.registry as registry

    yield str(FAULTY)
    module = _loaded()
    for name in module.NAMES:
        unregister_variant(name)
    registry._from_cache.pop(f"file:{FAULTY}", None)
    module.release()


def _plan(tmp_path, run_name, **kw):
    return plan_from_config({**TINY, "results_dir": str(tmp_path / "res"), "run_name": run_name, **kw},
                            cuda_available=False)


def _check_matrix(rows: list[dict], plan) -> None:
    assert sorted(r["record_id"] for r in rows) == sorted(expected_ids(plan))  # one row each, none lost or doubled
    for r in rows:
        v, mode = r["variant"], r["mode"]
        if v in INNOCENT:
            assert r["status"] == "ok", (v, mode, r["reason"])
            assert r["err_rel_l2"] < 1e-5, (v, mode, r["err_rel_l2"])  # the inputs it got were the case's
            if mode == "fwd_bwd":
                assert r["grad_err_rel_l2"] < 1e-4, (v, r["grad_err_rel_l2"])
            continue
        status, text = EXPECTED[v][mode]
        assert r["status"] == status, (v, mode, r["status"], r["reason"])
        assert text in r["reason"], (v, mode, r["reason"])
        assert "NoneType' object has no attribute" not in r["reason"]


def _order(first: list[str]) -> list[str]:
    """Each offender is set up before an innocent variant, and the innocent ones interleave with them."""
    out: list[str] = []
    for i, v in enumerate(first):
        out.append(v)
        out.append(INNOCENT[i % 2])
    return list(dict.fromkeys(out + list(INNOCENT)))


def test_faults_in_process_become_rows_and_spare_the_others(tmp_path, faulty):
    plan = _plan(tmp_path, "in", variants=_order(list(EXPECTED)), variants_from=[faulty], mode=["fwd", "fwd_bwd"])
    result = run_sweep(plan)
    rows = read_records(plan.run_dir)
    _check_matrix(rows, plan)
    assert result.statuses["error"] == 2 * len(EXPECTED) and result.statuses["ok"] == 2 * len(INNOCENT)


@pytest.mark.slow
def test_faults_isolated_become_the_same_rows(tmp_path, faulty):
    plan = _plan(tmp_path, "iso", variants=_order(["t_zero_v", "t_none_out", "t_float64_out"]),
                 variants_from=[faulty], mode="fwd_bwd", isolate=True, case_timeout_s=120.0)
    run_sweep(plan)
    _check_matrix(read_records(plan.run_dir), plan)


def test_memory_left_behind_is_on_the_row_and_an_oom_after_it_says_so(tmp_path, faulty):
    plan = _plan(tmp_path, "leak", variants=["full", "t_leak", "t_oom_after"], variants_from=[faulty], mode="fwd")
    run_sweep(plan)
    rows = {r["variant"]: r for r in read_records(plan.run_dir)}
    LEAK_BYTES = _loaded().LEAK_BYTES
    assert rows["full"]["status"] == "ok" and rows["full"]["mem_left_bytes"] == 0
    leak = rows["t_leak"]
    assert leak["status"] == "ok" and leak["mem_left_bytes"] == LEAK_BYTES  # exact: one tensor kept per call
    # + the setup call, the plain warm-ups (the memory probe is the last warm-up call) and the probes' two calls
    calls = leak["n_runs"] + len(leak["time_samples_dropped_ms"]) + 1 + max(TINY["warmup"] - 1, 0) + 2
    assert leak["mem_left_total_bytes"] == LEAK_BYTES * calls
    assert "leaves 4.0 MiB allocated per call after its output is dropped" in leak["reason"]
    oom = rows["t_oom_after"]
    assert oom["status"] == "oom" and "simulated by t_oom_after" in oom["reason"]
    assert "measured after variants that left ~" in oom["reason"] and "(t_leak ~" in oom["reason"]


# ----------------------------------------------------------------------------------------- memory probes, exact
def test_a_known_256_mib_buffer_reads_exactly_256_mib_without_a_full_collect() -> None:
    """No ``gc.collect()`` runs before the probe any more; garbage collection is off during the call instead.
    Here a reference cycle holding 64 MiB is garbage when the call starts, and the call allocates enough Python
    objects to trigger a collection: were the collector on, it would free those 64 MiB inside the call and the
    running sum would read 64 MiB less than the call's 256 MiB."""
    was = gc.get_threshold()
    gc.set_threshold(100, 10, 10)
    try:
        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other, a.payload = b, a, torch.ones(16 * 2**20)  # 64 MiB in a cycle
        del a, b

        def call():
            buf = torch.ones(256 * 2**20, dtype=torch.uint8)
            junk = [[i] for i in range(5000)]  # would trigger generation-0 collections
            del junk
            return buf

        r = measure_peak(call, "cpu")
    finally:
        gc.set_threshold(*was)
        gc.collect()
    assert r.peak_bytes == 256 * 2**20, f"{r.peak_bytes / 2**20:.3f} MiB"
    assert r.end_bytes == 256 * 2**20 and r.left_bytes == 0


def test_gc_is_restored_and_the_probe_collects_only_when_something_seems_left() -> None:
    collects = []
    gc.callbacks.append(lambda phase, info: collects.append(info["generation"]) if phase == "start" else None)
    try:
        assert gc.isenabled()
        measure_peak(lambda: torch.ones(1024), "cpu")
        assert gc.isenabled() and 2 not in collects  # no full collection for a call that leaves nothing
        kept = []
        r = measure_peak(lambda: kept.append(torch.ones(1024)) or torch.ones(8), "cpu")
        assert r.left_bytes == 4096 and 2 in collects  # something stayed: collected once to be sure
    finally:
        gc.callbacks.pop()


def test_a_variant_that_frees_what_it_made_leaves_nothing() -> None:
    r = measure_peak(lambda: torch.ones(2**20) * 2, "cpu")
    assert r.peak_bytes >= 4 * 2**20 and r.left_bytes == 0 and not math.isnan(r.end_bytes)
