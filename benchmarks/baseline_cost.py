"""What the float64 truth costs: the baseline, the textbook yardstick and the dense pass, old code against new.

Three modes:

``python benchmarks/baseline_cost.py [--old REV] [--threads 1]``
    Side by side in one run, each (implementation, case) in its own child process: the truth of a case as a
    sweep computes it (``ReferenceCache``: the float64 baseline, the textbook in the inputs' dtype, and the
    dense pass for ``approx_err`` on sparse patterns) for the code at git revision ``REV`` (default: the commit
    before the tiled baseline landed) and for the working tree. Per part: wall, user and system CPU seconds
    (``resource.getrusage``), system time as a % of user time, minor page faults, and the child's peak RSS.
    Cases: float32 inputs, B=1, H=8, D=64; causal N=8192 and window w=256 at N=16384.

``python benchmarks/baseline_cost.py --sizes``
    The working tree's float64 baseline (causal, N=8192) with score buffers of several sizes: how
    ``DEFAULT_BLOCK_BYTES`` was chosen.

``python benchmarks/baseline_cost.py --sweep [--label L] -- KEY=VALUE ...``
    Runs ``python -m harness sweep KEY=VALUE ...`` as a child, then reports its wall time, peak RSS (the
    child's ``ru_maxrss`` from ``os.wait4``), the truth's seconds (``baseline_ms``, one figure per case) and
    their share of the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: main before the tiled baseline (256 MiB score blocks, textbook against all keys, dense causal pass always).
DEFAULT_OLD = "127c0a8"

_CHILD = r"""
import json, resource, sys, time
import torch
from harness import Case, Pattern
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs

spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
pattern = Pattern(spec["pattern"], window=spec.get("window"))
case = Case(batch=1, heads=8, seq_len=spec["n"], head_dim=64, dtype="float32", pattern=pattern)
inputs = make_inputs(case)
cache = ReferenceCache()
out = {}

def part(name, fn):
    r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
    value = fn()
    t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_SELF)
    out[name] = {"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                 "minflt": r1.ru_minflt - r0.ru_minflt}
    return value

ref = part("baseline", lambda: cache.reference(case, inputs, with_grads=False))
part("textbook", lambda: cache.textbook(case, inputs))
if pattern.is_sparse:
    if hasattr(cache, "dense_error"):
        part("dense", lambda: cache.dense_error(case, inputs, ref.out.float()))
    else:
        part("dense", lambda: cache.dense_reference(case, inputs))
out["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["harness"] = __import__("harness").__file__
print("RESULT " + json.dumps(out))
"""

_SIZES_CHILD = r"""
import json, resource, sys, time
import torch
from harness import Pattern
from harness.core.reference import reference_attention

spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, 8, spec["n"], 64, generator=g) for _ in range(3))
r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
reference_attention(q, k, v, Pattern("causal"), block_bytes=spec["mib"] * 2**20)
t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT " + json.dumps({"baseline": {"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime,
      "sys": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt},
      "maxrss_mib": r1.ru_maxrss / 1024}))
"""


def _child(code: str, spec: dict, pythonpath: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    # cwd too: ``python -c`` puts the working directory first on sys.path
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, cwd=pythonpath,
                          capture_output=True, text=True, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(line.removeprefix("RESULT "))


def _export(rev: str, dest: Path) -> None:
    """The ``harness`` and ``variants`` packages of ``rev`` into ``dest`` (``git archive``)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "harness", "variants", "configs"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def _fmt_part(impl: str, case: str, name: str, p: dict, rss: float) -> str:
    pct = 100.0 * p["sys"] / p["user"] if p["user"] > 0 else float("nan")
    return (f"{case:<22} {impl:<8} {name:<9} {p['wall']:8.2f} {p['user']:8.2f} {p['sys']:8.2f} {pct:7.1f}% "
            f"{p['minflt']:>10,} {rss:9.0f}")


def compare(old: str, threads: int) -> None:
    cases = [{"n": 8192, "pattern": "causal"}, {"n": 16384, "pattern": "window", "window": 256}]
    print(f"threads={threads}, old={old} (git), new=working tree; float32 inputs B=1 H=8 D=64; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':<22} {'impl':<8} {'part':<9} {'wall s':>8} {'user s':>8} {'sys s':>8} {'sys/usr':>8} "
          f"{'minflt':>10} {'rss MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        _export(old, Path(tmp))
        for spec in cases:
            label = f"N={spec['n']} {spec['pattern']}" + (f" w={spec['window']}" if "window" in spec else "")
            totals = {}
            for impl, path in (("old", Path(tmp)), ("new", ROOT)):
                res = _child(_CHILD, {**spec, "threads": threads}, path)
                rss = res.pop("maxrss_mib")
                where = res.pop("harness")
                if not where.startswith(str(path)):
                    raise RuntimeError(f"{impl} child imported {where}, not the code under {path}")
                for name, p in res.items():
                    print(_fmt_part(impl, label, name, p, rss))
                totals[impl] = sum(p["wall"] for p in res.values())
            print(f"{label:<22} truth wall: old {totals['old']:.2f} s, new {totals['new']:.2f} s "
                  f"({totals['old'] / totals['new']:.1f}x)")


def sizes(threads: int, n: int) -> None:
    print(f"threads={threads}; float64 baseline, causal, B=1 H=8 N={n} D=64; load {os.getloadavg()[0]:.2f}")
    print(f"{'buffer':>8} {'wall s':>8} {'user s':>8} {'sys s':>8} {'sys/usr':>8} {'minflt':>10} {'rss MiB':>9}")
    for mib in (2, 4, 8, 16, 32, 64, 256):
        res = _child(_SIZES_CHILD, {"n": n, "mib": mib, "threads": threads}, ROOT)
        p = res["baseline"]
        print(f"{mib:>5} MiB {p['wall']:8.2f} {p['user']:8.2f} {p['sys']:8.2f} "
              f"{100 * p['sys'] / max(p['user'], 1e-9):7.1f}% {p['minflt']:>10,} {res['maxrss_mib']:9.0f}")


def sweep(args: list[str], label: str) -> None:
    """Run a sweep as a child; print wall, peak RSS and the truth's share."""
    with tempfile.TemporaryDirectory() as tmp:
        run_name = label or f"baseline_cost_{int(time.time())}"
        cmd = [sys.executable, "-m", "harness", "sweep", *args, f"results_dir={tmp}", f"run_name={run_name}",
               "progress=plain"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        print("$", " ".join(cmd[1:]), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"the sweep failed with exit code {os.waitstatus_to_exitcode(status)}")
        import pandas as pd

        df = pd.read_csv(Path(tmp) / run_name / "results.csv")
        keys = ["dtype", "batch", "heads", "seq_len", "head_dim", "pattern_label", "mode", "seed", "inputs"]
        per_case = df.groupby(keys, dropna=False)["baseline_ms"].first()
        truth_s = float(per_case.sum()) / 1e3
        meas_s = float(df["measure_wall_ms"].sum()) / 1e3
        print(f"\nsweep wall {wall:.1f} s, user {usage.ru_utime:.1f} s, sys {usage.ru_stime:.1f} s, "
              f"peak RSS {usage.ru_maxrss / 2**20:.2f} GiB")
        for key, ms in per_case.items():
            sub = df[(df["seq_len"] == key[3]) & (df["mode"] == key[6])]
            print(f"  N={key[3]:<6} {key[5]:<14} {key[6]:<7} truth {ms / 1e3:7.2f} s; variants "
                  + ", ".join(f"{r.variant} {r.measure_wall_ms / 1e3:.1f} s ({r.time_ms_median:.0f} ms/call, "
                              f"{r.status})" for r in sub.itertuples()))
        print(f"truth (baseline_ms, summed per case) {truth_s:.1f} s = {100 * truth_s / wall:.1f}% of the wall time; "
              f"variant measurements {meas_s:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=DEFAULT_OLD, help="git revision of the old code")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", action="store_true", help="score buffer sizes of the new baseline")
    parser.add_argument("--n", type=int, default=8192, help="--sizes: sequence length")
    parser.add_argument("--sweep", action="store_true", help="run a sweep (arguments after --) and report")
    parser.add_argument("--label", default="", help="--sweep: run name")
    parser.add_argument("rest", nargs="*", help="--sweep: KEY=VALUE arguments of the sweep")
    args = parser.parse_args(argv)
    if args.sweep:
        sweep(args.rest, args.label)
    elif args.sizes:
        sizes(args.threads, args.n)
    else:
        compare(args.old, args.threads)


if __name__ == "__main__":
    main()
