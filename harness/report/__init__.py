"""Reading results for people: summary tables, scaling fits, report.md, plots and run-to-run comparison.

The public home of analysis: :func:`load_results` (runs into one pandas DataFrame), :func:`compare_runs` (two runs
case by case) and :func:`write_report` (tables, plots and report.md of runs), imported on first use.

May import ``harness.store``, ``harness.base`` and ``harness.core.names``; never torch (reports run where torch is
not installed or not wanted).
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_API = {"load_results": "harness.store.reader", "compare_runs": "harness.report.compare",
        "write_report": "harness.report.build"}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'harness.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)
