"""The conformance kit: the checks every variant must pass, usable from pytest, a plugin's tests or the CLI.

For a variant it builds cases over shapes (N = 1, N not a multiple of any block size, head dims 16 to 128),
every pattern kind with small windows and layouts, and dtypes; then

- for each case the variant declares it supports: the output has the input's shape and dtype, is finite, and its
  relative L2 error against the float64 baseline is within the variant's own tolerance for that dtype; with
  backward, so are dq, dk and dv;
- for each case it does not support: it gives at least one reason (a non-empty sentence), and calling it raises
  ``ValueError`` rather than crashing or computing something.

A plugin's tests need one line: ``harness.testing.assert_conforms("my_variant")``.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from harness.errors import error_stats
from harness.inputs import Case, make_inputs
from harness.pattern import Pattern
from harness.reference import reference_attention
from harness.registry import get_variant
from harness.variant import Variant

#: One pattern of each kind, small enough to have partial windows and blocks at the test sizes.
CONFORMANCE_PATTERNS: tuple[Pattern, ...] = (
    Pattern("full"),
    Pattern("causal"),
    Pattern("window", window=17),
    Pattern("window_sym", window=9),
    Pattern("block_sparse", block=16, local=1, stride=3, n_global=1),
    Pattern("block_sparse_causal", block=16, local=1, stride=3, n_global=1),
)
#: (batch, heads, seq_len, head_dim): N = 1, N not a multiple of any block or chunk size, head dims 16..128.
CONFORMANCE_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (1, 1, 1, 16),
    (2, 2, 67, 32),
    (1, 3, 130, 64),
    (1, 2, 97, 128),
)
CONFORMANCE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")


@dataclass
class CheckResult:
    """Outcome of one conformance case."""

    variant: str
    case: Case
    status: str  # pass | fail | unsupported | error
    out_rel_l2: float = math.nan
    grad_rel_l2: float = math.nan
    tolerance: float = math.nan
    grad_tolerance: float = math.nan
    message: str = ""
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "unsupported")

    def describe(self) -> str:
        figs = f"out rel_l2={self.out_rel_l2:.3g} (tol {self.tolerance:.3g})"
        if not math.isnan(self.grad_rel_l2):
            figs += f", grad rel_l2={self.grad_rel_l2:.3g} (tol {self.grad_tolerance:.3g})"
        return f"{self.variant} [{self.case.describe()}] {self.status}: {figs} {self.message}".rstrip()


def conformance_cases(variant: Variant, devices: Iterable[str] | None = None,
                      dtypes: Iterable[str] = CONFORMANCE_DTYPES) -> list[Case]:
    """All cases the kit checks for ``variant`` (supported or not) on ``devices`` (default: available ones)."""
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    mode = "fwd_bwd" if variant.supports_backward else "fwd"
    cases = []
    for device in devices:
        for dtype in dtypes:
            for b, h, n, d in CONFORMANCE_SHAPES:
                for pattern in CONFORMANCE_PATTERNS:
                    cases.append(Case(batch=b, heads=h, seq_len=n, head_dim=d, dtype=dtype, device=device,
                                      pattern=pattern, mode=mode, seed=n + d))
    return cases


def check_case(variant: Variant, case: Case) -> CheckResult:
    """Run one conformance case; never raises for a variant's misbehaviour (it becomes a failed result)."""
    name = variant.name
    reasons = variant.not_supported_reasons(case)
    inputs = make_inputs(case)
    if reasons:
        bad = [r for r in reasons if not isinstance(r, str) or not r.strip()]
        if bad:
            return CheckResult(name, case, "fail", message=f"empty or non-string reasons: {bad!r}", reasons=reasons)
        try:
            variant(inputs.q, inputs.k, inputs.v, case.pattern)
        except ValueError:
            return CheckResult(name, case, "unsupported", reasons=reasons)
        except Exception as exc:  # reported as a failure with its type, not swallowed
            return CheckResult(name, case, "fail", reasons=reasons,
                               message=f"unsupported case raised {type(exc).__name__} instead of ValueError: {exc}")
        return CheckResult(name, case, "fail", reasons=reasons,
                           message="declared unsupported but computed without raising ValueError")

    tol = variant.tolerance(case.dtype)
    gtol = variant.tolerance(case.dtype, grad=True)
    with_grad = case.needs_backward
    q, k, v = (t.clone().requires_grad_(with_grad) for t in (inputs.q, inputs.k, inputs.v))
    try:
        out = variant(q, k, v, case.pattern)
    except Exception as exc:
        return CheckResult(name, case, "error", tolerance=tol,
                           message=f"forward raised {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != case.shape or out.dtype != case.torch_dtype:
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        return CheckResult(name, case, "fail", tolerance=tol,
                           message=f"output is {got}, expected {case.shape} {case.torch_dtype}")
    ref = reference_attention(inputs.q, inputs.k, inputs.v, case.pattern,
                              grad_out=inputs.grad_out if with_grad else None)
    out_err = error_stats(out, ref.out)
    result = CheckResult(name, case, "pass", out_rel_l2=out_err.rel_l2, tolerance=tol, grad_tolerance=gtol)
    problems = []
    if not out_err.finite:
        problems.append("output has NaN or Inf")
    elif out_err.rel_l2 > tol:
        problems.append(f"output rel_l2 {out_err.rel_l2:.3g} > tolerance {tol:.3g} ({out_err.rel_l2 / tol:.1f}x)")
    if with_grad:
        try:
            out.backward(inputs.grad_out)
        except Exception as exc:
            result.status, result.message = "error", f"backward raised {type(exc).__name__}: {exc}"
            return result
        worst = 0.0
        for gname, got, want in (("dq", q.grad, ref.dq), ("dk", k.grad, ref.dk), ("dv", v.grad, ref.dv)):
            if got is None:
                problems.append(f"{gname} is None (no gradient reached the input)")
                continue
            e = error_stats(got, want)
            if not e.finite:
                problems.append(f"{gname} has NaN or Inf")
                continue
            worst = max(worst, e.rel_l2)
            if e.rel_l2 > gtol:
                problems.append(f"{gname} rel_l2 {e.rel_l2:.3g} > tolerance {gtol:.3g} ({e.rel_l2 / gtol:.1f}x)")
        result.grad_rel_l2 = worst
    if problems:
        result.status, result.message = "fail", "; ".join(problems)
    return result


def run_conformance(variant: str | Variant, devices: Iterable[str] | None = None,
                    dtypes: Iterable[str] = CONFORMANCE_DTYPES) -> list[CheckResult]:
    """Every conformance case of ``variant`` (a name or an instance)."""
    var = get_variant(variant) if isinstance(variant, str) else variant
    return [check_case(var, c) for c in conformance_cases(var, devices, dtypes)]


def assert_conforms(variant: str | Variant, devices: Iterable[str] | None = None,
                    dtypes: Iterable[str] = CONFORMANCE_DTYPES) -> list[CheckResult]:
    """Run the kit and raise ``AssertionError`` listing every failing case with its figures."""
    results = run_conformance(variant, devices, dtypes)
    failed = [r for r in results if not r.ok]
    if failed:
        lines = "\n".join(r.describe() for r in failed)
        raise AssertionError(f"{len(failed)} of {len(results)} conformance cases failed:\n{lines}")
    if not any(r.status == "pass" for r in results):
        raise AssertionError(f"variant {results[0].variant if results else variant!r} supports none of the cases")
    return results
