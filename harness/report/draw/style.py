"""How each variant and each failed status looks in every figure of a report: colour, marker, line style, label.

The style of a variant is fixed for a report (:func:`variant_styles`), so a variant reads the same in every figure;
a newly registered variant gets the next colour and marker with no code change.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.core.names import BASELINE
from harness.report.rows import approximate_variants, variant_order

__all__ = ["FAILURE_GID", "HOLLOW_GID", "MARKERS", "NOT_DRAWN_STATUSES", "OTHER_STATUS_MARKER", "PALETTE",
           "POINTS_GID", "REFERENCE_COLOR", "STATUS_MARKERS", "STATUS_ORDER", "Style", "status_label",
           "status_marker", "variant_colors", "variant_markers", "variant_styles"]

#: Marker of each failed status, with its legend text. ``unsupported`` is listed for completeness (the footnote
#: and report.md name unsupported rows; they are not drawn).
STATUS_MARKERS: dict[str, tuple[str, str]] = {
    "unsupported": ("s", "unsupported"),
    "oom": ("X", "oom (out of memory)"),
    "error": ("D", "error (exception)"),
    "numerics": ("^", "numerics (NaN/Inf)"),
    "timeout": ("v", "timeout"),
    "crashed": ("*", "crashed"),
}
#: The order the legend lists failed statuses in.
STATUS_ORDER: tuple[str, ...] = tuple(STATUS_MARKERS)
#: Marker of any other status a future store may write.
OTHER_STATUS_MARKER = "P"
#: Statuses never drawn in a panel (said once, in the footnote and in report.md).
NOT_DRAWN_STATUSES = ("unsupported",)
#: Colours: Okabe & Ito's (without black, kept for the baseline; yellow last), then Tol's muted wine, olive, indigo.
PALETTE: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
                            "#882255", "#999933", "#332288")
#: Markers of the non-baseline variants; 11 markers against 10 colours: no two variants share both below 110.
MARKERS: tuple[str, ...] = ("s", "^", "D", "v", "o", "P", "<", "h", ">", "p", "*")
#: Colour of a reference line (textbook attention's error in the same dtype).
REFERENCE_COLOR = "#8c8c8c"
#: ``gid`` of the artists: a variant's filled markers, its hollow (contended) ones, failure markers.
POINTS_GID, HOLLOW_GID, FAILURE_GID = "points", "contended", "failure"
_BASELINE_COLOR = "#000000"
_BASELINE_MARKER = "o"


@dataclass(frozen=True)
class Style:
    """How one variant is drawn in every figure of a report.

    Args:
        color: line and marker colour.
        marker: marker symbol.
        approx: an approximation (dashed line, ``approx.`` label).
        label: the legend text (``linear (approx., err 0.71)``, ``full (baseline)``).
    """

    color: str
    marker: str
    approx: bool = False
    label: str = ""

    @property
    def baseline(self) -> bool:
        return self.label.endswith("(baseline)")

    @property
    def linestyle(self) -> str | tuple:
        return (0, (5, 2.5)) if self.approx else "-"

    @property
    def edge(self) -> str:
        """A darker edge of the same hue, so light colours (yellow, sky blue) stay visible on white."""
        from matplotlib.colors import to_rgb

        r, g, b = to_rgb(self.color)
        return "#" + "".join(f"{int(255 * 0.62 * c):02x}" for c in (r, g, b))


def variant_colors(variants: list[str] | tuple[str, ...] | pd.Series) -> dict[str, str]:
    """One colour per variant, fixed for a report: ``full`` black, the others from :data:`PALETTE` in name order
    (repeating after 10, when the marker still tells them apart).

    Args:
        variants: variant names (duplicates allowed).

    Returns:
        name -> colour (hex string).
    """
    names = sorted({str(v) for v in variants} - {BASELINE})
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    colors[BASELINE] = _BASELINE_COLOR
    return colors


def variant_markers(variants) -> dict[str, str]:
    """One marker per variant, in the same order as :func:`variant_colors`."""
    names = sorted({str(v) for v in variants} - {BASELINE})
    markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
    markers[BASELINE] = _BASELINE_MARKER
    return markers


def variant_styles(frame: pd.DataFrame) -> dict[str, Style]:
    """The :class:`Style` of every variant in ``frame``: colour, marker, whether it approximates, legend label.

    Args:
        frame: normalized result rows (``err_metric`` gives an approximation's median error for its label).

    Returns:
        name -> style.
    """
    names = variant_order(frame["variant"])
    colors, markers = variant_colors(names), variant_markers(names)
    approx = approximate_variants(frame)
    styles = {}
    for v in names:
        label = v
        if v == BASELINE:
            label = f"{v} (baseline)"
        elif v in approx:
            ok = frame[(frame["variant"] == v) & (frame["status"] == "ok")]
            err = pd.to_numeric(ok.get("err_metric", ok.get("err_rel_l2")), errors="coerce").dropna()
            label = f"{v} (approx., err {float(err.median()):.2g})" if len(err) else f"{v} (approx.)"
        styles[v] = Style(color=colors[v], marker=markers[v], approx=v in approx, label=label)
    return styles


def status_marker(status: str) -> str:
    """The marker of a failed status."""
    return STATUS_MARKERS.get(status, (OTHER_STATUS_MARKER, status))[0]


def status_label(status: str) -> str:
    """The legend text of a failed status."""
    return STATUS_MARKERS.get(status, (OTHER_STATUS_MARKER, status))[1]
