"""Design claims of the built-in blocked variants, beyond the registry-driven conformance suite.

- The block loops are exact with many blocks (small block and chunk sizes, N not a multiple of them), and on the
  edge patterns the conformance shapes don't reach (custom layouts with empty rows, windows of 1 or wider than N).
- ``causal`` does about half of ``full``'s matmul work; ``block_sparse`` only its layout's blocks;
  ``local_window`` and a windowed ``chunked`` do work linear in N (FLOPs counted with ``FlopCounterMode``).
- ``local_window`` and ``chunked`` (forward and backward) hold memory linear in N, not N², measured by replaying
  the profiler's CPU allocation events.
No timing here: speed targets are checked by ``benchmarks/tune_variants.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness import Case, Pattern, get_variant
from harness.core.metrics import error_stats
from harness.core.reference import reference_attention
from harness.inputs.make import make_inputs
from harness.measure.memory import measure_peak
from harness.testing import CONFORMANCE_PATTERNS, check_case, conformance_cases
from tests.conftest import DEVICES
from variants.block_sparse import _ladder
from variants.causal import Causal
from variants.chunked import Chunked
from variants.local_window import LocalWindow

# small blocks so that the conformance shapes (N up to 130) cross many block boundaries
_SMALL = {
    "causal(block=16)": Causal(block=16),
    "local_window(block=8)": LocalWindow(block=8),
    "chunked(16x24)": Chunked(q_chunk=16, k_chunk=24),
}
_SMALL_CASES = [
    pytest.param(label, i, id=f"{label}-{c.device}-{c.dtype}-N{c.seq_len}-D{c.head_dim}-{c.pattern.kind}")
    for label, var in _SMALL.items()
    for i, c in enumerate(conformance_cases(var, DEVICES, dtypes=("float32",)))
    if var.supports(c) and c.seq_len > 16  # the dtype casts and N=1 are covered by the conformance suite
]


@pytest.mark.parametrize(("label", "index"), _SMALL_CASES)
def test_many_blocks_conform(label: str, index: int) -> None:
    var = _SMALL[label]
    case = conformance_cases(var, DEVICES, dtypes=("float32",))[index]
    result = check_case(var, case)
    assert result.ok, result.describe()


def _check_against_reference(fn, pattern: Pattern, shape=(1, 2, 70, 16), dtype="float32", tol=5e-6) -> None:
    """Output and gradients of ``fn(q, k, v)`` against the float64 baseline of ``pattern``."""
    b, h, n, d = shape
    case = Case(batch=b, heads=h, seq_len=n, head_dim=d, dtype=dtype, pattern=pattern, mode="fwd_bwd", seed=3)
    inp = make_inputs(case)
    q, k, v = (t.clone().requires_grad_(True) for t in (inp.q, inp.k, inp.v))
    out = fn(q, k, v)
    out.backward(inp.grad_out)
    ref = reference_attention(inp.q, inp.k, inp.v, pattern, grad_out=inp.grad_out)
    for name, got, want in (("out", out, ref.out), ("dq", q.grad, ref.dq), ("dk", k.grad, ref.dk),
                            ("dv", v.grad, ref.dv)):
        err = error_stats(got, want)
        assert err.finite, f"{pattern.label} {name} has NaN or Inf"
        if float(want.abs().max()) < 1e-9:  # e.g. dq, dk with window 1: exactly 0 up to float32 cancellation
            assert err.max_abs <= 1e-5, f"{pattern.label} {name}: max_abs={err.max_abs:.3g} where 0 is expected"
        else:
            assert err.rel_l2 <= tol, f"{pattern.label} {name}: rel_l2={err.rel_l2:.3g} > {tol}"


def _layout_with_empty_rows(n_blocks: int) -> tuple[tuple[bool, ...], ...]:
    rows = []
    for r in range(n_blocks):
        if r == 1:  # query block 1 attends to nothing: its rows must give 0 and zero gradients
            rows.append(tuple(False for _ in range(n_blocks)))
        else:
            rows.append(tuple(c == r or c == 0 or (r + c) % 3 == 0 for c in range(n_blocks)))
    return tuple(rows)


_EDGE_PATTERNS = [
    Pattern("window", window=1),
    Pattern("window", window=500),
    Pattern("window_sym", window=1),
    Pattern("window_sym", window=69),
    Pattern("block_sparse", block=16, local=0, stride=0, n_global=0),
    Pattern("block_sparse_causal", block=8, local=2, stride=4, n_global=2),
    Pattern("block_sparse", block=16, layout=_layout_with_empty_rows(5)),
    Pattern("block_sparse_causal", block=16, layout=_layout_with_empty_rows(5)),
]


_EDGE_VARIANTS = {"local_window": LocalWindow(), "block_sparse": get_variant("block_sparse"),
                  "chunked": Chunked(), "chunked(16x8)": Chunked(q_chunk=16, k_chunk=8)}


@pytest.mark.parametrize(("name", "pattern"), [(name, p) for name, var in _EDGE_VARIANTS.items()
                                               for p in _EDGE_PATTERNS if p.kind in var.patterns],
                         ids=lambda x: x if isinstance(x, str) else x.label)
def test_edge_patterns(name: str, pattern: Pattern) -> None:
    var = _EDGE_VARIANTS[name]
    _check_against_reference(lambda q, k, v: var(q, k, v, pattern), pattern)


def test_block_sparse_groups_rows_by_count() -> None:
    # a layout whose rows attend to 1 .. 40 blocks: several groups, each checked against the baseline
    n_blocks, block = 40, 4
    layout = tuple(tuple(c <= r for c in range(n_blocks)) for r in range(n_blocks))
    pattern = Pattern("block_sparse", block=block, layout=layout)
    _check_against_reference(lambda q, k, v: get_variant("block_sparse")(q, k, v, pattern), pattern,
                             shape=(1, 1, n_blocks * block - 3, 16))
    assert [_ladder(c) for c in (1, 8, 9, 11, 16, 17, 40)] == [1, 8, 10, 12, 16, 20, 40]
    assert all(c <= _ladder(c) <= 1.25 * c for c in range(1, 500))


# ---------------------------------------------------------------------------------------------- work done
def _flops(name: str, pattern: Pattern, n: int, heads: int = 1, head_dim: int = 16) -> int:
    case = Case(batch=1, heads=heads, seq_len=n, head_dim=head_dim, pattern=pattern)
    inp = make_inputs(case)
    var = Chunked(q_chunk=256, k_chunk=256) if name == "chunked" else get_variant(name)
    fn = var.prepare(pattern, case)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(inp.q, inp.k, inp.v)
    return counter.get_total_flops()


def test_causal_does_about_half_the_work_of_full() -> None:
    n = 2048
    full = _flops("full", Pattern("causal"), n)
    causal = _flops("causal", Pattern("causal"), n)
    assert full == 4 * 16 * n * n  # the counter sees both N x N matmuls of full
    assert causal < 0.6 * full, f"causal does {causal / full:.2f} of full's matmul FLOPs"


@pytest.mark.parametrize("name", ["local_window", "chunked"])
def test_window_work_is_linear_in_n(name: str) -> None:
    pattern = Pattern("window", window=64)
    small, large = _flops(name, pattern, 1024), _flops(name, pattern, 2048)
    assert large / small < 2.2, f"{name}: FLOPs grow {large / small:.2f}x when N doubles (quadratic would be 4x)"
    assert large < 0.2 * _flops("full", pattern, 2048)


def test_block_sparse_computes_only_its_blocks() -> None:
    n = 2048
    pattern = Pattern("block_sparse", block=64, local=1, stride=8, n_global=1)
    blocks = int(pattern.block_layout(n).sum())
    dense_equivalent = 4 * 16 * blocks * 64 * 64  # both matmuls over exactly the layout's blocks
    got = _flops("block_sparse", pattern, n)
    assert dense_equivalent <= got <= 1.25 * dense_equivalent
    assert got < 0.35 * _flops("full", pattern, n)


# ---------------------------------------------------------------------------------------------- memory
def _peak_bytes(fn) -> int:
    """Peak CPU bytes allocated while ``fn()`` runs, above what was live before (harness.measure.memory's replay)."""
    return int(measure_peak(fn, "cpu").peak_bytes)


def _fwd_bwd_peak(var, pattern: Pattern, n: int, heads: int = 2, head_dim: int = 32, backward: bool = True) -> int:
    case = Case(batch=1, heads=heads, seq_len=n, head_dim=head_dim, pattern=pattern)
    inp = make_inputs(case)
    fn = var.prepare(pattern, case)
    q, k, v = (t.clone().requires_grad_(backward) for t in (inp.q, inp.k, inp.v))

    def run():
        out = fn(q, k, v)
        if backward:
            out.backward(inp.grad_out)

    run()  # setup outside the measurement
    q.grad = k.grad = v.grad = None
    return _peak_bytes(run)


@pytest.mark.parametrize(("name", "pattern", "n"), [("local_window", Pattern("window_sym", window=16), 2048),
                                                    ("chunked", Pattern("full"), 1024),
                                                    ("chunked", Pattern("causal"), 1024)])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd_bwd"])
def test_memory_is_linear_in_n(name: str, pattern: Pattern, n: int, backward: bool) -> None:
    var = Chunked(q_chunk=256, k_chunk=256) if name == "chunked" else get_variant(name)
    small = _fwd_bwd_peak(var, pattern, n // 2, backward=backward)
    large = _fwd_bwd_peak(var, pattern, n, backward=backward)
    scores_nxn = 2 * n * n * 4  # one float32 N x N score buffer (B=1, H=2)
    assert large / small < 2.5, f"{name}: peak grows {large / small:.2f}x when N doubles (quadratic: 4x)"
    assert large < scores_nxn / 2, f"{name}: peak {large} B is not below half an N x N buffer ({scores_nxn} B)"
    if backward:
        full = _fwd_bwd_peak(get_variant("full"), pattern, n, backward=True)
        assert full > scores_nxn  # the measurement does see an N^2 graph when there is one


def test_chunked_backward_at_long_sequence() -> None:
    # N=4096, H=2: an autograd graph of the dense computation would keep 128 MiB per N x N float32 buffer;
    # the recomputing backward stays within a few MiB (its exactness over many chunks: test_many_blocks_conform).
    pattern = Pattern("causal")
    n, heads, head_dim = 4096, 2, 32
    var = get_variant("chunked")
    peak = _fwd_bwd_peak(var, pattern, n, heads=heads, head_dim=head_dim)
    assert peak < 64 * 2**20, f"chunked fwd+bwd peak {peak / 2**20:.1f} MiB"
    q = torch.randn(1, heads, n, head_dim, requires_grad=True)
    out = var(q, q, q, pattern)
    assert "ChunkedAttention" in type(out.grad_fn).__name__  # one autograd node, not a graph of the loop
    out.sum().backward()
    assert bool(torch.isfinite(q.grad).all()) and float(q.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- interface
@pytest.mark.parametrize("make", [lambda: Causal(block=0), lambda: LocalWindow(block=-1),
                                  lambda: Chunked(q_chunk=0), lambda: Chunked(k_chunk=1.5)])
def test_bad_block_sizes_are_refused(make) -> None:
    with pytest.raises(ValueError, match="out of range"):
        make()


@pytest.mark.parametrize("name", ["causal", "local_window", "block_sparse", "chunked"])
def test_prepared_call_matches_forward(name: str) -> None:
    var = get_variant(name)
    pattern = next(p for p in CONFORMANCE_PATTERNS if p.kind in var.patterns)
    case = Case(batch=1, heads=2, seq_len=300, head_dim=32, pattern=pattern)
    inp = make_inputs(case)
    fn = var.prepare(pattern, case)
    torch.testing.assert_close(fn(inp.q, inp.k, inp.v), var(inp.q, inp.k, inp.v, pattern), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["causal", "local_window", "block_sparse", "chunked"])
def test_inference_path_is_exact(name: str) -> None:
    """Under ``torch.no_grad`` some variants take in-place shortcuts; they must give the same exact result."""
    var = get_variant(name)
    for pattern in (p for p in CONFORMANCE_PATTERNS if p.kind in var.patterns):
        case = Case(batch=1, heads=2, seq_len=300, head_dim=32, pattern=pattern)
        inp = make_inputs(case)
        with torch.no_grad():
            out = var.prepare(pattern, case)(inp.q, inp.k, inp.v)
        err = error_stats(out, reference_attention(inp.q, inp.k, inp.v, pattern).out)
        assert err.rel_l2 <= var.tolerance("float32"), f"{name} {pattern.label}: rel_l2={err.rel_l2:.3g}"
