"""Pictures of what attention does on one case: which pairs the pattern attends, the exact float64 attention
weights per head, and where a variant's (or a sparse pattern's) error lies, written as PNG.

May import ``harness.core``, ``harness.inputs`` and ``harness.base``. ``harness.cli`` (``attnbench show``) imports
it; the report, which never imports torch, reaches it only through that command, run as a child process.
"""

__all__: list[str] = []
