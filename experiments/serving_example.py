"""The TF Serving requests and responses shown in the README, reproduced.

    python experiments/serving_example.py

Trains a small RealNVP on two moons (seeded), exports it with `tfp_flows.export_saved_model`,
loads the export with plain `tf.saved_model.load` and calls each signature with the inputs of
the README's REST examples. Writes experiments/results/serving_example.json holding, per
signature, the request body and the response body TF Serving would send (its row format
`{"predictions": ...}` for `instances`, its column format `{"outputs": ...}` for `inputs`).
"""

from __future__ import annotations

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from tfp_flows import datasets

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


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
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "serving_example.json"), "w") as f:
        json.dump(examples, f, indent=2)
    for name, example in examples.items():
        print(name)
        print(json.dumps(example["request"]))
        print(json.dumps(example["response"]))


if __name__ == "__main__":
    main()
