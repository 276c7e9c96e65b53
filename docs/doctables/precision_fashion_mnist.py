"""Glow on Fashion-MNIST, float32 against bfloat16 for the same process CPU time
(experiments/precision_fashion_mnist.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/precision_fashion_mnist.json"


def table() -> str:
    record = load(SOURCE)
    rows = [(precision, r["steps"], r["cpu_seconds"], r["wall_seconds"],
             f"{r['test']['bits_per_dim']:.3f}")
            for precision, r in record["results"].items()]
    return markdown_table(["precision", "steps", "process CPU s", "wall s",
                           "test bits/dim"], rows, [SOURCE])
