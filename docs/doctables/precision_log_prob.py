"""bfloat16 against float32 with the same weights: log_prob differences per family
(experiments/precision_log_prob.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/precision_log_prob.json"


def table() -> str:
    rows = []
    for name, r in load(SOURCE)["results"].items():
        shape = "x".join(str(d) for d in r["event_shape"])
        rows.append((name, f"{r['dataset']} ({shape})", f"{r['mean_abs_difference_nats']:.1e}",
                     f"{r['max_abs_difference_nats']:.1e}",
                     f"{r['mean_abs_difference_nats_per_dim']:.1e}",
                     f"{r['test_nll_nats_bfloat16']:.3f} / {r['test_nll_nats_float32']:.3f}"))
    return markdown_table(["model", "data", "mean abs difference (nats)",
                           "max abs difference (nats)", "mean abs difference per dim (nats)",
                           "test NLL nats, bfloat16 / float32 weights"], rows, [SOURCE])
