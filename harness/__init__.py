"""attnbench: measure attention variants fairly (time, peak memory, error against an exact float64 baseline).

This module is the **plugin API**: what a variant's author imports. Every name in ``__all__`` is stable
(``docs/plugins.md``); a test pins the list. Analysis of results has its own home, :mod:`harness.report`
(``load_results``, ``compare_runs``, ``write_report``); the conformance kit is :mod:`harness.testing`
(``assert_conforms``). Everything else is internal to its subpackage:

- ``harness.core``: the case, pattern, variant interface, registry, exact baseline, error metrics, FLOP counts;
- ``harness.inputs``: seeded q, k, v; ``harness.measure``: timing, memory, contention, ceilings;
- ``harness.store``: columns, records, the reader; ``harness.run``: config, launch, sweep, isolation;
- ``harness.report``: tables, plots, compare; ``harness.cli``: the ``attnbench`` command.

Names are imported on first use (PEP 562), so ``import harness`` and the torch-free commands (``--help``,
``report``, ``compare``) do not load torch. Names this module exported before the API was declared, and the
module paths plugins imported (``harness.pattern``, ``harness.variant``, ``harness.registry``,
``harness.inputs.Case``), still work and warn with a ``DeprecationWarning`` naming the new home.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The plugin API: public name -> the module that defines it.
_API: dict[str, str] = {
    "AttentionFn": "harness.core.variant", "Variant": "harness.core.variant",
    "case_for": "harness.core.variant", "check_param": "harness.core.variant",
    "fold_groups": "harness.core.variant", "unfold_groups": "harness.core.variant",
    "register_variant": "harness.core.registry", "get_variant": "harness.core.registry",
    "list_variants": "harness.core.registry",
    "Pattern": "harness.core.pattern", "PATTERN_KINDS": "harness.core.pattern",
    "Case": "harness.core.case",
}

#: Names exported before the API was declared: old name -> its home now (warns when used).
_MOVED: dict[str, str] = {
    "ErrorStats": "harness.core.metrics", "error_stats": "harness.core.metrics",
    "Inputs": "harness.core.case", "check_qkv": "harness.core.case", "make_inputs": "harness.inputs.make",
    "MeasureConfig": "harness.measure.runner", "Measurement": "harness.measure.runner",
    "measure_variant": "harness.measure.runner", "make_pattern": "harness.core.pattern",
    "Reference": "harness.core.reference", "ReferenceCache": "harness.core.reference",
    "reference_attention": "harness.core.reference", "textbook_attention": "harness.core.reference",
    "load_variants_from": "harness.core.registry", "select_variants": "harness.core.registry",
    "load_results": "harness.report",
}

#: Module paths plugins imported before the subpackages: old module -> its home now (warns when imported).
_MOVED_MODULES: dict[str, str] = {
    "harness.pattern": "harness.core.pattern",
    "harness.variant": "harness.core.variant",
    "harness.registry": "harness.core.registry",
}

__all__ = sorted([*_API, "__version__"])


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None and name in _MOVED:
        module = _MOVED[name]
        warnings.warn(f"harness.{name} is deprecated: import it from {module}", DeprecationWarning, stacklevel=2)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name in _API:
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as its new module, with a ``DeprecationWarning`` naming the new path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> None:
        return None  # a plain module, filled by exec_module

    def exec_module(self, module: Any) -> None:
        new = _MOVED_MODULES[module.__name__]
        warnings.warn(f"{module.__name__} is deprecated: import from {new} (or the names harness exports)",
                      DeprecationWarning, stacklevel=2)
        target = importlib.import_module(new)
        module.__dict__.update({k: v for k, v in vars(target).items() if not k.startswith("__")})


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())  # first: an old file left on the path never shadows the move


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from harness.core.case import Case as Case
    from harness.core.pattern import PATTERN_KINDS as PATTERN_KINDS
    from harness.core.pattern import Pattern as Pattern
    from harness.core.registry import get_variant as get_variant
    from harness.core.registry import list_variants as list_variants
    from harness.core.registry import register_variant as register_variant
    from harness.core.variant import AttentionFn as AttentionFn
    from harness.core.variant import Variant as Variant
    from harness.core.variant import case_for as case_for
    from harness.core.variant import check_param as check_param
    from harness.core.variant import fold_groups as fold_groups
    from harness.core.variant import unfold_groups as unfold_groups
