"""The process's C allocator, held steady while calls are timed (glibc on Linux; elsewhere nothing changes).

glibc serves a large ``malloc`` from a fresh ``mmap`` (page-faulted and zeroed again on every call) or from its
heap, and moves the boundary between the two as blocks are freed (the adaptive ``mmap`` threshold), and it gives
the top of the heap back to the system as soon as 128 KiB are free there (the trim threshold). So what a call
that allocates large temporaries costs depends on what was allocated and freed before it: by another call, and in
interleaved rounds by another variant; "the same work k times" is then not k times the time.

:func:`steady_malloc` pins both thresholds once per process (``mallopt``: blocks under :data:`MMAP_THRESHOLD` come
from the heap, and up to :data:`TRIM_THRESHOLD` of free heap is kept), so every call meets the same allocator
whatever ran before it. Like a caching allocator (PyTorch's on CUDA; jemalloc or tcmalloc, often preloaded for CPU
inference), this trades memory kept by the process for time; ``peak_mem_bytes`` counts tensor bytes, not the
process's resident set, so it does not change. Larger blocks are mapped afresh, as glibc itself does from 32 MiB
on (its adaptive threshold's ceiling), so that the process does not keep the heap of a long case's largest
buffers after they are freed.
``ATTNBENCH_SYSTEM_MALLOC=1`` leaves glibc's defaults (and ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``
or ``GLIBC_TUNABLES`` set in the environment are left as they are). The choice is recorded in ``env.json``
(``allocator``). ``python benchmarks/overhead.py --phases-side-by-side`` measures the default run both ways.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["MMAP_THRESHOLD", "SYSTEM_MALLOC_ENV", "TRIM_THRESHOLD", "heap_mapped_bytes", "steady_malloc"]

#: Environment variable: ``1`` keeps the C library's own allocator settings.
SYSTEM_MALLOC_ENV = "ATTNBENCH_SYSTEM_MALLOC"
#: Blocks smaller than this come from the heap (glibc's ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 64 << 20
#: Free bytes at the top of the heap kept before any is given back (glibc's ``M_TRIM_THRESHOLD``).
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_ENV_TUNABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_state: str | None = None


def steady_malloc() -> str:
    """Pin glibc's ``mmap`` and trim thresholds for this process (once; later calls only answer).

    Returns:
        What the process's allocator is, for ``env.json`` (e.g. ``glibc 2.36: mmap threshold pinned at 64 MiB and
        trim threshold at 128 MiB by attnbench``). Never raises.
    """
    global _state
    if _state is not None:
        return _state
    lib, version = platform.libc_ver()
    name = f"{lib} {version}".strip() or "unknown C library"
    if os.environ.get(SYSTEM_MALLOC_ENV, "").lower() in ("1", "true", "yes", "on"):
        _state = f"{name}: its own settings ({SYSTEM_MALLOC_ENV}=1)"
    elif lib != "glibc":
        _state = f"{name}: its own settings (only glibc's are pinned)"
    elif any(os.environ.get(v) for v in _ENV_TUNABLES):
        given = ", ".join(f"{v}={os.environ[v]}" for v in _ENV_TUNABLES if os.environ.get(v))
        _state = f"{name}: as the environment sets it ({given})"
    else:
        try:
            libc = ctypes.CDLL(None)
            ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
        except (OSError, AttributeError):
            ok = False
        _state = (f"{name}: mmap threshold pinned at {MMAP_THRESHOLD >> 20} MiB and trim threshold at "
                  f"{TRIM_THRESHOLD >> 20} MiB by attnbench" if ok else f"{name}: its own settings (mallopt refused)")
    return _state


class _MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                                "uordblks", "fordblks", "keepcost")]


def heap_mapped_bytes() -> int | None:
    """Bytes glibc holds in ``mmap``-ed blocks now (``mallinfo2().hblkhd``); None where it cannot be read."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return int(fn().hblkhd)
