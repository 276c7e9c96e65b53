"""The checks `make gpu` runs on a GPU, and the same code on two logical CPUs in every suite.

tests/split_devices.py carves two logical devices out of one physical device and trains the
same tiny models on the first alone and under a `MirroredStrategy` over both. Tolerances on
the largest weight difference after 4 SGD steps, relative to how far training moved the
weights: float32 1e-5 (summation order only); XLA 1e-4 (XLA fuses and reorders float32
arithmetic); bfloat16 / float16 1e-2 (each replica's 16-bit networks see half the batch, and
their rounding, ~4e-3 relative for bfloat16, differs with the batch's shape). On two logical
CPUs the script runs bfloat16 only (about 3e-3 for RealNVP, 1.4e-3 for Glow): float32 there,
<1e-7, is what tests/test_distribute.py asserts for every family in-process; running it
again here doubled the script's time.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfp_flows

HERE = os.path.dirname(os.path.abspath(__file__))
GPU = bool(tf.config.list_physical_devices("GPU"))
needs_gpu = [pytest.mark.gpu, pytest.mark.skipif(not GPU, reason="no GPU visible to "
                                                 "TensorFlow: `make gpu` runs this on one")]
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-2, "float16": 1e-2}


@pytest.mark.parametrize("kind", ["CPU", pytest.param("GPU", marks=needs_gpu)])
def test_two_logical_devices_train_like_one(kind, tmp_path):
    out = tmp_path / "split.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE),
                                          os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run([sys.executable, os.path.join(HERE, "split_devices.py"), kind,
                              str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = {name: row for name, row in results.items() if isinstance(row, dict)}
    settings = ("float32", "float16", "float32, XLA") if kind == "GPU" else ("bfloat16",)
    expected = {f"{setting}, {model}" for setting in settings for model in ("realnvp", "glow")}
    assert set(rows) == expected
    for name, row in rows.items():
        assert row["replicas"] == 2 and row["iterations"] == 4
        assert row["max_weight_moved"] > 1e-2, name
        tolerance = 1e-4 if row["jit_compile"] else TOLERANCE[row["precision"]]
        assert row["max_weight_difference"] <= tolerance * row["max_weight_moved"], (name, row)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no GPU visible to TensorFlow: `make gpu` runs this on one")
def test_a_low_precision_glow_trains_on_the_gpu(precision, jit):
    x = (np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3))
         + np.random.default_rng(1).random((64, 16, 16, 3))).astype("float32")
    model = tfp_flows.glow((16, 16, 3), num_scales=2, depth=2, hidden=32, num_levels=256,
                           precision=precision)
    model.compile(optimizer="adam", jit_compile=jit)
    history = model.fit(x, batch_size=16, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert model.log_prob(x[:2]).dtype == tf.float32
    assert "GPU" in model.flow.conditioners[0].kernels[0].value.device
