"""Keep the timing suite out of ordinary test runs: its tests run only under ``--benchmark-only``.

The default ``pytest`` run never collects this folder (``testpaths = ["tests"]``); naming it explicitly without
``--benchmark-only`` reports every benchmark as skipped with the command to use, instead of timing them as tests.
"""

from __future__ import annotations

import pytest

_HOW = "timing suite: run it with `pytest benchmarks --benchmark-only` (pytest-benchmark)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.hasplugin("benchmark") and config.getoption("benchmark_only", default=False):
        return
    reason = _HOW if config.pluginmanager.hasplugin("benchmark") else "pytest-benchmark is not installed; " + _HOW
    for item in items:
        if "benchmarks" in item.nodeid.split("/")[0]:
            item.add_marker(pytest.mark.skip(reason=reason))
