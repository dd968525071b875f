"""Largest relative L2 error per variant and dtype over the conformance cases (output and gradients).

Usage: ``PYTHONPATH=$PWD python benchmarks/conformance_errors.py [VARIANT ...]`` (default: every variant).
"""

from __future__ import annotations

import math
import sys

from harness import list_variants
from harness.testing import CONFORMANCE_DTYPES, run_conformance


def main(argv: list[str]) -> int:
    names = argv or list_variants()
    print(f"{'variant':16s} {'dtype':9s} {'cases':>5s} {'max out rel_l2':>15s} {'max grad rel_l2':>16s}  status")
    bad = 0
    for name in names:
        results = run_conformance(name)
        for dtype in CONFORMANCE_DTYPES:
            rs = [r for r in results if r.case.dtype == dtype and r.status != "unsupported"]
            if not rs:
                print(f"{name:16s} {dtype:9s} {0:5d} {'-':>15s} {'-':>16s}  unsupported here")
                continue
            out = max((r.out_rel_l2 for r in rs if not math.isnan(r.out_rel_l2)), default=math.nan)
            grad = max((r.grad_rel_l2 for r in rs if not math.isnan(r.grad_rel_l2)), default=math.nan)
            failed = [r for r in rs if not r.ok]
            bad += len(failed)
            status = "all pass" if not failed else f"{len(failed)} FAILED"
            print(f"{name:16s} {dtype:9s} {len(rs):5d} {out:15.3g} {grad:16.3g}  {status}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
