"""The names the sweep's axis keys take (dtypes, devices, modes, patterns, input distributions), without torch.

One definition each: :mod:`harness.core.case`, :mod:`harness.core.pattern` and
:mod:`harness.inputs.distributions` take theirs from here, and the command line (``attnbench sweep --help``, the config
checks) reads them without importing torch.
"""

from __future__ import annotations

__all__ = ["BASELINE", "DEVICES", "DTYPE_NAMES", "INPUT_KINDS", "MODES", "PATTERN_KINDS"]

#: dtype names (``harness.core.case.DTYPES`` maps them to torch dtypes).
DTYPE_NAMES: tuple[str, ...] = ("float32", "bfloat16", "float16", "float64")
#: Device types (``cuda:N`` names a device of type ``cuda``).
DEVICES: tuple[str, ...] = ("cpu", "cuda")
#: What a measurement times.
MODES: tuple[str, ...] = ("fwd", "bwd", "fwd_bwd")
#: Attention patterns (:class:`harness.core.pattern.Pattern`).
PATTERN_KINDS: tuple[str, ...] = ("full", "causal", "window", "window_sym", "block_sparse", "block_sparse_causal")
#: Input distributions (:mod:`harness.inputs.distributions`).
INPUT_KINDS: tuple[str, ...] = ("gaussian", "local", "real")

#: The variant every speedup and memory ratio is taken against (textbook attention; every case can run it).
BASELINE = "full"
