"""``attnbench check NAME``: run the conformance kit on variants from the command line and print a table.

Each row is one case (device, dtype, shape, pattern, mode) with its status (``pass``, ``fail``, ``error``,
``unsupported``), the output's and the gradients' relative L2 error against the float64 baseline next to the
variant's tolerances, and a note (what is wrong, or why the case is not supported). The exit status is 0 when
every case passed or was properly declined (and at least one passed), 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import TextIO

import torch

from harness.core.case import DEVICES, DTYPES
from harness.core.pattern import Pattern
from harness.core.registry import load_variants_from, select_variants
from harness.testing import CONFORMANCE_DTYPES, CheckResult, run_conformance, summarize

__all__ = ["check_main", "format_table"]

_NOTE_WIDTH = 90
_HEADERS = ("variant", "device", "dtype", "BxHxNxD", "pattern", "mode", "status", "out_rel_l2", "tol",
            "grad_rel_l2", "grad_tol", "note")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attnbench check",
        description="Run the conformance suite (the checks every built-in passes) on one or more variants.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="variant names or wildcards, e.g. 'my_*'")
    p.add_argument("--device", action="append", metavar="DEV",
                   help=f"device to check on; repeat or comma-separate (allowed: {', '.join(DEVICES)}; "
                        "default: every available one)")
    p.add_argument("--dtype", action="append", metavar="DTYPE",
                   help=f"dtype to check; repeat or comma-separate (allowed: {', '.join(DTYPES)}; "
                        f"default: {', '.join(CONFORMANCE_DTYPES)})")
    p.add_argument("--from", dest="sources", action="append", metavar="PATH_OR_MODULE", default=[],
                   help="load variants from a local .py file or module first (repeatable)")
    p.add_argument("--failures-only", action="store_true", help="list only the cases that did not pass")
    return p


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [x.strip() for v in values for x in v.split(",") if x.strip()]


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.3g}"


def _pattern_label(p: Pattern) -> str:
    if p.kind.startswith("block_sparse"):
        layout = "custom" if p.layout is not None else f"l{p.local} s{p.stride} g{p.n_global}"
        return f"{p.kind}(b{p.block} {layout})"
    return p.label


def _row(r: CheckResult) -> list[str]:
    c = r.case
    if r.status == "unsupported":
        note = "; ".join(r.reasons)
    else:
        note = r.message
    if len(note) > _NOTE_WIDTH:
        note = note[: _NOTE_WIDTH - 3] + "..."
    kv = f"kv{c.kv_heads}" if c.is_grouped else ""
    ql = f"q{c.q_len}" if not c.is_square else ""
    shape = f"{c.batch}x{c.heads}{kv}x{c.seq_len}{ql}x{c.head_dim}"  # e.g. 2x4kv2x97q1x32
    if c.layout:  # a variable-length batch: its layout, e.g. 4x2x130x32/padded
        shape += f"/{c.layout}"
    return [r.variant, c.device, c.dtype, shape, _pattern_label(c.pattern), c.mode,
            r.status, _fmt(r.out_rel_l2), _fmt(r.tolerance) if not math.isnan(r.out_rel_l2) else "",
            _fmt(r.grad_rel_l2), _fmt(r.grad_tolerance) if not math.isnan(r.grad_rel_l2) else "", note]


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str] = _HEADERS) -> str:
    """Left-aligned plain-text table with a header rule.

    Args:
        rows: cells as strings.
        headers: column names.

    Returns:
        The table, one line per row, no trailing newline.
    """
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def check_main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``attnbench check NAME [NAME ...] [--device D] [--dtype T] [--from FILE]``.

    Args:
        argv: the arguments after ``check`` (default: ``sys.argv[1:]``).
        out: where to print (default: stdout).

    Returns:
        0 when every variant conforms, 1 when a case failed (or a variant supports nothing here), 2 for a usage
        error (unknown variant, bad device or dtype, a file that cannot be loaded).
    """
    out = out or sys.stdout
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse exits on --help and on usage errors; report its status instead
        return int(exc.code or 0)
    devices, dtypes = _split(args.device), _split(args.dtype)
    try:
        for src in args.sources:
            load_variants_from(src)
        names = select_variants(args.names)
        for d in devices or []:
            if d.split(":")[0] not in DEVICES:
                raise ValueError(f"--device {d!r} is not a known device (allowed: {', '.join(DEVICES)})")
            if d.startswith("cuda") and not torch.cuda.is_available():
                raise ValueError(f"--device {d!r}: no CUDA device is available here")
        for t in dtypes or []:
            if t not in DTYPES:
                raise ValueError(f"--dtype {t!r} is not a known dtype (allowed: {', '.join(DTYPES)})")
    except ValueError as exc:
        print(f"attnbench check: error: {exc}", file=sys.stderr)
        return 2

    status = 0
    for name in names:
        results = run_conformance(name, devices, dtypes or CONFORMANCE_DTYPES)
        shown = [r for r in results if r.status != "pass"] if args.failures_only else results
        if shown:
            print(format_table([_row(r) for r in shown]), file=out)
        counts = summarize(results)
        failed = [r for r in results if not r.ok]
        verdict = "OK"
        if failed:
            verdict, status = "FAILED", 1
            print("\nwhat failed, and by how much:", file=out)
            for r in failed:
                print(f"  {r.describe()}", file=out)
        elif counts["pass"] == 0:
            verdict, status = "NOTHING CHECKED (supports none of these cases here)", 1
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        print(f"\n{name}: {len(results)} cases: {summary} -> {verdict}\n", file=out)
    return status


if __name__ == "__main__":
    raise SystemExit(check_main())
