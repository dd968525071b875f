"""Conformance suite, driven by the registry: every registered variant, later ones included, with no new code."""

from __future__ import annotations

import pytest

from harness import get_variant, list_variants
from harness.testing import check_case, conformance_cases
from tests.conftest import DEVICES

_PARAMS = [
    pytest.param(name, i, id=f"{name}-{case.device}-{case.dtype}-N{case.seq_len}-D{case.head_dim}-{case.pattern.kind}")
    for name in list_variants()
    for i, case in enumerate(conformance_cases(get_variant(name), DEVICES))
]


@pytest.mark.parametrize(("name", "index"), _PARAMS)
def test_variant_conforms(name: str, index: int) -> None:
    variant = get_variant(name)
    case = conformance_cases(variant, DEVICES)[index]
    result = check_case(variant, case)
    assert result.ok, result.describe()


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
