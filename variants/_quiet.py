"""Shared by the built-in variants: run a library call with its log lines and warnings kept, not printed.

Libraries explain a missing kernel or a failed extension load in log records (PyTorch's nested SDPA, xFormers at
import); the variants turn those lines into a declined case's reason, so they are collected, never shown.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

__all__ = ["kept_log"]


@contextlib.contextmanager
def kept_log(logger_name: str) -> Iterator[list[str]]:
    """Within the block, the named logger's messages go to the yielded list (and not to its handlers or parents),
    and warnings are ignored; the logger is restored afterwards.

    Args:
        logger_name: the library's logger (``"xformers"``, ``"torch.nested._internal.sdpa"``).

    Yields:
        The messages, in order, stripped.
    """
    records: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage().strip())

    logger = logging.getLogger(logger_name)
    handler, propagate = _Keep(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
