"""The page kit of report.html: escaping, sortable and filterable tables, figures as data, and the page around them.

One file that opens offline: the style and the script are inline, the figures are SVG documents in ``data:`` URIs,
and the page's Content-Security-Policy allows nothing else (no network, no other script: only the page's own
script and style, named by their SHA-256, may run). Every value from the data (variant names and messages come
from plugins) goes through :func:`esc`, so a name holding markup shows as text; the policy is a second wall.

Tables: a click on a header sorts by that column (numbers as numbers, blanks last; again: the other way), and a
table with filters has a bar above it: one menu per filtered column (its distinct values) and a search box; the
bar says how many rows are shown.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.markdown import fmt_value

__all__ = ["CSS", "SCRIPT", "Column", "content_policy", "esc", "figure_html", "html_table", "page", "sort_value"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d1d1f;margin:0;
 background:#fff}
main{max-width:1760px;margin:0 auto;padding:12px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;
 padding-bottom:3px}h3{font-size:15px;margin:18px 0 6px}
nav{font-size:13px;margin:4px 0 12px}nav a{margin-right:14px;color:#0b62a4;text-decoration:none}
p.note{background:#f6f6f4;border-left:3px solid #bbb;padding:6px 10px;margin:6px 0}
p.bad{border-left-color:#b2182b}p.good{border-left-color:#1a9850}
.filters{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;font-size:13px;margin:6px 0;
 padding:6px 8px;background:#f3f6fa;border-radius:4px}
.filters select,.filters input{font:inherit;padding:1px 3px}.filters select{max-width:260px}
.filters .shown{color:#555;margin-left:auto}
.scroll{overflow:auto;max-height:70vh;border:1px solid #e3e3e3}
table{border-collapse:collapse;font-size:12.5px;width:max-content;min-width:100%}table.fit{width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f7f7f7;position:sticky;top:0;z-index:1;white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#eaeff5}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px}th[aria-sort=descending]::after{content:" \\25BC";
 font-size:9px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.wrap{max-width:400px;white-space:normal;overflow-wrap:anywhere}
td.clip{max-width:320px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
tbody tr:nth-child(even){background:#fbfbfb}tbody tr:hover{background:#fff8e1}
.st{padding:0 5px;border-radius:3px;font-size:11.5px;white-space:nowrap}.st-ok{background:#e3f4e6;color:#1a6b30}
.st-bad{background:#fde3e1;color:#a01c12}.st-unsupported{background:#eee;color:#555}
.cause-code,.cause-no-yardstick{color:#b2182b;font-weight:600}.cause-machine{color:#666}
figure{margin:14px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#444;max-width:1100px}
details{margin:4px 0}pre{font-size:12px;background:#f7f7f7;padding:8px;overflow:auto;max-height:420px}
footer{color:#777;font-size:12px;margin-top:30px}
""".strip()

SCRIPT = """
(function () {
  function key(td, num) {
    var v = td.getAttribute("data-v");
    if (v === null) v = td.textContent;
    if (num) { var f = parseFloat(v); return isNaN(f) ? null : f; }
    return v === "" ? null : v.toLowerCase();
  }
  function sortBy(th) {
    var table = th.closest("table"), col = th.cellIndex, num = th.getAttribute("data-kind") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], num), y = key(b.cells[col], num);
      if (x === y) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : 1) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function filter(bar) {
    var table = document.getElementById(bar.getAttribute("data-for"));
    var menus = bar.querySelectorAll("select"), box = bar.querySelector("input");
    var q = box ? box.value.trim().toLowerCase() : "", rows = table.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var ok = true;
      for (var j = 0; j < menus.length && ok; j++) {
        var want = menus[j].value, cell = rows[i].cells[+menus[j].getAttribute("data-col")];
        if (want !== "" && cell.getAttribute("data-v") !== want) ok = false;
      }
      if (ok && q && rows[i].textContent.toLowerCase().indexOf(q) < 0) ok = false;
      rows[i].hidden = !ok;
      if (ok) shown++;
    }
    bar.querySelector(".shown").textContent = shown + " of " + rows.length + " rows shown";
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(th); });
  });
  document.querySelectorAll(".filters").forEach(function (bar) {
    bar.addEventListener("change", function () { filter(bar); });
    bar.addEventListener("input", function () { filter(bar); });
    filter(bar);
  });
})();
""".strip()


def esc(x: object) -> str:
    """A value as inert HTML text: numbers shortened as in the tables (:func:`fmt_value`), ``<``, ``>``, ``&`` and
    quotes escaped; blank for None and NaN."""
    return html.escape(fmt_value(x), quote=True)


def sort_value(x: object) -> str:
    """What a cell sorts and filters by: a number in full (``repr``), text as it is; blank for None and NaN."""
    if x is None or x is pd.NA:
        return ""
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        return "" if not math.isfinite(float(x)) else (str(int(x)) if float(x).is_integer() else repr(float(x)))
    return str(x)


@dataclass(frozen=True)
class Column:
    """One column of an HTML table.

    Args:
        name: the frame's column.
        title: its header.
        num: sort as numbers (and align right).
        filter: a menu of its values above the table.
        fmt: the text shown for a value (default: :func:`harness.report.markdown.fmt_value`); it is escaped.
        wrap: long text wraps (messages).
        clip: long text is cut to one line, the whole of it in the cell's tooltip (notes beside numbers).
        badge: the value is a status (``ok`` green, ``unsupported`` grey, others red) or a cause.
    """

    name: str
    title: str
    num: bool = False
    filter: bool = False
    fmt: Callable[[object], str] | None = None
    wrap: bool = False
    clip: bool = False
    badge: str = ""


def _cell(col: Column, value: object) -> str:
    shown = esc(col.fmt(value) if col.fmt is not None and sort_value(value) != "" else value)
    cls = "num" if col.num else "wrap" if col.wrap else "clip" if col.clip else ""
    if col.badge == "status" and shown:
        kind = "ok" if value == "ok" else "unsupported" if value == "unsupported" else "bad"
        shown = f'<span class="st st-{kind}">{shown}</span>'
    elif col.badge == "cause" and shown:
        shown = f'<span class="cause-{esc(str(value).replace(" ", "-"))}">{shown}</span>'
    attr = f' class="{cls}"' if cls else ""
    if col.clip and shown:
        attr += f' title="{shown}"'
    return f'<td{attr} data-v="{html.escape(sort_value(value), quote=True)}">{shown}</td>'


def _filter_bar(frame: pd.DataFrame, columns: Sequence[Column], table_id: str) -> str:
    menus = []
    for i, col in enumerate(columns):
        if not col.filter:
            continue
        values = sorted({sort_value(v) for v in frame[col.name]} - {""},
                        key=lambda s: (0, float(s), "") if col.num and _is_number(s) else (1, 0.0, s.lower()))
        opts = "".join(f'<option value="{html.escape(v, quote=True)}">'
                       f'{esc(v)}</option>' for v in values)
        menus.append(f'<label>{esc(col.title)} <select data-col="{i}"><option value="">all</option>{opts}'
                     "</select></label>")
    return (f'<div class="filters" data-for="{table_id}">{"".join(menus)}<label>search <input type="search" '
            f'aria-label="search the rows"></label><span class="shown"></span></div>')


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def html_table(frame: pd.DataFrame, columns: Sequence[Column], table_id: str, filters: bool = True) -> str:
    """A sortable table of ``frame``'s ``columns`` (missing columns are left out), with a filter bar above it when
    ``filters`` (one menu per column marked ``filter``, and a search box).

    Args:
        frame: the rows.
        columns: what to show, in order.
        table_id: the table's name (letters, digits, ``-``); its HTML id is ``table-<name>``.
        filters: put the filter bar above it.

    Returns:
        HTML; every value escaped.
    """
    cols = [c for c in columns if c.name in frame.columns]
    table_id = f"table-{table_id}"
    if frame.empty:
        return '<p class="note">(no rows)</p>'
    head = "".join(f'<th data-kind="{"num" if c.num else "text"}" scope="col">{esc(c.title)}</th>' for c in cols)
    body = "\n".join("<tr>" + "".join(_cell(c, row[c.name]) for c in cols) + "</tr>"
                     for _, row in frame.iterrows())
    bar = _filter_bar(frame, cols, table_id) if filters else ""
    fit = "" if filters else " fit"  # a short table without filters fits the page's width, its cells wrapping
    return (f'{bar}<div class="scroll"><table class="sortable{fit}" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


def figure_html(svg: str, alt: str, caption: str) -> str:
    """A figure: the SVG document as a ``data:`` image (its ids and styles cannot meet the page's, and nothing in
    it runs), with its caption."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f'<figure><img alt="{esc(alt)}" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_policy() -> str:
    """The page's Content-Security-Policy: nothing from the network, images only from ``data:``, and only the
    page's own style and script (by their SHA-256)."""
    return (f"default-src 'none'; img-src data:; style-src {_sha256(CSS)}; script-src {_sha256(SCRIPT)}; "
            "base-uri 'none'; form-action 'none'")


def page(title: str, body: str) -> str:
    """The whole HTML document around ``body`` (already HTML), with the kit's style, script and policy.

    Args:
        title: the page's title (escaped here).
        body: the page's content.
    """
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{content_policy()}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<style>{CSS}</style></head>\n<body><main>\n{body}\n</main>\n<script>{SCRIPT}</script>\n</body></html>\n")
