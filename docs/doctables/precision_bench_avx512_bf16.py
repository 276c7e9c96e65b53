"""Glow through fit, float32 against bfloat16, oneDNN on / off x XLA off / on, with tfb.Glow
beside it, on a CPU with AVX512-BF16: both sizes of benchmarks/precision.py in one table."""

from doctables import markdown_table, written_cells

SOURCES = {"16x16x3 (2 x 4, 64 hidden)":
           "benchmarks/results/2026-12-04-cpu-precision-16x16x3-avx512_bf16.json",
           "32x32x3 (3 x 8, 256 hidden)":
           "benchmarks/results/2026-12-04-cpu-precision-32x32x3-avx512_bf16.json"}


def table() -> str:
    header, rows = None, []
    for glow, source in SOURCES.items():
        written_header, written_rows = written_cells(source, "table")
        header = ["Glow", *written_header]
        rows += [[glow, *row] for row in written_rows]
    return markdown_table(header, rows, list(SOURCES.values()))
