"""MAF vs IAF: time to evaluate densities and to draw samples as the dimension D grows.

    python experiments/maf_vs_iaf.py           # D = 8 ... 128, about a minute on 2 CPU cores
    python experiments/maf_vs_iaf.py --quick   # D = 4, 8, 16, a smoke test
    python experiments/maf_vs_iaf.py --dims 8,32,128,256 --hidden 512

The lecture's table, measured. A MAF layer maps data to latent in one pass of its MADE
(z_i = (x_i - mu(x_<i)) exp(-alpha(x_<i)), every i at once), so the density costs 1 pass and
sampling, which must invert it, costs D sequential passes (x_i needs x_<i first). IAF is the
same layer turned around: sampling is 1 pass, the density of an arbitrary x is D passes. And
IAF scoring its own samples is 1 pass (the latent is known, which is why IAF suits variational
posteriors): `experimental_sample_and_log_prob` through TFP's bijector cache.

Setup: `tfp_flows.maf` / `tfp_flows.iaf` with 5 autoregressive layers, MADE 2 x `hidden` ReLU
(untrained: the cost does not depend on the weights), a batch of `batch` examples, each
operation a `tf.function` traced and run once before timing, then the median of `runs` runs.
No published timings exist for this (the papers give the asymptotics): the ratio is what this
script measures.
Writes experiments/results/maf_vs_iaf.json and maf_vs_iaf.png; prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import common
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tfp_flows

OPERATIONS = ("log_prob", "sample", "sample_and_log_prob")


def median_seconds(fn, runs: int) -> float:
    fn()  # traces the tf.function; compilation is not what is measured
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_flow(builder, dim: int, args) -> dict:
    model = builder((dim,), num_layers=args.layers, hidden=args.hidden)
    x = tf.random.stateless_normal((args.batch, dim), seed=(args.seed, dim))
    seed = (args.seed, 1)
    operations = {
        "log_prob": tf.function(lambda: model.log_prob(x)),
        "sample": tf.function(lambda: model.sample(args.batch, seed=seed)),
        "sample_and_log_prob": tf.function(
            lambda: model.distribution.experimental_sample_and_log_prob(args.batch, seed=seed)),
    }
    return {op: median_seconds(fn, args.runs) for op, fn in operations.items()}


def markdown_table(dims, results) -> str:
    lines = ["| D | MAF log_prob (ms) | MAF sample (ms) | IAF log_prob (ms) | IAF sample (ms) "
             "| IAF sample + own log_prob (ms) | MAF sample / log_prob | IAF log_prob / sample |",
             "|---|---|---|---|---|---|---|---|"]
    for dim in dims:
        maf, iaf = results["maf"][str(dim)], results["iaf"][str(dim)]
        lines.append(
            f"| {dim} | {1e3 * maf['log_prob']:.2f} | {1e3 * maf['sample']:.2f} "
            f"| {1e3 * iaf['log_prob']:.2f} | {1e3 * iaf['sample']:.2f} "
            f"| {1e3 * iaf['sample_and_log_prob']:.2f} "
            f"| {maf['sample'] / maf['log_prob']:.1f}x | {iaf['log_prob'] / iaf['sample']:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small dimensions, a smoke test (writes to $TMPDIR/tfp_flows_quick)")
    parser.add_argument("--dims", default="8,16,32,64,128")
    parser.add_argument("--layers", type=int, default=5, help="autoregressive layers")
    parser.add_argument("--hidden", type=int, default=256, help="MADE hidden units (>= D - 1)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.dims, args.runs, args.hidden = "4,8,16", 3, 32
    dims = [int(d) for d in args.dims.split(",")]
    start = time.perf_counter()
    results = {"maf": {}, "iaf": {}}
    for dim in dims:
        for name, builder in (("maf", tfp_flows.maf), ("iaf", tfp_flows.iaf)):
            results[name][str(dim)] = time_flow(builder, dim, args)
            print(f"D={dim} {name}: " + ", ".join(
                f"{op} {1e3 * s:.2f} ms" for op, s in results[name][str(dim)].items()))
    table = markdown_table(dims, results)
    print(table)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    styles = {("maf", "log_prob"): ("tab:blue", "-o"), ("maf", "sample"): ("tab:blue", "--s"),
              ("iaf", "log_prob"): ("tab:orange", "-o"), ("iaf", "sample"): ("tab:orange", "--s"),
              ("iaf", "sample_and_log_prob"): ("tab:orange", ":^")}
    for (name, op), (color, style) in styles.items():
        seconds = [1e3 * results[name][str(d)][op] for d in dims]
        label = f"{name.upper()} {op.replace('_and_', ' + own ')}"
        ax.plot(dims, seconds, style, color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("dimension D")
    ax.set_ylabel(f"median ms per batch of {args.batch}")
    ax.set_title(f"{args.layers} MADE layers (2x{args.hidden}), tf.function, CPU", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    record = {"experiment": "maf_vs_iaf", "command": "python experiments/maf_vs_iaf.py"
              + (" --quick" if args.quick else ""), "machine": common.machine(),
              "settings": vars(args), "units": "median seconds per batch",
              "expected_passes": {"maf": {"log_prob": "1", "sample": "D"},
                                  "iaf": {"log_prob": "D", "sample": "1",
                                          "sample_and_log_prob": "1"}},
              "seconds": results, "table_markdown": table,
              "figure": common.save_figure(fig, "maf_vs_iaf.png", args.quick),
              "wall_seconds": round(time.perf_counter() - start, 1)}
    common.write_json("maf_vs_iaf.json", record, args.quick)


if __name__ == "__main__":
    main()
