"""Hydra glue for ``attnbench sweep``: check the whole grid before any work, run it through Hydra, and the job.

What happens on ``attnbench sweep [-m] [overrides]``:

1. The overrides are read with Hydra's own parser. Without ``-m``, a comma list (or ``range(...)``/``choice``)
   on an axis key becomes a list inside one job (``seq_len=512,1024`` -> ``seq_len=[512,1024]``), so the whole
   grid runs in one process with one Hydra start. ``variants=a,b`` always means "both variants in every job".
   A sweep on a non-axis key, or a preset that carries a grid in ``hydra.sweeper.params``, turns on multirun by
   itself (``-m`` implied). With ``-m`` every comma list is a Hydra grid: one job per combination.
2. ``run_name`` is fixed to a timestamp when not given, so every job (in any process) writes into one run dir.
3. Every job's config of the grid is composed and converted (:func:`harness.config.plan_from_config`): any bad
   value stops here, before any work, with a message naming the key, the value and what is allowed. If no
   case of the grid can run on a device of this machine (``device=cuda`` without a GPU), that is an error too.
4. Hydra runs the jobs; each job (:func:`task`) turns its config into a plan and calls
   :func:`harness.sweep.run_sweep`. A job knows it is part of a multirun from ``HydraConfig.get().mode`` and then
   records cases on a missing device as ``unsupported`` rows instead of failing.
"""

from __future__ import annotations

import copy
import datetime as _dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import AXES, ConfigError, SweepPlan, plan_from_config
from harness.sweep import no_device_message

CONFIG_MODULE = "configs"
CONFIG_NAME = "config"
_GROUP_KEYS = ("preset",)
_LIST_KEYS = ("variants", "variants_from")
_NO_SWEEP_KEYS = ("results_dir", "run_name")

#: True while the CLI drives the jobs in this process: it rebuilds results.csv once at the end.
cli_active = False


@dataclass
class Grid:
    """A checked sweep: the overrides handed to Hydra, whether it is a multirun, and every job's plan."""

    overrides: list[str]
    multirun: bool
    plans: list[SweepPlan] = field(default_factory=list)

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

    from harness.config import schema_keys

    bare = key.lstrip("+~")
    known = [k for k, _, _, _ in schema_keys()]
    if bare in known or bare.split("/")[0].split(".")[0] in (*_GROUP_KEYS, "hydra"):
        return
    close = difflib.get_close_matches(bare, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"unknown key {bare!r} in {text!r} ({hint}allowed: {', '.join(known)}, preset)")


def _key_help(text: str) -> str:
    from harness.config import schema_keys

    for key, typ, _, doc in schema_keys():
        if text.startswith(f"{key}=") or f"override {key}=" in text or f"key: {key}" in text:
            return f" ({key}: {typ}; {doc})"
    return ""


def normalize_overrides(overrides: Sequence[str], multirun: bool) -> tuple[list[str], bool]:
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


def default_run_name() -> str:
    """A timestamp run name, e.g. ``2026-11-22_18-32-49``."""
    return _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def _compose(overrides: list[str]) -> Any:
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(CONFIG_NAME, overrides=overrides, return_hydra_config=True)
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
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    import configs
    from harness.env import cuda_available as _cuda

    cuda = _cuda() if cuda_available is None else cuda_available
    ovs, needs_multirun = normalize_overrides(overrides, multirun)
    if not _has_key(ovs, "run_name"):
        ovs.append(f"run_name={default_run_name()}")
    parser = _parser()
    parsed = parser.parse_overrides(ovs)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    configs.register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        base = _compose([p for p in plain if p is not None])
        raw = base.hydra.sweeper.get("params")
        params = OmegaConf.to_container(raw) if raw is not None else {}
        multirun = multirun or needs_multirun or bool(params)
        if multirun:
            grid_ovs = [f"{k}={v}" for k, v in params.items()] + ovs
            jobs = BasicSweeper.split_arguments(parser.parse_overrides(grid_ovs), None)[0]
        else:
            jobs = [ovs]
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
    GlobalHydra.instance().clear()
    dirs = {p.run_dir for p in plans}
    if len(dirs) != 1:
        raise ConfigError(f"the grid writes into several run directories ({', '.join(map(str, sorted(dirs)))}); "
                          "results_dir and run_name must be the same for every job")
    cases = [c for p in plans for c in p.cases]
    if not cases:
        raise ConfigError("the sweep has no cases")
    if not cuda and all(c.device_type == "cuda" for c in cases):
        raise ConfigError(no_device_message(cases[0].device))
    return Grid(overrides=ovs, multirun=multirun, plans=plans)


def task(cfg: Any) -> dict:
    """The Hydra job: config -> plan -> :func:`harness.sweep.run_sweep`. Bad input exits with status 2."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from harness.progress import current
    from harness.sweep import run_sweep

    hc = HydraConfig.get()
    in_grid = hc.mode == RunMode.MULTIRUN
    resolved = _to_plain(cfg)
    try:
        plan = plan_from_config(resolved)
        prog = current()
        if prog is not None and in_grid:
            prog.message(f"job {hc.job.num}: {' '.join(hc.overrides.task)}")
        result = run_sweep(plan, in_grid=in_grid, job_dir=Path(hc.runtime.output_dir), resolved_config=resolved,
                           write_csv=not cli_active)
    except ConfigError as exc:
        print(f"attnbench sweep: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return {"run_dir": str(result.run_dir), "measured": result.measured, "skipped": result.skipped,
            "statuses": dict(result.statuses)}


def run_hydra(argv: list[str]) -> int:
    """Run Hydra's app on ``argv`` (flags and overrides, no program name); returns the exit status."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra

    import configs

    configs.register()
    GlobalHydra.instance().clear()
    app = hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)(task)
    saved = sys.argv
    sys.argv = ["attnbench sweep", *argv]
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    return 0
