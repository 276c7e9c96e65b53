"""What each Glow speed idea saved of a training step (python -m benchmarks.glow_ablations)."""

from doctables import load, markdown_table

SOURCE = "benchmarks/results/2026-12-01-cpu-glow-ablations.json"
IDEAS = {"stacked_variables": ("each level's step parameters in one stacked variable per kind",
                               "yes (`GlowSteps`)"),
         "pointwise_conv": ("1x1 hidden convolution as one matmul", "no"),
         "fold_actnorm": ("ActNorm folded into the 1x1 convolution", "no"),
         "space_to_depth": ("squeeze as `tf.nn.space_to_depth`", "no")}


def table() -> str:
    results = load(SOURCE)["results"]
    sizes = list(results)
    rows = []
    for idea, (label, kept) in IDEAS.items():
        cells = []
        for size in sizes:
            record = results[size][idea]
            step = record["saving_ms"] / record["share_of_step"]
            cells.append(f"{record['saving_ms']:.2f} of {step:.1f} "
                         f"({100 * record['share_of_step']:.1f}%)")
        rows.append((label, *cells, kept))
    return markdown_table(["idea", *(f"{size}: ms saved of a step" for size in sizes), "kept"],
                          rows, [SOURCE])
