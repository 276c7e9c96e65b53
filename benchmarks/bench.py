"""Side-by-side benchmark of tfp_flows against TFP's built-in Glow, RealNVP and MAF.

Run from the repository root:

    python -m benchmarks.bench                    # default sizes, about 15 minutes on 2 CPU cores
    python -m benchmarks.bench --flows glow --glow-shape 32,32,3 --glow-levels 3 \
        --glow-depth 8 --glow-hidden 256 --fit-runs in_memory,in_memory_tfp --fit-rounds 2
    python -m benchmarks.bench --jit              # every step function with jit_compile=True
    python -m benchmarks.bench --device gpu       # Glow 32x32x3 at the paper's size on a GPU

For each family it builds our model and TFP's at the same architecture (parameter counts are
printed and must agree within 10%), trains both on the same batches in one process with the
same loop, a `tf.function` step of GradientTape + Keras Adam, and reports as ratios ours/TFP:

- training examples/s: median over rounds; the two models (and the cost floors below) take
  turns round by round, so background load on a shared machine hits all of them alike;
- sampling examples/s (a batch of samples drawn in a `tf.function`);
- NLL on held-out data after the same number of steps;
- peak memory of a training step: the peak of TF's allocator statistics
  (`tf.config.experimental.get_memory_info`) over one step, above what was allocated before
  it: activations kept for the backward pass, gradients and temporaries, not the weights. On
  CPU TF keeps these statistics only under its BFC allocator, so the memory columns come from
  a process of their own that runs under it; everything else runs with the default allocator;
- flow overhead: the training step's time over the time of a step of the same conditioner
  networks alone (forward, backward and Adam on their weights, inputs of the shapes they see
  in the flow): the cost floor of any flow built on those networks.

It also times our model through `FlowModel.fit` on the library's own `tf.data` pipeline and the
pipeline alone, to show whether input is ever the bottleneck, and through `fit` with and without
the step guard (the check that refuses a non-finite update), to give the guard's share of a
step, and TFP's model through the same Keras `fit` (epochs of `--fit-steps` steps from memory).
Results go to benchmarks/results/<date>-<device>.json and a markdown table is printed.

`--device gpu` (or `--matrix` on any device) runs something else: our Glow at the paper's
CIFAR-10 size (32x32x3, 3 levels x 32 steps, 512 hidden, batch 64) through `fit` and
`model.sample`, images/s with XLA off and on, in float32 and in mixed precision, to
benchmarks/results/<date>-<device>-matrix.json.

The data are synthetic and generated here, so the benchmark needs no download: images of soft
coloured blobs (uint8, dequantized by `tfp_flows.datasets`) and vectors from a 16-dimensional
Gaussian mixture passed through a fixed nonlinear map.

This module is the command (flags, tables, the JSON); the sides of each comparison are in
benchmarks/contenders.py, the measurements in benchmarks/harness.py, the matrix in
benchmarks/throughput_matrix.py and the data in benchmarks/synthetic.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import tfp_flows  # noqa: E402
from benchmarks import contenders, harness, throughput_matrix  # noqa: E402
from tfp_flows import machine  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _device(info: dict) -> str:
    return ", ".join(info["gpus"]) or f"CPU {info['cpu']}, {info['logical_cores']} cores"


def table(results: dict, cfg, info: dict, date: str) -> str:
    def pair(r, name, fmt):
        if name + "_ratio" not in r:
            return "–"
        return (f"{fmt.format(r[name + '_ours'])} / {fmt.format(r[name + '_theirs'])} "
                f"(**{r[name + '_ratio']:.2f}x**)")

    def cell(r, name, fmt):
        return fmt.format(r[name]) if name in r else "–"

    device = _device(info)
    lines = [
        f"Machine: {device}; TF {info['tensorflow']}, Keras {info['keras']}, "
        f"TFP {info['tensorflow_probability']}. Date: {date}. "
        f"jit_compile={cfg.jit}.",
        "",
        "Each cell: ours / TFP (ratio ours/TFP).",
        "",
        "| flow | size | params | train ex/s | sample ex/s | NLL nats (test) | "
        "step peak MiB | flow overhead | ours fit ex/s: tf.data / memory | tf.data alone ex/s "
        "| step guard cost | fit ex/s from memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for flow, r in results.items():
        params = f"{r['params']['ours']:,} / {r['params']['theirs']:,}"
        nll = pair(r, "nll", "{:.2f}")
        if "bpd_ours" in r:
            nll += f"; bpd {r['bpd_ours']:.3f} / {r['bpd_theirs']:.3f}"
        lines.append(
            f"| {flow} | {contenders.size(flow, cfg)} | {params} "
            f"| {pair(r, 'train_ex_s', '{:.0f}')} | "
            f"{pair(r, 'sample_ex_s', '{:.0f}')} | {nll} | {pair(r, 'step_mem_mib', '{:.1f}')} "
            f"| {pair(r, 'overhead', '{:.2f}')} | {cell(r, 'fit_ex_s_ours', '{:.0f}')} / "
            f"{cell(r, 'fit_in_memory_ex_s_ours', '{:.0f}')} | {r['pipeline_ex_s']:.0f} "
            f"| {cell(r, 'step_guard_cost', '{:.1%}')} "
            f"| {pair(r, 'fit_in_memory_ex_s', '{:.0f}')} |")
    return "\n".join(lines)


def matrix_table(rows: dict, cfg, info: dict, date: str) -> str:
    device = _device(info)
    lines = [f"Machine: {device}; TF {info['tensorflow']}, Keras {info['keras']}. Date: {date}. "
             f"Glow {contenders.size('glow', cfg)}, Adam {cfg.learning_rate}, epochs of "
             f"{cfg.fit_steps} steps.", "",
             "| precision, XLA | train images/s (fit) | sample images/s | peak MiB | loss |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        peak = "–" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        lines.append(f"| {name} | {r['train_images_s']:,.0f} | {r['sample_images_s']:,.0f} | "
                     f"{peak} | {r['final_loss']:.1f} |")
    return "\n".join(lines)


# Glow sizes: the CPU comparison's matched size, and the Glow paper's CIFAR-10 model on a GPU.
GLOW_DEFAULTS = {
    "cpu": {"shape": (16, 16, 3), "levels": 2, "depth": 4, "hidden": 64, "batch": 32},
    "gpu": {"shape": (32, 32, 3), "levels": 3, "depth": 32, "hidden": 512, "batch": 64},
}


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(","))


def _depths(text: str) -> tuple[int, ...]:
    depths = _shape(text) if text else ()
    if len(depths) not in (0, 2):
        raise argparse.ArgumentTypeError(f"expected two depths or '', got {text!r}")
    return depths


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", default=",".join(contenders.FLOWS),
                        help=f"comma-separated subset of {','.join(contenders.FLOWS)}")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: ours against TFP; gpu: our Glow's throughput matrix (XLA "
                             "off/on x float32/mixed precision) at the paper's CIFAR-10 size")
    parser.add_argument("--matrix", action="store_true",
                        help="run the throughput matrix on this machine's device")
    parser.add_argument("--low-precision", choices=("bfloat16", "float16"), default=None,
                        help="the matrix's precision= beside float32 (default: float16 on a "
                             "GPU, bfloat16 on CPU)")
    for flag, kind in (("shape", _shape), ("levels", int), ("depth", int), ("hidden", int),
                       ("batch", int)):
        parser.add_argument(f"--glow-{flag}", type=kind, default=None,
                            help=f"default {GLOW_DEFAULTS['cpu'][flag]} (cpu), "
                                 f"{GLOW_DEFAULTS['gpu'][flag]} (gpu)")
    parser.add_argument("--dim", type=int, default=16, help="vector flows: data dimension")
    parser.add_argument("--couplings", type=int, default=6, help="RealNVP couplings")
    parser.add_argument("--maf-layers", type=int, default=5)
    parser.add_argument("--vector-hidden", type=int, default=256)
    parser.add_argument("--vector-batch", type=int, default=256)
    parser.add_argument("--examples", type=int, default=4096, help="training examples")
    parser.add_argument("--eval-examples", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=3,
                        help="steps before timing: one traces, the others measure memory")
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds per model")
    parser.add_argument("--chunk", type=int, default=8, help="steps per timed round")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True for every step")
    parser.add_argument("--fit-steps", type=int, default=150,
                        help="steps per epoch of the fit timings")
    parser.add_argument("--fit-rounds", type=int, default=5,
                        help="timed fit epochs per model, after one that traces")
    parser.add_argument("--fit-runs", default=",".join(harness.FIT_RUNS),
                        help=f"which fit timings to take, a subset of {','.join(harness.FIT_RUNS)}")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="for the fit timings (Keras' default is 1)")
    parser.add_argument("--reversible-depths", type=_depths, default=(8, 32),
                        help="two Glow depths for the reversible-gradient memory check "
                             "('' skips it)")
    parser.add_argument("--out", default=None, help="results JSON path")
    cfg = parser.parse_args(argv)
    cfg.flows = [f for f in cfg.flows.split(",") if f]
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "gpu" and not gpus:
        parser.error("--device gpu needs a GPU, and TensorFlow sees none on this machine.")
    cfg.matrix = cfg.matrix or cfg.device == "gpu"
    for flag, value in GLOW_DEFAULTS[cfg.device].items():
        if getattr(cfg, f"glow_{flag}") is None:
            setattr(cfg, f"glow_{flag}", value)
    if cfg.low_precision is None:
        cfg.low_precision = "float16" if gpus else "bfloat16"
    unknown = set(cfg.flows) - set(contenders.FLOWS)
    if unknown:
        parser.error(f"--flows: {sorted(unknown)} have no TFP peer here; choose from "
                     f"{contenders.FLOWS} (of the families {tuple(tfp_flows.FAMILIES)})")
    cfg.fit_runs = [r for r in cfg.fit_runs.split(",") if r]
    unknown = set(cfg.fit_runs) - set(harness.FIT_RUNS)
    if unknown:
        parser.error(f"unknown fit runs {sorted(unknown)}; choose from {harness.FIT_RUNS}")
    if cfg.warmup < 2 or min(cfg.rounds, cfg.chunk, cfg.fit_steps, cfg.fit_rounds) < 1:
        parser.error("need --warmup >= 2 (the first step traces, the others measure memory) "
                     "and --rounds, --chunk, --fit-steps, --fit-rounds >= 1")
    return cfg


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    # TFP's RealNVP template is TF1 code (tf1 layers) and says so on every trace.
    warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow_probability")
    warnings.filterwarnings("ignore", category=UserWarning, module="tf_keras")
    tf.get_logger().setLevel("ERROR")
    info = machine.describe()
    date = datetime.date.today().isoformat()
    device = "gpu" if info["gpus"] else "cpu"
    if cfg.matrix:
        rows = throughput_matrix.throughput_matrix(cfg)
        report = matrix_table(rows, cfg, info, date)
        print()
        print(report)
        return _write(cfg.out or os.path.join(RESULTS_DIR, f"{date}-{device}-matrix.json"),
                      {"date": date, "machine": info, "config": _config(cfg), "results": rows,
                       "table": report})
    results = {}
    for flow in cfg.flows:
        start = time.perf_counter()
        results[flow] = harness.compare(flow, cfg)
        print(f"[{flow}] done in {time.perf_counter() - start:.0f} s", flush=True)
    report = table(results, cfg, info, date)
    if "glow" in cfg.flows and cfg.reversible_depths:
        results["reversible_memory"] = harness.in_bfc_process(harness.reversible_memory, cfg)
        memory = results["reversible_memory"]
        report += "\n\n| Glow step peak MiB | " + " | ".join(
            f"depth {d}" for d in cfg.reversible_depths) + " | deep / shallow |\n|---|---|---|---|"
        for kind in ("plain", "reversible"):
            report += (f"\n| {kind} | " + " | ".join(
                f"{memory['peak_mib'][f'{kind}_depth{d}']:.1f}" for d in cfg.reversible_depths)
                + f" | {memory['deep_over_shallow'][kind]:.2f}x |")
    print()
    print(report)
    out = cfg.out or os.path.join(RESULTS_DIR, f"{date}-{device}{'-jit' if cfg.jit else ''}.json")
    return _write(out, {"date": date, "machine": info, "config": _config(cfg),
                        "results": results, "table": report})


def _config(cfg) -> dict:
    return {k: v for k, v in vars(cfg).items() if k != "out"}


def _write(out: str, report: dict) -> dict:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(report, handle, indent=2, default=float)
    print(f"\nwrote {out}")
    return report["results"]


if __name__ == "__main__":
    main()
