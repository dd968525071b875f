"""Synthetic result rows for the report and compare tests (known slopes, every status)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

LENGTHS = (256, 512, 1024, 2048, 4096)
STATUSES_INJECTED = {
    # variant, status, seq_len
    ("quad_then_oom", "oom", 4096),
    ("lin", "unsupported", 256),
    ("brand_new_variant", "error", 1024),
    ("brand_new_variant", "numerics", 2048),
    ("lin", "timeout", 4096),
    ("quad_then_oom", "crashed", 2048),
}


def synthetic_rows(run_id: str = "synthetic", heads=(4, 8), patterns=("full", "causal"), seed: int = 0,
                   noise: float = 0.0) -> pd.DataFrame:
    """Rows with time/memory exactly c*N^2 (full, quad_then_oom) or c*N (lin, brand_new_variant), and every
    non-ok status once per (heads, pattern)."""
    rng = np.random.default_rng(seed)
    rows = []
    for pattern in patterns:
        for h in heads:
            for n in LENGTHS:
                for variant, k_time, k_mem, c in (("full", 2, 2, 1e-6), ("quad_then_oom", 2, 2, 0.7e-6),
                                                  ("lin", 1, 1, 2e-3), ("brand_new_variant", 1, 1, 5e-3)):
                    status = next((s for v, s, ln in STATUSES_INJECTED if v == variant and ln == n), "ok")
                    t = c * h * n**k_time * (1 + noise * rng.standard_normal())
                    ok = status == "ok"
                    rows.append(dict(
                        run_id=run_id, variant=variant, status=status,
                        reason="" if ok else f"synthetic {status}",
                        device="cpu", device_name="synthetic-cpu", dtype="float32", batch=1, heads=h,
                        seq_len=n, head_dim=64, pattern=pattern, window=np.nan, mode="fwd", seed=0,
                        time_ms_median=t if ok else np.nan, time_ms_iqr=0.02 * t if ok else np.nan,
                        time_ms_min=0.97 * t if ok else np.nan, n_runs=10 if ok else 0, setup_ms=1.0,
                        peak_mem_bytes=(8.0 * h * n**k_mem) if ok else np.nan,
                        flops=4.0 * h * 64 * n * n, tflops=(4.0 * h * 64 * n * n / (t * 1e-3) / 1e12) if ok else np.nan,
                        pct_of_peak=np.nan,
                        err_max_abs=1e-6, err_rel_l2=(3e-7 if variant != "brand_new_variant" else 4e-3) if ok
                        else np.nan,
                        err_mean_abs=1e-7, err_ratio_vs_textbook=1.0, grad_err_rel_l2=np.nan, noisy=False,
                        torch_version="2.13.0", harness_version="0.1.0", git_commit="abc123",
                        timestamp="2026-11-22T12:00:00", textbook_err_rel_l2=3.5e-7,
                        approx_err_rel_l2=(0.05 if variant == "brand_new_variant" and ok else np.nan),
                        threads=2, timing_method="synthetic", memory_method="synthetic",
                    ))
    return pd.DataFrame(rows)


def write_run(root: Path, name: str, frame: pd.DataFrame, env: dict | None = None) -> Path:
    """Write ``frame`` as a run directory ``root/name`` (results.csv + env.json)."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    frame.to_csv(run / "results.csv", index=False)
    (run / "env.json").write_text(json.dumps(env or {"python": "3.12", "torch": "2.13.0", "cpu": {"cores": 2}}))
    return run
