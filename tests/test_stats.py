"""The scaling fit's interval (Student t through scipy, imported only when a fit needs it)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import stats as sps

from harness.report.scaling import CI_LEVEL, fit_exponent


def test_fit_exponent_interval_matches_scipy_linregress():
    """The exponent and its interval are the log-log least-squares slope with a t interval, as scipy computes."""
    n = np.array([256.0, 512.0, 1024.0, 2048.0, 4096.0])
    t = 1e-6 * n ** 1.9 * np.array([1.03, 0.97, 1.02, 0.99, 1.01])
    fit = fit_exponent(n, t)
    lr = sps.linregress(np.log(n), np.log(t))
    half = sps.t.ppf(0.5 + CI_LEVEL / 2, len(n) - 2) * lr.stderr
    assert fit.exponent == pytest.approx(lr.slope, rel=1e-12)
    assert fit.ci_low == pytest.approx(lr.slope - half, rel=1e-9)
    assert fit.ci_high == pytest.approx(lr.slope + half, rel=1e-9)


def test_a_report_does_not_import_scipy_or_matplotlib():
    """The report's tables need neither; a fresh interpreter importing harness.report.build must not load them."""
    import subprocess

    code = ("import sys, harness.report.build; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'matplotlib', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
