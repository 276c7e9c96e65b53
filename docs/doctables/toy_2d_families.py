"""Every family, NSF and TFP's flows on two toys, same steps (experiments/toy_2d.py)."""

from doctables import written_table


def table() -> str:
    return written_table("experiments/results/toy_2d.json", "comparison.table_markdown")
