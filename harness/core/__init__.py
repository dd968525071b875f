"""What is measured: the case and its pattern, the variant interface and registry, the exact float64 baseline,
error metrics, FLOP and byte counts, model shapes.

May import ``harness.base`` only. The plugin API that ``harness`` exports lives here.
"""
