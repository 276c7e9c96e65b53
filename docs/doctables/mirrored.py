"""MirroredStrategy (2 replicas) against one device: largest weight differences
(experiments/mirrored_vs_single.py)."""

from doctables import load, markdown_table

SOURCE = "experiments/results/mirrored_vs_single.json"


def table() -> str:
    record = load(SOURCE)
    settings, results = record["settings"], record["results"]
    rows = []
    for size, label in (("tiny", "tiny"), ("quick_start", "quick start")):
        shape = settings["sizes"][size]
        name = (f"{label} ({shape['num_scales']} scales x {shape['depth']} steps, "
                f"{shape['hidden']} hidden)")
        cells = [f"{results[size][optimizer]['max_abs_weight_difference']:.1e} (weights moved "
                 f"by up to {results[size][optimizer]['max_abs_weight_change']:.2g})"
                 for optimizer in ("sgd", "adam")]
        rows.append((name, *cells))
    return markdown_table(["Glow on 8x8 digits", f"SGD, lr {settings['sgd_learning_rate']}",
                           f"Adam, lr {settings['adam_learning_rate']}"], rows, [SOURCE])
