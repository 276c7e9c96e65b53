"""Circular against interval splines on a von Mises mixture on the torus
(experiments/torus_von_mises.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/torus_von_mises.json"


def table() -> str:
    record = load(SOURCE)
    rows = []
    for key, label, nll, gap in (
            ("circular_spline", "`circular_spline` (normal base renormalised)",
             "test_nll_normalized_nats", "normalized_nll_minus_entropy_nats"),
            ("spline", "`spline`, bound 4 (a density on the plane)", "test_nll_nats",
             "nll_minus_entropy_nats")):
        result = record[key]
        rows.append((label, f"{result[nll]:.4f}", f"{result[gap]:.4f}",
                     f"{result['kl_estimate_nats']} ± {result['kl_standard_error_nats']}",
                     f"{result['model_mass_on_torus']}", f"{result['train_steps']:,}",
                     f"{round(result['train_seconds'])} s"))
    return markdown_table(["coupling transform", "test NLL", "NLL - entropy",
                           "KL(p ‖ q) estimate", "mass on the torus", "steps", "train time"],
                          rows, [SOURCE])
