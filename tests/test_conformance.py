"""Conformance suite, driven by the registry: every registered variant, later ones included, with no new code.

Every supported case is its own test; of the declined cases, one per (variant, device, reasons) is called (it
must raise ``ValueError``), since the others run the same code; every declined case's reasons are still checked.
"""

from __future__ import annotations

import pytest

from harness import get_variant, list_variants
from harness.testing import check_case, conformance_cases, representative_cases
from tests.conftest import DEVICES

_PARAMS = [
    pytest.param(name, i, id=f"{name}-{case.device}-{case.dtype}-N{case.seq_len}-D{case.head_dim}-{case.pattern.kind}"
                 + (f"-{case.layout}" if case.layout else ""))
    for name in list_variants()
    for cases in [conformance_cases(get_variant(name), DEVICES)]
    for i in representative_cases(get_variant(name), DEVICES)
    for case in [cases[i]]
]


@pytest.mark.parametrize(("name", "index"), _PARAMS)
def test_variant_conforms(name: str, index: int) -> None:
    variant = get_variant(name)
    case = conformance_cases(variant, DEVICES)[index]
    result = check_case(variant, case)
    assert result.ok, result.describe()


@pytest.mark.parametrize("name", list_variants())
def test_every_declined_case_says_why(name: str) -> None:
    """Each declined case (not only the representatives called above) gives non-empty sentences naming a key."""
    v = get_variant(name)
    for case in conformance_cases(v, DEVICES):
        reasons = v.not_supported_reasons(case)
        assert isinstance(reasons, list), f"{name} [{case.describe()}]: reasons must be a list"
        for r in reasons:
            assert isinstance(r, str) and r.strip(), f"{name} [{case.describe()}]: empty reason {r!r}"
            assert "=" in r or " " in r.strip(), f"{name} [{case.describe()}]: reason {r!r} is not a sentence"


def test_representatives_keep_every_supported_case_and_each_reason_once():
    """The selection drops only declined cases whose (device, reasons) another selected case already has."""
    for name in list_variants():
        v = get_variant(name)
        cases = conformance_cases(v, DEVICES)
        kept = set(representative_cases(v, DEVICES))
        supported = {i for i, c in enumerate(cases) if v.supports(c)}
        assert supported <= kept, name
        declined = {(c.device, tuple(v.not_supported_reasons(c))) for c in cases if not v.supports(c)}
        kept_declined = [(cases[i].device, tuple(v.not_supported_reasons(cases[i]))) for i in kept - supported]
        assert sorted(set(kept_declined)) == sorted(declined) and len(kept_declined) == len(declined), name


@pytest.mark.parametrize("name", list_variants())
def test_variant_declares_itself(name: str) -> None:
    v = get_variant(name)
    assert v.name == name
    assert v.description, f"{name} has no description"
    assert v.patterns and v.devices and v.dtypes
    assert isinstance(v.exact, bool) and isinstance(v.supports_backward, bool)
    for dtype in v.dtypes:
        assert v.tolerance(dtype) > 0


@pytest.mark.parametrize("name", list_variants())
def test_variant_supports_something_here(name: str) -> None:
    """Every variant must pass at least one case on some device it declares (or explain why not)."""
    v = get_variant(name)
    cases = conformance_cases(v, DEVICES)
    supported = [c for c in cases if v.supports(c)]
    if not supported:
        reasons = sorted({r for c in cases for r in v.not_supported_reasons(c)})
        assert reasons, f"{name} supports nothing here and gives no reason"
        pytest.skip(f"{name} runs on none of this machine's devices: {reasons[:3]}")
