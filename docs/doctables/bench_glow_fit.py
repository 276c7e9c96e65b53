"""The latest Glow 16x16x3 rerun against tfb.Glow, on an idle machine
(python -m benchmarks.bench --flows glow ...)."""

from doctables import written_table


def table() -> str:
    return written_table("benchmarks/results/2026-12-04-cpu-glow-fit-plugins-idle.json", "table")
