"""Peak memory of a Glow training step, ordinary against reversible gradients."""

from doctables import written_table


def table() -> str:
    return written_table("benchmarks/results/2026-12-01-cpu.json", "table", index=1)
