"""harness.measure.allocator: glibc's thresholds pinned for timing, with the opt-out, and what env.json says."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from harness.measure import allocator

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or allocator.heap_mapped_bytes() is None,
                           reason="glibc with mallinfo2 only (the thresholds pinned are glibc's)")

# The bytes glibc holds in mmap-ed blocks while a 32 MiB tensor lives (glibc's default maps blocks from 128 KiB on).
_PROBE = """
import json, sys, torch
from harness.measure import allocator
said = allocator.steady_malloc()
before = allocator.heap_mapped_bytes()
t = torch.ones(8 * 2**20)
during = allocator.heap_mapped_bytes()
print(json.dumps({"said": said, "mapped": during - before}))
"""


def _probe(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                              "GLIBC_TUNABLES", allocator.SYSTEM_MALLOC_ENV)}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@glibc
def test_pinned_a_large_tensor_comes_from_the_heap_and_the_default_maps_it():
    pinned = _probe()
    assert pinned["said"].endswith("mmap threshold pinned at 64 MiB and trim threshold at 128 MiB by attnbench")
    assert pinned["mapped"] == 0
    system = _probe(**{allocator.SYSTEM_MALLOC_ENV: "1"})
    assert system["said"].endswith(f"its own settings ({allocator.SYSTEM_MALLOC_ENV}=1)")
    assert system["mapped"] >= 32 * 2**20  # glibc's default: a fresh mmap, page-faulted on every call


@glibc
def test_thresholds_set_in_the_environment_are_left_alone():
    got = _probe(MALLOC_MMAP_THRESHOLD_="131072")
    assert got["said"].endswith("as the environment sets it (MALLOC_MMAP_THRESHOLD_=131072)")
    assert got["mapped"] >= 32 * 2**20


def test_env_json_says_what_the_allocator_was(tmp_path):
    from harness.run.config import plan_from_config
    from harness.run.sweep import run_sweep

    plan = plan_from_config({"results_dir": str(tmp_path), "run_name": "a", "variants": ["full"], "seq_len": 32,
                             "heads": 1, "head_dim": 8, "mode": "fwd", "budget": 0.002, "progress": "off"},
                            cuda_available=False)
    run_sweep(plan)
    doc = json.loads((plan.run_dir / "env.json").read_text())
    assert doc["allocator"] == allocator.steady_malloc() and doc["allocator"]
