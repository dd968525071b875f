"""Helpers every layer may use: files written whole or not at all, and whether a process still runs.

Imports nothing else of ``harness`` and no torch.
"""
