"""What each variant supports on this machine, found by asking it about small probe cases (``attnbench list``).

For each variant a base case it supports is looked for (small shape, CPU or a present GPU, float32 or a half
dtype); then one property at a time (pattern, dtype, device, mode) is varied and the variant's own
``not_supported_reasons`` say yes or why not. A device the machine lacks is reported as such. Nothing is run.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from harness.core.case import DTYPES, MODES, Case
from harness.core.pattern import PATTERN_KINDS, make_pattern

__all__ = ["Support", "VariantSupport", "family", "format_support", "format_table", "probe_variant", "probe_variants"]

_PROBE_PATTERNS = {k: make_pattern(k, window=64, block=32, local=1, stride=2, n_global=1) for k in PATTERN_KINDS}
_BASE = Case(batch=1, heads=1, seq_len=128, head_dim=64, dtype="float32", device="cpu", pattern=_PROBE_PATTERNS["full"],
             mode="fwd", seed=0)


@dataclass
class Support:
    """Support of one variant along one property: the values it takes, and the reasons for those it does not."""

    yes: list[str] = field(default_factory=list)
    no: dict[str, str] = field(default_factory=dict)


@dataclass
class VariantSupport:
    """What ``attnbench list`` shows for one variant."""

    name: str
    exact: bool
    description: str
    max_head_dim: int | None
    base: Case
    axes: dict[str, Support] = field(default_factory=dict)
    error: str = ""


def _reasons(variant, case: Case, cuda: bool) -> list[str]:
    try:
        reasons = list(variant.not_supported_reasons(case))
    except Exception as exc:  # a buggy variant is shown, not fatal
        reasons = [f"not_supported_reasons raised {type(exc).__name__}: {exc}"]
    if case.device_type == "cuda" and not cuda:
        reasons.append("no CUDA device on this machine")
    return reasons


def _base_case(variant, cuda: bool) -> Case:
    devices = ["cuda", "cpu"] if cuda else ["cpu"]
    for dev, dt, kind in itertools.product(devices, ("float32", "bfloat16", "float16"), tuple(_PROBE_PATTERNS)):
        c = dataclasses.replace(_BASE, device=dev, dtype=dt, pattern=_PROBE_PATTERNS[kind])
        if not _reasons(variant, c, cuda):
            return c
    return _BASE


def probe_variant(name: str, cuda: bool | None = None) -> VariantSupport:
    """Support of the variant ``name`` along patterns, dtypes, devices and modes on this machine."""
    from harness.core.registry import get_variant

    if cuda is None:
        from harness.measure.env import cuda_available

        cuda = cuda_available()
    v = get_variant(name)
    base = _base_case(v, cuda)
    out = VariantSupport(name=name, exact=bool(v.exact), description=v.description, max_head_dim=v.max_head_dim,
                         base=base)
    axes = {
        "patterns": [(k, dataclasses.replace(base, pattern=p)) for k, p in _PROBE_PATTERNS.items()],
        "dtypes": [(d, dataclasses.replace(base, dtype=d)) for d in DTYPES],
        "devices": [(d, dataclasses.replace(base, device=d)) for d in ("cpu", "cuda")],
        "modes": [(m, dataclasses.replace(base, mode=m)) for m in MODES],
        "shapes": [("grouped kv_heads", dataclasses.replace(base, heads=4, kv_heads=2)),
                   ("q_len < seq_len", dataclasses.replace(base, q_len=1))],
    }
    for axis, probes in axes.items():
        sup = Support()
        for value, case in probes:
            reasons = _reasons(v, case, cuda)
            if reasons:
                sup.no[value] = "; ".join(reasons)
            else:
                sup.yes.append(value)
        out.axes[axis] = sup
    return out


def probe_variants(names: list[str], cuda: bool | None = None) -> list[VariantSupport]:
    """:func:`probe_variant` for each name."""
    if cuda is None:
        from harness.measure.env import cuda_available

        cuda = cuda_available()
    return [probe_variant(n, cuda) for n in names]


def family(variant) -> str:
    """A variant's family: its ``family`` attribute when it has one, else the module it is defined in
    (``variants/sdpa.py`` -> ``sdpa``; a file loaded with ``variants_from`` -> the file's name)."""
    declared = getattr(variant, "family", None)
    if isinstance(declared, str) and declared:
        return declared
    module = type(variant).__module__.rsplit(".", 1)[-1]
    if module.startswith("attnbench_local_"):  # registry.load_variants_from's name for a file: <stem>_<digest>
        module = module.removeprefix("attnbench_local_").rsplit("_", 1)[0]
    return module


def format_table(names: list[str], cuda: bool | None = None, total: int | None = None) -> str:
    """``attnbench list``: one line per variant (name, family, exact or approximate, devices, patterns).

    Args:
        names: registered variant names.
        cuda: whether this machine has a CUDA device (default: ask torch); devices it lacks are starred.
        total: line width (default: the terminal's).

    Returns:
        The table, then a line on the starred devices (when any) and on ``--verbose``.
    """
    from harness.cli.helptext import table
    from harness.core.registry import get_variant

    if cuda is None:
        from harness.measure.env import cuda_available

        cuda = cuda_available()
    rows = [("NAME", "FAMILY", "EXACT", "DEVICES", "PATTERNS")]
    starred = False
    for name in names:
        v = get_variant(name)
        devices = []
        for d in ("cpu", "cuda"):
            if d in v.devices:
                devices.append(d + ("*" if d == "cuda" and not cuda else ""))
                starred |= d == "cuda" and not cuda
        kinds = [k for k in PATTERN_KINDS if k in v.patterns]
        patterns = "all" if len(kinds) == len(PATTERN_KINDS) else ", ".join(kinds)
        rows.append((name, family(v), "yes" if v.exact else "no", ", ".join(devices), patterns))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    text = table(rows, widths, total, indent=0)
    if starred:
        text += "* no CUDA device on this machine\n"
    return text + "attnbench list --verbose: what each supports here (patterns, dtypes, devices, modes) and why not\n"


def format_support(items: list[VariantSupport]) -> str:
    """The text ``attnbench list`` prints."""
    lines: list[str] = []
    for s in items:
        kind = "exact" if s.exact else "approximate"
        lines.append(f"{s.name} ({kind}){' - ' + s.description if s.description else ''}")
        for axis, sup in s.axes.items():
            lines.append(f"  {axis:<9} yes: {', '.join(sup.yes) if sup.yes else '(none)'}")
            for value, why in sup.no.items():
                lines.append(f"  {'':<9} no:  {value}: {why}")
        hd = f"<= {s.max_head_dim}" if s.max_head_dim is not None else "any"
        lines.append(f"  {'head_dim':<9} {hd}")
        lines.append("")
    return "\n".join(lines)
