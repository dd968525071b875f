"""Deliberately misbehaving variants for the isolation tests: each breaks a sweep in its own way.

Load them with ``variants_from=[<this file>]`` so an isolated child process imports them too. They are only ever
run inside isolated children: ``t_segv`` and ``t_exit3`` end the process, ``t_hang`` never returns and ``t_alloc``
lowers the process's address-space limit before allocating past it.
"""

from __future__ import annotations

import os
import resource
import signal
import time

import torch

from harness import Variant, get_variant, register_variant
from harness.core.pattern import PATTERN_KINDS

#: Bytes ``t_alloc`` may map beyond what the process has when it starts allocating.
ALLOC_HEADROOM = 256 << 20


class _Base(Variant):
    patterns = frozenset(PATTERN_KINDS)
    dtypes = frozenset({"float32", "float64", "bfloat16", "float16"})
    devices = frozenset({"cpu"})

    def forward(self, q, k, v, pattern):
        return get_variant("full").forward(q, k, v, pattern)


@register_variant
class Hang(_Base):
    name = "t_hang"

    def forward(self, q, k, v, pattern):
        while True:
            time.sleep(1.0)


@register_variant
class Segfault(_Base):
    name = "t_segv"

    def forward(self, q, k, v, pattern):
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5.0)  # the signal is delivered before this returns
        raise AssertionError("still alive after SIGSEGV")


@register_variant
class Exit3(_Base):
    name = "t_exit3"

    def forward(self, q, k, v, pattern):
        os._exit(3)


@register_variant
class NanOut(_Base):
    name = "t_nanout"

    def forward(self, q, k, v, pattern):
        return super().forward(q, k, v, pattern) * float("nan")


def _address_space_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmSize not found in /proc/self/status")


@register_variant
class Alloc(_Base):
    """Caps its own address space at what it has plus ``ALLOC_HEADROOM``, then allocates 16x that."""

    name = "t_alloc"

    def forward(self, q, k, v, pattern):
        limit = _address_space_bytes() + ALLOC_HEADROOM
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        big = torch.empty(16 * ALLOC_HEADROOM, dtype=torch.uint8)
        big.fill_(1)
        return super().forward(q, k, v, pattern)


@register_variant
class Boom(_Base):
    name = "t_boom"

    def forward(self, q, k, v, pattern):
        raise RuntimeError("boom from t_boom")
