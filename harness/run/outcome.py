"""One measurement of one (case, variant) as a row-ready outcome, never raising: shared by the sweep and the child.

Both :func:`harness.run.sweep.run_sweep` (in process) and the isolated child (:mod:`harness.run.isolate`) measure a
(case, variant) through this module, so the two give the same row for the same behaviour:

- :func:`~harness.measure.runner.declined` (the one support check, :mod:`harness.measure.support`) runs before
  any inputs are drawn and before any child process is started.
- :class:`CaseInputs` keeps the inputs and the float64 baseline of the current case while consecutive cases
  share them (the modes of one case).
- :func:`measure_one` measures a supported (case, variant) and turns every failure into a measurement
  (:func:`harness.measure.runner.failure`: ``oom`` for an out-of-memory error, else ``error``).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from harness.core.case import Case, Inputs
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure.runner import MeasureConfig, Measurement, declined, failure, measure_variant

__all__ = ["CaseInputs", "measure_one"]


class CaseInputs:
    """Inputs and baseline of the current case, kept while consecutive cases share them (modes of one case).

    A failure to draw the inputs is kept too and raised again for every variant of that case, so a case whose
    inputs cannot be made costs one attempt, not one per variant.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.inputs: Inputs | None = None
        self.error: BaseException | None = None
        self.refs = ReferenceCache()

    def get(self, case: Case) -> Inputs:
        """The inputs of ``case`` (drawn when the case's inputs differ from the ones held).

        Args:
            case: the case.

        Returns:
            Its :class:`~harness.core.case.Inputs`.

        Raises:
            Exception: whatever drawing the inputs raised (again for every call on the same inputs).
        """
        key = case.input_key()
        if key != self.key:
            self.release()
            self.key = key
            try:
                self.inputs = make_inputs(case)
            except Exception as exc:  # becomes the rows' status; the sweep goes on
                self.error = exc
        if self.error is not None:
            raise self.error
        assert self.inputs is not None
        return self.inputs

    def release(self) -> None:
        """Drop the held inputs and baselines (and CUDA's cached blocks when they were on a GPU)."""
        had_cuda = self.inputs is not None and self.inputs.q.is_cuda
        self.key, self.inputs, self.error = None, None, None
        self.refs.clear()
        if had_cuda:
            import torch

            gc.collect()
            torch.cuda.empty_cache()


def measure_one(variant: Any, case: Case, cache: CaseInputs, mcfg: MeasureConfig,
                threads: int) -> tuple[Measurement, float]:
    """Measure one (case, variant), never raising for a variant's (or the inputs') failure.

    Args:
        variant: the variant.
        case: the case.
        cache: the inputs and baselines shared with the other variants of the case.
        mcfg: how to measure.
        threads: the thread count to record when a failure leaves no measured one.

    Returns:
        ``(measurement, seconds)``: the row's figures and the time spent measuring (0 when declined).
    """
    refused = declined(variant, case, threads)
    if refused is not None:
        return refused, 0.0
    try:
        inputs = cache.get(case)
    except Exception as exc:
        return failure(exc, threads), 0.0
    t0 = time.perf_counter()
    try:
        m = measure_variant(variant, case, inputs, cache.refs, mcfg)
    except Exception as exc:  # measure_variant turns failures into rows itself; this guards against its own bugs
        m = failure(exc, threads)
    m.extra["baseline_ms"] = 1e3 * cache.refs.total_s  # the truth this (isolated) measurement computed
    return m, time.perf_counter() - t0
