"""The machine yardstick: a fixed workload that does not depend on the code under test, timed in the same
interleaved rounds as the variants of every case and recorded with each row.

Two runs of the same code differ when the machine differs (another tenant, a slower clock, a busier memory bus);
two runs of different code differ when the code does. The yardstick tells them apart: it runs code no variant
calls, so it moves with the machine and not with the variants. A comparison whose variants moved while the
yardstick held still saw the code change; one whose yardstick moved too cannot tell (``harness.report.compare``).

On the CPU the workload is NumPy, not torch (a torch upgrade or a thread setting that slows every variant must not
move it): a 4 MiB copy (memory bandwidth beyond the first cache levels) and ``sin`` of 32768 doubles (scalar
arithmetic), single-threaded, about a millisecond per call. On a GPU it is a fixed device-to-device copy and a
fixed matmul (no library other than torch reaches the device; a torch upgrade can move it there).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["YARDSTICK_SLICE_S", "yardstick_call", "yardstick_method"]

#: Timed seconds the yardstick gets in each round: a few calls, a small share of a round of several variants.
YARDSTICK_SLICE_S = 0.002
#: Bytes copied per CPU call, and doubles through ``sin``.
_COPY_BYTES = 4 << 20
_SIN_ELEMS = 1 << 15
#: Bytes copied and the square matmul's size per GPU call.
_GPU_COPY_BYTES = 64 << 20
_GPU_MATMUL = 1024


def yardstick_method(device_type: str) -> str:
    """What the yardstick times on ``device_type``, for the row's ``yardstick_method``."""
    if device_type == "cuda":
        return f"cuda: {_GPU_COPY_BYTES >> 20} MiB device copy + {_GPU_MATMUL}^3 float32 matmul (torch)"
    return f"cpu: numpy {_COPY_BYTES >> 20} MiB copy + sin of {_SIN_ELEMS} doubles, 1 thread"


@functools.lru_cache(maxsize=4)
def yardstick_call(device: str = "cpu") -> Callable[[], None]:
    """The yardstick's callable for ``device`` (its buffers allocated once per process and device)."""
    if device.split(":")[0] == "cuda":
        return _cuda_call(device)
    import numpy as np

    rng = np.random.default_rng(0)
    src, x = rng.random(_COPY_BYTES // 8), rng.random(_SIN_ELEMS)
    dst, y = np.empty_like(src), np.empty_like(x)

    def call() -> None:
        np.copyto(dst, src)
        np.sin(x, out=y)

    return call


def _cuda_call(device: str) -> Callable[[], None]:
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    src = torch.rand(_GPU_COPY_BYTES // 4, generator=gen).to(device)
    dst = torch.empty_like(src)
    a = torch.rand(_GPU_MATMUL, _GPU_MATMUL, generator=gen).to(device)
    out = torch.empty_like(a)

    def call() -> None:
        dst.copy_(src)
        torch.mm(a, a, out=out)

    return call
