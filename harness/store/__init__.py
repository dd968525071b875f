"""Results on disk: the public CSV columns and what identifies a case, one atomic JSON record per measurement,
and the one reader of runs (records, CSV files, pytest-benchmark JSON) into pandas.

May import ``harness.core`` (record keys, FLOPs of pytest-benchmark rows) and ``harness.base``; no torch at import.
"""

__all__: list[str] = []
