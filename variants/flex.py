"""``flex``: FlexAttention (``torch.nn.attention.flex_attention``), compiled, with a block mask per pattern.

Every pattern kind is supported: ``full`` runs without a block mask; the others pass a ``BlockMask`` built from
the Pattern's own ``mask_fn`` (the same definition the float64 baseline uses), so the kernel skips the
(128 x 128) tiles nothing attends to and applies the mask only inside partially attended tiles. Grouped-query
heads run with ``enable_gqa=True`` (FlexAttention reads each key/value head for its group, no copy); queries
shorter than keys get a ``q_len x seq_len`` block mask whose ``mask_mod`` is the Pattern's bottom-right one.

Setup, counted by the harness as setup cost: ``prepare`` builds the block mask and compiles the kernel for the
case's exact shape, dtype and grad mode by running it once on scratch inputs (forward, and backward when the
mode needs one).

Compilation is deliberate, never a silent eager fallback. After ``torch._dynamo.config.recompile_limit``
(8 by default) recompilations of one function, dynamo gives up and runs it eagerly, which for FlexAttention
means materializing the scores (seen on an H100: ~260 to ~7 TFLOP/s). Here:

- the kernel is compiled with ``dynamic=False`` (one specialized kernel per shape, as FlexAttention is meant to
  run) and ``fullgraph=True``, so a graph break or hitting the recompile limit raises instead of running eager;
- compilation (in ``prepare`` and ``forward``) runs with the limit raised to :data:`RECOMPILE_LIMIT`, so a sweep
  over many shapes compiles each of them;
- past that limit the call raises ``FailOnRecompileLimitHit``, which the harness records as an ``error`` row.

Block masks are built in query-row chunks on the inputs' device, so the mask of N = 65536 never materializes
an N x N tensor (``create_block_mask`` in eager mode would). Sequence lengths that are not multiples of 128 are
handled as ``create_block_mask`` does: the last tile is always partial, so the mask function is applied there.

Variable-length batches: packed documents get the Pattern's document mask as ``mask_mod`` (the document of each
position and its start, looked up in two index tensors, as FlexAttention's document-masking examples do), and the
block mask skips every tile outside the documents, so the work is about the documents' own tiles; a padded batch
gets one block mask per batch row (``B x 1 x tiles``), each that row's document padded to the longest, and a
``mask_mod`` that reads the batch index (``Pattern.batch_mask_fn``): the padding tiles are skipped too, so a
padded batch costs FlexAttention little more than a packed one (its rows are still computed one tile past each
document's end).

On the CPU (torch >= 2.6) FlexAttention compiles through Inductor's C++ backend and runs forward only; PyTorch's
own refusal ("FlexAttention does not support backward on CPU") is the reason for modes with a backward pass.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch

from harness import PATTERN_KINDS, Case, Pattern, Variant, register_variant
from variants.sdpa import cuda_unavailable_reason

#: Tile size of the block mask (FlexAttention's default sparse block size).
BLOCK_SIZE = 128
#: Recompilations of the flex kernel allowed while compiling a new case (each shape, dtype, pattern needs one).
RECOMPILE_LIMIT = 4096
#: Elements of the int64 intermediates of one chunk of the dense mask while building a block mask.
_MASK_CHUNK_ELEMS = 1 << 24

_compiled: Callable | None = None


def flex_available() -> str | None:
    """None when ``torch.nn.attention.flex_attention`` is importable, else the reason."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except Exception as exc:
        return f"FlexAttention is not available in torch {torch.__version__} ({type(exc).__name__}: {exc})"
    return None


def compiled_flex() -> Callable:
    """The compiled FlexAttention kernel (``dynamic=False``, ``fullgraph=True``), created once per process."""
    global _compiled
    if _compiled is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled = torch.compile(flex_attention, dynamic=False, fullgraph=True)
    return _compiled


def mask_mod_for(pattern: Pattern, seq_len: int, device: torch.device | str, q_len: int | None = None) -> Callable:
    """FlexAttention ``mask_mod(b, h, q_idx, kv_idx)`` for ``pattern`` from its ``mask_fn`` (``q_idx`` a query row,
    bottom-right aligned when ``q_len < seq_len``).

    Block-sparse layouts are padded with unattended blocks to cover the 128-padded rows and keys, so the kernel
    can evaluate the mask at padding positions without indexing past the layout.
    """
    lq = seq_len if q_len is None else q_len
    if pattern.has_documents:  # positions past the end may be asked on the last tile: padded index tensors
        fn = pattern.batch_mask_fn(seq_len, device, pad_to=math.ceil(seq_len / BLOCK_SIZE) * BLOCK_SIZE + BLOCK_SIZE)
        return lambda bi, hi, q, k: fn(bi, q, k)
    off = pattern.query_offset(seq_len, lq)
    if pattern.kind in ("block_sparse", "block_sparse_causal"):
        lay = pattern.block_layout(seq_len, device)
        top = max(math.ceil(seq_len / BLOCK_SIZE), math.ceil(lq / BLOCK_SIZE) + math.ceil(off / BLOCK_SIZE))
        padded = math.ceil(top * BLOCK_SIZE / pattern.block) + 1
        full_lay = torch.zeros(padded, padded, dtype=torch.bool, device=device)
        full_lay[: lay.shape[0], : lay.shape[1]] = lay
        b = pattern.block
        if pattern.kind == "block_sparse":
            return lambda bi, hi, q, k: full_lay[(q + off) // b, k // b]
        return lambda bi, hi, q, k: full_lay[(q + off) // b, k // b] & ((q + off) >= k)
    fn = pattern.mask_fn(seq_len, device, lq)
    return lambda bi, hi, q, k: fn(q, k)


def block_tiles(pattern: Pattern, seq_len: int, device: torch.device | str, block: int = BLOCK_SIZE,
                q_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``[query blocks, key blocks]`` tile maps of ``pattern``: (partially attended, fully attended).

    A tile overlapping the padding past ``q_len`` or ``seq_len`` is never full (as in ``create_block_mask``). The
    dense mask is evaluated one chunk of query rows at a time.
    """
    lq = seq_len if q_len is None else q_len
    nq, nk = math.ceil(lq / block), math.ceil(seq_len / block)
    pad = nk * block
    partial = torch.zeros(nq, nk, dtype=torch.bool, device=device)
    full = torch.zeros(nq, nk, dtype=torch.bool, device=device)
    rows = max(block, (_MASK_CHUNK_ELEMS // max(seq_len, 1)) // block * block)
    for q0 in range(0, lq, rows):
        q1 = min(lq, q0 + rows)
        m = pattern.dense_mask(seq_len, device, q_start=q0, q_end=q1, q_len=lq)
        m = torch.nn.functional.pad(m, (0, pad - seq_len, 0, (-(q1 - q0)) % block))
        tiles = m.view(m.shape[0] // block, block, nk, block)
        count = tiles.sum(dim=(1, 3))
        b0 = q0 // block
        partial[b0 : b0 + count.shape[0]] = (count > 0) & (count < block * block)
        full[b0 : b0 + count.shape[0]] = count == block * block
    return partial, full


def _ordered(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(counts per row, column indices with the attended tiles first), shaped ``[1, 1, rows, ...]`` (tiles of
    one mask) or ``[B, 1, rows, ...]`` (``[B, rows, cols]`` tiles: one mask per batch row)."""
    t = tiles.to(torch.int32)
    num = t.sum(dim=-1).to(torch.int32)
    idx = torch.argsort(t, dim=-1, descending=True, stable=True).to(torch.int32)
    if t.dim() == 3:
        return num[:, None].contiguous(), idx[:, None].contiguous()
    return num[None, None].contiguous(), idx[None, None].contiguous()


def padded_tiles(pattern: Pattern, seq_len: int, device: torch.device | str,
                 block: int = BLOCK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, query blocks, key blocks]`` (partial, full) tile maps of a padded batch: each row's document under the
    rule, its tiles on the top left of the longest document's grid, the rest empty."""
    nb = math.ceil(seq_len / block)
    docs = pattern.documents
    partial = torch.zeros(len(docs), nb, nb, dtype=torch.bool, device=device)
    full = torch.zeros_like(partial)
    own: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for b, length in enumerate(docs):
        if length not in own:
            own[length] = block_tiles(pattern.base, length, device, block)
        p, f = own[length]
        partial[b, : p.shape[0], : p.shape[1]] = p
        full[b, : f.shape[0], : f.shape[1]] = f
    return partial, full


def build_block_mask(pattern: Pattern, seq_len: int, device: torch.device | str, block: int = BLOCK_SIZE,
                     q_len: int | None = None):
    """The FlexAttention ``BlockMask`` of ``pattern`` for ``q_len`` queries (default ``seq_len``) against
    ``seq_len`` keys."""
    from torch.nn.attention.flex_attention import BlockMask

    lq = seq_len if q_len is None else q_len
    if pattern.is_padded:
        partial, full = padded_tiles(pattern, seq_len, device, block)
    else:
        partial, full = block_tiles(pattern, seq_len, device, block, lq)
    kv_num, kv_idx = _ordered(partial)
    full_num, full_idx = _ordered(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block,
                                    mask_mod=mask_mod_for(pattern, seq_len, device, lq), seq_lengths=(lq, seq_len))


@functools.lru_cache(maxsize=64)
def _cached_block_mask(pattern: Pattern, seq_len: int, device: str, q_len: int | None = None):
    if pattern.kind == "full" and not pattern.has_documents:
        return None
    return build_block_mask(pattern, seq_len, device, q_len=q_len)


@functools.lru_cache(maxsize=16)
def _cpu_backward_reason() -> str | None:
    """PyTorch's own answer to a backward pass through FlexAttention on the CPU (None when it allows one)."""
    from torch.nn.attention.flex_attention import flex_attention

    q = torch.zeros(1, 1, 1, 16, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            flex_attention(q, q, q)
        except NotImplementedError as exc:
            return f"torch {torch.__version__}: {str(exc).split('. ')[0].strip()}"
        except Exception:
            return None
    return None


def _device_key(device: torch.device | str) -> str:
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return str(d)


def _compile_guard():
    """Raise dynamo's recompile limit while compiling a new case (a limit hit still raises: fullgraph=True)."""
    return torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, accumulated_recompile_limit=RECOMPILE_LIMIT)


@register_variant
class Flex(Variant):
    name = "flex"
    description = "FlexAttention compiled per shape (dynamic=False, fullgraph), block masks for every pattern"
    patterns = frozenset(PATTERN_KINDS)
    devices = frozenset({"cpu", "cuda"})
    dtypes = frozenset({"float32", "bfloat16", "float16"})
    supports_gqa = True
    supports_q_len = True
    doc_layouts = frozenset({"packed", "padded"})

    def extra_reasons(self, case: Case) -> list[str]:
        missing = cuda_unavailable_reason(case) or flex_available()
        if missing:
            return [missing]
        if case.device_type == "cpu" and case.needs_backward:
            why = _cpu_backward_reason()
            if why:
                return [f"mode={case.mode} needs a backward pass on the CPU, which FlexAttention refuses ({why})"]
        return []

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        bm = _cached_block_mask(pattern, k.shape[2], _device_key(q.device), q.shape[2])
        with _compile_guard():
            return compiled_flex()(q, k, v, block_mask=bm, enable_gqa=k.shape[1] != q.shape[1])

    def prepare(self, pattern: Pattern, case: Case):
        bm = _cached_block_mask(pattern, case.seq_len, _device_key(case.device), case.q_len)
        fn = compiled_flex()
        gqa = case.is_grouped

        def call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return fn(q, k, v, block_mask=bm, enable_gqa=gqa)

        _compile_for(call, case)
        return call


def _compile_for(call: Callable, case: Case) -> None:
    """Compile ``call`` for the case's shape, dtype and grad mode by running it on scratch inputs."""
    grad = case.needs_backward
    gen = torch.Generator(device="cpu").manual_seed(1234)
    q, k, v = (torch.randn(shape, generator=gen).to(case.device, case.torch_dtype).requires_grad_(grad)
               for shape in (case.q_shape, case.kv_shape, case.kv_shape))
    with _compile_guard(), torch.set_grad_enabled(grad):
        out = call(q, k, v)
        if grad:
            out.backward(torch.ones_like(out))
    if case.device_type == "cuda":
        torch.cuda.synchronize(case.device)
    del q, k, v, out
