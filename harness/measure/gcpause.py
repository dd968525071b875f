"""``gc_paused()``: the cyclic garbage collector off for a block, restored after it.

A collection that starts inside a timed call or a memory probe would add its own time to the sample, or free
memory the probe is counting; both the CPU timer (:mod:`harness.measure.timing`) and the memory probe
(:mod:`harness.measure.memory`) run their calls with the collector paused.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]



@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the garbage collector for the block; enable it again afterwards if it was enabled before."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
