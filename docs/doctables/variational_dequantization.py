"""Uniform against variational dequantization, same Glow on Fashion-MNIST, at equal CPU time
and at equal steps (experiments/variational_dequantization.py)."""

from doctables import load, markdown_table

SOURCES = ["experiments/results/variational_dequantization.json",
           "experiments/results/variational_dequantization_equal_steps.json"]


def table() -> str:
    record, equal_steps = load(SOURCES[0]), load(SOURCES[1])
    k = record["num_samples"]
    iw = f"test_bits_per_dim_importance_weighted_k{k}"
    uniform, variational = record["runs"]["uniform"], record["runs"]["variational"]
    same_steps = equal_steps["runs"]["uniform"]
    budget = f"{record['budget_cpu_seconds']:g} CPU seconds"
    rows = [(f"uniform, {budget}", "-log p(x + u), u ~ U[0, 1) (q = 1)", uniform["steps"],
             uniform["cpu_seconds"], f"{uniform['test_bits_per_dim']:.3f}",
             f"{uniform[iw]:.3f}"),
            (f"variational, {budget}", "the variational bound, u ~ q", variational["steps"],
             variational["cpu_seconds"], f"{variational['test_bits_per_dim_bound']:.3f}",
             f"{variational[iw]:.3f}"),
            (f"uniform, {equal_steps['budget_steps']} steps", "-log p(x + u), u ~ U[0, 1) "
             "(q = 1)", same_steps["steps"], same_steps["cpu_seconds"],
             f"{same_steps['test_bits_per_dim']:.3f}", f"{same_steps[iw]:.3f}")]
    return markdown_table(["dequantization, budget", "training objective", "steps",
                           "CPU seconds", "test bits/dim (objective)",
                           f"test bits/dim (importance-weighted, K = {k})"], rows, SOURCES)
