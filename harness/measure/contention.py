"""Whether a timing measurement got the machine it asked for: the per-measurement :class:`Contention` summary
and its verdict, from what the process got (:mod:`harness.measure.usage`), what other processes used
(:mod:`harness.measure.other_processes`) and, on CUDA, the GPU's state (:mod:`harness.measure.gpu`).

A harness cannot make a loaded machine quiet; it can notice that it did not get the machine, say so in the row,
and keep the figures it took meanwhile from passing as quiet ones. A measurement is **contended** when

- more than :data:`CONTENDED_FRACTION` of its samples were disturbed, and at least :data:`MIN_DISTURBED` of them
  (:attr:`harness.measure.usage.SampleUsage.disturbed`: its threads waited for a core), because a call that
  waited for a core took time it did not need; or
- other processes kept busy, on average from its first batch to its last, at least
  :func:`~harness.measure.machine.others_limit` cores (raised by the readings' coarseness), or that many over its
  busiest stretch (:meth:`~harness.measure.other_processes.OthersMeter.peak_cores`), because they share the
  caches, the memory bandwidth and perhaps the core without taking run-queue time from it; or
- on CUDA, the SM clock ran below :data:`GPU_SLOW_CLOCK_FRACTION` of its maximum (NVBench's throttling rule) or
  other processes used the same GPU.

What no rule here sees is a slower core with nothing else running on the machine (a busy host under a virtual
machine, a lower clock); ``docs/measurement.md`` says what a row can and cannot promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.measure.machine import others_limit
from harness.measure.usage import SampleUsage

__all__ = ["CONTENDED_FRACTION", "GPU_SLOW_CLOCK_FRACTION", "MIN_DISTURBED", "Contention", "summarize"]

#: A measurement with more than this fraction of disturbed samples is contended...
CONTENDED_FRACTION = 0.25
#: ...and at least this many: one waited-on sample is an event (a single preemption), not a state of the machine,
#: and a short row would otherwise have its whole case timed again for it.
MIN_DISTURBED = 2
#: On CUDA, an SM clock below this fraction of its maximum during timing marks the measurement contended.
GPU_SLOW_CLOCK_FRACTION = 0.75


@dataclass
class Contention:
    """What the process got during one timing measurement.

    Attributes:
        samples: samples taken.
        disturbed: samples that were disturbed (see :attr:`harness.measure.usage.SampleUsage.disturbed`).
        cpu_share: the process's CPU time during the samples / (their wall time x threads); 1.0 = every asked
            thread ran all the time. A call that does not use all its threads reads below 1 on an idle machine.
        runq_wait_share: run-queue wait of the process's threads / (wall time x threads) (NaN where unknown).
        load_before, load_after: the 1-minute load average when timing began and ended.
        gpu: the GPU's state during timing (:func:`harness.measure.gpu.gpu_state`), empty on CPU or without NVML.
        detector: ``runq_wait`` (schedstat) or ``nivcsw`` (involuntary switches only).
        others_cores: cores other processes kept busy, on average, from the first batch to the last (NaN where
            unknown).
        others_limit: the most :attr:`others_cores` may be before the measurement is contended.
        others_peak: the most cores other processes surely kept busy over a stretch of at least
            :data:`~harness.measure.other_processes.OTHERS_WINDOW_S`
            (:meth:`~harness.measure.other_processes.OthersMeter.peak_cores`; NaN where unknown). The measurement is
            contended when it reaches :attr:`others_peak_limit` too.
        others_peak_limit: :func:`~harness.measure.machine.others_limit` (not raised by the margin, which
            :attr:`others_peak` has already taken off).
    """

    samples: int = 0
    disturbed: int = 0
    cpu_share: float = math.nan
    runq_wait_share: float = math.nan
    load_before: float = math.nan
    load_after: float = math.nan
    gpu: dict[str, Any] = field(default_factory=dict)
    detector: str = ""
    others_cores: float = math.nan
    others_limit: float = math.inf
    others_peak: float = math.nan
    others_peak_limit: float = math.inf

    @property
    def disturbed_fraction(self) -> float:
        return self.disturbed / self.samples if self.samples else 0.0

    @property
    def gpu_contended(self) -> bool:
        g = self.gpu
        clock, top = g.get("gpu_sm_clock_mhz", math.nan), g.get("gpu_sm_clock_max_mhz", math.nan)
        slow = bool(top and top > 0 and clock < GPU_SLOW_CLOCK_FRACTION * top)
        return slow or int(g.get("gpu_other_processes", 0) or 0) > 0

    @property
    def others_busy(self) -> bool:
        return self.others_cores >= self.others_limit or self.others_peak >= self.others_peak_limit  # False for NaN

    @property
    def contended(self) -> bool:
        return self.samples_waited or self.others_busy or self.gpu_contended

    @property
    def samples_waited(self) -> bool:
        """More than :data:`CONTENDED_FRACTION` of the samples, and at least :data:`MIN_DISTURBED`, were disturbed."""
        return self.disturbed_fraction > CONTENDED_FRACTION and self.disturbed >= MIN_DISTURBED

    def note(self) -> str:
        """One sentence for the row's ``reason`` when contended ('' otherwise)."""
        if not self.contended:
            return ""
        parts = []
        if self.samples_waited:
            how = "waited on a run queue" if self.detector == "runq_wait" else "were preempted"
            parts.append(f"{self.disturbed} of {self.samples} samples {how} (cpu_share {self.cpu_share:.2f}, "
                         f"load {self.load_before:.1f} -> {self.load_after:.1f})")
        if self.others_busy:
            if self.others_cores >= self.others_limit:
                parts.append(f"other processes kept {self.others_cores:.1f} cores busy beside it (limit "
                             f"{self.others_limit:.2g}: they share caches, memory bandwidth, maybe this core)")
            else:
                parts.append(f"other processes kept at least {self.others_peak:.1f} cores busy during part of it "
                             f"({self.others_cores:.1f} on average; limit {self.others_peak_limit:.2g}: they share "
                             "caches, memory bandwidth, maybe this core)")
        g = self.gpu
        if g.get("gpu_other_processes"):
            parts.append(f"{g['gpu_other_processes']} other process(es) on the GPU")
        clock, top = g.get("gpu_sm_clock_mhz", math.nan), g.get("gpu_sm_clock_max_mhz", math.nan)
        if top and top > 0 and clock < GPU_SLOW_CLOCK_FRACTION * top:
            parts.append(f"SM clock {clock:.0f} of {top:.0f} MHz ({g.get('gpu_throttle_reasons') or 'no reason'})")
        return "contended: " + "; ".join(parts)

    def columns(self) -> dict[str, Any]:
        """The row's columns: ``cpu_share, runq_wait_share, load_before, load_after, disturbed_samples`` and the
        GPU's, when measured."""
        return {"cpu_share": self.cpu_share, "runq_wait_share": self.runq_wait_share,
                "load_before": self.load_before, "load_after": self.load_after,
                "disturbed_samples": self.disturbed, "others_cores": self.others_cores, **self.gpu}


def summarize(usages: Sequence[SampleUsage], threads: int, load_before: float = math.nan,
              load_after: float = math.nan, gpu: dict[str, Any] | None = None, others_s: float = math.nan,
              others_wall_s: float = 0.0, others_limit_cores: float | None = None,
              others_margin_s: float = 0.0, others_peak_cores: float = math.nan) -> Contention:
    """Sum the per-sample usage of one measurement into a :class:`Contention`.

    Args:
        usages: one per sample.
        threads: the threads the measurement asked for.
        load_before, load_after: load averages around it.
        gpu: the GPU state (CUDA).
        others_s, others_wall_s: CPU seconds other processes used while the batches ran, and those batches' wall
            seconds (see :class:`~harness.measure.other_processes.OthersMeter`).
        others_limit_cores: :func:`~harness.measure.machine.others_limit` (default: for ``threads`` on this machine).
        others_margin_s: how far ``others_s`` may be off from the coarseness of its readings
            (:attr:`~harness.measure.other_processes.OthersMeter.margin_s`): the limit is raised by it, so that a
            row is contended only when other processes surely reached the limit.
        others_peak_cores: :meth:`~harness.measure.other_processes.OthersMeter.peak_cores` (its margin already
            taken off), judged against the limit.
    """
    wall = sum(u.wall_s for u in usages)
    cpu = sum(u.cpu_s for u in usages)
    waits = [u.wait_s for u in usages]
    known = bool(usages) and all(w is not None for w in waits)
    denom = wall * max(1, threads)
    limit = others_limit(threads) if others_limit_cores is None else others_limit_cores
    return Contention(
        samples=len(usages), disturbed=sum(u.disturbed for u in usages),
        cpu_share=cpu / denom if denom > 0 else math.nan,
        runq_wait_share=(sum(w for w in waits if w is not None) / denom) if known and denom > 0 else math.nan,
        load_before=load_before, load_after=load_after, gpu=dict(gpu or {}),
        detector="runq_wait" if known else ("nivcsw" if usages else ""),
        others_cores=others_s / others_wall_s if others_wall_s > 0 and math.isfinite(others_s) else math.nan,
        others_limit=limit + (others_margin_s / others_wall_s if others_wall_s > 0 else 0.0),
        others_peak=others_peak_cores, others_peak_limit=limit)
