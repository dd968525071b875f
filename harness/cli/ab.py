"""``attnbench ab A B [KEY=VALUE ...]``: the command of :mod:`harness.run.ab` (two versions of a variant measured
side by side, judged by the paired ratio B/A)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from harness.run.ab import AbResult, run_ab

__all__ = ["ab_main", "format_result"]

_EXIT_OK, _EXIT_SLOWER, _EXIT_BAD, _EXIT_UNSURE = 0, 1, 2, 3


def format_result(r: AbResult) -> str:
    """One case as a line: verdict, variant, both medians, the paired ratio with its interval, the case."""
    def ms(x):
        return f"{x:9.4g}" if math.isfinite(x) else f"{'-':>9}"

    ratio = f"x{r.ratio:.3f} [{r.low:.3f}, {r.high:.3f}]" if math.isfinite(r.ratio) else "-"
    busy = " (contended: both sides alike, paired)" if r.contended else ""
    return f"{r.verdict:<7} {r.variant:<16} A {ms(r.time_a_ms)} ms  B {ms(r.time_b_ms)} ms  {ratio:<26} {r.case}{busy}"


def ab_main(argv: list[str] | None = None) -> int:
    """``attnbench ab A B [KEY=VALUE ...] [--variant NAME] [--fail median:PCT%] [--unsure fail|pass] [--out CSV]``."""
    parser = argparse.ArgumentParser(
        prog="attnbench ab", description="Measure two versions of a variant side by side, round by round, and judge "
        "B against A by the paired ratio. Exit: 0 passed, 1 B slower, 2 bad input, 3 unsure.")
    parser.add_argument("a", metavar="A", help="side A: a variants file, or git:REF:path.py / git:REPO@REF:path.py")
    parser.add_argument("b", metavar="B", help="side B, the same forms")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="sweep keys (seq_len, pattern, preset...)")
    parser.add_argument("--variant", action="append", default=None, help="a variant both sides define (repeatable)")
    parser.add_argument("--fail", default="median:5%", metavar="median:PCT%", help="the change that counts")
    parser.add_argument("--unsure", choices=("fail", "pass"), default="fail", help="exit of an unsure case: 3 or 0")
    parser.add_argument("--out", type=Path, default=None, help="write one CSV row per case and variant")
    try:
        args = parser.parse_intermixed_args(argv)  # KEY=VALUE and options in any order
    except SystemExit as exc:
        return int(exc.code or 0)
    from harness.report.compare import parse_fail_rule

    try:
        rule = parse_fail_rule(args.fail)
        if rule.metric != "median":
            raise ValueError(f"--fail={args.fail!r}: ab judges the time (allowed: median:PCT%)")
        print(f"attnbench ab: A = {args.a}, B = {args.b}; B/A per case, paired round by round", flush=True)
        results = run_ab(args.a, args.b, list(args.overrides), args.variant, rule.threshold,
                         echo=lambda r: print(format_result(r), flush=True))
    except ValueError as exc:
        print(f"attnbench ab: error: {exc}", file=sys.stderr)
        return _EXIT_BAD
    if args.out is not None:
        import pandas as pd

        pd.DataFrame([r.__dict__ for r in results]).to_csv(args.out, index=False)
    counts = {v: sum(r.verdict == v for r in results) for v in ("slower", "faster", "same", "unsure")}
    print(f"{len(results) - counts['unsure']} of {len(results)} cases judged: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (threshold {rule})")
    if counts["slower"]:
        print(f"FAILED: B is slower than A in {counts['slower']} case(s)")
        return _EXIT_SLOWER
    if counts["unsure"]:
        print(f"INCONCLUSIVE: {counts['unsure']} case(s) not settled (exit 3; --unsure=pass accepts it)")
        return _EXIT_OK if args.unsure == "pass" else _EXIT_UNSURE
    print("PASSED: B is not slower than A in any case")
    return _EXIT_OK
