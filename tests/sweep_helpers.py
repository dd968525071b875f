"""Test-only variants for the sweep, store and CLI tests, and helpers to load and unload them.

The variants live in a source string written to a temporary file, so that a sweep started in a subprocess
(``variants_from=[PATH]``) sees the same ones as an in-process sweep.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

VARIANT_SOURCE = '''
"""Misbehaving and slow variants used by attnbench's own sweep tests."""
import os
import time

import torch

from harness import Variant, get_variant, register_variant
from harness.core.pattern import PATTERN_KINDS


class _Base(Variant):
    patterns = frozenset(PATTERN_KINDS)
    dtypes = frozenset({"float32", "float64", "bfloat16", "float16"})

    def forward(self, q, k, v, pattern):
        return get_variant("full").forward(q, k, v, pattern)


@register_variant
class Raises(_Base):
    name = "t_raise"

    def forward(self, q, k, v, pattern):
        raise RuntimeError("boom from t_raise")


@register_variant
class Nans(_Base):
    name = "t_nan"

    def forward(self, q, k, v, pattern):
        return super().forward(q, k, v, pattern) * float("nan")


@register_variant
class TorchOom(_Base):
    name = "t_oom"

    def forward(self, q, k, v, pattern):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated by t_oom)")


@register_variant
class HostOom(_Base):
    name = "t_memerr"

    def forward(self, q, k, v, pattern):
        raise MemoryError("simulated by t_memerr")


@register_variant
class FwdOnly(_Base):
    name = "t_fwdonly"
    supports_backward = False


@register_variant
class Slow(_Base):
    name = "t_slow"

    def forward(self, q, k, v, pattern):
        time.sleep(float(os.environ.get("ATTNBENCH_TEST_SLOW_S", "0.05")))
        return super().forward(q, k, v, pattern)
'''

TEST_VARIANTS = ("t_raise", "t_nan", "t_oom", "t_memerr", "t_fwdonly", "t_slow")


def write_variants(directory: Path) -> Path:
    """Write the test variants' module into ``directory``; returns its path."""
    path = Path(directory) / "attnbench_test_variants.py"
    path.write_text(VARIANT_SOURCE, encoding="utf-8")
    return path


@contextlib.contextmanager
def loaded_test_variants(directory: Path) -> Iterator[Path]:
    """Register the test variants for the duration of the block (they are removed afterwards)."""
    from harness.core.registry import load_variants_from, unregister_variant

    path = write_variants(directory)
    load_variants_from(str(path))
    try:
        yield path
    finally:
        for name in TEST_VARIANTS:
            unregister_variant(name)


def read_records(run_dir: Path) -> list[dict]:
    """Every record of a run directory, parsed (fails on a torn file)."""
    return [json.loads(p.read_text()) for p in sorted((Path(run_dir) / "records").glob("*.json"))
            if not p.name.startswith(".")]
