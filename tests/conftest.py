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


def _children() -> list[int]:
    """This process's child pids: ``/proc/self/task/*/children`` (one small read per thread), else a scan of
    ``/proc`` for processes whose parent is this one."""
    tasks = Path("/proc/self/task")
    files = list(tasks.glob("*/children")) if tasks.is_dir() else []
    if files:
        pids = []
        for f in files:
            try:
                pids += [int(p) for p in f.read_text().split()]
            except (OSError, ValueError):
                continue
        return pids
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[1]) == me:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _background_plotters() -> list[int]:
    """Pids of this process's children drawing a report's plots (``attnbench report --plots-only``)."""
    found = []
    for pid in _children():
        try:
            if b"--plots-only" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
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
