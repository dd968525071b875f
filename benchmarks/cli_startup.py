"""How fast the command line answers: time to the first byte of output, and to exit, of each command (issue 17).

Each command runs ``--runs`` times as a fresh process (``python -m harness ...``, stdout and stderr through one
pipe); the median of each figure is printed. Targets: first output within 0.5 s for ``--help``, ``list`` and
``sweep --help``. Run it beside another checkout with ``--other PATH`` (its ``harness`` on PYTHONPATH) to compare.

    python -m benchmarks.cli_startup --runs 7
    python -m benchmarks.cli_startup --runs 7 --other /path/to/older/checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS: tuple[tuple[str, ...], ...] = (("--help",), ("list",), ("sweep", "--help"))


def time_command(args: tuple[str, ...], root: Path) -> tuple[float, float, int]:
    """``(seconds to the first output byte, seconds to exit, bytes written)`` of one run."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=root)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    t_first = time.perf_counter() - t0
    rest = proc.stdout.read()
    proc.wait()
    t_end = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {(first + rest).decode()[-500:]}")
    return t_first, t_end, len(first) + len(rest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="runs of each command (the median is printed)")
    p.add_argument("--other", default="", help="another checkout to time alternately, for comparison")
    a = p.parse_args(argv)
    roots = [("this", ROOT)] + ([("other", Path(a.other).resolve())] if a.other else [])
    print(f"{'command':16s} {'checkout':8s} {'first output s':>14s} {'exit s':>8s} {'bytes':>6s}   (median of "
          f"{a.runs}; load {os.getloadavg()[0]:.1f})")
    for args in COMMANDS:
        for _, root in roots:
            time_command(args, root)  # warm the file cache
        samples: dict[str, list[tuple[float, float, int]]] = {label: [] for label, _ in roots}
        for _ in range(a.runs):
            for label, root in roots:  # alternate, so drift hits both alike
                samples[label].append(time_command(args, root))
        for label, _ in roots:
            s = samples[label]
            print(f"{' '.join(args):16s} {label:8s} {statistics.median(x[0] for x in s):14.3f} "
                  f"{statistics.median(x[1] for x in s):8.3f} {s[-1][2]:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
