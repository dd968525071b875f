"""``attnbench show KEY=VALUE ...``: pictures of one case (its mask, its float64 attention weights per head, and
where a variant's or a sparse pattern's error lies), written as PNG files.

The case is given with the sweep's own keys (``pattern``, ``window``, ``block``/``local``/``stride``/``n_global``,
``lengths``/``layout``, ``q_len``, ``kv_heads``, ``heads``, ``head_dim``, ``seq_len``, ``inputs``, ``seed``, ``dtype``,
``device``, ...): Hydra reads the values and :func:`harness.run.config.plan_from_config` checks them, so bad input
gets the same message a sweep gives, and exit status 2. ``--jobs FILE`` draws a list of cases in one process (the
report's child process uses it; see :func:`jobs_main`). The pictures themselves are :mod:`harness.show`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.core.case import Case

__all__ = ["DEFAULT_OUT", "ShowError", "case_from_keys", "case_keys", "jobs_main", "show_main"]

#: Where the pictures go by default.
DEFAULT_OUT = "attnbench-show"
#: Keys of the sweep that are not the case's, and that a show refuses (a picture measures nothing).
_NOT_CASE_KEYS = ("variants", "budget", "rel_ci", "warmup", "min_runs", "threads", "cpu_timer", "results_dir",
                  "run_name", "progress", "isolate", "case_timeout_s", "skip_unsupported", "mode", "preset")


def case_keys() -> tuple[str, ...]:
    """The keys ``attnbench show`` takes: the sweep's schema less the keys that are not a case's."""
    from harness.run.config import schema_keys

    return tuple(k for k, _, _, _ in schema_keys() if k not in _NOT_CASE_KEYS)


class ShowError(ValueError):
    """Bad input to ``attnbench show`` (exit status 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attnbench show",
        description="Pictures of one case as PNG: the mask (which query attends which key), the exact float64 "
                    "attention weights per head, and error maps: each --variant's output error by query position "
                    "(and its weight error, for variants that give their weights), and a sparse pattern's cost "
                    "against dense attention. The case takes the sweep's keys, one value each.",
        epilog="case keys: " + ", ".join(case_keys()) + ". Example: attnbench show pattern=window window=64 "
               "seq_len=512 inputs=local --variant full")
    p.add_argument("keys", nargs="*", metavar="KEY=VALUE", help="the case, in the sweep's keys")
    p.add_argument("--variant", action="append", default=[], metavar="NAME",
                   help="draw this variant's error maps (repeatable; wildcards allowed)")
    p.add_argument("--what", default=None, metavar="LIST",
                   help="pictures, comma separated: mask, weights, error (default: mask,weights, and error when a "
                        "variant is named or the pattern is sparse)")
    p.add_argument("--heads", default=None, metavar="LIST", help="query heads drawn, e.g. 0,1 (default: the first 4)")
    p.add_argument("--row", type=int, default=0, metavar="B", help="the batch row drawn (default: 0)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"where the PNG files go (default: {DEFAULT_OUT})")
    p.add_argument("--name", default="", help="the files' common prefix (default: from the case)")
    p.add_argument("--scale", default="log", choices=["log", "row"],
                   help="weights' colour scale: log, or each row divided by its largest weight (default: log)")
    p.add_argument("--max-tiles", type=int, default=512, metavar="T",
                   help="most tiles per side of a matrix; larger ones are drawn in tiles of whole tokens (default 512)")
    p.add_argument("--max-rows", type=int, default=2048, metavar="R",
                   help="most query rows an error map compares; more are sampled evenly (default 2048)")
    p.add_argument("--jobs", default=None, metavar="FILE", help=argparse.SUPPRESS)  # the report's child
    return p


def _int_list(key: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ShowError(f"--{key}={text!r} is not a list of integers (allowed: e.g. 0,1)") from None


def _check_keys(keys: Sequence[str]) -> None:
    """Every argument is ``KEY=VALUE`` with a case key (an unknown key is left to the sweep's own check)."""
    allowed = ", ".join(case_keys())
    for text in keys:
        if "=" not in text:
            raise ShowError(f"{text!r} is not KEY=VALUE (allowed keys: {allowed})")
        key = text.split("=", 1)[0].lstrip("+~")
        if key in _NOT_CASE_KEYS:
            raise ShowError(f"{key} is not a key of a case (allowed: {allowed}; variants with --variant NAME)")


def _one_case(cases: Sequence[Case], keys: Sequence[str]) -> Case:
    if len(cases) != 1:
        listed = "; ".join(c.describe() for c in cases[:3]) + ("; ..." if len(cases) > 3 else "")
        raise ShowError(f"{' '.join(keys)} gives {len(cases)} cases ({listed}); attnbench show draws one (allowed: "
                        "one value per key)")
    return cases[0]


def case_from_keys(keys: Sequence[str]) -> Case:
    """The one case of ``KEY=VALUE`` arguments, composed by Hydra and checked by the sweep's schema.

    Raises:
        ShowError: a key that is not a case's, or several cases.
        harness.run.config.ConfigError: a bad key or value (the sweep's own message).
    """
    import tempfile

    from harness.run.launch import build_grid

    _check_keys(keys)
    # a show writes no run: the run directory the schema checks is put where it can always be written
    where = tempfile.gettempdir().replace("'", "")
    grid = build_grid(["preset=none", f"results_dir='{where}'", "run_name=attnbench-show", *keys])
    return _one_case([c for p in grid.plans for c in p.cases], keys)


def _variants(names: Sequence[str]) -> tuple[str, ...]:
    from harness.core.registry import select_variants

    if not names:
        return ()
    return tuple(select_variants(list(names)))


def _what(text: str | None, case: Case, variants: Sequence[str]) -> tuple[str, ...]:
    if text is not None:
        return tuple(w.strip() for w in text.split(",") if w.strip())
    return ("mask", "weights") + (("error",) if variants or case.pattern.is_sparse else ())


def _report(result, out: Path) -> int:
    for path in result.files:
        print(path)
    for problem in result.problems:
        print(f"attnbench show: {problem}", file=sys.stderr)
    if not result.files:
        print(f"attnbench show: nothing was drawn into {out}", file=sys.stderr)
    return 1 if result.problems or not result.files else 0


def show_main(argv: Sequence[str] | None = None) -> int:
    """``attnbench show KEY=VALUE ... [--variant NAME] [--what LIST] [--heads LIST] [--row B] [--out DIR]``.

    Returns:
        0 every picture drawn; 1 some could not be (a variant that cannot run the case, or failed: the others
        are drawn, the reason printed); 2 bad input.
    """
    try:
        args = _parser().parse_intermixed_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.jobs is not None:
        return jobs_main(Path(args.jobs), Path(args.out))
    print("attnbench show: checking the case (loading torch, Hydra and the variants)...", file=sys.stderr, flush=True)
    from harness.run.config import ConfigError
    from harness.show.make import ShowRequest, show

    try:
        case = case_from_keys(args.keys)
        variants = _variants(args.variant)
        request = ShowRequest(case, what=_what(args.what, case, variants), variants=variants,
                              heads=_int_list("heads", args.heads), row=args.row, out=Path(args.out), name=args.name,
                              max_tiles=args.max_tiles, max_rows=args.max_rows, scale=args.scale)
        result = show(request)
    except (ConfigError, ValueError) as exc:
        print(f"attnbench show: {exc}", file=sys.stderr)
        return 2
    return _report(result, Path(args.out))


# ---------------------------------------------------------------------------------------------------- jobs
def _job_case(keys: dict[str, Any], out: Path) -> tuple[Case, str]:
    """A job's case from typed sweep keys (no Hydra), on the CPU when its CUDA device is absent here."""
    from harness.measure.env import cuda_available
    from harness.run.config import plan_from_config

    keys = dict(keys)
    note = ""
    if str(keys.get("device", "cpu")).startswith("cuda") and not cuda_available():
        note = f"computed on cpu (measured on {keys['device']}, absent here)"
        keys["device"] = "cpu"
    bad = sorted(set(keys) - set(case_keys()))
    if bad:
        raise ShowError(f"{', '.join(bad)} is not a key of a case (allowed: {', '.join(case_keys())})")
    plan = plan_from_config({**keys, "results_dir": str(out), "run_name": "show"}, load_variants=False)
    return _one_case(plan.cases, [f"{k}={v}" for k, v in keys.items()]), note


def jobs_main(jobs_file: Path, out: Path) -> int:
    """Draw every job of ``jobs_file`` into ``out``, in this process: the report's pictures.

    ``jobs_file`` holds a JSON list; each job is ``{"keys": {KEY: VALUE}, "what": [...], "variants": [...],
    "name": PREFIX, "heads": [...] or null, "max_tiles": T, "max_rows": R}`` (only ``keys`` is required). A job
    that fails is reported on stderr and the others go on.

    Returns:
        0 every job drawn, 1 some failed, 2 an unreadable jobs file.
    """
    from harness.show.make import ShowRequest, show

    try:
        jobs = json.loads(jobs_file.read_text(encoding="utf-8"))
        if not isinstance(jobs, list):
            raise ValueError("not a JSON list")
    except (OSError, ValueError) as exc:
        print(f"attnbench show: --jobs={str(jobs_file)!r} cannot be read ({exc}; allowed: a JSON list of jobs)",
              file=sys.stderr)
        return 2
    failed = 0
    for n, job in enumerate(jobs):
        try:
            case, note = _job_case(job["keys"], out)
            request = ShowRequest(case, what=tuple(job.get("what", ("mask",))), variants=tuple(job.get("variants", ())),
                                  heads=None if job.get("heads") is None else tuple(job["heads"]), out=out,
                                  name=job.get("name", ""), max_tiles=job.get("max_tiles", 512),
                                  max_rows=job.get("max_rows", 2048), note=note)
            result = show(request)
        except Exception as exc:  # one job's failure never loses the others
            print(f"attnbench show: job {n} ({job.get('name', '')}) failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            failed += 1
            continue
        failed += _report(result, out)
    return 1 if failed else 0
