"""Hydra glue for ``attnbench sweep``: check the whole grid before any work, run it through Hydra, and the job.

What happens on ``attnbench sweep [-m] [overrides]``:

1. The overrides are read with Hydra's own parser. Without ``-m``, a comma list (or ``range(...)``/``choice``)
   on an axis key becomes a list inside one job (``seq_len=512,1024`` -> ``seq_len=[512,1024]``), so the whole
   grid runs in one process with one Hydra start. ``variants=a,b`` always means "both variants in every job".
   A sweep on a non-axis key, or a preset that carries a grid in ``hydra.sweeper.params``, turns on multirun by
   itself (``-m`` implied). With ``-m`` every comma list is a Hydra grid: one job per combination.
2. ``run_name`` is fixed to a timestamp when not given, so every job (in any process) writes into one run dir.
3. Every job's config of the grid is composed and converted (:func:`harness.run.config.plan_from_config`): any bad
   value stops here, before any work, with a message naming the key, the value and what is allowed. If no
   case of the grid can run on a device of this machine (``device=cuda`` without a GPU), that is an error too.
4. :func:`run_grid` runs the jobs in this process through Hydra's public API: the config loader that
   ``initialize_config_module`` sets up, ``hydra.core.utils.run_job`` for a single run (Hydra's outputs, ``.hydra/``
   and the log, go into the run directory), and for a multirun the configured launcher plugin
   (``Plugins.instance().instantiate_launcher``: basic, joblib, submitit...) with one override list per job.
   Each job (:func:`task`) turns its config into a plan and calls :func:`harness.run.sweep.run_sweep`. A job knows it
   is part of a multirun from ``HydraConfig.get().mode`` and then records cases on a missing device as
   ``unsupported`` rows instead of failing.

Hydra's informational flags (``--cfg job``, ``--info``, ``--hydra-help``, ...) are answered by the plain
``@hydra.main`` app of this module, ``python -m harness.run.launch [flags] [overrides]``, started as a child process
with exactly those arguments (:func:`run_hydra_app`).
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.run.config import AXES, ConfigError, SweepPlan, plan_from_config
from harness.run.sweep import no_device_message

__all__ = ["Grid", "build_grid", "run_grid", "run_hydra_app", "task"]

_CONFIG_MODULE = "configs"
_CONFIG_NAME = "config"
_GROUP_KEYS = ("preset",)
_LIST_KEYS = ("variants", "variants_from")
_NO_SWEEP_KEYS = ("results_dir", "run_name")


@dataclass
class Grid:
    """A checked sweep.

    Args:
        overrides: the overrides as Hydra reads them (``run_name`` fixed; Hydra's own ones included).
        multirun: one Hydra job per combination (else a single job).
        plans: every job's plan, in job order.
        jobs: every job's task overrides (the ones that are not Hydra's), in job order.
    """

    overrides: list[str]
    multirun: bool
    plans: list[SweepPlan] = field(default_factory=list)
    jobs: list[list[str]] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.plans[0].run_dir

    @property
    def n_items(self) -> int:
        return sum(p.n_items for p in self.plans)


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _clean_hydra_error(exc: BaseException) -> str:
    """One or two readable lines from a Hydra/OmegaConf exception (no traceback wall)."""
    parts = [str(exc).strip()]
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in parts[0]:
        parts.append(str(cause).strip())
    text = "\n".join(parts)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("    full_key", "    object_type"))]
    return "\n".join(lines[:6])


def _check_key(key: str, text: str) -> None:
    import difflib

    from harness.run.config import schema_keys

    bare = key.lstrip("+~")
    known = [k for k, _, _, _ in schema_keys()]
    if bare in known or bare.split("/")[0].split(".")[0] in (*_GROUP_KEYS, "hydra"):
        return
    close = difflib.get_close_matches(bare, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"unknown key {bare!r} in {text!r} ({hint}allowed: {', '.join(known)}, preset)")


def _key_help(text: str) -> str:
    from harness.run.config import schema_keys

    for key, typ, _, doc in schema_keys():
        if text.startswith(f"{key}=") or f"override {key}=" in text or f"key: {key}" in text:
            return f" ({key}: {typ}; {doc})"
    return ""


def _normalize_overrides(overrides: Sequence[str], multirun: bool) -> tuple[list[str], bool]:
    """Rewrite list-like overrides and decide whether Hydra's multirun is needed.

    Returns:
        The overrides to use, and True when a sweep on a non-axis key requires multirun.

    Raises:
        ConfigError: an override cannot be parsed, or sweeps ``results_dir`` / ``run_name``.
    """
    from hydra.errors import HydraException

    parser = _parser()
    out: list[str] = []
    needs_multirun = False
    for text in overrides:
        try:
            ov = parser.parse_override(text)
        except HydraException as exc:
            raise ConfigError(f"cannot read the override {text!r}: {_clean_hydra_error(exc)}") from None
        key = ov.get_key_element()
        _check_key(key, text)
        if not ov.is_sweep_override():
            out.append(text)
            continue
        if key in _NO_SWEEP_KEYS:
            raise ConfigError(f"{key} cannot take several values (got {text!r}); run one sweep per {key}")
        if not ov.is_discrete_sweep():
            raise ConfigError(f"{text!r}: interval sweeps are not supported (allowed: a,b,c or range(...))")
        if key in _LIST_KEYS or (key in AXES and not multirun):
            values = list(ov.sweep_string_iterator())
            out.append(f"{key}=[{','.join(values)}]")
            continue
        needs_multirun = True
        out.append(text)
    return out, needs_multirun


def _has_key(overrides: Sequence[str], key: str) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] == key for o in overrides)


def _default_run_name() -> str:
    """A timestamp run name, e.g. ``2026-11-22_18-32-49``."""
    return _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def _compose(overrides: list[str]) -> Any:
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(_CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        msg = _clean_hydra_error(exc)
        raise ConfigError(msg + _key_help(msg)) from None


def _to_plain(cfg: Any) -> dict:
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    if "hydra" in cfg:
        cfg = copy.copy(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(_clean_hydra_error(exc)) from None
    assert isinstance(container, dict)
    return container


def _expand_grid(overrides: Sequence[Any]) -> list[list[str]]:
    """Hydra's basic sweep: every combination of the sweep overrides' values, one override list per job.

    A later override of a key replaces an earlier one (a preset's grid, then the command line).

    Args:
        overrides: parsed overrides (``hydra.core.override_parser.types.Override``), Hydra's own excluded.

    Returns:
        One list of ``key=value`` strings per job, in the order Hydra's basic sweeper gives them.

    Raises:
        ConfigError: an interval sweep, which has no list of values.
    """
    by_key: dict[str, list[str]] = {}
    for ov in overrides:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            if not ov.is_discrete_sweep():
                raise ConfigError(f"{ov.input_line!r}: interval sweeps are not supported (allowed: a,b,c or "
                                  "range(...))")
            by_key.pop(key, None)
            by_key[key] = [f"{key}={v}" for v in ov.sweep_string_iterator()]
        else:
            by_key.pop(key, None)
            by_key[key] = [f"{key}={ov.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*by_key.values())]


def build_grid(overrides: Sequence[str], multirun: bool = False, cuda_available: bool | None = None) -> Grid:
    """Check a sweep before it runs: compose every job's config and convert it to a plan.

    Args:
        overrides: Hydra overrides as typed on the command line.
        multirun: ``-m`` was given.
        cuda_available: override CUDA detection (tests).

    Returns:
        The :class:`Grid`, with the overrides Hydra should run (``run_name`` fixed).

    Raises:
        ConfigError: any bad value in any job, or no case runnable on a device of this machine.
    """
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import configs
    from harness.measure.env import cuda_available as _cuda

    cuda = _cuda() if cuda_available is None else cuda_available
    ovs, needs_multirun = _normalize_overrides(overrides, multirun)
    if not _has_key(ovs, "run_name"):
        ovs.append(f"run_name={_default_run_name()}")
    parser = _parser()
    parsed = parser.parse_overrides(ovs)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    configs.register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=_CONFIG_MODULE, version_base="1.3"):
        base = _compose([p for p in plain if p is not None])
        raw = base.hydra.sweeper.get("params")
        params = OmegaConf.to_container(raw) if raw is not None else {}
        multirun = multirun or needs_multirun or bool(params)
        jobs = _grid_jobs(parser, parsed, [f"{k}={v}" for k, v in params.items()] + ovs) if multirun else [ovs]
        plans = _job_plans(parser, jobs, base, plain, cuda)
    GlobalHydra.instance().clear()
    _check_plans(plans, cuda)
    task_jobs = [[o.input_line for o in parser.parse_overrides(list(j)) if not o.is_hydra_override()] for j in jobs]
    return Grid(overrides=ovs, multirun=multirun, plans=plans, jobs=task_jobs)


def _grid_jobs(parser: Any, parsed: Sequence[Any], grid_ovs: list[str]) -> list[list[str]]:
    """One override list per job of a multirun: the preset's grid then the command line's overrides expanded, each
    job with Hydra's own overrides added (its config is composed with them)."""
    jobs = _expand_grid([o for o in parser.parse_overrides(grid_ovs) if not o.is_hydra_override()])
    hydra_ovs = [o.input_line for o in parsed if o.is_hydra_override()]
    return [job + hydra_ovs for job in jobs]


def _job_plans(parser: Any, jobs: list[list[str]], base: Any, plain: list[str], cuda: bool) -> list[SweepPlan]:
    """Every job's plan. A job's config is composed once per set of overrides that change the composition (a
    preset, a config group, ``+``/``~``/``++`` keys); the other values are set on a copy of it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    composed: dict[tuple[str, ...], Any] = {}
    plans: list[SweepPlan] = []
    for job in jobs:
        job_parsed = parser.parse_overrides(list(job))
        special = tuple(o.input_line for o in job_parsed if o.get_key_element().split("/")[0] in _GROUP_KEYS
                        or "/" in o.get_key_element() or o.is_add() or o.is_delete() or o.is_force_add())
        if special not in composed:
            rest = [o.input_line for o in job_parsed if o.input_line not in special]
            composed[special] = base if set(special) <= set(plain) else _compose(rest + list(special))
        cfg = copy.deepcopy(composed[special])
        for o in job_parsed:
            key = o.get_key_element()
            if o.input_line in special or key.startswith("hydra"):
                continue
            try:
                OmegaConf.update(cfg, key, o.value(), merge=False)
            except OmegaConfBaseException as exc:
                raise ConfigError(f"{o.input_line!r}: {_clean_hydra_error(exc)}") from None
        plans.append(plan_from_config(_to_plain(cfg), cuda_available=cuda))
    return plans


def _check_plans(plans: list[SweepPlan], cuda: bool) -> None:
    """The grid writes into one run directory, has cases, and can run some of them on this machine."""
    dirs = {p.run_dir for p in plans}
    if len(dirs) != 1:
        raise ConfigError(f"the grid writes into several run directories ({', '.join(map(str, sorted(dirs)))}); "
                          "results_dir and run_name must be the same for every job")
    cases = [c for p in plans for c in p.cases]
    if not cases:
        raise ConfigError("the sweep has no cases")
    if not cuda and all(c.device_type == "cuda" for c in cases):
        raise ConfigError(no_device_message(cases[0].device))


def task(cfg: Any, write_csv: bool = True) -> dict:
    """The Hydra job: config -> plan -> :func:`harness.run.sweep.run_sweep`. Bad input exits with status 2.

    Args:
        cfg: the job's config (Hydra's node removed, as Hydra hands it to a task).
        write_csv: rebuild ``results.csv`` at the end of the job (the CLI does it once after all jobs instead).

    Returns:
        What the job did: run directory, counts, statuses.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from harness.run.progress import current
    from harness.run.sweep import run_sweep

    hc = HydraConfig.get()
    in_grid = hc.mode == RunMode.MULTIRUN
    resolved = _to_plain(cfg)
    try:
        plan = plan_from_config(resolved)
        prog = current()
        if prog is not None and in_grid:
            prog.message(f"job {hc.job.num}: {' '.join(hc.overrides.task)}")
        result = run_sweep(plan, in_grid=in_grid, job_dir=Path(hc.runtime.output_dir), resolved_config=resolved,
                           write_csv=write_csv)
    except ConfigError as exc:
        print(f"attnbench sweep: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return {"run_dir": str(result.run_dir), "measured": result.measured, "skipped": result.skipped,
            "statuses": dict(result.statuses)}


class _JobCallbacks:
    """Hydra's callbacks (``hydra.callbacks`` in the config) for the jobs this module runs; none by default.

    What ``run_job`` and the launchers call on ``HydraContext.callbacks``: each configured callback is
    instantiated with ``hydra.utils.instantiate`` and receives the same calls, in order (ends in reverse order).
    """

    def __init__(self, config: Any = None) -> None:
        from hydra.utils import instantiate

        cbs = config.hydra.get("callbacks") if config is not None else None
        self.callbacks = [instantiate(c) for c in cbs.values()] if cbs else []

    def _call(self, name: str, reverse: bool, **kwargs: Any) -> None:
        for cb in reversed(self.callbacks) if reverse else self.callbacks:
            getattr(cb, name)(**kwargs)

    def on_run_start(self, config: Any, **kw: Any) -> None:
        self._call("on_run_start", False, config=config, **kw)

    def on_run_end(self, config: Any, **kw: Any) -> None:
        self._call("on_run_end", True, config=config, **kw)

    def on_multirun_start(self, config: Any, **kw: Any) -> None:
        self._call("on_multirun_start", False, config=config, **kw)

    def on_multirun_end(self, config: Any, **kw: Any) -> None:
        self._call("on_multirun_end", True, config=config, **kw)

    def on_job_start(self, config: Any, **kw: Any) -> None:
        self._call("on_job_start", False, config=config, **kw)

    def on_job_end(self, config: Any, **kw: Any) -> None:
        self._call("on_job_end", True, config=config, **kw)


def run_grid(grid: Grid, job: Callable[[Any], Any] | None = None) -> int:
    """Run a checked grid's jobs in this process with Hydra: one ``run_job``, or the configured launcher.

    Args:
        grid: from :func:`build_grid`.
        job: the task function (default :func:`task` without rebuilding ``results.csv``: the caller does it).

    Returns:
        0 when every job finished; 2 when a job refused its config; 1 when a job raised (its error is printed).

    Raises:
        KeyboardInterrupt: Ctrl-C (the finished records are kept).
    """
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log, setup_globals
    from hydra.types import HydraContext, RunMode

    import configs

    fn = job if job is not None else functools.partial(task, write_csv=False)
    configs.register()
    setup_globals()
    GlobalHydra.instance().clear()
    mode = RunMode.MULTIRUN if grid.multirun else RunMode.RUN
    try:
        with initialize_config_module(config_module=_CONFIG_MODULE, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            cfg = loader.load_configuration(_CONFIG_NAME, [*grid.overrides, f"hydra.mode={mode.name}"], run_mode=mode)
            callbacks = _JobCallbacks(cfg)
            context = HydraContext(config_loader=loader, callbacks=callbacks)
            configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
            if grid.multirun:
                returns = _launch(context, callbacks, fn, cfg, grid.jobs)
            else:
                returns = [_run_one(context, callbacks, fn, cfg)]
    finally:
        GlobalHydra.instance().clear()
    return _exit_code(returns)


def _run_one(context: Any, callbacks: _JobCallbacks, fn: Callable[[Any], Any], cfg: Any) -> Any:
    """A single run, as ``@hydra.main`` runs it: Hydra's outputs and the log go into the run directory."""
    from hydra.core.utils import run_job

    callbacks.on_run_start(config=cfg, config_name=_CONFIG_NAME)
    ret = run_job(hydra_context=context, task_function=fn, config=cfg, job_dir_key="hydra.run.dir",
                  job_subdir_key=None)
    callbacks.on_run_end(config=cfg, config_name=_CONFIG_NAME, job_return=ret)
    return ret


def _launch(context: Any, callbacks: _JobCallbacks, fn: Callable[[Any], Any], cfg: Any,
            jobs: list[list[str]]) -> list[Any]:
    """A multirun: ``multirun.yaml`` saved as Hydra's sweeper does, then one job per override list through the
    configured launcher plugin."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins
    from omegaconf import OmegaConf

    HydraConfig.instance().set_config(cfg)
    callbacks.on_multirun_start(config=cfg, config_name=_CONFIG_NAME)
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
    launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=fn, config=cfg)
    returns = list(launcher.launch(job_overrides=jobs, initial_job_idx=0))
    callbacks.on_multirun_end(config=cfg, config_name=_CONFIG_NAME)
    return returns


def _exit_code(returns: Sequence[Any]) -> int:
    """0 when every job finished; the highest exit status a job asked for; 1 (its error printed) when one raised."""
    code = 0
    for n, ret in enumerate(returns):
        try:
            _ = ret.return_value  # raises what the job raised
        except SystemExit as exc:
            code = max(code, exc.code if isinstance(exc.code, int) else 1)
        except Exception as exc:
            print(f"attnbench sweep: job {n} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = max(code, 1)
    return code


def run_hydra_app(argv: Sequence[str]) -> int:
    """Run this module's ``@hydra.main`` app in a child process: ``python -m harness.run.launch ARGV``.

    Used for Hydra's informational flags (``--cfg``, ``--info``, ``--hydra-help``, ``--shell-completion``,
    ``--resolve``), which only Hydra's own command line answers. The child imports the same ``harness``.

    Args:
        argv: flags and overrides, as typed after ``attnbench sweep``.

    Returns:
        The child's exit status.
    """
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the harness package
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return subprocess.call([sys.executable, "-m", "harness.run.launch", *argv], env=env)


def _hydra_main() -> None:
    """``python -m harness.run.launch [flags] [overrides]``: the sweep as a plain Hydra app (``@hydra.main``)."""
    import hydra

    import configs

    configs.register()
    hydra.main(version_base="1.3", config_path=f"pkg://{_CONFIG_MODULE}", config_name=_CONFIG_NAME)(task)()


if __name__ == "__main__":
    _hydra_main()
