"""Ours against TFP's built-in flows at matched size (python -m benchmarks.bench)."""

from doctables import written_table


def table() -> str:
    return written_table("benchmarks/results/2026-12-01-cpu.json", "table")
