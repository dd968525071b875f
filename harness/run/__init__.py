"""Running sweeps: the typed config and its checks, Hydra launch, the sweep loop, declined cases, outcomes as rows,
isolation in child processes, crash attribution, parallel-job notice and progress.

May import every subpackage below it: ``core``, ``inputs``, ``measure``, ``store``, ``base``.
"""

__all__: list[str] = []
