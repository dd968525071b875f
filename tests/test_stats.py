"""harness.stats' own Student t quantile (the interval of a fitted scaling exponent), held against scipy's."""

from __future__ import annotations

import math
import sys

import pytest
from scipy.special import betainc, stdtrit

from harness import stats as S


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 10, 18, 30, 61, 200, 5000])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.95, 0.975, 0.995, 0.9999, 0.025, 0.1])
def test_t_quantile_matches_scipy(df, p):
    want = float(stdtrit(df, p))
    assert S.t_quantile(p, df) == pytest.approx(want, rel=1e-8)


def test_t_quantile_closed_forms_and_symmetry():
    assert S.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-12)  # Cauchy
    assert S.t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-12)
    assert S.t_quantile(0.5, 7) == 0.0
    assert S.t_quantile(0.05, 9) == -S.t_quantile(0.95, 9)


@pytest.mark.parametrize("a,b", [(0.5, 0.5), (1.0, 3.0), (2.5, 0.5), (40.0, 0.5), (10.0, 20.0)])
def test_beta_inc_matches_scipy(a, b):
    for x in (0.0, 1e-6, 0.05, 0.3, 0.5, 0.77, 0.999, 1.0):
        assert S.beta_inc(a, b, x) == pytest.approx(float(betainc(a, b, x)), abs=1e-13)


@pytest.mark.parametrize("call,message", [
    (lambda: S.t_quantile(1.0, 3), "p=1.0 is out of range (allowed: 0 < p < 1)"),
    (lambda: S.t_quantile(0.9, 0), "df=0 is out of range (allowed: df > 0)"),
    (lambda: S.beta_inc(1.0, 1.0, 1.5), "x=1.5 is out of range (allowed: 0 <= x <= 1)"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


def test_a_report_does_not_import_scipy_or_matplotlib():
    """The report's tables need neither (0.2 s and 0.3 s of a default run's import time); a fresh interpreter
    importing harness.report must not load them."""
    import subprocess

    code = "import sys, harness.report; print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'matplotlib'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
