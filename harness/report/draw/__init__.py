"""The report's drawing toolkit (matplotlib on an Agg canvas, no pyplot state): every figure of the report draws
with it, so all of them read alike.

- :mod:`~harness.report.draw.style`: one colour (Okabe-Ito, colour-blind safe, then three of Paul Tol's) *and* one
  marker per variant, fixed for a report; ``full``, the baseline, black and thicker; approximations dashed and
  labelled ``approx.`` with their median error, so they are never read as computing what the exact ones compute;
  a marker per failed status.
- :mod:`~harness.report.draw.units`: units that follow the data (µs / ms / s, KiB / MiB / GiB, GFLOP/s and GB/s
  on a CPU, TFLOP/s and TB/s on a GPU).
- :mod:`~harness.report.draw.axes`: inside one panel: readable log ticks, y limits that leave room for the
  failure markers, a variant's points (hollow where the row was contended), failures in lanes under the data.
- :mod:`~harness.report.draw.canvas`: the figure around the panels: the grid of panels, the legend (only what is
  drawn), the footnote (variants with rows but nothing drawn, named once) and saving.

Panels and their order come from :mod:`harness.report.facets`; the figures themselves live in
:mod:`harness.report.plots`, :mod:`harness.report.roofline_plots` and :mod:`harness.report.varlen_report`.
Matplotlib is imported inside the functions that draw: report.md's tables need none of it.
"""

from __future__ import annotations

__all__: list[str] = []
