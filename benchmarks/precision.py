"""float32 against bfloat16 on this CPU: Glow through `fit`, oneDNN on / off x XLA off / on.

Run from the repository root:

    python -m benchmarks.precision       # Glow 16x16x3 (2 scales x 4 steps, 64 hidden, batch 32)
    python -m benchmarks.precision --glow-shape 32,32,3 --glow-levels 3 --glow-depth 8 \
        --glow-hidden 256 --fit-rounds 2

TF reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads, so each cell (oneDNN on or off, XLA off
or on) runs in a process of its own. In a cell, four models train through Keras `fit` on the
same batches from memory: our Glow with `precision="float32"` and `precision="bfloat16"`
(same initial weights), and TFP's `tfb.Glow` at the same size in float32 and in bfloat16. TFP's
Glow has no precision switch; its networks are tf_keras models, whose global dtype policy
("mixed_bfloat16", set in this benchmark's process only) is the one way to try; a model that
cannot be built or trained so has its error in the row instead of a rate. The models take
turns epoch by epoch (`harness.fit_times`), so background load on a shared machine hits them
alike. A row: images/s (median over the timed epochs of `--fit-steps` steps, after two untimed
steps that trace), and bits/dim of a held-out batch after training (the same for both
precisions to within the noise of a few steps; TFP's Glow has taken one step more, the probe
that finds whether it trains at all).

bfloat16 is fast only on a CPU that multiplies it in hardware: AMX (Intel Sapphire Rapids and
later) or AVX512-BF16. The machine record's `cpu_bfloat16` lists which of them this CPU has,
and the table says so when it has neither: there oneDNN emulates bfloat16 and it is slower
than float32. The JSON goes to benchmarks/results/<date>-cpu-precision-<H>x<W>x<C>.json,
with the feature's name added (`-avx512_bf16`, `-amx_bf16`) on a CPU that has one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

CELLS = [(onednn, jit) for onednn in (True, False) for jit in (False, True)]
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MODELS = ("ours float32", "ours bfloat16", "tfb.Glow float32", "tfb.Glow bfloat16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glow-shape", default="16,16,3",
                        type=lambda s: tuple(int(d) for d in s.split(",")))
    parser.add_argument("--glow-levels", type=int, default=2)
    parser.add_argument("--glow-depth", type=int, default=4)
    parser.add_argument("--glow-hidden", type=int, default=64)
    parser.add_argument("--glow-batch", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--fit-steps", type=int, default=5, help="steps per timed epoch")
    parser.add_argument("--fit-rounds", type=int, default=3, help="timed epochs per model")
    parser.add_argument("--out", default=None, help="the JSON's path (default: benchmarks/"
                        "results/<date>-cpu-precision-<shape>[-<bfloat16 feature>].json)")
    # Internal: run one cell in this process and write its rows to this path.
    parser.add_argument("--cell", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cell-out", default=None, help=argparse.SUPPRESS)
    cfg = parser.parse_args(argv)
    for name in ("glow_levels", "glow_depth", "glow_hidden", "glow_batch", "fit_steps",
                 "fit_rounds"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    return cfg


def _cell_name(onednn: bool, jit: bool) -> str:
    return f"oneDNN {'on' if onednn else 'off'}, XLA {'on' if jit else 'off'}"


def run_cell(cfg) -> dict:
    """The four models of one cell, timed in this process (whose oneDNN setting is fixed)."""
    import keras
    import numpy as np
    import tensorflow as tf
    import tf_keras

    import tfp_flows
    from benchmarks import contenders, harness, synthetic

    jit = cfg.cell.endswith("1")
    rng = np.random.default_rng(0)
    batch = cfg.glow_batch
    pixels = synthetic.blob_images(9 * batch, cfg.glow_shape, rng)
    x = pixels.astype(np.float32) + rng.uniform(size=pixels.shape).astype(np.float32)
    train, held_out = x[:8 * batch], tf.constant(x[8 * batch:])
    options = tf.data.Options()
    options.autotune.enabled = False
    data = tf.data.Dataset.from_tensor_slices(train).batch(
        batch, drop_remainder=True).cache().repeat().with_options(options)
    dims = float(np.prod(cfg.glow_shape) * np.log(2))
    runs, bits, errors = {}, {}, {}

    keras.utils.set_random_seed(0)
    first = None
    for precision in ("float32", "bfloat16"):
        model = tfp_flows.glow(cfg.glow_shape, num_scales=cfg.glow_levels, depth=cfg.glow_depth,
                               hidden=cfg.glow_hidden, num_levels=256, precision=precision)
        if first is None:
            model.initialize_from_data(train[:batch])
            first = model
        else:
            model.set_weights(first.get_weights())
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), jit_compile=jit)
        runs[f"ours {precision}"] = (model, data)
        bits[f"ours {precision}"] = model.log_prob
    for policy, name in (("float32", "tfb.Glow float32"), ("mixed_bfloat16", "tfb.Glow bfloat16")):
        tf_keras.mixed_precision.set_global_policy(policy)
        try:
            theirs = contenders.tfp_glow(cfg)
            theirs.init(tf.constant(train[:batch]))
            model = contenders.DensityModel(theirs.log_prob, theirs.variables)
            model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), jit_compile=jit)
            model.optimizer.build(theirs.variables)
            # Fails here, if at all; this probe is one training step more than ours take.
            model.fit(data, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
            runs[name], bits[name] = (model, data), theirs.log_prob
        except Exception as error:  # noqa: BLE001 -- the row records what TFP refused
            errors[name] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        finally:
            tf_keras.mixed_precision.set_global_policy("float32")
    times = harness.fit_times(runs, cfg.fit_steps, cfg.fit_rounds)
    rows = {}
    for name in MODELS:
        if name in errors:
            rows[name] = {"error": errors[name]}
            continue
        seconds = times[name]
        rows[name] = {
            "train_images_s": cfg.fit_steps * batch / float(np.median(seconds)),
            "epoch_seconds": [float(s) for s in seconds],
            "held_out_bits_per_dim": float(-tf.reduce_mean(
                tf.cast(bits[name](held_out), tf.float32)) / dims)}
    return rows


def table(results: dict, info: dict, cfg, date: str) -> str:
    h, w, c = cfg.glow_shape
    fast = ", ".join(info["cpu_bfloat16"]) or ("no (no AMX, no AVX512-BF16: bfloat16 is "
                                               "emulated, slower than float32)")
    lines = [f"CPU {info['cpu']}, {info['logical_cores']} cores, bfloat16 in hardware: {fast}"
             f"; load {info['load_average_1min_at_start']} at start. TF {info['tensorflow']}. "
             f"Date: {date}. Glow {h}x{w}x{c}, {cfg.glow_levels} x {cfg.glow_depth}, "
             f"{cfg.glow_hidden} hidden, batch {cfg.glow_batch}; {cfg.fit_rounds} epochs of "
             f"{cfg.fit_steps} steps each.", "",
             "| oneDNN, XLA | " + " | ".join(MODELS) + " | ours bfloat16 / float32 |",
             "|---|" + "---|" * (len(MODELS) + 1)]
    for cell, rows in results.items():
        cells = [f"{r['train_images_s']:,.0f} img/s, {r['held_out_bits_per_dim']:.2f} bpd"
                 if "error" not in r else "fails" for r in (rows[m] for m in MODELS)]
        ratio = (rows["ours bfloat16"]["train_images_s"]
                 / rows["ours float32"]["train_images_s"])
        lines.append(f"| {cell} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    cfg = parse_args(argv)
    if cfg.cell is not None:
        rows = run_cell(cfg)
        with open(cfg.cell_out, "w") as f:
            json.dump(rows, f)
        return rows
    from tfp_flows import machine

    info = machine.describe()
    del info["onednn"]  # each cell sets its own, and the table says which
    results = {}
    passed = list(argv if argv is not None else sys.argv[1:])
    for onednn, jit in CELLS:
        name = _cell_name(onednn, jit)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "cell.json")
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0",
                   "TF_CPP_MIN_LOG_LEVEL": "2"}
            subprocess.run([sys.executable, "-m", "benchmarks.precision", *passed,
                            "--cell", f"{int(onednn)}{int(jit)}", "--cell-out", out],
                           env=env, check=True)
            with open(out) as f:
                results[name] = json.load(f)
        print(f"[precision] {name}: " + "; ".join(
            f"{m} {r['train_images_s']:,.0f} img/s" if "error" not in r else f"{m} fails"
            for m, r in results[name].items()), flush=True)
    date = datetime.date.today().isoformat()
    text = table(results, info, cfg, date)
    print(text)
    h, w, c = cfg.glow_shape
    hardware = "".join(f"-{flag}" for flag in info["cpu_bfloat16"][:1])
    path = cfg.out or os.path.join(RESULTS_DIR,
                                   f"{date}-cpu-precision-{h}x{w}x{c}{hardware}.json")
    with open(path, "w") as f:
        json.dump({"config": {k: v for k, v in vars(cfg).items()
                              if not k.startswith("cell")},
                   "command": "python -m benchmarks.precision " + " ".join(passed),
                   "machine": info, "results": results, "table": text}, f, indent=2)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
