"""Draw the pictures of one case asked for: the mask, the float64 attention weights, and error maps (each variant's
output against the float64 baseline, its weights against the exact ones when it gives them, and a sparse
pattern's own cost against dense attention), written as PNG files.

:class:`ShowRequest` is what ``attnbench show`` (and the report's child process) asks; :func:`show` draws it and
returns the files written and the problems met (a variant that cannot run the case, one that failed), so one bad
variant never loses the other pictures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.case import Case, Inputs
from harness.inputs.make import make_inputs
from harness.inputs.minilm import DEFAULT_REAL_LAYER
from harness.show import figures
from harness.show.maps import (
    ErrorMap,
    error_rows,
    mask_map,
    mask_zoom,
    output_error_map,
    reference_rows,
    weight_error_map,
    weights_map,
)
from harness.show.variant_run import run_variant
from harness.show.view import View, make_view

__all__ = ["PICTURES", "SCALES", "ShowRequest", "ShowResult", "case_line", "default_name", "show"]

#: What can be drawn: ``mask``, ``weights`` (float64, per head) and ``error`` (error maps).
PICTURES: tuple[str, ...] = ("mask", "weights", "error")
#: Colour scales of the weights picture: ``log`` or ``row`` (each row divided by its largest weight).
SCALES: tuple[str, ...] = ("log", "row")


@dataclass(frozen=True)
class ShowRequest:
    """The pictures of one case.

    Args:
        case: the case (its inputs are drawn as a sweep draws them).
        what: pictures, a subset of :data:`PICTURES`.
        variants: variants whose error maps are drawn (with ``error``).
        heads: query heads drawn (None: the first four).
        row: the batch row drawn.
        out: the folder the PNG files go to (created).
        name: the files' common prefix (default: :func:`default_name`).
        max_tiles: most tiles per side of a matrix picture (larger matrices are drawn in tiles of whole tokens).
        max_rows: most query rows an error map compares (more are sampled evenly).
        scale: the weights picture's colour scale, one of :data:`SCALES`.
        note: a line added to every title (e.g. where the picture was computed).
    """

    case: Case
    what: tuple[str, ...] = ("mask", "weights")
    variants: tuple[str, ...] = ()
    heads: tuple[int, ...] | None = None
    row: int = 0
    out: Path = Path("attnbench-show")
    name: str = ""
    max_tiles: int = 512
    max_rows: int = 2048
    scale: str = "log"
    note: str = ""

    def __post_init__(self) -> None:
        bad = [w for w in self.what if w not in PICTURES]
        if bad or not self.what:
            raise ValueError(f"what={','.join(bad or self.what) or '(none)'} is not a picture (allowed: "
                             f"{', '.join(PICTURES)})")
        if self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r} is not a colour scale (allowed: {', '.join(SCALES)})")
        for key in ("max_tiles", "max_rows"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} is out of range (allowed: an integer >= 1)")


@dataclass
class ShowResult:
    """The files written and the problems met (one line each)."""

    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _slug(text: str) -> str:
    """``window(w=64) N512`` -> ``window_w64_N512``: letters, digits, ``.+-`` and single underscores."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.+-]+", "_", text.replace("=", ""))).strip("_")


def default_name(case: Case) -> str:
    """A file prefix naming the case: ``window_w64_N512``, ``causal_N1024_Q4_KV2``, ``causal_N600_3_packed_docs``."""
    parts = [case.pattern.label, f"N{case.seq_len}"]
    if not case.is_square:
        parts.append(f"Q{case.q_len}")
    if case.is_grouped:
        parts.append(f"KV{case.kv_heads}")
    if case.documents is not None:
        parts.append(f"{len(case.documents)} {case.layout} docs")
    if case.inputs != "gaussian":
        parts.append(case.inputs)
    return _slug(" ".join(parts))


def case_line(case: Case, row: int = 0) -> str:
    """The case in one line for a title: ``cpu float32 B1 H8 KV2 N1024 Q4 D64 causal, inputs=local``."""
    kv = f" KV{case.kv_heads}" if case.is_grouped else ""
    ql = f" Q{case.q_len}" if not case.is_square else ""
    inputs = f"real (all-MiniLM-L6-v2 layer {DEFAULT_REAL_LAYER} on text)" if case.inputs == "real" else case.inputs
    text = (f"{case.device} {case.dtype} B{case.batch} H{case.heads}{kv} N{case.seq_len}{ql} D{case.head_dim} "
            f"{case.pattern.label}, inputs={inputs}, seed={case.seed}")
    if case.documents is not None:
        shown = "+".join(map(str, case.documents))
        text += f", {len(case.documents)} {case.layout} documents ({shown if len(shown) <= 40 else case.lengths})"
    return text + (f", batch row {row}" if case.batch > 1 else "")


def show(request: ShowRequest, inputs: Inputs | None = None) -> ShowResult:
    """Draw ``request``'s pictures and write them into ``request.out``.

    Args:
        request: what to draw.
        inputs: the case's inputs (default: drawn with :func:`harness.inputs.make.make_inputs`).

    Returns:
        The files written and the problems met.

    Raises:
        ValueError: bad heads, row or variant name, a picture too large, or inputs the case's distribution
            cannot make (the message says which and what is allowed).
    """
    view = make_view(request.case, request.heads, request.row)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    name = request.name or default_name(request.case)
    result = ShowResult()
    if "mask" in request.what:
        result.files.append(_draw_mask(view, request, out / f"{name}_mask.png"))
    if "weights" in request.what or "error" in request.what:
        cut = view.cut(make_inputs(request.case) if inputs is None else inputs)
        if "weights" in request.what:
            result.files.append(_draw_weights(view, cut, request, out / f"{name}_weights.png"))
        if "error" in request.what:
            _draw_errors(view, cut, request, out, name, result)
    return result


def _mask_line(case: Case, row: int) -> str:
    """What a mask depends on: ``N=1024, q_len=4, 3 packed documents (100+300+200), batch row 1``."""
    text = f"N={case.seq_len}" + (f", q_len={case.q_len}" if not case.is_square else "")
    if case.documents is not None:
        shown = "+".join(map(str, case.documents))
        text += f", {len(case.documents)} {case.layout} documents ({shown if len(shown) <= 40 else case.lengths})"
    return text + (f", batch row {row}" if case.batch > 1 else "")


def _title(head: str, view: View, detail: str, request: ShowRequest, line: str | None = None) -> str:
    line = case_line(view.case, view.row) if line is None else line
    lines = [head, line + (f"; {detail}" if detail else "")]
    return "\n".join(lines + ([request.note] if request.note else []))


def _draw_mask(view: View, request: ShowRequest, path: Path) -> Path:
    m, attended = mask_map(view, request.max_tiles)
    total = view.case.q_len * view.case.seq_len
    head = f"mask of {view.case.pattern.label}: {attended} of {total} pairs attended ({100.0 * attended / total:.3g}%)"
    title = _title(head, view, m.tiling.describe(), request, _mask_line(view.case, view.row))
    figures.save(figures.mask_figure(m, title, mask_zoom(view)), path)
    return path


def _draw_weights(view: View, cut, request: ShowRequest, path: Path) -> Path:
    m = weights_map(view, cut, request.max_tiles)
    head = "exact attention weights, softmax(q kᵀ/√d + mask) in float64 (white: not attended)"
    fig = figures.weights_figure(m, _title(head, view, m.tiling.describe(), request), request.scale)
    figures.save(fig, path)
    return path


def _save_error(e: ErrorMap, head: str, view: View, request: ShowRequest, path: Path) -> Path:
    figures.save(figures.error_figure(e, _title(head, view, "", request)), path)
    return path


def _draw_errors(view: View, cut, request: ShowRequest, out: Path, name: str, result: ShowResult) -> None:
    """The sparse pattern's cost against dense attention, and each variant's error maps."""
    pattern = view.case.pattern
    if not pattern.is_sparse and not request.variants:
        result.problems.append(f"error: nothing to compare on {pattern.label} (allowed: name a variant, or a sparse "
                               "pattern, whose cost against dense attention is drawn)")
        return
    rows = error_rows(view.case.q_len, request.max_rows)
    ref = reference_rows(view, cut, rows)
    if pattern.is_sparse:
        dense = reference_rows(view, cut, rows, dense=True)
        head = (f"what the pattern costs: exact {pattern.label} against exact dense "
                f"{pattern.causal_part().label} attention, float64, per output row")
        result.files.append(_save_error(output_error_map(view, ref, dense, rows), head, view, request,
                                        out / f"{name}_pattern_error.png"))
    for variant in request.variants:
        run = run_variant(variant, view, cut)
        if run.out is None:
            result.problems.append(f"{variant}: {run.problem}")
            continue
        if run.problem:
            result.problems.append(f"{variant}: {run.problem}")
        sel = run.out if rows is None else run.out.index_select(1, rows.to(run.out.device))
        head = f"{variant}: output error against the float64 baseline with the same pattern, per output row"
        result.files.append(_save_error(output_error_map(view, sel, ref, rows), head, view, request,
                                        out / f"{name}_error_{_slug(variant)}.png"))
        if run.weights is not None:
            m = weight_error_map(view, cut, run.weights, request.max_tiles)
            head = f"{variant}: its attention weights against the exact float64 ones (white: no difference)"
            fig = figures.weight_error_figure(m, _title(head, view, m.tiling.describe(), request))
            path = out / f"{name}_weight_error_{_slug(variant)}.png"
            figures.save(fig, path)
            result.files.append(path)
