"""Inside one panel: the sequence-length axis, readable log ticks, y limits that leave room for the failure
markers, a variant's points (hollow where the row was contended) and the failure markers in lanes under the data.
"""

from __future__ import annotations

import math

import numpy as np

from harness.report.draw.style import FAILURE_GID, HOLLOW_GID, POINTS_GID, Style, status_marker
from harness.report.rows import variant_order

__all__ = ["at_least_decades", "draw_failures", "draw_points", "fail_room", "fit_ylim", "fmt_len", "log_ticks",
           "no_values", "set_len_axis"]

_FAIL_LANE = 0.055  # axes fraction per variant lane of failure markers under the data
_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def fmt_len(n: float) -> str:
    """A sequence length as a tick label: ``512``, ``4k``."""
    n = int(n)
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)


def set_len_axis(ax, lengths: list[float], label: str = "sequence length N (tokens)") -> None:
    """A log2 x axis ticked at the lengths measured (at most about 10 labels)."""
    ax.set_xscale("log", base=2)
    lengths = sorted({float(x) for x in lengths if np.isfinite(x) and x > 0})
    if lengths:
        if len(lengths) > 10:
            step = math.ceil(len(lengths) / 10)
            lengths = lengths[::step]
        ax.set_xticks(lengths, [fmt_len(x) for x in lengths])
        ax.minorticks_off()
        lo, hi = min(lengths), max(lengths)
        ax.set_xlim(lo / 1.35, hi * 1.35)
    ax.set_xlabel(label)


def log_ticks(axis, lo: float, hi: float) -> None:
    """Readable ticks on a log axis spanning ``[lo, hi]``: powers of ten (at most ~6), or 1-2-5 steps when the
    range is under two decades; no minor tick labels (they crowd, and are slow to lay out)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    if not (lo > 0 and hi > lo):
        return
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks: list[float] = []
    if b - a >= 3:
        step = max(1, math.ceil((b - a) / 6))
        ticks = [t for t in (10.0 ** e for e in range(a, b + 1, step)) if lo <= t <= hi]
    if len(ticks) < 3:  # under about three decades: 1-2-5 steps (or finer) so the axis has at least 3 labels
        for subs in ((1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
            ticks = [t for t in (m * 10.0 ** e for e in range(a, b + 1) for m in subs) if lo <= t <= hi]
            if len(ticks) >= 3:
                break
        if len(ticks) > 8:  # 1-2-5 over three decades: every other one
            ticks = ticks[::2]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(_tick_text))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _tick_text(x: float, _pos=None) -> str:
    """``0.01``, ``250``, ``10⁻⁶``, ``2×10⁻⁷`` (plain unicode: mathtext is slow to lay out)."""
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:g}"
    exp = math.floor(math.log10(abs(x)) + 1e-9)
    mant = x / 10.0 ** exp
    power = "10" + str(exp).translate(_SUPERSCRIPT)
    return power if abs(mant - 1) < 1e-6 else f"{mant:g}\u00d7{power}"


def fit_ylim(ax, values: list[float], log: bool, bottom_frac: float, floor: float | None = None) -> None:
    """Set y-limits so the data fill the panel above ``bottom_frac`` (the failure markers' room)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    vals = np.asarray([v for v in values if np.isfinite(v) and (v > 0 or not log)], dtype=float)
    if floor is not None:
        vals = np.append(vals, floor)
    tr = (np.log10 if log else (lambda a: a))
    inv = ((lambda a: 10.0 ** a) if log else (lambda a: a))
    if vals.size == 0:
        lo, hi = (0.0, 1.0)
    else:
        lo, hi = float(tr(vals).min()), float(tr(vals).max())
    span = hi - lo
    if span <= 0:
        span = 0.5 if log else (abs(hi) * 0.2 or 1.0)
        lo, hi = lo - span / 2, hi + span / 2
    top_margin, gap = 0.08, 0.06
    data_frac = 1.0 - bottom_frac - top_margin - gap
    total = span / data_frac
    y0, y1 = inv(lo - gap * total - bottom_frac * total), inv(hi + top_margin * total)
    ax.set_ylim(y0, y1)
    data_lo = inv(lo - gap * total)
    if log:
        log_ticks(ax.yaxis, data_lo, y1)
    else:  # no ticks in the failure markers' room: a value there would read as data
        ticks = [t for t in MaxNLocator(6).tick_values(data_lo, y1) if data_lo <= t <= y1]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FuncFormatter(_tick_text))


def at_least_decades(values: list[float], decades: float) -> list[float]:
    """``values`` plus two points around their geometric middle spanning ``decades``, so a log axis shows at least
    that range (differences at round-off level then look as small as they are)."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    if v.size == 0:
        return list(values)
    lo, hi = np.log10(v.min()), np.log10(v.max())
    if hi - lo >= decades:
        return list(values)
    mid = (lo + hi) / 2
    return list(values) + [10 ** (mid - decades / 2), 10 ** (mid + decades / 2)]


def no_values(ax) -> None:
    """A panel with nothing to plot: say so, and show no meaningless y ticks."""
    ax.set_yticks([])
    ax.text(0.5, 0.5, "no values recorded", transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.4")


def draw_points(ax, xs, ys, hollow, style: Style, size: float, zorder: float = 3.2) -> None:
    """Markers of one variant: filled, or hollow where ``hollow`` (a contended row)."""
    xs, ys, hollow = np.asarray(xs, float), np.asarray(ys, float), np.asarray(hollow, bool)
    for mask, face in ((~hollow, style.color), (hollow, "white")):
        if mask.any():
            ax.plot(xs[mask], ys[mask], linestyle="none", marker=style.marker, markersize=size, color=style.color,
                    markerfacecolor=face, markeredgecolor=style.edge if face != "white" else style.color,
                    markeredgewidth=0.7 if face != "white" else 1.4, zorder=zorder,
                    gid=HOLLOW_GID if face == "white" else POINTS_GID)


def draw_failures(ax, fails: list[tuple[str, str, float]], styles: dict[str, Style]) -> set:
    """Failure markers (variant, status, x in data units) in lanes under the data, one lane per variant; the
    statuses drawn."""
    if not fails:
        return set()
    lanes = variant_order({v for v, _, _ in fails})
    top = _FAIL_LANE * len(lanes) + 0.02
    ax.plot([0, 1], [top, top], transform=ax.transAxes, color="0.7", lw=0.7, ls=":", zorder=1)
    points: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for variant, status, x in sorted(fails, key=lambda e: (lanes.index(e[0]), e[1])):
        y = top - (lanes.index(variant) + 0.5) * _FAIL_LANE - 0.01
        xs, ys = points.setdefault((variant, status), ([], []))
        xs.append(x)
        ys.append(y)
    for (variant, status), (xs, ys) in points.items():
        st = styles.get(variant, Style("0.5", "o"))
        ax.plot(xs, ys, transform=ax.get_xaxis_transform(), marker=status_marker(status), linestyle="none",
                markersize=8, markerfacecolor=st.color, markeredgecolor="black", markeredgewidth=0.8, clip_on=False,
                zorder=5, gid=FAILURE_GID)
    return {s for _, s, _ in fails}


def fail_room(n_lanes: int) -> float:
    """The axes fraction under the data that ``n_lanes`` lanes of failure markers take."""
    return 0.0 if n_lanes == 0 else _FAIL_LANE * n_lanes + 0.03
