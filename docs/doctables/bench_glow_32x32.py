"""Glow at 32x32x3 against tfb.Glow (python -m benchmarks.bench --glow-shape 32,32,3 ...)."""

from doctables import written_table


def table() -> str:
    return written_table("benchmarks/results/2026-12-01-cpu-glow-32x32.json", "table")
