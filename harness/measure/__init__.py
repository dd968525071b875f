"""Measuring variants on one case: timing in interleaved rounds, what the process got from the machine, peak
memory, the output contract, device ceilings and the environment.

May import ``harness.core``, ``harness.inputs`` and ``harness.base``.
"""
