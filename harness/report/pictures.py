"""The report's attention pictures: the mask of each pattern measured, and for every approximate variant and every
sparse pattern an error-by-position picture of its worst case.

Which pictures, of which cases, is decided here from the rows (no torch); they are drawn by ``attnbench show
--jobs`` (:mod:`harness.cli.show`, pictures by :mod:`harness.show`) in a child process, because drawing them means
making the case's inputs again, running the float64 baseline and the variant, which need torch, and the report
never imports it. The report's background plotter starts that child after the plots; report.md links the files
by name, so it is complete before they exist.

The worst case is the row with the largest error: for an approximate variant its error against exact attention
(``approx_err_rel_l2`` where recorded, else ``err_rel_l2``), for a sparse pattern what the pattern costs against
dense attention (``approx_err_rel_l2`` of its exact variants' rows). A case whose pictures would cost more than
:data:`MAX_FLOPS` float64 operations (or inputs of more than :data:`MAX_INPUT_ELEMS` elements) is not redrawn:
the worst case within those bounds is drawn instead, and the caption names the worst one.
"""

from __future__ import annotations

import html
import json
import math
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.report.markdown import md_code, md_text
from harness.report.rows import approximate_variants
from harness.store.columns import case_text, is_blank

__all__ = ["JOBS_FILE", "LOG_FILE", "MAX_FLOPS", "MAX_INPUT_ELEMS", "PICTURES_DIR", "Picture", "draw_pictures",
           "picture_plan", "pictures_markdown", "row_keys"]

#: The pictures' folder, under the report's ``plots/``.
PICTURES_DIR = "attention"
#: The jobs the child draws (JSON), and its output, in that folder.
JOBS_FILE = "show_jobs.json"
LOG_FILE = "show.log"
#: Most float64 operations one worst-case picture may cost to compute (the baseline on the rows drawn).
MAX_FLOPS = 2**34
#: Most elements of one of the case's q, k, v (they are made again for the picture).
MAX_INPUT_ELEMS = 2**26
#: Heads an error picture draws (the first ones), query rows it compares (more are sampled), tiles per side of a
#: mask and of a weight error picture.
ERROR_HEADS = 4
ERROR_ROWS = 1024
MASK_TILES = 256
WEIGHT_TILES = 256
#: Width report.md shows each mask at, pixels (the file is larger: open it for the detail).
MASK_WIDTH_PX = 300
#: Longest the child may take, seconds.
TIMEOUT_S = 600.0
_SPARSE = ("window", "window_sym", "block_sparse", "block_sparse_causal")
_INT_KEYS = ("batch", "heads", "kv_heads", "seq_len", "q_len", "head_dim", "window", "block", "local", "stride",
             "n_global", "seed")
_TEXT_KEYS = ("device", "dtype", "pattern", "inputs", "lengths", "layout")


@dataclass(frozen=True)
class Picture:
    """One picture of the report.

    Args:
        kind: ``mask`` or ``error``.
        name: the files' prefix (in ``plots/attention/``).
        keys: the case, as the sweep's keys.
        subject: the pattern (mask, sparse pattern) or the variant (approximation) it shows.
        case: the case in one line.
        variants: the variant whose error is drawn (approximations), or none (a pattern's own cost).
        error: the row's error (error pictures).
        note: what the caption adds (the worst case was too large to redraw, ...).
    """

    kind: str
    name: str
    keys: dict
    subject: str
    case: str
    variants: tuple[str, ...] = ()
    error: float = math.nan
    note: str = ""

    def job(self) -> dict:
        """The job ``attnbench show --jobs`` draws."""
        if self.kind == "mask":
            return {"keys": self.keys, "what": ["mask"], "name": self.name, "max_tiles": MASK_TILES}
        heads = list(range(min(int(self.keys.get("heads", 8)), ERROR_HEADS)))
        return {"keys": self.keys, "what": ["error"], "variants": list(self.variants), "name": self.name,
                "heads": heads, "max_rows": ERROR_ROWS, "max_tiles": WEIGHT_TILES}


def _num(value: object) -> int | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f.is_integer() else None


def row_keys(row: Mapping[str, object]) -> dict | None:
    """The sweep keys that make a row's case again; None when they cannot (a custom block layout, no pattern)."""
    label = str(row.get("pattern_label", ""))
    kind = str(row.get("pattern", ""))
    if "custom layout" in label or is_blank(kind):
        return None
    keys: dict = {k: str(row[k]) for k in _TEXT_KEYS if not is_blank(row.get(k))}
    keys |= {k: v for k in _INT_KEYS if (v := _num(row.get(k))) is not None}
    if not kind.startswith("window"):
        keys.pop("window", None)
    if not kind.startswith("block_sparse"):
        for k in ("block", "local", "stride", "n_global"):
            keys.pop(k, None)
    if "lengths" in keys:  # the documents set batch and seq_len
        for k in ("batch", "seq_len", "q_len"):
            keys.pop(k, None)
    else:
        keys.pop("layout", None)
    if keys.get("q_len") == keys.get("seq_len"):
        keys.pop("q_len", None)
    if keys.get("kv_heads") == keys.get("heads"):
        keys.pop("kv_heads", None)
    return keys


def _cost(row: Mapping[str, object], weights: bool) -> tuple[float, float]:
    """(float64 operations, input elements) of a row's error picture."""
    n = _num(row.get("seq_len")) or 1
    lq = _num(row.get("q_len")) or n
    d = _num(row.get("head_dim")) or 64
    heads = min(_num(row.get("heads")) or 1, ERROR_HEADS)
    rows = min(lq, ERROR_ROWS)
    flops = 4.0 * d * heads * (2 * rows * n + (lq * n if weights else 0))
    elems = float(_num(row.get("batch")) or 1) * (_num(row.get("heads")) or 1) * n * d
    return flops, elems


def _slug(text: str) -> str:
    import re

    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.+-]+", "_", text.replace("=", ""))).strip("_")


def _masks(frame: pd.DataFrame) -> list[Picture]:
    """One mask per pattern measured (and per batch of documents), at the shortest square length it ran."""
    out = []
    cols = [c for c in ("pattern_label", "lengths", "layout") if c in frame.columns]
    for _, sub in frame.groupby(cols, dropna=False, sort=True):
        sq = sub[pd.to_numeric(sub.get("q_len", sub["seq_len"]), errors="coerce") == sub["seq_len"]]
        pick = (sq if not sq.empty else sub).sort_values("seq_len", kind="stable").iloc[0]
        keys = row_keys(pick)
        if keys is None:
            continue
        label = str(pick["pattern_label"])
        docs = "" if is_blank(pick.get("lengths")) else f" {pick.get('lengths')} {pick.get('layout', '')}"
        out.append(Picture("mask", _slug(f"{label}{docs}"), keys, label + docs, case_text(pick)))
    return out


def _worst(rows: pd.DataFrame, err: pd.Series, weights: bool) -> tuple[pd.Series | None, str]:
    """The row of largest ``err`` within the drawing bounds, and a note when the largest overall is beyond them."""
    order = err.sort_values(ascending=False, kind="stable").index
    for i, idx in enumerate(order):
        row = rows.loc[idx]
        flops, elems = _cost(row, weights)
        if row_keys(row) is not None and flops <= MAX_FLOPS and elems <= MAX_INPUT_ELEMS:
            top = rows.loc[order[0]]
            note = "" if i == 0 else (f"the worst case within the drawing bounds; the worst, {case_text(top)} "
                                      f"(error {float(err[order[0]]):.3g}), is too large to compute again here")
            return row, note
    return None, ""


def _errors(frame: pd.DataFrame) -> list[Picture]:
    ok = frame[frame["status"] == "ok"]
    approx_col = pd.to_numeric(ok.get("approx_err_rel_l2"), errors="coerce") if "approx_err_rel_l2" in ok else None
    plain = pd.to_numeric(ok["err_rel_l2"], errors="coerce") if "err_rel_l2" in ok else pd.Series(math.nan, ok.index)
    metric = approx_col.fillna(plain) if approx_col is not None else plain
    out = []
    approx = approximate_variants(frame)
    for variant in sorted(approx):
        err = metric[(ok["variant"] == variant) & metric.notna()]
        row, note = _worst(ok, err, weights=True)
        if row is not None:
            out.append(Picture("error", "worst", row_keys(row), variant, case_text(row),
                               (variant,), float(err[row.name]), note))
    if approx_col is None:
        return out
    sparse = ok[ok["pattern"].astype(str).isin(_SPARSE) & ~ok["variant"].isin(approx) & approx_col.notna()]
    for label, sub in sparse.groupby("pattern_label", sort=True):
        row, note = _worst(sub, approx_col[sub.index], weights=False)
        if row is not None:
            out.append(Picture("error", _slug(f"worst {label}"), row_keys(row), str(label), case_text(row), (),
                               float(approx_col[row.name]), note))
    return out


def picture_plan(frame: pd.DataFrame) -> list[Picture]:
    """The report's pictures for ``frame`` (normalized rows): the masks, then the worst cases' error maps."""
    if frame.empty or "pattern" not in frame.columns:
        return []
    return _masks(frame) + _errors(frame)


def _files(p: Picture) -> list[str]:
    """The files a picture's job writes (``attnbench show``'s names)."""
    if p.kind == "mask":
        return [f"{p.name}_mask.png"]
    if not p.variants:
        return [f"{p.name}_pattern_error.png"]
    v = _slug(p.variants[0])
    return [f"{p.name}_error_{v}.png", f"{p.name}_weight_error_{v}.png"]


def draw_pictures(pictures: list[Picture], plots_dir: Path, timeout_s: float = TIMEOUT_S) -> int:
    """Draw ``pictures`` into ``plots_dir/attention`` with ``attnbench show --jobs`` in a child process.

    Returns:
        The child's exit status (0: every picture drawn; its output is in ``attention/show.log``); 0 when there is
        nothing to draw; 124 when it ran past ``timeout_s``.
    """
    if not pictures:
        return 0
    folder = plots_dir / PICTURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    jobs = folder / JOBS_FILE
    jobs.write_text(json.dumps([p.job() for p in pictures], indent=1), encoding="utf-8")
    cmd = [sys.executable, "-m", "harness", "show", "--jobs", str(jobs), "--out", str(folder)]
    with open(folder / LOG_FILE, "w") as log:
        try:
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            log.write(f"attnbench show: stopped after {timeout_s:g} s\n")
            return 124
        except OSError as exc:
            log.write(f"attnbench show could not start: {exc}\n")
            return 1


def pictures_markdown(pictures: list[Picture], rel: str) -> list[str]:
    """report.md's section of the pictures (``rel``: the pictures' folder relative to report.md)."""
    if not pictures:
        return []
    lines = ["## Attention pictures", "",
             "Drawn by `attnbench show` in the background, after the plots (its output: "
             f"[{LOG_FILE}]({rel}/{LOG_FILE})); `attnbench show KEY=VALUE ...` draws any case.", ""]
    masks = [p for p in pictures if p.kind == "mask"]
    if masks:
        lines += ["**Masks** of the patterns measured, at the shortest length each ran (which query attends which "
                  "key; at more than 256 tokens, the attended fraction of tiles of whole tokens):", ""]
        lines += [" ".join(f'<img src="{html.escape(rel + "/" + _files(p)[0])}" width="{MASK_WIDTH_PX}" '
                           f'alt="mask of {html.escape(p.subject)}">' for p in masks), ""]
    for p in pictures:
        if p.kind != "error":
            continue
        what = (f"{md_code(p.subject)}: its output's relative error against the float64 baseline" if p.variants
                else f"{md_code(p.subject)}: what the pattern costs, exact attention with it against dense attention")
        files = _files(p)
        lines += [f"**Where the error lies: {what}**, by query position and head, worst case "
                  f"{md_text(p.case)} (error {p.error:.3g})" + (f"; {md_text(p.note)}" if p.note else "") + ".", "",
                  f"![error of {md_text(p.subject)}]({rel}/{files[0]})", ""]
        if len(files) > 1:
            lines += [f"Its attention weights against the exact ones (where the variant gives them): "
                      f"[{files[1]}]({rel}/{files[1]}).", ""]
    return lines
