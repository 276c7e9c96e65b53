"""A Gaussian-mixture base against N(0, I) under the same RealNVP on eight Gaussians
(experiments/mixture_base.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/mixture_base.json"


def table() -> str:
    record = load(SOURCE)
    rows = [(f"`{result['label']}`", f"{result['parameters']:,}",
             f"{result['test_nll_nats']:.3f}", f"+{result['gap_to_entropy_nats']:.3f}",
             f"{round(result['train_seconds'])} s")
            for result in record["bases"].values()]
    rows.append(("data entropy (optimum)", "", f"{record['data_entropy_nats']:.3f}", "", ""))
    return markdown_table(["base", "parameters", "test NLL (nats)", "gap to entropy",
                           f"train time ({record['steps']:,} steps)"], rows, [SOURCE])
