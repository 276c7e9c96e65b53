"""Two logical devices carved from one physical device train like the one device alone.

    python tests/split_devices.py CPU|GPU OUT.json

Run in a fresh process (tests/test_gpu.py starts it), because the logical device split must be
made before TensorFlow initialises its devices. It carves the first physical device of the
kind into two logical devices with `tf.config.set_logical_device_configuration` (a GPU's into
two halves of `MEMORY_LIMIT_MIB` each), and for each setting trains a tiny Glow and RealNVP
for `STEPS` SGD steps from the same initial weights twice: on the first logical device alone,
and under a `MirroredStrategy` over both (each replica sees half of every batch). Settings:
on a GPU float32, float16 with loss scaling and float32 with XLA (`jit_compile=True`); on a
CPU bfloat16 (float32 over two logical CPUs is tests/test_distribute.py's, in-process). It
writes, per setting and model, the largest weight difference between the two runs and how far
training moved the weights.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

MEMORY_LIMIT_MIB = 2048
STEPS = 4
GLOBAL_BATCH = 16


def split(kind: str) -> list[str]:
    """Two logical devices of `kind` from its first physical device; their names."""
    physical = tf.config.list_physical_devices(kind)
    if not physical:
        raise SystemExit(f"split_devices: TensorFlow sees no {kind} on this machine.")
    config = (tf.config.LogicalDeviceConfiguration(memory_limit=MEMORY_LIMIT_MIB)
              if kind == "GPU" else tf.config.LogicalDeviceConfiguration())
    tf.config.set_logical_device_configuration(physical[0], [config, config])
    return [d.name for d in tf.config.list_logical_devices(kind)][:2]


def main(kind: str, out: str) -> dict:
    devices = split(kind)
    import keras
    import numpy as np

    import tfp_flows

    if kind == "GPU":
        settings = {"float32": ("float32", False), "float16": ("float16", False),
                    "float32, XLA": ("float32", True)}
    else:
        # On logical CPUs only bfloat16: float32 on these two models, data and optimizers over
        # two logical CPUs is tests/test_distribute.py's test_fit_matches_single_device. XLA
        # cannot run a mirrored step there: its compiled function reads every replica's
        # variables from the first device ("Trying to access resource ... located in device
        # CPU:1 from device CPU:0", TF's XLA known issues).
        settings = {"bfloat16": ("bfloat16", False)}
    models = {
        "realnvp": (lambda p: tfp_flows.realnvp((4,), num_couplings=2, hidden=16, num_hidden=1,
                                                precision=p), (4,), 0.05),
        "glow": (lambda p: tfp_flows.glow((8, 8, 1), num_scales=2, depth=1, hidden=8,
                                          num_levels=17, precision=p), (8, 8, 1), 1e-2),
    }
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    data = {(4,): rng.normal(size=(n, 4)).astype("float32"),
            (8, 8, 1): (rng.integers(0, 17, size=(n, 8, 8, 1))
                        + rng.random((n, 8, 8, 1))).astype("float32")}
    strategy = tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    results = {"devices": devices, "steps": STEPS, "global_batch": GLOBAL_BATCH}
    for setting, (precision, jit) in settings.items():
        for name, (build, shape, learning_rate) in models.items():
            keras.utils.set_random_seed(0)
            with tf.device(devices[0]):
                single = build(precision)
                single.compile(keras.optimizers.SGD(learning_rate), jit_compile=jit)
            with strategy.scope():
                mirrored = build(precision)
                mirrored.set_weights(single.get_weights())
                mirrored.compile(keras.optimizers.SGD(learning_rate), jit_compile=jit)
            def trained(model):
                return [v.numpy() for v in model.trainable_variables]

            initial = trained(single)
            with tf.device(devices[0]):
                single.fit(data[shape], batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
                           verbose=0)
            mirrored.fit(data[shape], batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
                         verbose=0)
            pairs = list(zip(trained(single), trained(mirrored), initial, strict=True))
            results[f"{setting}, {name}"] = {
                "precision": precision, "jit_compile": jit,
                "max_weight_difference": max(float(np.max(np.abs(a - b))) for a, b, _ in pairs),
                "max_weight_moved": max(float(np.max(np.abs(a - w0))) for a, _, w0 in pairs),
                "replicas": mirrored.distribute_strategy.num_replicas_in_sync,
                "iterations": int(mirrored.optimizer.iterations.numpy())}
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("CPU", "GPU"):
        raise SystemExit("usage: python tests/split_devices.py CPU|GPU OUT.json")
    main(*sys.argv[1:])
