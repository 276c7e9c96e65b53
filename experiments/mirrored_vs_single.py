"""How closely a 2-replica MirroredStrategy run follows one device, with SGD and with Adam.

    python experiments/mirrored_vs_single.py           # about 3 minutes on 2 idle CPU cores
    python experiments/mirrored_vs_single.py --quick   # the tiny Glow only

Two Glow sizes on the 8x8 digits (17 pixel levels): the tests' tiny Glow (2 scales x 1 step,
8 hidden) and the quick start's (2 scales x 4 steps, 64 hidden). Each starts from the same
weights on one device and under `MirroredStrategy` over two logical CPU devices (the
replicas' gradients summed by ReductionToOneDevice), ActNorm initialised on the same first
batch, then takes 4 steps on the same global batches of 64, with SGD (learning rate 1e-2)
and with Adam (1e-3, Keras defaults otherwise). Reported: the largest absolute difference
between the two runs' weights, and how far training moved the weights.

Why Adam differs more. The two runs add the same per-example gradients in a different order
(one sum over 64 examples against two sums over 32 added afterwards), so their gradients
differ by float32 rounding, about 1e-7 relative. SGD passes that on unchanged: a difference of
learning rate x rounding. Adam's first step is lr * m / (sqrt(v) + eps) = lr * g / (|g| + eps),
about lr * sign(g) whatever |g| is: for a parameter whose gradient is near zero (an exactly
zero one in exact arithmetic, e.g. by symmetry, comes out as rounding noise of either sign)
the two runs take full steps of size lr in directions set by rounding. The script measures
this on the first batch: the parameters whose gradient differs in sign between the runs, and
the largest first-step difference Adam's formula predicts from the two gradients, next to
SGD's. Writes experiments/results/mirrored_vs_single.json.
"""

from __future__ import annotations

import argparse
import os
import time

import tensorflow as tf

# Two logical CPU devices for the two replicas; must happen before TensorFlow starts.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import common  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_flows  # noqa: E402
from tfp_flows import datasets  # noqa: E402

GLOBAL_BATCH = 64
STEPS = 4
SIZES = {"tiny": {"num_scales": 2, "depth": 1, "hidden": 8},
         "quick_start": {"num_scales": 2, "depth": 4, "hidden": 64}}
OPTIMIZERS = {"sgd": lambda: keras.optimizers.SGD(1e-2),
              "adam": lambda: keras.optimizers.Adam(1e-3)}
ADAM_EPSILON = 1e-7  # Keras' default


def _build(size: dict) -> tfp_flows.FlowModel:
    return tfp_flows.glow((8, 8, 1), num_levels=17, **size)


def _pair(strategy, size: dict, x: np.ndarray):
    """One-device and mirrored models with the same weights, ActNorm initialised on x[:64]."""
    keras.utils.set_random_seed(0)
    single = _build(size)
    single.initialize_from_data(x, GLOBAL_BATCH)
    with strategy.scope():
        mirrored = _build(size)
        mirrored.set_weights(single.get_weights())
    return single, mirrored


def _gradients(model, strategy, x):
    """The global-batch mean NLL gradient, computed as `fit` computes it on each side."""
    def replica(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(x))
            loss /= tf.distribute.get_replica_context().num_replicas_in_sync
        return tape.gradient(loss, model.trainable_variables)

    if strategy is None:
        return [g.numpy() for g in tf.function(replica)(x)]
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(x))
    per_replica = tf.function(lambda b: strategy.run(replica, args=(b,)))(next(iter(dataset)))
    return [strategy.reduce("SUM", g, axis=None).numpy() for g in per_replica]


def _adam_first_step(g):
    return g / (np.abs(g) + ADAM_EPSILON)


def first_step_analysis(single, mirrored, strategy, x) -> dict:
    g_single = np.concatenate([g.ravel() for g in _gradients(single, None, x)]).astype(np.float64)
    g_mirrored = np.concatenate(
        [g.ravel() for g in _gradients(mirrored, strategy, x)]).astype(np.float64)
    scale = np.maximum(np.abs(g_single), 1e-30)
    flipped = np.sign(g_single) != np.sign(g_mirrored)
    return {
        "parameters": int(g_single.size),
        "median_relative_gradient_difference": float(np.median(
            np.abs(g_single - g_mirrored) / scale)),
        "gradients_differing_in_sign": int(flipped.sum()),
        "largest_abs_gradient_among_them": float(np.abs(g_single[flipped]).max())
        if flipped.any() else 0.0,
        "sgd_first_step_difference": float(1e-2 * np.abs(g_single - g_mirrored).max()),
        "adam_first_step_difference_predicted": float(1e-3 * np.abs(
            _adam_first_step(g_single) - _adam_first_step(g_mirrored)).max()),
    }


def run_case(strategy, size: dict, optimizer: str, x: np.ndarray) -> dict:
    single, mirrored = _pair(strategy, size, x)
    single.compile(OPTIMIZERS[optimizer]())
    with strategy.scope():
        mirrored.compile(OPTIMIZERS[optimizer]())
    initial = single.get_weights()
    for model in (single, mirrored):
        model.fit(x, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    trainable = [v.trainable for v in single.weights]
    pairs = [(a, b, w0) for a, b, w0, t in zip(single.get_weights(), mirrored.get_weights(),
                                                 initial, trainable, strict=True) if t]
    return {"max_abs_weight_difference": float(max(np.abs(a - b).max() for a, b, _ in pairs)),
            "max_abs_weight_change": float(max(np.abs(a - w0).max() for a, _, w0 in pairs))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny Glow only")
    quick = parser.parse_args().quick
    sizes = {"tiny": SIZES["tiny"]} if quick else SIZES
    start = time.perf_counter()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    x = datasets.load_arrays("digits", seed=0)["x_train"][:GLOBAL_BATCH * STEPS]
    x = (x + np.random.default_rng(0).random(x.shape)).astype("float32").reshape(-1, 8, 8, 1)
    record = {"experiment": "mirrored_vs_single",
              "command": "python experiments/mirrored_vs_single.py" + (" --quick" if quick else ""),
              "machine": common.machine(),
              "settings": {"data": "sklearn digits 8x8, 17 levels, dequantized",
                           "global_batch": GLOBAL_BATCH, "steps": STEPS, "replicas": 2,
                           "cross_device_ops": "ReductionToOneDevice",
                           "sizes": sizes, "sgd_learning_rate": 1e-2,
                           "adam_learning_rate": 1e-3, "adam_epsilon": ADAM_EPSILON},
              "results": {}}
    for name, size in sizes.items():
        record["results"][name] = {opt: run_case(strategy, size, opt, x) for opt in OPTIMIZERS}
        single, mirrored = _pair(strategy, size, x)
        record["results"][name]["first_step"] = first_step_analysis(
            single, mirrored, strategy, x[:GLOBAL_BATCH])
        print(name, record["results"][name], flush=True)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_json("mirrored_vs_single.json", record, quick)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
