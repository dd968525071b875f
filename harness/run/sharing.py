"""Notice when parallel jobs of one run measure on the same device at the same time.

Timing two jobs on one device distorts both (they compete for cores, memory bandwidth, the GPU's SMs). Every
running sweep job leaves a marker file ``RUN/.jobs/<host>.<pid>.json`` that names its host, its pid, the CPU
cores it may run on and the physical CUDA devices it uses; before each measurement it counts the other live
jobs of the same host that use the same device (for the CPU: an overlapping set of allowed cores). The count goes
into the row (``concurrent_jobs``) and the first time it is above zero the job warns. The markers work with any
launcher (Hydra's joblib or submitit, two terminals, a shell loop); jobs on other hosts never count, and jobs
writing into other run directories are not seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from harness.base.files import pid_alive

__all__ = ["MARKER_DIR", "SharedDeviceWarning", "SharingMonitor", "cpu_cores", "cuda_identity", "sharing_warning"]

MARKER_DIR = ".jobs"


class SharedDeviceWarning(UserWarning):
    """Other jobs of the run measure on the same device of this host at the same time."""


def _host() -> str:
    return socket.gethostname() or "host"


def cpu_cores() -> list[int]:
    """The CPU cores this process may run on (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cuda_identity(device: str) -> str:
    """A name of the physical GPU behind ``device`` (``cuda`` / ``cuda:N``) that other processes agree on.

    The GPU's UUID when torch can read it; otherwise the N-th entry of ``CUDA_VISIBLE_DEVICES`` (or of SLURM's
    ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``), else ``N`` itself.
    """
    index = int(device.split(":")[1]) if ":" in device else 0
    try:
        import torch

        if torch.cuda.is_available():
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            if uuid is not None:
                return f"uuid:{uuid}"
    except Exception:  # no CUDA, or an old torch: fall back to the environment
        pass
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        listed = [x.strip() for x in os.environ.get(var, "").split(",") if x.strip()]
        if listed and index < len(listed):
            return f"gpu:{listed[index]}"
    return f"gpu:{index}"


class SharingMonitor:
    """This job's marker in a run directory, and the other live jobs that share a device with it.

    Args:
        run_dir: the run directory.
        devices: the devices this job's cases use (``cpu``, ``cuda``, ``cuda:1``...).
    """

    def __init__(self, run_dir: Path, devices: Iterable[str]) -> None:
        self.dir = Path(run_dir) / MARKER_DIR
        self.host = _host()
        self.pid = os.getpid()
        self.cores = cpu_cores()
        self.gpus = sorted({cuda_identity(d) for d in devices if d.split(":")[0] == "cuda"})
        self._gpu_of: dict[str, str] = {}
        self.path = self.dir / f"{self.host.replace('.', '_')}.{self.pid}.json"
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"host": self.host, "pid": self.pid, "cores": self.cores, "gpus": self.gpus}))
        os.replace(tmp, self.path)

    def _others(self) -> list[dict]:
        out = []
        for p in self.dir.glob("*.json"):
            if p == self.path:
                continue
            try:
                doc = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if doc.get("host") != self.host or not isinstance(doc.get("pid"), int):
                continue
            if not pid_alive(doc["pid"]):
                with contextlib.suppress(OSError):
                    p.unlink()
                continue
            out.append(doc)
        return out

    def sharing(self, device: str) -> list[int]:
        """Pids of the other live jobs of this host and run that use ``device`` (CPU: overlapping cores)."""
        if device.split(":")[0] == "cuda":
            gpu = self._gpu_of.setdefault(device, cuda_identity(device))
            return sorted(d["pid"] for d in self._others() if gpu in d.get("gpus", []))
        mine = set(self.cores)
        return sorted(d["pid"] for d in self._others() if mine & set(d.get("cores", [])))

    def close(self) -> None:
        """Remove this job's marker."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def sharing_warning(device: str, pids: list[int]) -> str:
    """The warning a job prints when other jobs measure on its device."""
    what = "overlapping CPU cores" if device.split(":")[0] == "cpu" else f"the same GPU as {device}"
    return (f"attnbench: warning: {len(pids)} other job(s) of this run (pid {', '.join(map(str, pids))}) are "
            f"measuring on {what} of this host at the same time; their timings distort each other. Give each job "
            f"its own device (docs/scale_out.md: one GPU per job, hydra.launcher.n_jobs=1 on CPU).")
