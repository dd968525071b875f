"""``attnbench show``: the pictures say what the pattern, the float64 baseline and a variant compute.

The mask picture of a small case is the pattern's dense mask pixel for pixel (read back from the rendered image),
the weights picture's data are the float64 probabilities (whose product with v is the baseline), tiles are honest
aggregates, and error maps of exact variants sit at rounding level while an approximation's do not.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from harness.cli.show import show_main
from harness.core.case import Case
from harness.core.pattern import make_pattern
from harness.core.reference import reference_attention
from harness.core.registry import get_variant, list_variants
from harness.inputs.make import make_inputs
from harness.show import figures
from harness.show.make import ShowRequest, show
from harness.show.maps import error_rows, mask_map, mask_zoom, output_error_map, reference_rows, weights_map
from harness.show.tiles import TileSum, tiling_for
from harness.show.variant_run import run_variant
from harness.show.view import make_view

#: Small cases of every kind the pictures must get right: a causal window, a block layout with global blocks, a
#: packed batch of documents, a padded one, and decode with grouped heads (bottom-right aligned).
CASES = {
    "window": Case(heads=2, seq_len=48, head_dim=16, pattern=make_pattern("window", window=8)),
    "block_global": Case(heads=2, seq_len=40, head_dim=16, pattern=make_pattern(
        "block_sparse_causal", block=8, local=0, stride=3, n_global=1)),
    "packed_docs": Case(heads=2, head_dim=16, pattern=make_pattern("causal"), lengths="10+20+15"),
    "padded_docs": Case(heads=2, head_dim=16, pattern=make_pattern("window", window=5), lengths="10+20+15",
                        layout="padded"),
    "decode_gqa": Case(heads=4, kv_heads=2, seq_len=50, q_len=4, head_dim=16, pattern=make_pattern("causal")),
}


def _dense(case: Case, row: int) -> torch.Tensor:
    if case.pattern.is_padded:
        return case.pattern.batch_dense_mask(case.seq_len)[row]
    return case.pattern.dense_mask(case.seq_len, q_len=case.q_len)


def _pixels(fig, ax, xs, ys) -> np.ndarray:
    """RGB of the rendered figure at data points (xs, ys) of ``ax``."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    cols = np.round(pts[:, 0]).astype(int)
    rows = np.round(rgba.shape[0] - pts[:, 1]).astype(int)
    return rgba[rows, cols, :3].astype(int)


@pytest.mark.parametrize("name", list(CASES))
def test_the_mask_picture_is_the_dense_mask_pixel_for_pixel(name):
    case = CASES[name]
    row = 1 if case.pattern.is_padded else 0
    m, attended = mask_map(make_view(case, row=row), max_tiles=512)
    dense = _dense(case, row)
    assert m.tiling.exact and np.array_equal(m.values[0], dense.double().numpy())
    assert attended == int(dense.sum())
    fig = figures.mask_figure(m, "t")
    ax = fig.axes[0]
    qi, ki = np.meshgrid(np.arange(case.q_len), np.arange(case.seq_len), indexing="ij")
    rgb = _pixels(fig, ax, ki.ravel() + 0.5, m.q_offset + qi.ravel() + 0.5)
    cmap = ax.images[0].get_cmap()
    on, off = (np.round(np.array(cmap(i)[:3]) * 255).astype(int) for i in (1, 0))
    want = np.where(dense.numpy().ravel()[:, None], on, off)
    assert np.abs(rgb - want).max() <= 2, "a rendered pixel differs from the pattern's dense mask"


@pytest.mark.parametrize(("seq_len", "q_len", "max_tiles"), [(48, 48, 512), (600, 600, 512), (5000, 5000, 256),
                                                              (1000, 4, 512)])
def test_every_tile_gets_a_whole_number_of_pixels(seq_len, q_len, max_tiles):
    """Nothing is dropped or doubled when the picture is written: a panel is k pixels per tile, k >= 1."""
    case = Case(heads=1, seq_len=seq_len, q_len=q_len, head_dim=8, pattern=make_pattern("causal"))
    m, _ = mask_map(make_view(case), max_tiles)
    fig = figures.mask_figure(m, "t")
    fig.canvas.draw()
    box = fig.axes[0].get_window_extent()
    for pixels, tiles in ((box.width, m.values.shape[2]), (box.height, m.values.shape[1])):
        per_tile = pixels / tiles
        assert per_tile >= 1 and abs(per_tile - round(per_tile)) < 1e-6, (pixels, tiles)


def test_a_decode_mask_shows_the_bottom_right_alignment_exactly():
    case = Case(heads=1, seq_len=1000, q_len=4, head_dim=8, pattern=make_pattern("causal"))
    zoom = mask_zoom(make_view(case))
    assert zoom is not None and zoom.tiling.exact and zoom.k_offset == 1000 - 64
    dense = case.pattern.dense_mask(1000, q_len=4)[:, 1000 - 64:]
    assert np.array_equal(zoom.values[0], dense.double().numpy())
    assert zoom.values[0][0, -3:].tolist() == [0, 0, 0] and zoom.values[0][-1].all()  # row 0 sits at key 996


def test_tiles_are_aggregates_of_every_pair():
    case = Case(heads=1, seq_len=100, head_dim=8, pattern=make_pattern("window_sym", window=7))
    m, _ = mask_map(make_view(case), max_tiles=16)
    t = m.tiling
    assert (t.row_tile, t.col_tile) == (7, 7) and m.values.shape[1:] == (15, 15)
    dense = case.pattern.dense_mask(100).double()
    want = np.zeros((15, 15))
    for i in range(15):
        for j in range(15):
            want[i, j] = dense[7 * i:7 * i + 7, 7 * j:7 * j + 7].mean().item()  # the last tiles hold 2 rows/cols
    assert np.allclose(m.values[0], want, atol=1e-15)
    acc = TileSum(tiling_for(10, 10, 3))
    with pytest.raises(ValueError, match="must start on a tile row"):
        acc.add(1, torch.ones(2, 10))


def _float64_probs(case: Case, inputs, heads: list[int], row: int) -> torch.Tensor:
    """softmax(q kᵀ/√d + mask) in float64, written out independently of harness.show."""
    g = case.heads // case.kv_heads
    q = inputs.q[row, heads].double()
    k = inputs.k[row, [h // g for h in heads]].double()
    s = q @ k.transpose(-1, -2) / math.sqrt(case.head_dim)
    s = s.masked_fill(~_dense(case, row), float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.nan_to_num(p, nan=0.0)


@pytest.mark.parametrize("name", list(CASES))
def test_the_weights_picture_is_the_float64_probabilities(name):
    case = CASES[name]
    row = 1 if case.pattern.is_padded else 0
    heads = [0, case.heads - 1]
    view = make_view(case, heads=heads, row=row)
    inputs = make_inputs(case)
    m = weights_map(view, view.cut(inputs), max_tiles=512)
    probs = _float64_probs(case, inputs, heads, row)
    attended = _dense(case, row).numpy()
    assert np.allclose(np.where(attended, m.values, 0.0), probs.numpy(), rtol=1e-12, atol=1e-15)
    assert np.isnan(m.values[:, ~attended]).all()  # not attended: drawn white
    out = reference_attention(inputs.q, inputs.k, inputs.v, case.pattern).out[row, heads]
    g = case.heads // case.kv_heads
    assert torch.allclose(probs @ inputs.v[row, [h // g for h in heads]].double(), out, rtol=1e-10, atol=1e-12)
    fig = figures.weights_figure(m, "t")
    drawn = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    assert np.allclose(drawn, m.values[0], equal_nan=True, rtol=0, atol=0)


def test_tiled_weights_are_each_query_s_mass_on_the_key_tile():
    case = Case(heads=1, seq_len=60, head_dim=8, pattern=make_pattern("causal"), inputs="local")
    view = make_view(case)
    inputs = make_inputs(case)
    m = weights_map(view, view.cut(inputs), max_tiles=6)
    p = _float64_probs(case, inputs, [0], 0)[0]
    want = p.reshape(6, 10, 6, 10).sum(dim=3).mean(dim=1)
    got = np.nan_to_num(m.values[0], nan=0.0)
    assert np.allclose(got, want.numpy(), atol=1e-14) and np.allclose(got.sum(axis=1), 1.0)


def _error_map(case: Case, variant: str, max_rows: int = 4096):
    view = make_view(case, heads=list(range(case.heads)))
    cut = view.cut(make_inputs(case))
    rows = error_rows(case.q_len, max_rows)
    run = run_variant(variant, view, cut)
    assert run.out is not None, run.problem
    out = run.out if rows is None else run.out.index_select(1, rows)
    return output_error_map(view, out, reference_rows(view, cut, rows), rows), run


@pytest.mark.parametrize(("variant", "dtype", "bound"), [("full", "float32", 1e-5), ("chunked", "float32", 1e-5),
                                                          ("split_kv", "float32", 1e-5)])
def test_error_maps_of_exact_variants_are_at_rounding_level(variant, dtype, bound):
    case = Case(heads=4, kv_heads=2, seq_len=96, q_len=96 if variant != "split_kv" else 8, head_dim=32, dtype=dtype,
                pattern=make_pattern("causal"), inputs="local")
    e, run = _error_map(case, variant)
    assert np.nanmax(e.values) < bound and e.overall < bound
    if run.weights is not None:  # full gives its softmax: equal to the float64 one up to rounding
        probs = _float64_probs(case, make_inputs(case), list(range(4)), 0)
        assert (run.weights.double() - probs).abs().max() < 10 * bound


def test_an_approximation_s_error_map_is_not_at_rounding_level():
    """The check above can fail: linear attention's rows are off by far more than rounding."""
    case = Case(heads=2, seq_len=96, head_dim=32, pattern=make_pattern("causal"), inputs="local")
    e, run = _error_map(case, "linear", max_rows=40)
    assert e.sampled and len(e.rows) == 40 and np.nanmedian(e.values) > 1e-2
    assert run.weights is not None


@pytest.mark.parametrize("name", list_variants())
def test_weights_a_variant_gives_are_the_ones_it_applies(name):
    """Driven by the registry: a variant that returns weights gives those whose product with v is its output."""
    variant = get_variant(name)
    for kind in ("full", "causal"):
        case = Case(heads=2, seq_len=33, head_dim=16, pattern=make_pattern(kind))
        if not variant.supports(case):
            continue
        inputs = make_inputs(case)
        with torch.no_grad():
            weights = variant.attention_weights(inputs.q, inputs.k, inputs.v, case.pattern)
            if weights is None:
                return
            out = variant.forward(inputs.q, inputs.k, inputs.v, case.pattern).double()
        assert tuple(weights.shape) == (1, 2, 33, 33)
        assert torch.allclose(weights.double() @ inputs.v.double(), out, rtol=1e-4, atol=1e-5), (name, kind)


def test_show_writes_every_picture_and_reports_a_variant_it_cannot_run(tmp_path):
    case = Case(heads=2, seq_len=64, head_dim=16, pattern=make_pattern("window", window=8), inputs="local")
    result = show(ShowRequest(case, what=("mask", "weights", "error"), variants=("full", "linear"), out=tmp_path))
    names = sorted(p.name for p in result.files)
    assert names == sorted(f"window_w8_N64_local_{x}.png" for x in ("mask", "weights", "pattern_error", "error_full",
                                                                     "weight_error_full"))
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.files)
    assert result.problems == ["linear: unsupported: pattern=window (supported: full, causal)"]


def test_bad_requests_name_the_value_and_what_is_allowed():
    case = CASES["window"]
    with pytest.raises(ValueError, match=r"heads=5 is out of range \(allowed: head indices 0 to 1"):
        make_view(case, heads=[0, 5])
    with pytest.raises(ValueError, match=r"row=3 is out of range \(allowed: a batch row 0 to 0"):
        make_view(case, row=3)
    with pytest.raises(ValueError, match=r"what=maps is not a picture \(allowed: mask, weights, error\)"):
        ShowRequest(case, what=("maps",))
    big = Case(heads=1, seq_len=2**15, q_len=2**15, head_dim=8)
    with pytest.raises(ValueError, match="too many for a weights picture"):
        weights_map(make_view(big), (None, None, None), max_tiles=8)


def test_the_command_draws_a_case_given_in_the_sweep_s_keys(tmp_path, capsys):
    code = show_main(["pattern=block_sparse_causal", "block=16", "n_global=1", "stride=2", "seq_len=64", "heads=2",
                      "head_dim=16", "--variant", "block_sparse", "--heads", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out.split()
    assert code == 0 and len(out) == 4 and all((tmp_path / p.split("/")[-1]).is_file() for p in out)


@pytest.mark.parametrize(("args", "message"), [
    (["seq_len=64,128"], "gives 2 cases"),
    (["budget=1"], "budget is not a key of a case"),
    (["seq_len=0"], "seq_len=0 is out of range"),
    (["patern=causal"], "unknown key 'patern'"),
    (["seq_len=64", "--variant", "nope"], "nope"),
    (["seq_len=64", "--heads", "0,9"], "heads=9 is out of range"),
])
def test_the_command_refuses_bad_input_with_exit_2(args, message, tmp_path, capsys):
    assert show_main([*args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_the_report_s_jobs_are_drawn_one_failure_apart(tmp_path, capsys):
    jobs = [{"keys": {"pattern": "causal", "seq_len": 32, "heads": 1, "head_dim": 8}, "what": ["mask"], "name": "a"},
            {"keys": {"pattern": "causal", "seq_len": 0}, "what": ["mask"], "name": "bad"},
            {"keys": {"pattern": "full", "seq_len": 32, "heads": 2, "head_dim": 8, "device": "cuda"},
             "what": ["error"], "variants": ["linear"], "name": "b", "heads": [0]}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    code = show_main(["--jobs", str(tmp_path / "jobs.json"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "job 1 (bad) failed" in err and "seq_len=0" in err
    assert (tmp_path / "a_mask.png").is_file() and (tmp_path / "b_error_linear.png").is_file()
