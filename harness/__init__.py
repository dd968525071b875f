"""attnbench's core: the variant interface, registry, inputs, exact baseline and error measures.

``harness`` knows no particular variant; built-ins live in ``variants`` and third-party ones arrive through the
``attnbench.variants`` entry-point group.

The names below are imported on first use (PEP 562), so ``import harness`` (and every ``python -m harness``
command: ``--help``, ``report``, ``compare``) does not pay for torch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ErrorStats": "harness.errors", "error_stats": "harness.errors",
    "Case": "harness.inputs", "Inputs": "harness.inputs", "check_qkv": "harness.inputs",
    "make_inputs": "harness.inputs",
    "MeasureConfig": "harness.measure", "Measurement": "harness.measure", "measure_variant": "harness.measure",
    "PATTERN_KINDS": "harness.pattern", "Pattern": "harness.pattern", "make_pattern": "harness.pattern",
    "Reference": "harness.reference", "ReferenceCache": "harness.reference",
    "reference_attention": "harness.reference", "textbook_attention": "harness.reference",
    "get_variant": "harness.registry", "list_variants": "harness.registry", "load_variants_from": "harness.registry",
    "register_variant": "harness.registry", "select_variants": "harness.registry",
    "load_results": "harness.results_io",
    "Variant": "harness.variant",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from harness.errors import ErrorStats, error_stats  # noqa: F401
    from harness.inputs import Case, Inputs, check_qkv, make_inputs  # noqa: F401
    from harness.measure import MeasureConfig, Measurement, measure_variant  # noqa: F401
    from harness.pattern import PATTERN_KINDS, Pattern, make_pattern  # noqa: F401
    from harness.reference import Reference, ReferenceCache, reference_attention, textbook_attention  # noqa: F401
    from harness.registry import (  # noqa: F401
        get_variant,
        list_variants,
        load_variants_from,
        register_variant,
        select_variants,
    )
    from harness.results_io import load_results  # noqa: F401
    from harness.variant import Variant  # noqa: F401
