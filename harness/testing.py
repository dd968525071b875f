"""The conformance kit: the checks every variant must pass, usable from pytest, a plugin's tests or the CLI.

For a variant it builds cases over shapes (N = 1, N not a multiple of any block size, head dims 16 to 128;
grouped-query and multi-query heads; decode, a few queries and chunked prefill against longer keys; variable-length
batches, packed and padded: documents of length 1, one document, many short ones, documents aligned to the block
size), every pattern kind with small windows and layouts, and dtypes; then

- for each case the variant declares it supports: the output of the callable the harness times
  (``variant.prepare(pattern, case)``) has the input's shape and dtype, is finite, leaves the inputs unchanged, and
  its relative L2 error against the float64 baseline is within the variant's own tolerance for that dtype (on the
  real tokens of a padded batch); with backward, so are dq, dk and dv; when ``prepare`` is overridden, the
  validated ``variant(q, k, v, pattern)`` path is checked too;
- for each case it does not support: it gives at least one reason (a non-empty sentence), and calling it raises
  ``ValueError`` rather than crashing or computing something.

Failure messages name the case and the figures, e.g.
``mine [cpu float32 B2 H2 N67 D32 causal fwd_bwd] fail: output rel_l2 0.41 > tolerance 2e-05 (2.1e+04x)``.

A plugin's tests need one line: ``harness.testing.assert_conforms("my_variant")``.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from harness.core.case import Case
from harness.core.metrics import error_stats
from harness.core.pattern import Pattern
from harness.core.reference import reference_attention
from harness.core.registry import get_variant
from harness.core.variant import Variant
from harness.core.varlen import real_tokens
from harness.inputs.make import make_inputs

__all__ = ["CONFORMANCE_DTYPES", "CONFORMANCE_PATTERNS", "CheckResult", "STATUSES", "assert_conforms", "check_case",
           "conformance_cases", "representative_cases", "run_conformance", "summarize"]

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
#: (batch, heads, kv_heads, seq_len, q_len, head_dim): grouped-query heads (GQA, MQA) and queries shorter than
#: keys (decode q_len = 1, a few speculative queries, chunked prefill), bottom-right aligned, under every pattern.
CONFORMANCE_GROUPED_SHAPES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (2, 4, 2, 67, 67, 32),  # GQA, square
    (1, 3, 1, 130, 130, 16),  # MQA, square
    (2, 4, 2, 97, 1, 32),  # GQA decode
    (1, 2, 2, 130, 7, 64),  # speculative decode, as many key/value heads as query heads
    (1, 4, 1, 97, 40, 32),  # MQA, chunked prefill against a longer cache
)
#: (heads, kv_heads, head_dim, documents): variable-length batches, each in both layouts (packed, padded), under
#: every pattern: documents of length 1, one document, many short ones, documents on 16-token block boundaries
#: (where ``block_sparse`` fits), and longer documents of odd lengths.
CONFORMANCE_DOCUMENTS: tuple[tuple[int, int, int, tuple[int, ...]], ...] = (
    (2, 2, 32, (1, 1, 1)),
    (2, 1, 16, (37,)),
    (3, 3, 32, (3, 1, 7, 2, 5, 4, 1, 6, 3, 9, 2, 8)),
    (4, 2, 64, (16, 32, 16, 7)),
    (2, 2, 32, (40, 130, 5, 67)),
)
CONFORMANCE_LAYOUTS: tuple[str, ...] = ("packed", "padded")
CONFORMANCE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
STATUSES: tuple[str, ...] = ("pass", "fail", "error", "unsupported")
_MAX_LISTED_FAILURES = 30


@dataclass
class CheckResult:
    """Outcome of one conformance case.

    Args:
        variant, case: what was checked.
        status: ``pass``, ``fail`` (wrong figures or contract), ``error`` (it raised) or ``unsupported``.
        out_rel_l2: relative L2 error of the output against the float64 baseline (NaN if not computed).
        grad_rel_l2: the worst of dq, dk, dv (NaN without backward); ``grad_errors`` has each.
        tolerance, grad_tolerance: the variant's tolerances for the case's dtype.
        message: one line saying what is wrong (empty on pass).
        reasons: the variant's reasons for not supporting the case.
        detail: a traceback when the variant raised.
    """

    variant: str
    case: Case
    status: str
    out_rel_l2: float = math.nan
    grad_rel_l2: float = math.nan
    tolerance: float = math.nan
    grad_tolerance: float = math.nan
    message: str = ""
    reasons: list[str] = field(default_factory=list)
    grad_errors: dict[str, float] = field(default_factory=dict)
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True for a pass and for a properly declined unsupported case."""
        return self.status in ("pass", "unsupported")

    def figures(self) -> str:
        """The error figures against the tolerances, e.g. ``out rel_l2=1.2e-07 (tol 2e-05)``."""
        if math.isnan(self.out_rel_l2):
            return ""
        text = f"out rel_l2={self.out_rel_l2:.3g} (tol {self.tolerance:.3g})"
        if not math.isnan(self.grad_rel_l2):
            text += f", grad rel_l2={self.grad_rel_l2:.3g} (tol {self.grad_tolerance:.3g})"
        return text

    def describe(self) -> str:
        """One line: variant, case, status, and what is wrong with its figures (or the figures on a pass)."""
        if self.status == "unsupported":
            what = "; ".join(self.reasons)
        elif self.message:
            figs = self.figures()
            what = self.message + (f" [{figs}]" if figs and self.status == "error" else "")
        else:
            what = self.figures()
        return f"{self.variant} [{self.case.describe()}] {self.status}: {what}".rstrip()


def conformance_cases(variant: Variant, devices: Iterable[str] | None = None,
                      dtypes: Iterable[str] = CONFORMANCE_DTYPES) -> list[Case]:
    """All cases the kit checks for ``variant`` (supported or not).

    Args:
        variant: the variant (its ``supports_backward`` picks the mode: ``fwd_bwd`` or ``fwd``).
        devices: device names; default the available ones (``cpu``, and ``cuda`` when present).
        dtypes: dtype names.

    Returns:
        Cases over devices x dtypes x (:data:`CONFORMANCE_SHAPES` + :data:`CONFORMANCE_GROUPED_SHAPES` +
        :data:`CONFORMANCE_DOCUMENTS` x :data:`CONFORMANCE_LAYOUTS`) x :data:`CONFORMANCE_PATTERNS`.
    """
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
            for b, h, kv, n, lq, d in CONFORMANCE_GROUPED_SHAPES:
                for pattern in CONFORMANCE_PATTERNS:
                    cases.append(Case(batch=b, heads=h, seq_len=n, head_dim=d, dtype=dtype, device=device,
                                      pattern=pattern, mode=mode, seed=n + d + lq, kv_heads=kv, q_len=lq))
            for h, kv, d, docs in CONFORMANCE_DOCUMENTS:
                for layout in CONFORMANCE_LAYOUTS:
                    for pattern in CONFORMANCE_PATTERNS:
                        cases.append(Case(heads=h, kv_heads=kv, head_dim=d, dtype=dtype, device=device,
                                          pattern=pattern, mode=mode, seed=len(docs) + d, lengths=list(docs),
                                          layout=layout))
    return cases


def representative_cases(variant: Variant, devices: Iterable[str] | None = None,
                         dtypes: Iterable[str] = CONFORMANCE_DTYPES) -> list[int]:
    """Indices into :func:`conformance_cases` worth running as separate tests: every supported case, and one
    declined case per (device, reasons).

    A declined case is checked for its reasons and for the ``ValueError`` a call raises; two declined cases on
    one device with the same reasons go through the same code and prove the same thing, so one of each is
    kept (the first, in :func:`conformance_cases` order). The full kit (:func:`run_conformance`,
    ``attnbench check``) still runs every case.

    Args:
        variant: the variant.
        devices: device names (default: the available ones).
        dtypes: dtype names.

    Returns:
        Indices, ascending. A case whose ``not_supported_reasons`` raises is kept (the check reports it).
    """
    keep: list[int] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for i, case in enumerate(conformance_cases(variant, devices, dtypes)):
        try:
            reasons = tuple(str(r) for r in variant.not_supported_reasons(case))
        except Exception:
            keep.append(i)
            continue
        if not reasons:
            keep.append(i)
        elif (case.device, reasons) not in seen:
            seen.add((case.device, reasons))
            keep.append(i)
    return keep


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _check_unsupported(variant: Variant, case: Case, reasons: list) -> CheckResult:
    name = variant.name
    bad = [r for r in reasons if not isinstance(r, str) or not r.strip()]
    if bad:
        return CheckResult(name, case, "fail", reasons=[str(r) for r in reasons],
                           message=f"not_supported_reasons gave empty or non-string reasons: {bad!r}")
    inputs = make_inputs(case)
    q, k, v = (t.requires_grad_(case.needs_backward) for t in (inputs.q, inputs.k, inputs.v))
    try:
        variant(q, k, v, case.pattern)
    except ValueError:
        return CheckResult(name, case, "unsupported", reasons=reasons)
    except Exception as exc:  # reported as a failure with its type, not swallowed
        return CheckResult(name, case, "fail", reasons=reasons, detail=traceback.format_exc(limit=4),
                           message=f"declared unsupported, but calling it raised {_first_line(exc)} "
                                   "instead of ValueError")
    return CheckResult(name, case, "fail", reasons=reasons,
                       message="declared unsupported (" + "; ".join(reasons) + ") but computed without raising "
                               "ValueError")


def _compare(label: str, got: torch.Tensor, want: torch.Tensor, tol: float, problems: list[str],
             pattern: Pattern | None = None) -> float:
    """Relative L2 error of ``got`` (a padded batch: on its real tokens); appends a problem naming ``label`` and the
    figures when it is out of bounds."""
    if pattern is not None:
        got, want = real_tokens(got, pattern), real_tokens(want, pattern)
    e = error_stats(got, want)
    if not e.finite:
        problems.append(f"{label} has NaN or Inf")
        return math.nan
    if e.rel_l2 > tol:
        problems.append(f"{label} rel_l2 {e.rel_l2:.3g} > tolerance {tol:.3g} ({e.rel_l2 / tol:.2g}x; "
                        f"max abs err {e.max_abs:.3g})")
    return e.rel_l2


def check_case(variant: Variant, case: Case) -> CheckResult:
    """Run one conformance case.

    Args:
        variant: the variant instance.
        case: the case (see :func:`conformance_cases`).

    Returns:
        A :class:`CheckResult`; never raises for a variant's misbehaviour (that becomes ``fail`` or ``error``).
    """
    name = variant.name
    try:
        reasons = variant.not_supported_reasons(case)
    except Exception as exc:
        return CheckResult(name, case, "error", message=f"not_supported_reasons raised {_first_line(exc)}",
                           detail=traceback.format_exc(limit=4))
    if reasons:
        return _check_unsupported(variant, case, reasons)

    tol = variant.tolerance(case.dtype)
    gtol = variant.tolerance(case.dtype, grad=True)
    result = CheckResult(name, case, "pass", tolerance=tol, grad_tolerance=gtol)
    inputs = make_inputs(case)
    with_grad = case.needs_backward
    q, k, v = (t.clone().requires_grad_(with_grad) for t in (inputs.q, inputs.k, inputs.v))
    stage = "prepare"
    try:
        fn = variant.prepare(case.pattern, case)
        stage = "forward"
        out = fn(q, k, v)
    except Exception as exc:
        result.status, result.detail = "error", traceback.format_exc(limit=4)
        result.message = f"{stage} raised {_first_line(exc)}"
        return result
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != case.q_shape or out.dtype != case.torch_dtype:
        got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        result.status, result.message = "fail", f"output is {got}, expected {case.q_shape} {case.torch_dtype}"
        return result
    problems: list[str] = []
    if not all(torch.equal(a.detach(), b) for a, b in zip((q, k, v), (inputs.q, inputs.k, inputs.v))):
        problems.append("the variant modified its inputs q, k or v in place")
    ref = reference_attention(inputs.q, inputs.k, inputs.v, case.pattern,
                              grad_out=inputs.grad_out if with_grad else None)
    result.out_rel_l2 = _compare("output", out, ref.out, tol, problems, case.pattern)

    if type(variant).prepare is not Variant.prepare:  # the validated call path must agree with the timed one
        try:
            with torch.no_grad():
                direct = variant(inputs.q, inputs.k, inputs.v, case.pattern)
            _compare("variant(q, k, v, pattern) output", direct, ref.out, tol, problems, case.pattern)
        except Exception as exc:
            problems.append(f"variant(q, k, v, pattern) raised {_first_line(exc)} where prepare() worked")

    if with_grad:
        try:
            out.backward(inputs.grad_out)
        except Exception as exc:
            result.status, result.detail = "error", traceback.format_exc(limit=4)
            result.message = "; ".join([*problems, f"backward raised {_first_line(exc)}"])
            return result
        for gname, leaf, want in (("dq", q, ref.dq), ("dk", k, ref.dk), ("dv", v, ref.dv)):
            if leaf.grad is None:
                problems.append(f"{gname} is None (no gradient reached the input)")
                continue
            result.grad_errors[gname] = _compare(gname, leaf.grad, want, gtol, problems, case.pattern)
        finite = [e for e in result.grad_errors.values() if not math.isnan(e)]
        result.grad_rel_l2 = max(finite) if len(finite) == 3 else math.nan
    if problems:
        result.status, result.message = "fail", "; ".join(problems)
    return result


def run_conformance(variant: str | Variant, devices: Iterable[str] | None = None,
                    dtypes: Iterable[str] = CONFORMANCE_DTYPES) -> list[CheckResult]:
    """Every conformance case of ``variant``.

    Args:
        variant: a registered name or a variant instance (which need not be registered).
        devices: device names (default: the available ones).
        dtypes: dtype names.

    Returns:
        One :class:`CheckResult` per case, in :func:`conformance_cases` order.
    """
    var = get_variant(variant) if isinstance(variant, str) else variant
    return [check_case(var, c) for c in conformance_cases(var, devices, dtypes)]


def summarize(results: list[CheckResult]) -> dict[str, int]:
    """Counts per status (every status in :data:`STATUSES`, zeros included)."""
    return {s: sum(r.status == s for r in results) for s in STATUSES}


def assert_conforms(variant: str | Variant, devices: Iterable[str] | None = None,
                    dtypes: Iterable[str] = CONFORMANCE_DTYPES) -> list[CheckResult]:
    """Run the kit and raise ``AssertionError`` listing every failing case with its figures.

    Args:
        variant: a registered name or a variant instance.
        devices: device names (default: the available ones).
        dtypes: dtype names.

    Returns:
        The results, when every case passed or was properly declined and at least one passed.

    Raises:
        AssertionError: a case failed (one line per case: the case, what is wrong and by how much), or the
            variant supports none of the cases.
    """
    results = run_conformance(variant, devices, dtypes)
    name = variant if isinstance(variant, str) else variant.name
    failed = [r for r in results if not r.ok]
    if failed:
        lines = [r.describe() for r in failed[:_MAX_LISTED_FAILURES]]
        if len(failed) > _MAX_LISTED_FAILURES:
            lines.append(f"... and {len(failed) - _MAX_LISTED_FAILURES} more")
        counts = ", ".join(f"{n} {s}" for s, n in summarize(results).items() if n)
        raise AssertionError(f"variant {name!r}: {len(failed)} of {len(results)} conformance cases failed "
                             f"({counts}):\n" + "\n".join(lines))
    if not any(r.status == "pass" for r in results):
        reasons = sorted({reason for r in results for reason in r.reasons})
        raise AssertionError(f"variant {name!r} supports none of the {len(results)} conformance cases here; "
                             f"its reasons: {'; '.join(reasons[:5])}")
    return results
