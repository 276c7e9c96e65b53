"""MAF vs IAF, median ms per batch against the dimension (experiments/maf_vs_iaf.py)."""

from doctables import written_table


def table() -> str:
    return written_table("experiments/results/maf_vs_iaf.json", "table_markdown")
