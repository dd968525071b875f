"""The variant registry: register, list (with wildcards) and look up variants by name.

Built-in variants live in the ``variants`` package and are imported explicitly from :data:`BUILTIN_MODULES` the
first time the registry is read; this is the only place ``harness`` names them. Third-party variants arrive
through the entry-point group ``attnbench.variants``: each entry point names a module (importing it registers its
variants with :func:`register_variant`) or a :class:`~harness.core.variant.Variant` subclass (registered if it is not
already). Local files or modules that are not packaged are loaded with :func:`load_variants_from`.

A plugin that fails to import is reported with a :class:`PluginWarning` naming the plugin, its distribution and
the cause, and whatever it had registered is removed; a plugin variant whose name is already taken is skipped with
a warning naming both (the variant registered first keeps the name), and the plugin's other variants load.
Everything else keeps working. :func:`plugins` lists what was loaded and what was not; :func:`variant_origin`
says where a variant came from.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from harness.core.variant import Variant

__all__ = ["BUILTIN_MODULES", "ENTRY_POINT_GROUP", "PluginRecord", "PluginWarning", "get_variant", "list_variants",
           "load_builtins", "load_variants_from", "plugins", "register_variant", "select_variants",
           "unregister_variant", "variant_origin"]

ENTRY_POINT_GROUP = "attnbench.variants"
BUILTIN_MODULES: tuple[str, ...] = (
    "variants.full",
    "variants.causal",
    "variants.local_window",
    "variants.block_sparse",
    "variants.chunked",
    "variants.split_kv",
    "variants.linear",
    "variants.performer",
    "variants.nystrom",
    "variants.sdpa",
    "variants.sdpa_nested",
    "variants.xformers_attn",
    "variants.flex",
)

_variants: dict[str, Variant] = {}
_origins: dict[str, str] = {}
_plugins: list[PluginRecord] = []
_from_cache: dict[str, list[str]] = {}
_loaded = False
_loading = False
_context: _LoadContext | None = None
V = TypeVar("V", bound=type[Variant])


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered; the rest of the registry is unaffected."""


@dataclass
class PluginRecord:
    """One entry point of the ``attnbench.variants`` group and what loading it did.

    Args:
        name: the entry point's name.
        value: what it points at (``module`` or ``module:Object``).
        dist: ``"<distribution> <version>"`` that declared it, or ``""`` when unknown.
        variants: names it registered.
        skipped: names it tried to register that were already taken.
        error: why it was not loaded (``""`` when it was).
    """

    name: str
    value: str
    dist: str = ""
    variants: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def label(self) -> str:
        """How warnings name the plugin: ``'name' (value, from dist x 1.0)``."""
        src = f", from {self.dist}" if self.dist else ""
        return f"{self.name!r} ({self.value}{src})"


@dataclass
class _LoadContext:
    """What is being loaded right now, so registrations know their origin and duplicates their culprit."""

    origin: str
    record: PluginRecord | None = None
    suffix: str = ""


@contextmanager
def _loading_from(origin: str, record: PluginRecord | None = None, suffix: str = "") -> Iterator[_LoadContext]:
    global _context
    outer, _context = _context, _LoadContext(origin, record, suffix)
    try:
        yield _context
    finally:
        _context = outer


def register_variant(cls: V) -> V:
    """Class decorator: instantiate ``cls`` and add it to the registry under ``cls.name``.

    Args:
        cls: a subclass of :class:`harness.Variant` with a unique ``name``.

    Returns:
        ``cls`` unchanged.

    Raises:
        ValueError: the class has no valid name, or the name is taken by another variant. (While an entry-point
            plugin is being loaded, a taken name is instead skipped with a :class:`PluginWarning`.)
    """
    if not (isinstance(cls, type) and issubclass(cls, Variant)):
        raise ValueError(f"register_variant expects a subclass of harness.Variant (got {cls!r})")
    if _context is not None and _context.suffix and isinstance(cls.name, str):
        _register(type(cls.__name__, (cls,), {"name": cls.name + _context.suffix, "__module__": cls.__module__,
                                              "__qualname__": cls.__qualname__ + _context.suffix}))
        return cls  # the module keeps its class; the registry holds it under the suffixed name
    return _register(cls)


def _register(cls: V) -> V:
    name = cls.name
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name or ""):
        raise ValueError(f"variant class {cls.__qualname__} has name={name!r} (allowed: letters, digits, _ . -)")
    existing = _variants.get(name)
    if existing is not None and not _same_class(type(existing), cls):
        taken_by = f"{type(existing).__module__}.{type(existing).__qualname__}"
        cause = (f"variant name {name!r} is already registered by {taken_by} ({_origins.get(name, 'unknown origin')})"
                 f"; {cls.__module__}.{cls.__qualname__} was not registered")
        if _context is not None and _context.record is not None:
            _context.record.skipped.append(name)
            warnings.warn(f"attnbench plugin {_context.record.label}: {cause}", PluginWarning, stacklevel=2)
            return cls
        raise ValueError(cause)
    _variants[name] = cls()  # a re-imported class (module reload) replaces its earlier self
    _origins[name] = _context.origin if _context is not None else _default_origin(cls)
    if _context is not None and _context.record is not None and name not in _context.record.variants:
        _context.record.variants.append(name)
    return cls


def _same_class(a: type, b: type) -> bool:
    return a.__qualname__ == b.__qualname__ and a.__module__ == b.__module__


def _default_origin(cls: type) -> str:
    return "built-in" if cls.__module__ in BUILTIN_MODULES else f"module {cls.__module__}"


def unregister_variant(name: str) -> None:
    """Remove a variant (for tests and interactive use); unknown names are ignored."""
    _variants.pop(name, None)
    _origins.pop(name, None)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_variants(filter: str | Iterable[str] = "*", exact: bool | None = None) -> list[str]:
    """Names of registered variants matching ``filter`` (a wildcard or several), naturally sorted.

    Args:
        filter: a pattern such as ``"sdpa_*"``, or a list of names/patterns.
        exact: keep only exact (True) or approximate (False) variants; None keeps both.

    Returns:
        The matching names, built-ins and plugins alike.
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


def variant_origin(name: str) -> str:
    """Where variant ``name`` came from: ``built-in``, ``plugin <dist> <version>``, ``file <path>``, ``module <m>``.

    Raises:
        ValueError: unknown name.
    """
    get_variant(name)
    return _origins.get(name, "unknown")


def select_variants(selection: str | Iterable[str]) -> list[str]:
    """Resolve a user's selection (names or wildcards) to names; each entry must match something.

    An entry starting with ``!`` removes what it matches from the rest of the selection: ``["*", "!flex"]`` is
    every variant but ``flex``.

    Raises:
        ValueError: an entry matches no registered variant (the message lists the known ones), or nothing is left.
    """
    items = [selection] if isinstance(selection, str) else list(selection)
    if not items:
        raise ValueError(f"variants=[] selects nothing (known: {', '.join(list_variants())})")
    out: list[str] = []
    dropped: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"variants entry {item!r} must be a name or wildcard string")
        found = list_variants(item[1:] if item.startswith("!") else item)
        if not found:
            raise ValueError(f"variants entry {item!r} matches no variant (known: {', '.join(list_variants())})")
        if item.startswith("!"):
            dropped.update(found)
        else:
            out.extend(n for n in found if n not in out)
    out = [n for n in out if n not in dropped]
    if not out:
        raise ValueError(f"variants={items} selects nothing (allowed: at least one variant left after the '!' "
                         f"entries; known: {', '.join(list_variants())})")
    return out


def load_builtins() -> None:
    """Import the built-in variants and the entry-point plugins, once per process."""
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


def plugins() -> list[PluginRecord]:
    """The entry points of group ``attnbench.variants`` seen by this process, loaded or not, in load order."""
    load_builtins()
    return list(_plugins)


def _dist_label(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ""
    try:
        return f"{dist.metadata['Name']} {dist.version}"
    except Exception:  # broken metadata must not stop the load; the label is only for messages
        return ""


def _load_entry_points() -> None:
    seen: set[tuple[str, str]] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        record = PluginRecord(name=ep.name, value=ep.value, dist=_dist_label(ep))
        _plugins.append(record)
        with _loading_from(f"plugin {record.dist or ep.value}", record):
            try:
                obj = ep.load()
                if isinstance(obj, type) and issubclass(obj, Variant) and obj.name not in _variants:
                    register_variant(obj)
                _claim_imported(ep.module, record)
            except (Exception, SystemExit) as exc:  # a broken plugin must not break the registry: reported, not hidden
                for name in record.variants:
                    unregister_variant(name)
                record.variants.clear()
                record.error = f"{type(exc).__name__}: {exc}"
                warnings.warn(f"attnbench plugin {record.label} was not loaded: {record.error}", PluginWarning,
                              stacklevel=2)


def _claim_imported(module: str, record: PluginRecord) -> None:
    """Credit a plugin with variants its module registered when it was imported before the registry read plugins."""
    for name, var in _variants.items():
        mod = type(var).__module__
        if (mod == module or mod.startswith(module + ".")) and _origins.get(name, "").startswith("module "):
            _origins[name] = _context.origin if _context is not None else f"plugin {record.dist or record.value}"
            if name not in record.variants:
                record.variants.append(name)


def load_variants_from(path_or_module: str | os.PathLike, suffix: str = "") -> list[str]:
    """Import a local file (``path/to/my_variant.py``) or module path (``pkg.mod``) that registers variants.

    Loading the same file or module again does not import it twice and returns the same names.

    Args:
        path_or_module: a ``.py`` file (anything with a path separator or ending in ``.py`` is taken as a file)
            or a dotted module path importable from ``sys.path``.
        suffix: appended to every name the file registers (``attnbench ab`` loads two versions of one variant
            side by side as ``NAME.A`` and ``NAME.B``); letters, digits, ``_ . -``.

    Returns:
        The names it registered, naturally sorted.

    Raises:
        ValueError: the file does not exist, is not a ``.py`` file, the module cannot be found, or importing it
            raised (the message names what was given and the cause; the half-imported module registers nothing).
    """
    load_builtins()
    if suffix and not re.fullmatch(r"[A-Za-z0-9_.\-]+", suffix):
        raise ValueError(f"suffix={suffix!r} is not allowed in a variant name (allowed: letters, digits, _ . -)")
    given = os.fspath(path_or_module)
    is_path = isinstance(path_or_module, os.PathLike) or given.endswith(".py") or os.sep in given or "/" in given
    if is_path:
        path = Path(given).expanduser().resolve()
        key = f"file:{path}{suffix}"
        if key in _from_cache:
            return list(_from_cache[key])
        if not path.exists():
            raise ValueError(f"variants_from={given!r}: no such file ({path}); give a .py file or a module path")
        if not path.is_file() or path.suffix != ".py":
            raise ValueError(f"variants_from={given!r}: {path} is not a .py file "
                             "(allowed: a .py file or a dotted module path)")
        digest = hashlib.sha1(f"{path}{suffix}".encode()).hexdigest()[:10]
        mod_name = f"attnbench_local_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
        origin = f"file {path}"
    else:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", given):
            raise ValueError(f"variants_from={given!r} is neither a .py file nor a dotted module path")
        key = f"module:{given}{suffix}"
        if suffix:
            raise ValueError(f"variants_from={given!r}: a suffix needs a .py file (a module is imported once per "
                             "process; give its file)")
        if key in _from_cache:
            return list(_from_cache[key])
        mod_name, path, origin = given, None, f"module {given}"

    spec = importlib.util.spec_from_file_location(mod_name, path) if path is not None else None
    if path is not None and (spec is None or spec.loader is None):
        raise ValueError(f"variants_from={given!r}: {path} cannot be imported as a module")
    before = set(_variants)
    with _loading_from(origin, suffix=suffix):
        try:
            if spec is not None:
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(mod_name)
        except (Exception, SystemExit) as exc:  # exit() at import is a broken file too, never a silent exit 0
            for name in set(_variants) - before:
                unregister_variant(name)
            if path is not None:
                sys.modules.pop(mod_name, None)
            if isinstance(exc, SystemExit):
                raise ValueError(f"variants_from={given!r}: importing it called exit({exc.code!r}); a variants file "
                                 "must only define and register variants") from None
            missing = exc.name if isinstance(exc, ModuleNotFoundError) and path is None else None
            if missing and (given + ".").startswith(missing + "."):  # the module itself, not one it imports
                raise ValueError(f"variants_from={given!r}: no module named {missing!r} on sys.path") from None
            raise ValueError(f"variants_from={given!r}: importing it failed: {type(exc).__name__}: {exc}") from exc
    names = sorted(set(_variants) - before, key=_natural_key)
    if not names and path is None:  # already imported before: report what that module registered
        names = sorted((n for n, v in _variants.items() if type(v).__module__ == mod_name), key=_natural_key)
    _from_cache[key] = names
    return list(names)
