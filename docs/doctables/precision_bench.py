"""Glow 16x16x3 through fit, float32 against bfloat16, oneDNN on / off x XLA off / on, with
tfb.Glow beside it (benchmarks/precision.py)."""

from doctables import written_table

SOURCE = "benchmarks/results/2026-12-04-cpu-precision-16x16x3.json"


def table() -> str:
    return written_table(SOURCE, "table")
