"""The variant registry: register, list (with wildcards) and look up variants by name.

Built-in variants live in the ``variants`` package and are imported explicitly from :data:`BUILTIN_MODULES` the
first time the registry is read; this is the only place ``harness`` names them. Third-party variants arrive
through the entry-point group ``attnbench.variants`` (each entry point names a module or an object to import;
importing it registers its variants). A plugin that fails to import or reuses a taken name is reported with a
warning and skipped: everything else keeps working.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import importlib.util
import re
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from harness.variant import Variant

ENTRY_POINT_GROUP = "attnbench.variants"
BUILTIN_MODULES: tuple[str, ...] = (
    "variants.full",
    "variants.sdpa",
    "variants.xformers_attn",
    "variants.flex",
)

_variants: dict[str, Variant] = {}
_loaded = False
_loading = False
V = TypeVar("V", bound=type[Variant])


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered; the rest of the registry is unaffected."""


def register_variant(cls: V) -> V:
    """Class decorator: instantiate ``cls`` and add it to the registry under ``cls.name``.

    Raises:
        ValueError: the class has no name, or the name is taken by another variant.
    """
    if not (isinstance(cls, type) and issubclass(cls, Variant)):
        raise ValueError(f"register_variant expects a subclass of harness.Variant (got {cls!r})")
    name = cls.name
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name or ""):
        raise ValueError(f"variant class {cls.__qualname__} has name={name!r} (allowed: letters, digits, _ . -)")
    existing = _variants.get(name)
    if existing is not None:
        if type(existing).__qualname__ == cls.__qualname__ and type(existing).__module__ == cls.__module__:
            _variants[name] = cls()  # the same class re-imported (module reload): replace, don't refuse
            return cls
        raise ValueError(
            f"variant name {name!r} is already registered by {type(existing).__module__}.{type(existing).__qualname__}"
        )
    _variants[name] = cls()
    return cls


def unregister_variant(name: str) -> None:
    """Remove a variant (for tests and interactive use)."""
    _variants.pop(name, None)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_variants(filter: str | Iterable[str] = "*", exact: bool | None = None) -> list[str]:
    """Names of registered variants matching ``filter`` (a wildcard or several), naturally sorted.

    Args:
        filter: a pattern such as ``"sdpa_*"``, or a list of names/patterns.
        exact: keep only exact (True) or approximate (False) variants; None keeps both.
    """
    load_builtins()
    pats = [filter] if isinstance(filter, str) else list(filter)
    names = [n for n in _variants if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    if exact is not None:
        names = [n for n in names if _variants[n].exact == exact]
    return sorted(names, key=_natural_key)


def get_variant(name: str) -> Variant:
    """The registered variant called ``name``.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    load_builtins()
    try:
        return _variants[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r} (known: {', '.join(list_variants())})") from None


def select_variants(selection: str | Iterable[str]) -> list[str]:
    """Resolve a user's selection (names or wildcards) to names; each entry must match something.

    Raises:
        ValueError: an entry matches no registered variant (the message lists the known ones).
    """
    items = [selection] if isinstance(selection, str) else list(selection)
    if not items:
        raise ValueError(f"variants=[] selects nothing (known: {', '.join(list_variants())})")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"variants entry {item!r} must be a name or wildcard string")
        found = list_variants(item)
        if not found:
            raise ValueError(f"variants entry {item!r} matches no variant (known: {', '.join(list_variants())})")
        out.extend(n for n in found if n not in out)
    return out


def load_builtins() -> None:
    """Import the built-in variants and the entry-point plugins once."""
    global _loaded, _loading
    if _loaded or _loading:
        return
    _loading = True
    try:
        for mod in BUILTIN_MODULES:
            importlib.import_module(mod)
        _load_entry_points()
        _loaded = True
    finally:
        _loading = False


def _load_entry_points() -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break the registry; it is reported, not hidden
            warnings.warn(
                f"attnbench plugin {ep.name!r} ({ep.value}) was not loaded: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=2,
            )


def load_variants_from(path_or_module: str) -> list[str]:
    """Import a local file (``path/to/my_variant.py``) or module path (``pkg.mod``) that registers variants.

    Returns:
        The names it registered.

    Raises:
        ValueError: the file does not exist or the module cannot be imported.
    """
    load_builtins()
    before = set(_variants)
    if path_or_module.endswith(".py") or "/" in path_or_module:
        path = Path(path_or_module).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"variants_from={path_or_module!r}: no such file")
        mod_name = f"attnbench_local_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{abs(hash(str(path)))}"
        if mod_name in sys.modules:
            return []
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[mod_name]
            raise
    else:
        try:
            importlib.import_module(path_or_module)
        except ModuleNotFoundError as exc:
            raise ValueError(f"variants_from={path_or_module!r}: cannot import ({exc})") from None
    return sorted(set(_variants) - before, key=_natural_key)
