"""Flows as `tfp.vi` surrogate posteriors on two targets (experiments/vi_posterior.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/vi_posterior.json"
LABELS = {"mean_field": "mean-field Gaussian", "iaf": "IAF", "maf": "MAF",
          "iaf_small": "IAF (small)", "planar": "planar", "radial": "radial"}


def table() -> str:
    results = load(SOURCE)["results"]
    rows = [(target, LABELS[kind], f"{record['parameters']:,}", f"{record['eval']['elbo']:.4f}",
             f"{record['eval']['kl_q_p']:.4f}", f"{record['ms_per_step']:.1f}")
            for target in ("banana", "funnel") for kind in LABELS
            for record in [results[target][kind]]]
    return markdown_table(["target", "posterior", "params", "ELBO", "KL(q ‖ p)", "ms / step"],
                          rows, [SOURCE])
