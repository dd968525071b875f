"""Hydra configuration of attnbench sweeps: the schema registered in Hydra's ConfigStore, and YAML presets.

``config.yaml`` is the primary config (schema + Hydra settings that keep every output inside the run
directory); ``preset/*.yaml`` are named sweeps selected with ``preset=NAME`` (default ``quick``). The schema
itself is :class:`harness.run.config.SweepConfig`; :func:`register` stores it as ``attnbench_schema`` (called by the
code that composes, not at import: ``attnbench sweep --help`` reads the presets without Hydra or torch).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_DIR", "SCHEMA_NAME", "default_preset", "preset_description", "preset_values", "presets", "register"]

CONFIG_DIR = Path(__file__).resolve().parent
SCHEMA_NAME = "attnbench_schema"


def presets() -> list[str]:
    """Names of the bundled presets (``preset=NAME``)."""
    return sorted(p.stem for p in (CONFIG_DIR / "preset").glob("*.yaml"))


def default_preset() -> str:
    """The preset a plain ``attnbench sweep`` applies (the ``preset:`` entry of ``config.yaml``'s defaults)."""
    import yaml

    doc = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text(encoding="utf-8"))
    for entry in doc.get("defaults", []):
        if isinstance(entry, dict) and "preset" in entry:
            return str(entry["preset"])
    return "none"


def preset_description(name: str) -> str:
    """The first sentence of a preset's leading comment (after ``# @package _global_``)."""
    words: list[str] = []
    for line in (CONFIG_DIR / "preset" / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            words.append(line.lstrip("#").strip())
    text = " ".join(w for w in words if w)
    end = text.find(". ")
    return text[: end + 1] if end >= 0 else text


def preset_values(name: str) -> tuple[dict, dict]:
    """What a preset sets: ``(keys, grid)``, the grid being its ``hydra.sweeper.params`` (one job per value).

    Read as plain YAML (no Hydra, no torch), for ``attnbench sweep --help``.
    """
    import yaml

    doc = yaml.safe_load((CONFIG_DIR / "preset" / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    grid = ((doc.pop("hydra", None) or {}).get("sweeper") or {}).get("params") or {}
    return doc, dict(grid)


def register() -> None:
    """Store the sweep schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    from harness.run.config import SweepConfig

    ConfigStore.instance().store(name=SCHEMA_NAME, node=SweepConfig)

