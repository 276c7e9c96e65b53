"""Uniform against variational dequantization, same Glow and CPU budget on Fashion-MNIST
(experiments/variational_dequantization.py)."""

from doctables import load, markdown_table

SOURCES = ["experiments/results/variational_dequantization.json"]


def table() -> str:
    record = load(SOURCES[0])
    k = record["num_samples"]
    iw = f"test_bits_per_dim_importance_weighted_k{k}"
    uniform, variational = record["runs"]["uniform"], record["runs"]["variational"]
    rows = [("uniform", "-log p(x + u), u ~ U[0, 1) (q = 1)", uniform["steps"],
             uniform["cpu_seconds"],
             f"{uniform['test_bits_per_dim']:.3f}", f"{uniform[iw]:.3f}"),
            ("variational", "the variational bound, u ~ q",
             variational["steps"], variational["cpu_seconds"],
             f"{variational['test_bits_per_dim_bound']:.3f}", f"{variational[iw]:.3f}")]
    return markdown_table(["dequantization", "training objective", "steps in budget",
                           "CPU seconds", "test bits/dim (objective)",
                           f"test bits/dim (importance-weighted, K = {k})"], rows, SOURCES)
