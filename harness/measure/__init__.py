"""Measuring variants on one case: timing in interleaved rounds, what the process got from the machine, peak
memory, the output contract, device ceilings and the environment.

- :mod:`~harness.measure.runner`: the phases of a case (setup, timing, figures) and the row they fill.
- Timing: :mod:`~harness.measure.timing` (one callable), :mod:`~harness.measure.samplers` (CPU and CUDA samples),
  :mod:`~harness.measure.rounds` (interleaved rounds, pairs, retries), :mod:`~harness.measure.stop_rule`,
  :mod:`~harness.measure.timing_result`, :mod:`~harness.measure.stats`, :mod:`~harness.measure.calls` (what is
  timed per mode).
- What the process got: :mod:`~harness.measure.usage` (per sample), :mod:`~harness.measure.other_processes`,
  :mod:`~harness.measure.gpu`, :mod:`~harness.measure.machine` (load, threads, quiet) and
  :mod:`~harness.measure.contention` (the verdict).
- :mod:`~harness.measure.memory`, :mod:`~harness.measure.allocator`, :mod:`~harness.measure.gcpause`,
  :mod:`~harness.measure.contract`, :mod:`~harness.measure.support`, :mod:`~harness.measure.ceilings`,
  :mod:`~harness.measure.env`.

May import ``harness.core``, ``harness.inputs`` and ``harness.base``.
"""

__all__: list[str] = []
