"""Hydra configuration of attnbench sweeps: the schema registered in Hydra's ConfigStore, and YAML presets.

``config.yaml`` is the primary config (schema + Hydra settings that keep every output inside the run
directory); ``preset/*.yaml`` are named sweeps selected with ``preset=NAME`` (default ``quick``). The schema
itself is :class:`harness.config.SweepConfig`; :func:`register` stores it as ``attnbench_schema``.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
SCHEMA_NAME = "attnbench_schema"


def presets() -> list[str]:
    """Names of the bundled presets (``preset=NAME``)."""
    return sorted(p.stem for p in (CONFIG_DIR / "preset").glob("*.yaml"))


def register() -> None:
    """Store the sweep schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from harness.config import SweepConfig

    ConfigStore.instance().store(name=SCHEMA_NAME, node=SweepConfig)


register()
