"""Decode and roofline figures: time and GB/s against context length, and achieved FLOP/s against intensity.

- ``decode_time`` and ``decode_gbps``: rows whose queries are fewer than their keys (``q_len < seq_len``: decode,
  speculative decode, chunked prefill), median time and achieved GB/s (:mod:`harness.roofline`) against the
  context length ``seq_len``, one line per variant, a panel per (model or head shape, batch, q_len, device,
  dtype, pattern, mode); the GB/s panels draw the measured copy ceiling as a dashed line.
- ``roofline``: every ``ok`` row as a point, achieved TFLOP/s against arithmetic intensity (FLOP per byte moved),
  log-log, a panel per (device, dtype), with both measured ceilings drawn: the copy ceiling's slope
  (``intensity x GB/s``) up to the ridge point and the matmul ceiling's flat line beyond it.

Pure matplotlib on a frame of result rows; :mod:`harness.plots` calls :func:`make_figure` for these names.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

#: The figures of this module, in the order a report lists them.
FIGURES: tuple[str, ...] = ("decode_time", "decode_gbps", "roofline")
#: Columns the figures read.
COLUMNS: tuple[str, ...] = ("q_len", "kv_heads", "model", "achieved_gbps", "copy_ceiling_gbps", "arith_intensity",
                            "matmul_ceiling_tflops", "tflops", "time_ms_median")
_PANEL_W, _PANEL_H, _MAX_COLS = 4.6, 3.4, 3


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(frame[col], errors="coerce") if col in frame.columns else pd.Series(np.nan, frame.index)


def decode_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with fewer queries than keys."""
    if "q_len" not in frame.columns:
        return frame.iloc[0:0]
    q = _num(frame, "q_len")
    return frame[q.notna() & (q < _num(frame, "seq_len"))]


def figure_names(frame: pd.DataFrame) -> list[str]:
    """This module's figures that ``frame`` has data for."""
    names = []
    if len(decode_rows(frame)):
        names += ["decode_time", "decode_gbps"]
    ok = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    if len(ok) and _num(ok, "arith_intensity").notna().any() and _num(ok, "tflops").notna().any():
        names.append("roofline")
    return names


def _shape_label(row: pd.Series) -> str:
    model = row.get("model")
    heads = f"H{int(row['heads'])}" + (f"/KV{int(row['kv_heads'])}" if pd.notna(row.get("kv_heads")) and
                                       row.get("kv_heads") != row.get("heads") else "")
    shape = f"{model} ({heads} D{int(row['head_dim'])})" if isinstance(model, str) and model else \
        f"{heads} D{int(row['head_dim'])}"
    return (f"{row['device']} {row['dtype']} {shape} B{int(row['batch'])} q_len={int(row['q_len'])} "
            f"{row.get('pattern_label') or row.get('pattern')} {row['mode']}")


def _grid(n: int) -> tuple[Figure, list]:
    ncols = min(n, _MAX_COLS)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(_PANEL_W * ncols + 1.8, _PANEL_H * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _legend(fig: Figure, colors: dict[str, str], variants: list[str], extra: list[tuple] = ()) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors.get(v, "0.5"), marker="o", lw=1.6) for v in variants]
    labels = list(variants)
    for handle, label in extra:
        handles.append(handle)
        labels.append(label)
    fig.legend(handles, labels, loc="outside right center", fontsize=9, frameon=False, title="variant",
               title_fontsize=9)


def plot_decode(frame: pd.DataFrame, value: str, colors: dict[str, str]) -> Figure:
    """Decode rows' ``value`` (``time_ms_median`` or ``achieved_gbps``) against context length.

    Failed rows appear as an ``x`` at the panel's bottom edge at their context length.

    Args:
        frame: result rows (all statuses).
        value: the column.
        colors: variant -> colour.

    Returns:
        The figure.
    """
    from matplotlib.lines import Line2D

    rows = decode_rows(frame).copy()
    rows["_panel"] = rows.apply(_shape_label, axis=1)
    panels = sorted(rows["_panel"].unique())
    fig, axes = _grid(len(panels))
    variants = sorted(rows["variant"].unique())
    ylabel = "median time (ms)" if value == "time_ms_median" else "achieved GB/s (bytes moved / time)"
    extra: list[tuple] = []
    for ax, panel in zip(axes, panels):
        sub = rows[rows["_panel"] == panel]
        for variant in variants:
            vs = sub[sub["variant"] == variant]
            ok = vs[(vs["status"] == "ok") & _num(vs, value).gt(0)]
            line = ok.groupby("seq_len")[value].median().sort_index()
            if len(line):
                ax.plot(line.index, line.values, marker="o", lw=1.6, color=colors.get(variant, "0.5"))
            bad = vs[vs["status"] != "ok"]
            if len(bad):
                ax.plot(bad["seq_len"], [0.02] * len(bad), "x", color=colors.get(variant, "0.5"),
                        transform=ax.get_xaxis_transform(), clip_on=False)
        if value == "achieved_gbps":
            ceiling = _num(sub, "copy_ceiling_gbps").median()
            if math.isfinite(ceiling):
                ax.axhline(ceiling, color="black", ls=(0, (4, 3)), lw=1.2)
                if not extra:
                    extra.append((Line2D([], [], color="black", ls=(0, (4, 3))), "measured copy ceiling"))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (keys, seq_len)")
        ax.set_ylabel(ylabel)
        ax.set_title(panel, fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
    title = "Decode: median time vs context" if value == "time_ms_median" else "Decode: achieved bandwidth vs context"
    fig.suptitle(title + " (x: failed or declined)", fontsize=12)
    _legend(fig, colors, variants, extra)
    return fig


def plot_roofline(frame: pd.DataFrame, colors: dict[str, str]) -> Figure:
    """Achieved TFLOP/s against arithmetic intensity for every ``ok`` row, both measured ceilings drawn.

    Args:
        frame: result rows.
        colors: variant -> colour.

    Returns:
        The figure: a panel per (device, dtype, threads).
    """
    from matplotlib.lines import Line2D

    ok = frame[(frame["status"] == "ok") & _num(frame, "arith_intensity").gt(0) & _num(frame, "tflops").gt(0)].copy()
    keys = ["device", "dtype"] + (["threads"] if "threads" in ok.columns else [])
    ok["_panel"] = ok[keys].astype(str).agg(" ".join, axis=1)
    panels = sorted(ok["_panel"].unique())
    fig, axes = _grid(len(panels))
    variants = sorted(ok["variant"].unique())
    for ax, panel in zip(axes, panels):
        sub = ok[ok["_panel"] == panel]
        x, y = _num(sub, "arith_intensity"), _num(sub, "tflops")
        for variant in variants:
            pick = sub["variant"] == variant
            ax.scatter(x[pick], y[pick], s=18, color=colors.get(variant, "0.5"), zorder=3)
        matmul, copy = _num(sub, "matmul_ceiling_tflops").median(), _num(sub, "copy_ceiling_gbps").median()
        lo, hi = float(x.min()) / 2, float(x.max()) * 2
        if math.isfinite(matmul) and math.isfinite(copy) and copy > 0:
            ridge = matmul * 1e12 / (copy * 1e9)
            lo, hi = min(lo, ridge / 4), max(hi, ridge * 4)
            grid = np.geomspace(lo, hi, 200)
            ax.plot(grid, np.minimum(grid * copy * 1e9 / 1e12, matmul), color="black", lw=1.4)
            ax.axvline(ridge, color="0.5", ls=":", lw=1.0)
            ax.text(ridge, matmul * 0.8, f" ridge {ridge:.3g} FLOP/B", fontsize=7, va="top")
            ax.text(lo, lo * copy * 1e9 / 1e12, f"copy {copy:.3g} GB/s", fontsize=7, va="bottom", rotation=0)
            ax.text(hi, matmul, f"matmul {matmul:.3g} TFLOP/s ", fontsize=7, va="bottom", ha="right")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_xlabel("arithmetic intensity (useful FLOP / byte moved)")
        ax.set_ylabel("achieved TFLOP/s")
        ax.set_title(panel, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle("Roofline: achieved throughput vs arithmetic intensity, measured ceilings", fontsize=12)
    _legend(fig, colors, variants, [(Line2D([], [], color="black"), "min(copy x intensity, matmul)")])
    return fig


def make_figure(name: str, frame: pd.DataFrame, colors: dict[str, str]) -> Figure:
    """One of this module's figures by name (see :data:`FIGURES`)."""
    if name == "decode_time":
        return plot_decode(frame, "time_ms_median", colors)
    if name == "decode_gbps":
        return plot_decode(frame, "achieved_gbps", colors)
    if name == "roofline":
        return plot_roofline(frame, colors)
    raise ValueError(f"figure {name!r} is not a decode or roofline figure (allowed: {', '.join(FIGURES)})")
