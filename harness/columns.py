"""The public CSV columns of a result row (promised to users: add columns freely, never rename these)."""

#: The public CSV columns, in this order; extra columns follow them.
PUBLIC_COLUMNS: tuple[str, ...] = (
    "run_id", "variant", "status", "reason", "device", "device_name", "dtype", "batch", "heads", "seq_len",
    "head_dim", "pattern", "window", "mode", "seed", "time_ms_median", "time_ms_iqr", "time_ms_min", "n_runs",
    "setup_ms", "peak_mem_bytes", "flops", "tflops", "pct_of_peak", "err_max_abs", "err_rel_l2", "err_mean_abs",
    "err_ratio_vs_textbook", "grad_err_rel_l2", "noisy", "torch_version", "harness_version", "git_commit",
    "timestamp",
)
