"""FFJORD against NSF on two moons (experiments/ffjord_two_moons.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/ffjord_two_moons.json"


def table() -> str:
    record = load(SOURCE)
    rows = [(f"{label} (defaults)", f"{result['parameters']:,}",
             f"{result['test_nll_nats']:.3f} (+{result['gap_to_entropy_nats']:.3f})",
             f"{result['seconds_per_training_step']:.3f}")
            for label, result in (("FFJORD", record["ffjord"]), ("NSF", record["nsf"]))]
    rows.append(("data entropy (optimum)", "",
                 f"{record['data_entropy_nats']:.3f} (standard error "
                 f"{record['data_entropy_standard_error']})", ""))
    return markdown_table(["model", "params", "test NLL (gap to entropy)",
                           "seconds per training step"], rows, [SOURCE])
