"""Whether a (case, variant) can be measured here: the one support check, with every reason.

The reasons are the variant's own (:meth:`~harness.core.variant.Variant.not_supported_reasons`: its declarations
and what the environment lacks) and the input distribution's (``real`` inputs longer than the model's context).
Every path that decides to measure or to decline (the sweep, the isolated child, ``skip_unsupported``'s plan,
:func:`harness.measure.runner.measure_variant`) asks :func:`unsupported_reasons`, so a row never depends on which
path measured it.
"""

from __future__ import annotations

from typing import Any

from harness.core.case import Case
from harness.inputs.distributions import distribution_reason

__all__ = ["unsupported_reasons"]


def unsupported_reasons(variant: Any, case: Case) -> list[str]:
    """Every reason ``case`` cannot be measured with ``variant`` here; empty when it can.

    Args:
        variant: the variant.
        case: the case.

    Returns:
        Sentences naming the value and what is allowed.

    Raises:
        Exception: whatever the variant's own check (or the distribution's) raised; callers make it a row.
    """
    reasons = list(variant.not_supported_reasons(case))
    if case.inputs != "gaussian":
        why = distribution_reason(case.inputs, case.shape)
        if why:  # e.g. real inputs longer than the model's context: said in the row, no data invented
            reasons.append(why)
    return reasons
