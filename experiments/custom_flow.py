"""Build your own flow from tfp_flows' parts: a conditional spline flow, trained, saved, served.

    python experiments/custom_flow.py           # about a minute on 2 CPU cores
    python experiments/custom_flow.py --quick   # a smoke test

docs/guides/plugins.md walks through this file. A flow is a `tfp_flows.Flow` layer whose
`steps` list (written once, data end first) holds step layers from `tfp_flows.steps`; each step
owns its weights and returns its TFP bijectors for a context. Here: on 2-D points with a class
label as context, alternating rational-quadratic spline couplings (`CouplingStep` with a
`SplineTransform`, conditioners that see the label) and learned linear mixings between them
(a custom step: `InvertibleConv1x1` on vectors, LU-parametrised, owned by a small layer of our
own), then NICE's diagonal scaling. `FlowModel` trains it with `fit(x, labels)`; it saves with
`model.save` and loads with `keras.models.load_model` (the flow is registered as serializable
and has a `get_config`), and `tfp_flows.export_saved_model` writes it for TF Serving with the
label as an input of every signature.

Data: the library's eight Gaussians toy (`tfp_flows.datasets`: centres on a circle of radius
2 sqrt(2), std 0.5 / sqrt(2)) with each point's component (0-7) as its label, so the
conditional density of each label is one Gaussian bump. Writes
experiments/results/custom_flow.json: test NLL given the label (the optimum is the entropy of
one bump, ln(2 pi e) + 2 ln(std) = 0.76 nats) and the checks that the reloaded and the served
models give the same log-densities.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import common
import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from tfp_flows import Flow
from tfp_flows.bijectors import InvertibleConv1x1, lu_factors
from tfp_flows.steps import CouplingStep, ScalingStep
from tfp_flows.transforms import SplineTransform


@keras.saving.register_keras_serializable(package="custom_flow")
class LinearMixing(keras.layers.Layer):
    """A step of our own: a learned invertible D x D matrix (Glow's 1x1 conv on vectors)."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        rotation = np.linalg.qr(np.random.default_rng(size).normal(size=(size, size)))[0]
        factors = lu_factors(rotation)
        self.factors = {
            name: self.add_weight(shape=value.shape, name=name,
                                  trainable=name not in ("permutation", "sign_diag"),
                                  initializer=keras.initializers.Constant(value))
            for name, value in factors.items()}

    def bijectors(self, context=None, initialize: bool = False):
        return [InvertibleConv1x1(**self.factors, event_ndims=1)]


@keras.saving.register_keras_serializable(package="custom_flow")
class ConditionalSplineFlow(Flow):
    """Spline couplings that see the context, with learned mixings between them."""

    def __init__(self, event_shape, num_couplings: int = 4, hidden: int = 64, bins: int = 8,
                 **kwargs):
        super().__init__(event_shape, **kwargs)
        self.num_couplings, self.hidden, self.bins = num_couplings, hidden, bins
        size = self.event_shape[0]
        spline = SplineTransform(bins=bins, bound=4.0)
        self.steps = []
        for i in range(num_couplings):
            self.steps.append(CouplingStep(spline, size, parity=i % 2, hidden=hidden,
                                           context_size=self.context_size, name=f"spline_{i}"))
            self.steps.append(LinearMixing(size, name=f"mixing_{i}"))
        self.steps.append(ScalingStep(size, name="scaling"))

    def get_config(self):
        return {**super().get_config(), "num_couplings": self.num_couplings,
                "hidden": self.hidden, "bins": self.bins}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    arrays = tfp_flows.datasets.load_arrays(
        "eight_gaussians", num_examples=2000 if args.quick else 20000, seed=0)
    x_train, y_train = arrays["x_train"].astype("float32"), arrays["y_train"]
    x_test, y_test = arrays["x_test"].astype("float32"), arrays["y_test"]

    model = tfp_flows.FlowModel(ConditionalSplineFlow((2,), num_classes=8))
    model.compile(keras.optimizers.Adam(3e-3))
    start = time.perf_counter()
    epochs = 1 if args.quick else 10
    model.fit(x_train, y_train, batch_size=256, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    nll = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["loss"]

    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/custom.keras"
        model.save(path)
        reloaded = keras.models.load_model(path)
        exported = tfp_flows.export_saved_model(model, f"{directory}/serving/1")
        served = tf.saved_model.load(exported).signatures["log_prob"]
        x, y = x_test[:256], y_test[:256].astype("int32")
        ours = model.log_prob(x, context=y).numpy()
        reload_gap = float(np.max(np.abs(reloaded.log_prob(x, context=y).numpy() - ours)))
        served_gap = float(np.max(np.abs(
            served(x=tf.constant(x), context=tf.constant(y))["log_prob"].numpy() - ours)))

    record = {
        "what": "custom conditional spline flow (the plugins guide) on eight Gaussians given the "
                "component label",
        "command": "python experiments/custom_flow.py" + (" --quick" if args.quick else ""),
        "model": {"num_couplings": 4, "hidden": 64, "bins": 8, "bound": 4.0,
                  "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables))},
        "training": {"train_points": len(x_train), "epochs": epochs, "batch_size": 256,
                     "optimizer": "Adam(3e-3)", "seconds": round(seconds, 1)},
        "test_nll_given_label_nats": round(float(nll), 4),
        "optimum_nats": round(float(np.log(2 * np.pi * np.e) + 2 * np.log(0.5 / np.sqrt(2))),
                              4),
        "max_abs_log_prob_difference": {"reloaded_keras": reload_gap, "served": served_gap},
        "machine": common.machine(),
    }
    common.write_json("custom_flow.json", record, args.quick)
    print(record)
    return record


if __name__ == "__main__":
    main()
