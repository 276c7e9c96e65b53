"""Variational (Flow++) against uniform dequantization: the same Glow on Fashion-MNIST, equal
CPU time.

    python experiments/variational_dequantization.py            # 2 x 7 CPU-minutes + tests,
                                                                # ~45 min on a busy 2-core box
    python experiments/variational_dequantization.py --quick    # a smoke test, a few minutes

Two runs of one Glow (28x28x1, 2 scales of 4 steps, 64 hidden channels, affine coupling,
learned split prior), from the same initial flow weights, on the same data in the same order
(Fashion-MNIST from local IDX files through the library's `idx` source,
`tfp_flows.datasets.load`), with Adam at the same learning rate and batch size, each for the same
budget of *process* CPU time (`time.process_time`, every thread of this process): the machine
is shared with other jobs, so wall-clock time would favour whichever run had the quieter
machine. The budget includes tracing and ActNorm's initialisation; each run stops at the first
step that ends past it, so the step counts differ: the variational run pays for its
dequantizer's flow on every step.

- uniform: the pipeline adds u ~ Uniform[0, 1) (`dequantize=True`, the default); the loss is
  -log p(x + u), itself a bound on -log P(x) (q = 1).
- variational: `dequantization="variational"` with a small q(u | x) (2 couplings, 16
  channels, at full 28x28 resolution: per image about as many multiply-adds as the Glow
  itself, whose couplings run on the squeezed 14x14 and 7x7 grids), trained jointly on the
  integer pixels (`dequantize=False`); the loss is the variational bound
  -[log p(x + u) - log q(u | x)], u ~ q.

Test bits/dim (on the first `--test_examples` official test images, outside the budget), all in
the same units (nats per image of 8-bit pixel values, / (784 ln 2)):

- uniform: -log p(x + u) with the pipeline's fixed test noise (what `evaluate` reports), and the
  importance-weighted estimate with K uniform noises, -log (1/K) sum_k p(x + u_k), which is what
  the uniform model's q = 1 gives at K samples;
- variational: the bound (one sample of q per image, seeded) and the importance-weighted
  estimate with K samples of q (`FlowModel.importance_weighted_log_prob`).

A check at equal steps instead (`--uniform_steps N` with the variational run's step count):
the uniform run alone, from the same initial weights on the same batches, for N steps; writes
experiments/results/variational_dequantization_equal_steps.json.

Writes experiments/results/variational_dequantization.json. Each run's
`final_train_loss_nats` and `final_train_bits_per_dim` are Keras' metrics of its one long
epoch: the means over every training step of the run, not the last step's values.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import common
import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from tfp_flows import datasets

EVENT_SHAPE = (28, 28, 1)
GLOW = {"num_scales": 2, "depth": 4, "hidden": 64}
DEQUANTIZER = {"name": "variational", "num_couplings": 2, "hidden": 16}


def build(dequantization: str | dict):
    return tfp_flows.glow(EVENT_SHAPE, num_levels=256, dequantization=dequantization, **GLOW)


def count(variables) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def train(model, data_dir: str, dequantize: bool, args) -> dict:
    """Trains `model` for the CPU budget (or `--uniform_steps`); returns the run's record."""
    splits = datasets.load(data_dir, batch_size=args.batch_size, seed=0, dequantize=dequantize)
    budget = common.TrainingBudget(args.budget_cpu_seconds, args.uniform_steps)
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    # One long epoch over the repeated data; the budget ends it.
    history = model.fit(splits.train.repeat(), epochs=1, steps_per_epoch=10 ** 7,
                        callbacks=[budget], verbose=0)
    return {"steps": budget.steps,
            "examples_seen": budget.steps * args.batch_size,
            "cpu_seconds": round(time.process_time() - budget.start, 1),
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "load_average_1min_before": round(load_before, 2),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
            "final_train_loss_nats": round(float(history.history["loss"][-1]), 2),
            "final_train_bits_per_dim": round(float(history.history["bits_per_dim"][-1]), 4)}


def test_images(data_dir: str, args) -> tuple[np.ndarray, np.ndarray]:
    """The first test images: integer pixels, and the uniform pipeline's fixed dequantization."""
    take = math.ceil(args.test_examples / args.batch_size)
    integers, noisy = (np.concatenate(list(datasets.load(
        data_dir, batch_size=args.batch_size, seed=0, dequantize=dequantize).test.take(
        take).as_numpy_iterator()))[:args.test_examples] for dequantize in (False, True))
    assert np.array_equal(np.floor(noisy), integers), "the two pipelines' test images differ"
    return integers, noisy


def bits(model, log_prob: np.ndarray) -> float:
    return round(float(model.bits_per_dim(float(np.mean(log_prob)))), 4)


def batched(fn, x: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(x[i:i + size])) for i in range(0, len(x), size)])


def uniform_importance_weighted(model, x: np.ndarray, num_samples: int, seed: int):
    """log (1/K) sum_k p(x + u_k) with u_k ~ Uniform[0, 1): q = 1's importance weighting."""
    log_p = np.stack([batched(lambda b, k=k: model.log_prob(tfp_flows.dequantizers.add_noise(
        tf.constant(b), tf.random.stateless_uniform(b.shape, seed=[seed, k]))), x, 100)
        for k in range(num_samples)])
    return tf.reduce_logsumexp(log_p, axis=0).numpy() - math.log(num_samples)


def evaluate(model, integers: np.ndarray, noisy: np.ndarray, num_samples: int) -> dict:
    """Test bits/dim: the training objective's and the importance-weighted estimate's."""
    iw = f"test_bits_per_dim_importance_weighted_k{num_samples}"
    if model.dequantizer is None:
        return {"test_bits_per_dim": bits(model, batched(model.log_prob, noisy, 100)),
                iw: bits(model, uniform_importance_weighted(model, integers, num_samples, 2))}
    return {"test_bits_per_dim_bound": bits(model, batched(
                lambda b: model.importance_weighted_log_prob(b, num_samples=1, seed=2),
                integers, 100)),
            iw: bits(model, batched(lambda b: model.importance_weighted_log_prob(
                b, num_samples=num_samples, seed=2), integers, 25))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=common.FASHION_MNIST_DIR)
    parser.add_argument("--budget_cpu_seconds", type=float, default=420.0)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--test_examples", type=int, default=2000)
    parser.add_argument("--num_samples", type=int, default=16,
                        help="K of the importance-weighted estimates")
    parser.add_argument("--uniform_steps", type=int, default=None,
                        help="instead: train only the uniform model, for exactly this many "
                        "steps (the variational run's count), and write "
                        "variational_dequantization_equal_steps.json")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 20 CPU-seconds "
                        "each, 200 test images, K = 4; writes to a scratch folder")
    args = parser.parse_args()
    if args.quick:
        args.budget_cpu_seconds, args.test_examples, args.num_samples = 20.0, 200, 4
    common.fashion_mnist_arrays(args.data_dir)  # a clear exit when the files are missing
    machine = common.machine()
    keras.utils.set_random_seed(0)
    models = {"uniform": build("uniform"), "variational": build(DEQUANTIZER)}
    # The same initial flow: the variational model's steps take the uniform model's weights.
    for ours, theirs in zip(models["variational"].flow.steps, models["uniform"].flow.steps,
                            strict=True):
        ours.set_weights(theirs.get_weights())
    integers, noisy = test_images(args.data_dir, args)
    record = {"dataset": "Fashion-MNIST (local IDX files, tfp_flows.datasets idx source)",
              "model": {"family": "glow", "event_shape": list(EVENT_SHAPE), **GLOW,
                        "flow_parameters": count(models["uniform"].trainable_variables),
                        "dequantizer": DEQUANTIZER,
                        "dequantizer_parameters": count(
                            models["variational"].dequantizer.trainable_variables)},
              "optimizer": "Adam", "learning_rate": args.learning_rate,
              "batch_size": args.batch_size, "budget_cpu_seconds": args.budget_cpu_seconds,
              "budget_clock": "time.process_time (CPU time of this process, all threads); "
                              "wall time is recorded but unfair on a shared machine",
              "test_examples": len(integers), "num_samples": args.num_samples,
              "units": "bits/dim of 8-bit pixel values: -log / (784 ln 2), nats per image",
              "machine": machine, "runs": {}}
    if args.uniform_steps is not None:
        record["budget_steps"] = args.uniform_steps
        del record["budget_cpu_seconds"], record["budget_clock"], models["variational"]
    for name, model in models.items():
        keras.utils.set_random_seed(1)
        model.compile(keras.optimizers.Adam(args.learning_rate))
        run = train(model, args.data_dir, name == "uniform", args)
        start = time.process_time()
        run.update(evaluate(model, integers, noisy, args.num_samples))
        run["evaluation_cpu_seconds"] = round(time.process_time() - start, 1)
        record["runs"][name] = run
        print(name, run, flush=True)
    record["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    common.write_json("variational_dequantization.json" if args.uniform_steps is None
                      else "variational_dequantization_equal_steps.json", record, args.quick)


if __name__ == "__main__":
    main()
