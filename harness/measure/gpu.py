"""The GPU's state during timing, through NVML: its SM clock against the maximum, its clock-event ("throttle")
reasons and the other processes using it.

Read while timed work is queued, because an idle GPU lowers its clocks. NVML comes from ``nvidia-ml-py``
(``pynvml``), an optional dependency (``pip install -e ".[nvml]"``); without it, or without a driver, the GPU
columns stay empty. A driver that refuses a query is said in the row (``gpu_state_error``), never raised.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

__all__ = ["gpu_state", "set_nvml"]

# NVML clock-event ("throttle") reason bits, from nvml.h; the idle bit is left out (a GPU between kernels).
_NVML_REASONS: dict[int, str] = {
    0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost",
    0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

_nvml_module: Any = None
_nvml_tried = False


def set_nvml(module: Any) -> None:
    """Use ``module`` as the NVML binding (tests pass a fake; None: import ``pynvml`` again on next use)."""
    global _nvml_module, _nvml_tried
    _nvml_module, _nvml_tried = module, module is not None


def _nvml() -> Any:
    global _nvml_module, _nvml_tried
    if not _nvml_tried:
        _nvml_tried = True
        try:
            import pynvml  # nvidia-ml-py; optional

            pynvml.nvmlInit()
            _nvml_module = pynvml
        except Exception:  # not installed, no driver: the GPU columns stay empty
            _nvml_module = None
    return _nvml_module


def _nvml_handle(nv: Any, index: int, uuid: str | None) -> Any:
    if uuid:
        with contextlib.suppress(Exception):
            return nv.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    return nv.nvmlDeviceGetHandleByIndex(index)


def _throttle_names(mask: int) -> str:
    """Names of the NVML clock-event reasons set in ``mask`` (the idle bit ignored), joined by ``+``."""
    return "+".join(name for bit, name in _NVML_REASONS.items() if mask & bit)


def gpu_state(index: int = 0, uuid: str | None = None, nvml: Any = None) -> dict[str, Any]:
    """The GPU's SM clock against its maximum, its clock-event (throttle) reasons and the other processes on it.

    Read while timed work is queued (an idle GPU lowers its clocks). Empty when NVML is not available.

    Args:
        index: the NVML device index (used when ``uuid`` is not given or not found).
        uuid: the device's UUID (``torch.cuda.get_device_properties(i).uuid``), which survives
            ``CUDA_VISIBLE_DEVICES`` renumbering.
        nvml: the binding (default: ``pynvml`` when importable).

    Returns:
        ``gpu_sm_clock_mhz``, ``gpu_sm_clock_max_mhz``, ``gpu_throttle_reasons``, ``gpu_other_processes``.
    """
    nv = nvml if nvml is not None else _nvml()
    if nv is None:
        return {}
    try:
        h = _nvml_handle(nv, index, uuid)
        sm = nv.NVML_CLOCK_SM
        out: dict[str, Any] = {"gpu_sm_clock_mhz": float(nv.nvmlDeviceGetClockInfo(h, sm)),
                               "gpu_sm_clock_max_mhz": float(nv.nvmlDeviceGetMaxClockInfo(h, sm))}
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            nv.nvmlDeviceGetCurrentClocksThrottleReasons
        out["gpu_throttle_reasons"] = _throttle_names(int(reasons(h)))
        procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
        out["gpu_other_processes"] = sum(1 for p in procs if int(getattr(p, "pid", -1)) != os.getpid())
        return out
    except Exception as exc:  # a driver that refuses a query: said in the row, not raised
        return {"gpu_state_error": f"{type(exc).__name__}: {exc}"[:200]}
