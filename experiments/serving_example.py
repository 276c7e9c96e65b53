"""The TF Serving requests and responses of docs/guides/serving.md, reproduced.

    python experiments/serving_example.py

Trains a small RealNVP on two moons (seeded), exports it with `tfp_flows.export_saved_model`,
loads the export with plain `tf.saved_model.load` and calls each signature with the inputs of
the guide's REST examples. Writes experiments/results/serving_example.json holding, per
signature, the request body and the response body TF Serving would send (its row format
`{"predictions": ...}` for `instances`, its column format `{"outputs": ...}` for `inputs`),
with the machine it ran on.

The numbers are those of one trained model, and training rounds differently with TensorFlow's
oneDNN kernels on (its default on AVX-512 CPUs) or off (its default on others): with them on, the
same seed gave log_prob -3.4223 and -5.3755 where the committed run gives -3.0142 and -5.3434.
So this script turns oneDNN off unless TF_ENABLE_ONEDNN_OPTS is set, and records the setting.
"""

from __future__ import annotations

import os

# Read by TensorFlow when it loads, so before it is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import json  # noqa: E402
import tempfile  # noqa: E402

import common  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfp_flows  # noqa: E402
from tfp_flows import datasets  # noqa: E402


def _rounded(value):
    return np.round(np.asarray(value, dtype=np.float64), 4).tolist()


def main() -> None:
    keras.utils.set_random_seed(0)
    x_train = datasets.load_arrays("two_moons", seed=0)["x_train"].astype("float32")
    model = tfp_flows.realnvp((2,), hidden=64)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x_train, batch_size=128, epochs=10, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flow", "1")
        tfp_flows.export_saved_model(model, path)
        served = tf.saved_model.load(path).signatures
        points = [[0.5, 0.25], [1.0, -0.5]]
        latents = [[0.0, 0.0], [1.0, -1.0]]
        log_prob = served["log_prob"](x=tf.constant(points))
        encode = served["encode"](x=tf.constant(points))
        decode = served["decode"](z=tf.constant(latents))
        sample = served["sample"](n=tf.constant(3), temperature=tf.constant(0.7),
                                  seed=tf.constant(7, tf.int64))
    examples = {
        "log_prob": {
            "request": {"signature_name": "log_prob", "instances": points},
            "response": {"predictions": [
                {"log_prob": lp, "bits_per_dim": bpd} for lp, bpd in
                zip(_rounded(log_prob["log_prob"]), _rounded(log_prob["bits_per_dim"]),
                    strict=True)]}},
        "encode": {"request": {"signature_name": "encode", "instances": points},
                   "response": {"predictions": _rounded(encode["z"])}},
        "decode": {"request": {"signature_name": "decode", "instances": latents},
                   "response": {"predictions": _rounded(decode["x"])}},
        "sample": {"request": {"signature_name": "sample",
                               "inputs": {"n": 3, "temperature": 0.7, "seed": 7}},
                   "response": {"outputs": _rounded(sample["x"])}},
    }
    record = {"command": "python experiments/serving_example.py",
              "machine": {**common.machine(),
                          "tf_enable_onednn_opts": os.environ["TF_ENABLE_ONEDNN_OPTS"]},
              "examples": examples}
    common.RESULTS_DIR.mkdir(exist_ok=True)
    (common.RESULTS_DIR / "serving_example.json").write_text(json.dumps(record, indent=2) + "\n")
    for name, example in examples.items():
        print(name)
        print(json.dumps(example["request"]))
        print(json.dumps(example["response"]))


if __name__ == "__main__":
    main()
