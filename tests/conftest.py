"""Shared fixtures: devices available here, fast deterministic settings, no background plotting left running."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _background_plotters() -> list[int]:
    """Pids of this process's children drawing a report's plots (``attnbench report --plots-only``)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            cmd = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"--plots-only" in cmd:
            found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def _no_plots_left_drawing():
    """A sweep through the CLI leaves its plots to a background process; wait for it after the test, so that
    the next test's timings do not share the machine with it (they would be marked contended, rightly)."""
    yield
    end = time.monotonic() + 60.0
    while time.monotonic() < end:
        pids = _background_plotters()
        if not pids:
            return
        for pid in pids:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
