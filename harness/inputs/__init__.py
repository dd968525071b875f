"""How a case's q, k and v are made: seeded Gaussian, position-local and real-text (MiniLM) inputs.

May import ``harness.core`` and ``harness.base``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

#: Names plugins imported from the old ``harness.inputs`` module, now in ``harness.core.case`` (warn when used).
_MOVED = frozenset({"Case", "Inputs", "check_qkv", "DTYPES", "dtype_name", "parse_dtype"})


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'harness.inputs' has no attribute {name!r}")
    warnings.warn(f"harness.inputs.{name} is deprecated: import it from harness.core.case (Case: from harness)",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module("harness.core.case"), name)
