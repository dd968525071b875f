"""Variants that break the measurement's promises in quiet ways (issue 14.1, 14.2): they change their inputs in
place, return something other than the output contract, or leave memory behind. Loaded by path
(``variants_from=[<this file>]``) so an isolated child registers them too.
"""

from __future__ import annotations

import torch

from harness import Variant, get_variant, register_variant
from harness.core.pattern import PATTERN_KINDS

#: Bytes ``t_leak`` keeps per call.
LEAK_BYTES = 4 * 2**20
_kept: list[torch.Tensor] = []


class _Base(Variant):
    patterns = frozenset(PATTERN_KINDS)
    devices = frozenset({"cpu"})

    def forward(self, q, k, v, pattern):
        return get_variant("full").forward(q, k, v, pattern)


@register_variant
class ZeroesV(_Base):
    """Zeroes ``v`` in place through ``.data`` on its first call (as a buggy plugin might) and returns a
    correct-looking output. ``.data`` bypasses autograd's version counter, so autograd cannot see it either."""

    name = "t_zero_v"

    def forward(self, q, k, v, pattern):
        out = super().forward(q, k, v, pattern)
        v.data.zero_()
        return out


@register_variant
class ScalesQLater(_Base):
    """Changes ``q`` in place only from its sixth call on: while it is timed, not during setup."""

    name = "t_scale_q_later"

    def prepare(self, pattern, case):
        calls = [0]

        def fn(q, k, v):
            calls[0] += 1
            out = self.forward(q, k, v, pattern)
            if calls[0] >= 6:  # setup call, warm-up, memory probe: the sixth call is in the timed rounds
                with torch.no_grad():
                    q.mul_(1.0001)
            return out
        return fn


@register_variant
class Float64Out(_Base):
    name = "t_float64_out"

    def forward(self, q, k, v, pattern):
        return super().forward(q, k, v, pattern).double()


@register_variant
class Int64Out(_Base):
    name = "t_int64_out"

    def forward(self, q, k, v, pattern):
        return super().forward(q, k, v, pattern).long()


@register_variant
class NoneOut(_Base):
    name = "t_none_out"

    def forward(self, q, k, v, pattern):
        super().forward(q, k, v, pattern)
        return None


@register_variant
class ShortOut(_Base):
    name = "t_short_out"

    def forward(self, q, k, v, pattern):
        return super().forward(q, k, v, pattern)[..., :-1]


@register_variant
class Leaks(_Base):
    """Keeps a 4 MiB tensor alive after every call (a cache that never stops growing)."""

    name = "t_leak"

    def forward(self, q, k, v, pattern):
        _kept.append(torch.ones(LEAK_BYTES // 4))
        return super().forward(q, k, v, pattern)


@register_variant
class OomAfter(_Base):
    """Runs out of memory (simulated): measured after ``t_leak``, its row must say that memory was left behind."""

    name = "t_oom_after"

    def forward(self, q, k, v, pattern):
        raise torch.OutOfMemoryError("CPU out of memory (simulated by t_oom_after)")


NAMES = ("t_zero_v", "t_scale_q_later", "t_float64_out", "t_int64_out", "t_none_out", "t_short_out", "t_leak",
         "t_oom_after")


def release() -> None:
    """Free what ``t_leak`` kept."""
    _kept.clear()
