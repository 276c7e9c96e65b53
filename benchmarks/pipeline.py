"""Memory and throughput of the streamed input pipeline (`tfp_flows.datasets.streamed`).

Run from the repository root:

    python -m benchmarks.pipeline                          # 2,000 and 20,000 images
    python -m benchmarks.pipeline --sizes 200,2000         # a quick try

For each size it prepares, offline, a TFDS dataset of random 64x64x3 uint8 images (PNG
encoded, as TFDS stores images) with a dataset builder (tests/synthetic_tfds.py), with a test
split a tenth of the training one. Then, in a fresh child process per size, it:

- trains a small Glow for a fixed number of steps through `FlowModel.fit` on the streamed
  training batches (`Splits.streamed.train_batches`, the path of the training command) and
  reads the process's peak resident memory (VmHWM from /proc/self/status) at the end: with
  the data streamed it must stay flat (within 10%) while the dataset grows 10x;
- times the training steps (from the second step on: the first traces) as images/s;
- times the input pipeline alone, iterating 100 batches of another epoch (from the second
  batch on: the first fills the shuffle buffer), as images/s: it must deliver at least 10x
  what training consumes.

Rows and ratios are printed and written to benchmarks/results/<date>-cpu-pipeline.json with the
sizes, settings and machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")
SHAPE = (64, 64, 3)
SETTINGS = {"batch_size": 16, "steps": 30, "pipeline_batches": 100, "shuffle_buffer": 1000,
            "num_bits": 5,
            "glow": {"num_scales": 3, "depth": 2, "hidden": 32}}
NAME = "pipeline_images"


def child(data_dir: str) -> dict:
    """Trains for `SETTINGS['steps']` steps and times the pipeline; runs in its own process."""
    import keras
    import tensorflow as tf

    import tfp_flows
    from tfp_flows import datasets

    keras.utils.set_random_seed(0)
    splits = datasets.load(NAME, data_dir=data_dir, batch_size=SETTINGS["batch_size"],
                           num_bits=SETTINGS["num_bits"],
                           shuffle_buffer=SETTINGS["shuffle_buffer"])
    model = tfp_flows.glow(splits.event_shape, num_levels=splits.num_levels,
                           **SETTINGS["glow"])
    model.compile(keras.optimizers.Adam(1e-3))
    steps = SETTINGS["steps"]
    times = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(splits.streamed.train_batches(0, 1), steps_per_epoch=steps, epochs=1, verbose=0,
              callbacks=[StepTimer()])
    peak_kib = _status_kib("VmHWM")
    batches = iter(splits.streamed.train_batches(1, 2).take(SETTINGS["pipeline_batches"]))
    # Timed from the second batch, as training is: the first fills the shuffle buffer.
    next(batches)
    start = time.perf_counter()
    count = sum(int(tf.shape(batch)[0]) for batch in batches)
    pipeline_seconds = time.perf_counter() - start
    return {"peak_rss_mib": peak_kib / 1024,
            "train_images_per_s": SETTINGS["batch_size"] * (len(times) - 1) / sum(times[1:]),
            "pipeline_images_per_s": count / pipeline_seconds,
            "examples_per_epoch": splits.streamed.steps_per_epoch * SETTINGS["batch_size"]}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def prepare(data_dir: str, num_train: int) -> float:
    """Prepares the dataset of `num_train` training images; returns the seconds it took."""
    from tests import synthetic_tfds

    start = time.perf_counter()
    synthetic_tfds.prepare(data_dir, NAME, num_train=num_train, num_test=num_train // 10,
                           shape=SHAPE, num_classes=10)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,20000",
                        help="training images of the two datasets, comma separated")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    root = tempfile.mkdtemp(prefix="pipeline-bench-")
    try:
        for size in sizes:
            data_dir = os.path.join(root, str(size))
            seconds = prepare(data_dir, size)
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
            result = subprocess.run([sys.executable, "-m", "benchmarks.pipeline",
                                     "--child", data_dir], capture_output=True, text=True,
                                    env=env, check=True)
            row = {"train_images": size, "prepare_s": seconds,
                   **json.loads(result.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{size:>7} images: peak RSS {row['peak_rss_mib']:7.1f} MiB, training "
                  f"{row['train_images_per_s']:7.1f} images/s, pipeline "
                  f"{row['pipeline_images_per_s']:8.1f} images/s (prepared in {seconds:.0f} s)",
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from tfp_flows import machine

    memory_ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    feed_ratios = [row["pipeline_images_per_s"] / row["train_images_per_s"] for row in rows]
    print(f"peak RSS {sizes[-1]} / {sizes[0]} images: {memory_ratio:.3f} (target within 10%)")
    print(f"pipeline / training images/s: {', '.join(f'{r:.1f}x' for r in feed_ratios)} "
          f"(target >= 10x)")
    report = {
        "what": "peak resident memory of a short training run on a streamed TFDS dataset at "
                "two sizes, and streamed pipeline vs training throughput",
        "command": "python -m benchmarks.pipeline" + (
            f" --sizes {args.sizes}" if args.sizes != parser.get_default("sizes") else ""),
        "image_shape": list(SHAPE), "settings": SETTINGS, "rows": rows,
        "peak_rss_ratio": memory_ratio, "pipeline_over_training": feed_ratios,
        "machine": machine.describe(),
    }
    out = os.path.join(RESULTS_DIR, f"{datetime.date.today().isoformat()}-cpu-pipeline.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
