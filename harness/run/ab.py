"""``attnbench ab A B``: two versions of a variant measured side by side in one process, round by round.

A comparison of two runs sees the machine change between them as well as the code; an A/B measurement does not:
both versions are timed in the same interleaved rounds on the same inputs, so what slows the machine slows both in
the same round and cancels in each round's ratio. This is how to gate a kernel change on a shared runner.

Each side is a variants file (``old.py``), or a file at a git ref: ``git:REF:path/in/repo.py`` (this repository)
or ``git:/path/to/repo@REF:path.py``. The file is imported with ``.A`` or ``.B`` appended to every variant name it
registers, so the two versions live side by side in the registry (``mine.A``, ``mine.B``). The variants compared
are those both sides define (``--variant`` picks some). Two installed versions of one package cannot be imported
in one process: give their files (or git refs) instead.

For every case of the grid (the sweep's keys and presets) the two versions are measured together
(:func:`harness.measure.runner.measure_case`, A as the baseline of the paired ratios) and the verdict is read from
the paired ratio B/A and its 95% interval against the ``median`` threshold: ``slower``, ``faster``, ``same``, or
``unsure`` when the interval does not settle it (or a side failed). Exit codes as ``attnbench compare``: 0 passed,
1 a case slower, 2 bad input, 3 a case unsure (0 with ``--unsure=pass``); the command is :mod:`harness.cli.ab`.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AbResult", "SIDES", "judge_ratio", "load_side", "run_ab"]

#: The suffixes the two sides' variants are registered under.
SIDES = (".A", ".B")
_EXIT_OK, _EXIT_SLOWER, _EXIT_BAD, _EXIT_UNSURE = 0, 1, 2, 3


@dataclass
class AbResult:
    """One case of an A/B measurement.

    Args:
        variant: the variant's name (without suffix).
        case: the case in one line.
        ratio, low, high: B's time over A's, paired round by round, and its 95% interval.
        pairs: rounds paired.
        time_a_ms, time_b_ms: the medians.
        verdict: ``slower``, ``faster``, ``same`` or ``unsure``; ``why`` says what decided it.
        contended: either side was contended (the rounds are paired, so both were hit alike).
        yardstick_ms: the machine yardstick during the case.
    """

    variant: str
    case: str
    ratio: float
    low: float
    high: float
    pairs: int
    time_a_ms: float
    time_b_ms: float
    verdict: str
    why: str
    contended: bool = False
    yardstick_ms: float = math.nan


def judge_ratio(ratio: float, low: float, high: float, margin: float) -> str:
    """``slower`` / ``faster`` / ``same`` / ``unsure`` of a paired ratio B/A and its interval at ``margin``."""
    if not all(math.isfinite(x) for x in (ratio, low, high)):
        return "unsure"
    if low > 1 and ratio > 1 + margin:
        return "slower"
    if high < 1 and ratio < 1 / (1 + margin):
        return "faster"
    if low >= 1 / (1 + margin) and high <= 1 + margin:
        return "same"
    return "unsure"


def _materialize(spec: str, label: str, workdir: Path) -> Path | str:
    """A side's file: the path itself, or a git ref's file written into ``workdir``."""
    if not spec.startswith("git:"):
        return spec
    rest = spec[4:]
    ref, sep, path = rest.rpartition(":")
    if not sep or not ref or not path:
        raise ValueError(f"{label}={spec!r} is not a git side (allowed: git:REF:path/in/repo.py or "
                         "git:/path/to/repo@REF:path.py)")
    repo, at, ref_name = ref.rpartition("@") if "@" in ref else ("", "", ref)
    cmd = ["git"] + (["-C", repo] if at else []) + ["show", f"{ref_name}:{path}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"{label}={spec!r}: git could not read {path} at {ref_name}"
                         + (f" in {repo}" if at else "") + f": {done.stderr.strip() or done.returncode}")
    out = workdir / label / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(done.stdout, encoding="utf-8")
    return out


def load_side(spec: str, label: str, suffix: str, workdir: Path) -> list[str]:
    """Register the variants of one side under ``suffix``; returns their names without it.

    Raises:
        ValueError: the side cannot be read or imported, or registers no variant.
    """
    from harness.core.registry import load_variants_from

    source = _materialize(spec, label, workdir)
    try:
        names = load_variants_from(source, suffix=suffix)
    except ValueError as exc:
        text = str(exc)
        raise ValueError(f"{label}={spec!r}: " + (text.split(": ", 1)[1] if text.startswith("variants_from=")
                                                   else text)) from None
    if not names:
        raise ValueError(f"{label}={spec!r} registers no variant (allowed: a variants file that registers one)")
    return [n[: -len(suffix)] for n in names]


def _grid_cases(overrides: list[str]):
    from harness.run.launch import build_grid

    plans = build_grid(overrides + ["variants=[full]", "run_name=ab"]).plans
    return plans[0], [c for p in plans for c in p.cases]


def run_ab(a: str, b: str, overrides: list[str], variants: list[str] | None = None,
           margin: float = 0.05, echo: Callable[[AbResult], None] | None = None) -> list[AbResult]:
    """Measure sides ``a`` and ``b`` on every case the overrides give; one :class:`AbResult` per case and variant.

    Raises:
        ValueError: a side cannot be loaded, no variant is common to both, or the overrides are bad.
    """
    from harness.core.registry import get_variant

    with tempfile.TemporaryDirectory(prefix="attnbench_ab_") as tmp:
        names_a = load_side(a, "A", SIDES[0], Path(tmp))
        names_b = load_side(b, "B", SIDES[1], Path(tmp))
    common = [n for n in names_a if n in names_b]
    if variants:
        missing = [v for v in variants if v not in common]
        if missing:
            raise ValueError(f"--variant {', '.join(missing)}: not defined by both sides (allowed: "
                             f"{', '.join(common) or 'none: A and B share no variant name'})")
        common = list(variants)
    if not common:
        raise ValueError(f"A defines {', '.join(names_a)} and B defines {', '.join(names_b)}: no variant in common")
    plan, cases = _grid_cases(overrides)
    results = []
    for case in cases:
        for name in common:
            pair = [get_variant(name + SIDES[0]), get_variant(name + SIDES[1])]
            results.append(_measure_pair(pair, name, case, plan, margin))
            if echo is not None:
                echo(results[-1])
    return results


def _default_threads() -> int:
    import torch

    from harness.measure.machine import default_threads

    return default_threads(torch.get_num_threads())[0]


def _measure_pair(pair: list, name: str, case, plan, margin: float) -> AbResult:
    import zlib

    from harness.core.reference import ReferenceCache
    from harness.inputs.make import make_inputs
    from harness.measure.runner import MeasureConfig, measure_case

    threads = plan.threads or _default_threads()
    cfg = MeasureConfig(budget_s=plan.budget_s, warmup=plan.warmup, min_runs=plan.min_runs, threads=threads,
                        rel_ci=plan.rel_ci or None)
    try:
        inputs = make_inputs(case)
    except Exception as exc:
        return AbResult(name, case.describe(), *(math.nan,) * 3, 0, math.nan, math.nan, "unsure",
                        f"the inputs could not be made: {type(exc).__name__}: {exc}")
    rows = measure_case(pair, case, inputs, ReferenceCache(), cfg, baseline=pair[0].name,
                        seed=zlib.crc32(case.describe().encode()))
    (_, ma, _), (_, mb, _) = rows
    if ma.status != "ok" or mb.status != "ok":
        return AbResult(name, case.describe(), *(math.nan,) * 3, 0, ma.time_ms_median, mb.time_ms_median,
                        "unsure", f"A {ma.status}, B {mb.status}: {ma.reason or mb.reason}")
    speed, s_lo, s_hi = (mb.extra.get(k, math.nan) for k in ("speedup_vs_full", "speedup_ci_low", "speedup_ci_high"))
    ratio, low, high = 1 / speed, 1 / s_hi if s_hi > 0 else math.nan, 1 / s_lo if s_lo > 0 else math.nan
    verdict = judge_ratio(ratio, low, high, margin)
    pairs = int(mb.extra.get("speedup_pairs", 0))
    why = f"paired ratio B/A over {pairs} rounds, 95% sign-test interval"
    return AbResult(name, case.describe(), ratio, low, high, pairs, ma.time_ms_median, mb.time_ms_median, verdict,
                    why, contended=bool(ma.contended or mb.contended),
                    yardstick_ms=float(mb.extra.get("yardstick_ms", math.nan)))
