"""The ``attnbench`` command line: ``sweep`` (the default), ``list``, and dispatch to the other commands.

Everything heavy is imported inside the command that needs it, so ``attnbench list`` and ``--help`` answer fast
(no Hydra, pandas or optional backends on that path).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["USAGE", "list_main", "main", "sweep_args_parser", "sweep_main"]

USAGE = """\
usage: attnbench [COMMAND] [ARGS ...]

Benchmark attention variants: time, peak memory and error against an exact float64 baseline.

commands:
  sweep [-m] [KEY=VALUE ...]  run a sweep; the default command. `attnbench` alone runs the quick preset on
                              the best device present and prints the run directory.
  list [WILDCARD]             registered variants and, on this machine, which patterns, dtypes, devices
                              and modes each supports (and why not)
  report [RUN ...]            summary tables and plots of runs, folders of runs or CSVs (default:
                              the latest run under results/)
  compare BASE NEW            compare two runs: each case slower, faster, same or unsure (exit 0/1/2/3)
  ab A B [KEY=VALUE ...]      two versions of a variant measured side by side, round by round
  history [RUN ...]           every case over many runs in time order: where a time or memory stepped,
                              whether the machine did too; exit 1 on a step up (--fail step:5%)
  check [...]                 run the conformance checks on variants
  show [KEY=VALUE ...]        pictures of one case: its mask, its float64 attention weights per head, and
                              where a variant's error lies (--variant NAME), as PNG

`attnbench COMMAND --help` shows the options of each command.
"""

#: command -> (module, function of argv returning the exit status)
_DISPATCH = {"report": ("harness.report.build", "report_main"), "compare": ("harness.report.compare", "compare_main"),
             "check": ("harness.cli.check", "check_main"), "ab": ("harness.cli.ab", "ab_main"),
             "history": ("harness.report.history_command", "history_main"), "show": ("harness.cli.show", "show_main")}
_HYDRA_INFO = ("cfg", "package", "info", "hydra_help", "shell_completion", "resolve", "hydra_version")
_HYDRA_REFUSED = ("config_path", "config_name", "config_dir", "experimental_rerun")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attnbench`` console script.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 done, 2 bad input, 130 interrupted, 1 anything else.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return sweep_main([])
    cmd, rest = args[0], args[1:]
    if cmd in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if cmd == "--version":
        from harness import __version__

        print(f"attnbench {__version__}")
        return 0
    if cmd == "sweep":
        return sweep_main(rest)
    if cmd == "list":
        return list_main(rest)
    if cmd in _DISPATCH:
        return _dispatch(cmd, rest)
    if "=" in cmd or cmd in ("-m", "--multirun"):  # `attnbench seq_len=512` is a sweep too
        return sweep_main(args)
    print(f"attnbench: unknown command {cmd!r} (allowed: sweep, list, {', '.join(_DISPATCH)}; see --help)",
          file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------------- dispatch
def _dispatch(cmd: str, rest: list[str]) -> int:
    module, func = _DISPATCH[cmd]
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


def _maybe_report(run_dir: Path) -> None:
    """Write the run's report: the tables and report.md at once, the plots by a background process (one line says
    so); a failing report never fails the sweep."""
    try:
        from harness.report.build import report_with_background_plots

        print(f"attnbench: writing the report into {run_dir / 'report'}...", file=sys.stderr, flush=True)
        path, pid = report_with_background_plots([run_dir], run_dir / "report")
        print(f"report: {path}" + (" (plots: drawn in the background, a few seconds)" if pid is not None else ""))
    except Exception as exc:
        print(f"attnbench: the report could not be written ({type(exc).__name__}: {exc}); the results are in "
              f"{run_dir}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- sweep
def sweep_args_parser() -> argparse.ArgumentParser:
    """The flags ``attnbench sweep`` accepts: Hydra's command-line flags, with the overrides as positionals.

    Hydra's informational flags are answered by Hydra itself (:func:`harness.run.launch.run_hydra_app`); the
    ``--config-*`` flags are refused (the config is attnbench's own; add presets with ``hydra.searchpath``).
    """
    p = argparse.ArgumentParser(prog="attnbench sweep", add_help=False)
    p.add_argument("overrides", nargs="*")
    p.add_argument("-m", "--multirun", action="store_true")
    p.add_argument("-c", "--cfg", choices=["job", "hydra", "all"])
    p.add_argument("-p", "--package")
    p.add_argument("-i", "--info", nargs="?", const="all")
    p.add_argument("--hydra-help", action="store_true")
    p.add_argument("--hydra-version", "--version", action="store_true", dest="hydra_version")
    p.add_argument("-sc", "--shell-completion", action="store_true")
    p.add_argument("--resolve", action="store_true")
    p.add_argument("-cp", "--config-path")
    p.add_argument("-cn", "--config-name")
    p.add_argument("-cd", "--config-dir")
    p.add_argument("--experimental-rerun")
    return p


def sweep_main(argv: Sequence[str]) -> int:
    """``attnbench sweep``: check the whole grid, run it through Hydra, assemble the CSV, write the report.

    Returns:
        The exit status (0 done, 2 bad input, 130 interrupted).
    """
    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        from harness.cli.helptext import sweep_help

        print(sweep_help(), end="")
        return 0
    parser = sweep_args_parser()
    try:
        args = parser.parse_intermixed_args(argv)  # flags may come after overrides: `seq_len=512 -m heads=4,8`
    except SystemExit as exc:
        return int(exc.code or 0)
    quiet = any(o.replace(" ", "") in ("progress=off", "+progress=off") for o in args.overrides)
    if not quiet and not any(getattr(args, name, None) for name in _HYDRA_INFO):
        print("attnbench: checking the sweep (loading torch, Hydra and the variants)...", file=sys.stderr, flush=True)
    from harness.run import launch

    if any(getattr(args, name, None) for name in _HYDRA_INFO):
        return launch.run_hydra_app(argv)
    if any(getattr(args, name, None) for name in _HYDRA_REFUSED):
        print("attnbench sweep: --config-path/--config-name/--config-dir are not supported; add your own presets "
              "with hydra.searchpath=[file:///path/to/dir] (a dir holding preset/NAME.yaml)", file=sys.stderr)
        return 2
    from harness.run.config import ConfigError
    from harness.run.progress import Progress, install
    from harness.store.records import RunStore

    try:
        grid = launch.build_grid(args.overrides, multirun=args.multirun)
    except ConfigError as exc:
        print(f"attnbench sweep: {exc}", file=sys.stderr)
        return 2
    run_dir = grid.run_dir
    prog = Progress(grid.n_items, style=grid.plans[0].progress)
    n_jobs = len(grid.plans)
    prog.message(f"attnbench: {grid.n_items} measurements in {n_jobs} job{'s' * (n_jobs > 1)} -> {run_dir}")
    hydra_argv = (["--multirun"] if grid.multirun else []) + grid.overrides
    install(prog)
    try:
        code = launch.run_grid(grid)
    except KeyboardInterrupt:
        code = 130
    finally:
        install(None)
        prog.close()
    if run_dir.is_dir():
        RunStore(run_dir).write_csv()
    if code == 130:
        again = " ".join(shlex.quote(a) for a in ["attnbench", "sweep", *hydra_argv])
        print(f"attnbench: interrupted; the finished records are kept. Resume with:\n  {again}", file=sys.stderr)
    elif code == 0:
        _maybe_report(run_dir)
    if run_dir.is_dir():
        print(run_dir)
    return code


# ---------------------------------------------------------------------------------------------------- list
def list_main(argv: Sequence[str]) -> int:
    """``attnbench list [WILDCARD] [--verbose]``: one line per variant; ``--verbose``: what each supports here."""
    parser = argparse.ArgumentParser(
        prog="attnbench list",
        description="Registered variants, one line each (name, family, exact, devices, patterns); with --verbose, "
                    "which patterns, dtypes, devices and modes each supports on this machine, and why not.")
    parser.add_argument("wildcard", nargs="?", default="*", help="only variants matching this (e.g. 'sdpa*')")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="the support matrix of each variant on this machine, with the reasons")
    parser.add_argument("--variants-from", action="append", default=[], metavar="PATH",
                        help="also load variants from this .py file or module (repeatable)")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    print("attnbench list: loading the variants (torch)...", file=sys.stderr, flush=True)
    from harness.cli.probe import format_support, format_table, probe_variants
    from harness.core.registry import list_variants, load_variants_from

    try:
        for src in args.variants_from:
            load_variants_from(src)
    except ValueError as exc:
        print(f"attnbench list: {exc}", file=sys.stderr)
        return 2
    names = list_variants(args.wildcard)
    if not names:
        print(f"attnbench list: no variant matches {args.wildcard!r} (known: {', '.join(list_variants())})",
              file=sys.stderr)
        return 2
    print(format_support(probe_variants(names)) if args.verbose else format_table(names), end="")
    return 0
