"""Pad or pack, and with which kernel: the report's table and figure for variable-length batches.

Rows with documents (``lengths`` set, :mod:`harness.core.varlen`) are grouped by their documents and everything else
that defines the case except the layout (and the ``batch`` and ``seq_len`` the layout derives): a *batch*. For each
batch the table sets each exact variant's packed row beside its padded row: time per real token
(``us_per_token``), peak memory per real token, and the padded/packed time ratio; the verdict is the fastest
(variant, layout) that succeeded. The figure draws time per real token and peak memory per real token against the
spread of the documents' lengths (``doc_len_cv``, standard deviation / mean): packed solid, padded dashed, one colour
per variant, one panel column per remaining case (device, dtype, pattern, heads, head size, mode).

The module reads rows only (pandas, matplotlib): no torch. The figure is drawn with the report's toolkit
(:mod:`harness.report.draw`): each variant in its colour and marker of the report.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING

import pandas as pd

from harness.report.draw.canvas import blank_figure
from harness.report.draw.style import Style, variant_styles
from harness.store.columns import CASE_PARAMS, value_text

if TYPE_CHECKING:  # imported where the figure is drawn (report.md's tables need no matplotlib)
    from matplotlib.figure import Figure

__all__ = ["VARLEN_COLUMNS", "has_varlen", "pad_or_pack_figure", "pad_or_pack_markdown", "pad_or_pack_table",
           "varlen_rows"]

#: Columns the table and the figure read besides the case parameters.
VARLEN_COLUMNS: tuple[str, ...] = ("lengths", "layout", "doc_count", "doc_len_mean", "doc_len_max", "doc_tokens",
                                   "doc_len_cv", "padding_fraction", "us_per_token", "peak_mem_bytes", "err_rel_l2",
                                   "status", "variant", "exact", "time_ms_median")
#: Case parameters that a batch's two layouts share (``layout`` and what it derives set them apart).
_NOT_BATCH = {"layout", "batch", "seq_len", "q_len"}
#: Case parameters left out of a batch's one-line description.
_QUIET_KEYS = ("lengths", "threads", "cpu_timer")
#: Case parameters that separate panels of the figure (the documents, drawn along x, do not).
_NOT_PANEL = _NOT_BATCH | {"lengths", "seed"}


def varlen_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` that measured a variable-length batch (empty when there are none)."""
    if "lengths" not in frame.columns or "layout" not in frame.columns:
        return frame.iloc[0:0]
    has = frame["lengths"].map(lambda x: bool(value_text(x))) & frame["layout"].isin(["packed", "padded"])
    return frame[has]


def _exact(frame: pd.DataFrame) -> pd.Series:
    if "exact" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return ~frame["exact"].astype(str).str.lower().isin(("false", "0", "0.0"))


def _key(frame: pd.DataFrame, drop: set[str]) -> pd.Series:
    cols = [p.name for p in CASE_PARAMS if p.name not in drop]

    def one(row: pd.Series) -> str:
        return "|".join(f"{c}={value_text(row.get(c))}" for c in cols)
    return frame.apply(one, axis=1) if not frame.empty else pd.Series(dtype=str)


def _case_words(key: str) -> str:
    """A batch's or panel's key as ``device=cpu dtype=float32 heads=2 ...`` (defaults and the documents left out)."""
    return " ".join(f"{c}={v}" for c, v in (kv.split("=", 1) for kv in key.split("|"))
                    if c not in _QUIET_KEYS and v and v not in ("gaussian", "0", "per_call"))


def _kind(lengths: str) -> str:
    """A short name of a length spec for the figure: its kind, with sigma for lognormal (``lognormal s=0.5``)."""
    kind = lengths.split("/")[0]
    if kind == "lognormal":
        sigma = dict(p.split(":", 1) for p in lengths.split("/")[1:] if ":" in p).get("sigma", "1")
        return f"lognormal s={sigma}"
    return "explicit" if "+" in kind or kind.isdigit() else kind


def pad_or_pack_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per batch of documents and exact variant: packed against padded.

    Args:
        frame: result rows (any; rows without documents are ignored).

    Returns:
        One row per (batch, variant): ``lengths``, ``case`` (the rest of the case), ``docs`` (count, mean, max),
        ``padding`` (the padded batch's padding fraction), ``packed_us_per_token``, ``padded_us_per_token``,
        ``padded_over_packed`` (time ratio), ``packed_mem_per_token``, ``padded_mem_per_token`` (bytes), and
        ``best`` marking the fastest (variant, layout) of the batch. Empty without document rows.
    """
    rows = varlen_rows(frame)
    rows = rows[_exact(rows)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(_batch=_key(rows, _NOT_BATCH).values)
    out = []
    for batch, grp in rows.groupby("_batch", sort=False):
        first = grp.iloc[0]
        case = _case_words(batch)
        padded_rows = grp[grp["layout"] == "padded"]
        padding = float(padded_rows["padding_fraction"].iloc[0]) if not padded_rows.empty else math.nan
        best_t, best = math.inf, None
        entries = []
        for variant, vg in grp.groupby("variant", sort=True):
            if (vg["status"] == "unsupported").all():
                continue  # "Not measured" says why
            entry = {"lengths": value_text(first["lengths"]), "case": case,
                     "docs": f"{int(first['doc_count'])} docs, mean {float(first['doc_len_mean']):.0f}, "
                             f"max {int(first['doc_len_max'])}",
                     "padding": padding, "variant": variant}
            for layout in ("packed", "padded"):
                lg = vg[(vg["layout"] == layout) & (vg["status"] == "ok")]
                t = float(lg["us_per_token"].median()) if not lg.empty else math.nan
                mem = float((lg["peak_mem_bytes"] / lg["doc_tokens"]).median()) if not lg.empty else math.nan
                entry[f"{layout}_us_per_token"], entry[f"{layout}_mem_per_token"] = t, mem
                if not vg[vg["layout"] == layout].empty and lg.empty:
                    entry[f"{layout}_status"] = str(vg[vg["layout"] == layout]["status"].iloc[0])
                if math.isfinite(t) and t < best_t:
                    best_t, best = t, (variant, layout)
            entry["padded_over_packed"] = entry["padded_us_per_token"] / entry["packed_us_per_token"] if (
                entry["packed_us_per_token"] > 0) else math.nan
            entries.append(entry)
        for e in entries:
            e["best"] = best[1] if best is not None and e["variant"] == best[0] else ""
        out += entries
    return pd.DataFrame(out)


def _us(x: float) -> str:
    return "" if not math.isfinite(x) else (f"{x:.3g}" if x < 1000 else f"{x:,.0f}")


def _bytes(x: float) -> str:
    if not math.isfinite(x):
        return ""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} B"


def pad_or_pack_markdown(frame: pd.DataFrame) -> list[str]:
    """The report's "Pad or pack" section (no lines without document rows)."""
    table = pad_or_pack_table(frame)
    if table.empty:
        return []
    lines = ["## Pad or pack", "",
             "Variable-length batches: each exact variant on the same documents packed into one sequence (document "
             "mask) and padded to the longest (padding mask). Time and peak memory per real token (padding does not "
             "count); `padded/packed` above 1 means padding costs that variant time. **Best** is the fastest "
             "(variant, layout) of the batch.", ""]
    for (lengths, case), grp in table.groupby(["lengths", "case"], sort=False):
        first = grp.iloc[0]
        lines += [f"**`lengths={lengths}`** ({first['docs']}; padded: {100 * first['padding']:.0f}% padding) "
                  f"{case}", ""]
        lines += ["| variant | packed us/token | padded us/token | padded/packed | packed mem/token | "
                  "padded mem/token |", "|---|---|---|---|---|---|"]
        for _, r in grp.iterrows():
            cells = []
            for layout in ("packed", "padded"):
                text = _us(r[f"{layout}_us_per_token"]) or str(r.get(f"{layout}_status", "") or "")
                cells.append(f"**{text}**" if r["best"] == layout else text)
            ratio = r["padded_over_packed"]
            lines.append(f"| `{r['variant']}` | {cells[0]} | {cells[1]} | "
                         f"{f'{ratio:.2f}x' if math.isfinite(ratio) else ''} | "
                         f"{_bytes(r['packed_mem_per_token'])} | {_bytes(r['padded_mem_per_token'])} |")
        best = grp[grp["best"] != ""]
        if not best.empty:
            b = best.iloc[0]
            lines += ["", f"Best: `{b['variant']}` {b['best']}, {_us(b[f'{b.best}_us_per_token'])} us per real token."]
        lines.append("")
    return lines


def has_varlen(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` has rows of variable-length batches (the report then draws :func:`pad_or_pack_figure`)."""
    return not varlen_rows(frame).empty


def pad_or_pack_figure(frame: pd.DataFrame, facets: list[str] | None = None,
                       styles: dict[str, Style] | None = None) -> Figure:
    """Time and peak memory per real token against the spread of document lengths, packed (solid) and padded
    (dashed), per exact variant; one column of panels per case apart from the documents.

    Args:
        frame: result rows (rows without documents are ignored).
        facets: unused (the panels are the cases); accepted so the report's figure table can call it.
        styles: variant -> style (the report's; default: :func:`harness.report.draw.style.variant_styles` of
            ``frame``).

    Returns:
        The figure.
    """
    styles = variant_styles(frame) if styles is None else styles
    rows = varlen_rows(frame)
    rows = rows[_exact(rows) & (rows["status"] == "ok")]
    rows = rows.assign(_panel=_key(rows, _NOT_PANEL).values) if not rows.empty else rows.assign(_panel="")
    panels = list(dict.fromkeys(rows["_panel"])) or [""]
    fig, axes = blank_figure(3.2 + 4.8 * len(panels), 7.6, 2, len(panels), sharex="col")
    variants = sorted(set(rows["variant"]))
    for col, panel in enumerate(panels):
        pg = rows[rows["_panel"] == panel]
        for variant in variants:
            st = styles.get(variant, Style("0.5", "o"))
            color, marker = st.color, st.marker
            for layout, ls, face in (("packed", "-", color), ("padded", "--", "none")):
                g = pg[(pg["variant"] == variant) & (pg["layout"] == layout)].sort_values("doc_len_cv")
                if g.empty:
                    continue
                x = g["doc_len_cv"].astype(float)
                axes[0][col].plot(x, g["us_per_token"].astype(float), ls=ls, marker=marker, color=color,
                                  markerfacecolor=face, label=f"{variant} {layout}")
                axes[1][col].plot(x, (g["peak_mem_bytes"] / g["doc_tokens"]).astype(float) / 2**10, ls=ls,
                                  marker=marker, color=color, markerfacecolor=face, label=f"{variant} {layout}")
        for (lengths, cv), _ in pg.groupby(["lengths", "doc_len_cv"], sort=False):  # which batch each x is
            axes[1][col].annotate(_kind(value_text(lengths)), (float(cv), 0.02), xycoords=("data", "axes fraction"),
                                  rotation=90, fontsize=7, color="0.35", ha="right", va="bottom")
        title = "\n".join(textwrap.wrap(_case_words(panel), 60))
        axes[0][col].set_title(title or "variable-length batches", fontsize=8)
        axes[0][col].set_ylabel("time per real token (us)")
        axes[1][col].set_ylabel("peak memory per real token (KiB)")
        axes[1][col].set_xlabel("spread of document lengths (std / mean)")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="solid: packed; dashed: padded",
                   title_fontsize=8)
    fig.suptitle("Pad or pack: time and memory per real token\nagainst the spread of document lengths", fontsize=11)
    return fig
