"""Plots drawn by a background process: the tables and report.md are written at once, and a detached
``attnbench report --plots-only --wait`` child draws the figures, so the command (and a sweep's report) returns
before the slow part.

The child's output goes to ``OUT/plots/plots.log``; ``OUT/plots/.pending`` (:data:`PENDING_MARKER`) exists until it
is done, so a reader (or a script waiting for the images) can tell drawn plots from plots still coming.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["PENDING_MARKER", "start_plots_in_background"]

#: Present in ``OUT/plots`` while a background process writes the plots (removed when it is done).
PENDING_MARKER = ".pending"


def start_plots_in_background(runs: list[str], out: Path, svg: bool) -> int | None:
    """Start ``attnbench report RUN... --out OUT --plots-only --wait`` detached; its pid, or None if it could not
    start. Its output goes to ``OUT/plots/plots.log``; ``OUT/plots/.pending`` exists until it is done (the child
    removes it, whether or not the plots were drawn)."""
    import subprocess

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    (plots / PENDING_MARKER).write_text("plots are being written by a background `attnbench report`\n")
    cmd = [sys.executable, "-m", "harness", "report", *runs, "--out", str(out), "--plots-only", "--wait"]
    try:
        with open(plots / "plots.log", "w") as log:
            proc = subprocess.Popen(cmd + (["--svg"] if svg else []), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:
        (plots / PENDING_MARKER).unlink(missing_ok=True)
        return None
    return proc.pid
