"""Time the accelerated attention kernels directly with ``triton.testing.do_bench``, outside the harness.

This is the yardstick the harness is checked against: each kernel is called the way a user would call it
(SDPA inside one ``sdpa_kernel`` context, FlexAttention compiled with PyTorch's own ``create_block_mask``,
xFormers on its native (B, N, H, D) layout) and timed with ``do_bench`` (CUDA events, L2 flushed before each
run, median). Nothing of the harness is used except ``Pattern`` to count attended pairs.

Usage (CUDA machine)::

    python -m benchmarks.gpu_direct                         # bf16, H=16, D=128, B*N=16384, N=512..16384
    python -m benchmarks.gpu_direct --seq-lens 1024 4096 --kernels sdpa_cudnn flex --csv direct.csv
    python -m benchmarks.gpu_direct --harness               # also time the same cases through the harness
    python -m benchmarks.gpu_direct --compare results/RUN/results.csv --direct direct.csv  # the 3 % check

TFLOP/s counts 4·B·H·D per attended (query, key) pair: N² for full, N(N+1)/2 for causal, and only the pairs
inside the window for a sliding window ("useful" TFLOP/s).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch

from harness.core.pattern import Pattern

#: Kernels this script can time directly; the names are the harness variants they correspond to.
KERNELS: tuple[str, ...] = ("sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa_math", "flex", "xformers")
#: sdpa_math materializes B·H·N² scores: skip it above this N unless asked for explicitly.
_MATH_MAX_N = 4096
_RECOMPILE_LIMIT = 4096


@dataclass
class KernelCase:
    """Which kernel on which case: the fields every direct-timing result starts with."""

    kernel: str
    pattern: str
    window: int
    batch: int
    heads: int
    seq_len: int
    head_dim: int
    dtype: str


@dataclass
class DirectResult(KernelCase):
    """One kernel on one case, timed directly."""

    status: str = "ok"
    time_ms: float = math.nan
    tflops: float = math.nan
    peak_mem_bytes: float = math.nan  # the sweep CSV's units: bytes above what was allocated before the call
    setup_ms: float = math.nan  # building the callable plus the first call (compilation), milliseconds
    harness_ms: float = math.nan
    message: str = ""


def _flops(pattern: Pattern, b: int, h: int, n: int, d: int) -> float:
    return 4.0 * b * h * d * pattern.attended_pairs(n)


def _sdpa(backend_name: str, q, k, v, pattern: Pattern) -> Callable[[], torch.Tensor]:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)
    causal = pattern.kind == "causal"
    if pattern.kind not in ("full", "causal"):
        raise ValueError(f"SDPA runs full and causal only (got {pattern.label})")
    ctx = sdpa_kernel(backend)

    def run():
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    ctx.__enter__()  # the context stays entered for the whole timing of this kernel (see _time)
    run.ctx = ctx  # type: ignore[attr-defined]
    return run


def _flex(q, k, v, pattern: Pattern) -> Callable[[], torch.Tensor]:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    n = q.shape[2]
    # compiled in the grad mode it is timed in (no_grad): another grad mode would be a guard miss, a recompile
    with compile_limit(), torch.no_grad():
        if pattern.kind == "full":
            bm = None
        else:
            if pattern.kind == "causal":
                def mask(b, h, qi, ki):
                    return qi >= ki
            elif pattern.kind == "window":
                w = pattern.window

                def mask(b, h, qi, ki):
                    return (qi >= ki) & (qi - ki < w)
            else:
                raise ValueError(f"the direct flex timing covers full, causal and window (got {pattern.label})")
            bm = torch.compile(create_block_mask, fullgraph=True)(mask, None, None, n, n, device=q.device)
        fn = torch.compile(flex_attention, dynamic=False, fullgraph=True)
        fn(q, k, v, block_mask=bm)
    return lambda: fn(q, k, v, block_mask=bm)


def compile_limit():
    """Dynamo's recompile limits raised for the duration (every case here is a new shape to compile)."""
    return torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT, accumulated_recompile_limit=_RECOMPILE_LIMIT)


def _xformers(q, k, v, pattern: Pattern) -> Callable[[], torch.Tensor]:
    import xformers.ops as xops
    from xformers.ops.fmha import attn_bias

    bias = {"full": None, "causal": attn_bias.LowerTriangularMask()}.get(pattern.kind, "x")
    if pattern.kind == "window":
        bias = attn_bias.LowerTriangularFromBottomRightLocalAttentionMask(pattern.window)
    if bias == "x":
        raise ValueError(f"the direct xformers timing covers full, causal and window (got {pattern.label})")
    qn, kn, vn = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # its native layout, made once
    return lambda: xops.memory_efficient_attention(qn, kn, vn, attn_bias=bias)


def make_direct(kernel: str, q, k, v, pattern: Pattern) -> Callable[[], torch.Tensor]:
    """The kernel called on q, k, v as a user would call it, outside the harness (SDPA: see ``run.ctx``)."""
    if kernel.startswith("sdpa_"):
        name = {"sdpa_cudnn": "CUDNN_ATTENTION", "sdpa_flash": "FLASH_ATTENTION",
                "sdpa_efficient": "EFFICIENT_ATTENTION", "sdpa_math": "MATH"}[kernel]
        return _sdpa(name, q, k, v, pattern)
    if kernel == "flex":
        return _flex(q, k, v, pattern)
    if kernel == "xformers":
        return _xformers(q, k, v, pattern)
    raise ValueError(f"kernel={kernel!r} is not known (allowed: {', '.join(KERNELS)})")


def build_plan(kernels: list[str], patterns: list[str], seq_lens: list[int], window: int,
               window_seq_lens: list[int], window_kernels: list[str]) -> list[tuple[str, Pattern, int]]:
    """The (kernel, pattern, seq_len) cases of a run, dense patterns first, then the sliding-window ones.

    ``sdpa_math`` is left out above N=4096 (it materializes the scores). In the window cases, flex and xformers
    run the causal window; SDPA kernels have no window and run full causal attention, for comparison.
    """
    unknown = [k for k in [*kernels, *window_kernels] if k not in KERNELS]
    if unknown:
        raise ValueError(f"unknown kernels {unknown} (allowed: {', '.join(KERNELS)})")
    plan: list[tuple[str, Pattern, int]] = []
    for kind in patterns:
        for n in seq_lens:
            for kern in kernels:
                if kern == "sdpa_math" and n > _MATH_MAX_N:
                    continue
                plan.append((kern, Pattern(kind), n))
    if window:
        for n in window_seq_lens:
            for kern in window_kernels:
                pat = Pattern("window", window=window) if kern in ("flex", "xformers") else Pattern("causal")
                plan.append((kern, pat, n))
    return plan


def time_direct(kernel: str, pattern: Pattern, batch: int, heads: int, seq_len: int, head_dim: int,
                dtype: torch.dtype = torch.bfloat16, warmup_ms: int = 25, rep_ms: int = 100) -> DirectResult:
    """Time one kernel on one case with ``do_bench`` (median ms); failures become a status, never a crash."""
    from triton.testing import do_bench

    res = DirectResult(kernel, pattern.kind, pattern.window or 0, batch, heads, seq_len, head_dim,
                       str(dtype).removeprefix("torch."), "ok")
    gen = torch.Generator(device="cpu").manual_seed(seq_len)
    run = None
    try:
        q, k, v = (torch.randn(batch, heads, seq_len, head_dim, generator=gen).to("cuda", dtype) for _ in range(3))
        t0 = time.perf_counter()
        run = make_direct(kernel, q, k, v, pattern)
        with torch.no_grad(), compile_limit():
            run()
            torch.cuda.synchronize()
            res.setup_ms = (time.perf_counter() - t0) * 1e3
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            out = run()
            torch.cuda.synchronize()
            res.peak_mem_bytes = float(torch.cuda.max_memory_allocated() - base)
            del out
            res.time_ms = float(do_bench(run, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
        res.tflops = _flops(pattern, batch, heads, seq_len, head_dim) / (res.time_ms * 1e-3) / 1e12
    except Exception as exc:  # noqa: BLE001 - every failure is a row with its message
        res.status, res.message = failure(exc)
    finally:
        release(run)
    return res


def failure(exc: BaseException) -> tuple[str, str]:
    """A failed timing as (status, message): ``oom``, ``unsupported`` (no kernel for the case) or ``error``."""
    text = str(exc).strip()
    oom = isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower()
    status = "oom" if oom else ("unsupported" if "kernel" in text.lower() else "error")
    return status, f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def release(run: Callable | None) -> None:
    """Leave the SDPA backend context a :func:`make_direct` callable entered, and free cached CUDA memory."""
    ctx = getattr(run, "ctx", None)
    if ctx is not None:
        ctx.__exit__(None, None, None)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_harness(res: DirectResult) -> float:
    """The same case through the harness's ``measure_variant`` (errors off); its median in ms, NaN if not ok."""
    from harness import Case, get_variant
    from harness.core.reference import ReferenceCache
    from harness.inputs.make import make_inputs
    from harness.measure.runner import MeasureConfig, measure_variant

    pattern = Pattern(res.pattern, window=res.window) if res.pattern.startswith("window") else Pattern(res.pattern)
    case = Case(batch=res.batch, heads=res.heads, seq_len=res.seq_len, head_dim=res.head_dim, dtype=res.dtype,
                device="cuda", pattern=pattern, mode="fwd")
    names = {f.name for f in fields(MeasureConfig)}
    cfg = MeasureConfig(**{k: v for k, v in {"errors": False, "memory": False, "budget_s": 0.5}.items() if k in names})
    m = measure_variant(get_variant(res.kernel), case, make_inputs(case), ReferenceCache(), cfg)
    return m.time_ms_median if m.status == "ok" else math.nan


def compare(sweep_csv: str, direct_csv: str, tolerance: float = 0.03) -> int:
    """Print each forward sweep row next to the direct timing of the same kernel and case.

    Returns:
        The number of pairs whose times differ by more than ``tolerance`` (relative to the direct time).
    """
    import pandas as pd

    sweep = pd.read_csv(sweep_csv)
    direct = pd.read_csv(direct_csv)
    direct = direct[direct.status == "ok"]
    sweep = sweep[(sweep.status == "ok") & (sweep["mode"] == "fwd")]
    keys = ["pattern", "batch", "heads", "seq_len", "head_dim"]
    rows, bad = [], 0
    for _, d in direct.iterrows():
        sel = sweep[(sweep["variant"] == d["kernel"]) & (sweep["dtype"] == d["dtype"])]
        for key in keys:
            sel = sel[sel[key] == d[key]]
        if d.pattern.startswith("window") and "window" in sel:
            sel = sel[sel.window == d.window]
        if sel.empty:
            continue
        h = float(sel.time_ms_median.iloc[0])
        diff = h / d.time_ms - 1.0
        flag = "" if abs(diff) <= tolerance else f"  <-- off by more than {tolerance:.0%}"
        bad += bool(flag)
        rows.append(f"{d.kernel:15s} {d.pattern:7s} N={int(d.seq_len):6d} B={int(d.batch):3d}  direct "
                    f"{d.time_ms:9.4f} ms  harness {h:9.4f} ms  {diff:+6.1%}{flag}")
    print(f"harness vs direct do_bench (forward, tolerance {tolerance:.0%}):")
    print("\n".join(rows) if rows else "  no matching rows")
    print(f"{bad} of {len(rows)} pairs outside the tolerance")
    return bad


def _print_table(results: list[DirectResult], with_harness: bool) -> None:
    print(f"{'kernel':15s} {'pattern':8s} {'N':>6s} {'B':>3s} {'ms':>9s} {'TFLOP/s':>8s} {'MiB':>8s}"
          + ("  harness_ms  diff" if with_harness else "") + "  status")
    for r in results:
        line = (f"{r.kernel:15s} {r.pattern + (str(r.window) if r.window else ''):8s} {r.seq_len:6d} {r.batch:3d} "
                f"{r.time_ms:9.4f} {r.tflops:8.1f} {r.peak_mem_bytes / 2**20:8.1f}")
        if with_harness:
            diff = r.harness_ms / r.time_ms - 1 if r.time_ms == r.time_ms else math.nan
            line += f"  {r.harness_ms:10.4f} {diff:+6.1%}"
        print(line + f"  {r.status} {r.message}".rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), help=f"subset of {', '.join(KERNELS)}")
    p.add_argument("--patterns", nargs="+", default=["full", "causal"], help="full and/or causal")
    p.add_argument("--seq-lens", nargs="+", type=int, default=[512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--tokens", type=int, default=16384, help="batch = max(1, tokens // seq_len)")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--window", type=int, default=256, help="causal sliding window width (0 = no window cases)")
    p.add_argument("--window-seq-lens", nargs="*", type=int, default=[1024, 4096, 16384, 65536])
    p.add_argument("--window-kernels", nargs="*", default=["flex", "sdpa_cudnn"],
                   help="kernels for the window cases; sdpa_* run full causal attention there, for comparison")
    p.add_argument("--harness", action="store_true", help="also time each case through harness.measure.runner")
    p.add_argument("--csv", default="", help="write the results to this CSV file")
    p.add_argument("--compare", default="", help="a sweep results.csv to check against --direct")
    p.add_argument("--direct", default="", help="the CSV written by an earlier --csv run (for --compare)")
    p.add_argument("--tolerance", type=float, default=0.03)
    a = p.parse_args(argv)
    if a.compare:
        if not a.direct:
            p.error("--compare needs --direct DIRECT_CSV")
        missing = [f for f in (a.compare, a.direct) if not os.path.isfile(f)]
        if missing:
            p.error(f"no such file: {', '.join(missing)} (--compare takes a sweep's results.csv, --direct the CSV "
                    "of an earlier --csv run)")
        bad = compare(a.compare, a.direct, a.tolerance)
        return 1 if bad else 0
    try:
        plan = build_plan(a.kernels, a.patterns, a.seq_lens, a.window, a.window_seq_lens, a.window_kernels)
    except ValueError as exc:
        p.error(str(exc))
    if not torch.cuda.is_available():
        print(f"gpu_direct: no CUDA device (torch {torch.__version__}); nothing to time", file=sys.stderr)
        return 2
    dtype = getattr(torch, a.dtype)
    print(f"# {torch.cuda.get_device_name()} | torch {torch.__version__} | {a.dtype} H={a.heads} D={a.head_dim} "
          f"B*N={a.tokens} | do_bench median, L2 flushed")
    results = []
    for kern, pat, n in plan:
        b = max(1, a.tokens // n)
        r = time_direct(kern, pat, b, a.heads, n, a.head_dim, dtype)
        if a.harness and r.status == "ok":
            r.harness_ms = time_harness(r)
        results.append(r)
        print(f"  {kern} {pat.label} N={n} B={b}: {r.time_ms:.4f} ms {r.tflops:.1f} TFLOP/s {r.status} "
              f"{r.message}".rstrip(), flush=True)
    _print_table(results, a.harness)
    if a.csv:
        with open(a.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=[f.name for f in fields(DirectResult)])
            w.writeheader()
            for r in results:
                w.writerow(asdict(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
