"""A flow family of your own: couplings with learned linear mixings between them.

    python examples/linear_mixing_family.py

The one file a user writes to add a family to tfp-flows (no edit to the package): a
`tfp_flows.Flow` subclass that declares its arguments as `tfp_flows.Argument`s and is
registered with `@tfp_flows.register_family`. From the declaration come the argument checks,
the saved config, `tfp_flows.build("linear_mixing", ...)`, and the training command's flags:

    PYTHONPATH=examples python -m tfp_flows.train --plugin=linear_mixing_family \
        --flow=linear_mixing --dataset=two_moons --hidden=16 --flow_args=init_mixing=0.5

The family, on vectors `(D,)`: `num_couplings` couplings (affine by default, or any registered
transform), each followed by a learned invertible D x D matrix in the LU parametrisation
(Glow's 1x1 convolution on a vector), so the halves a coupling splits change from one coupling
to the next; then a learned diagonal scaling. Each mixing starts as the orthogonal factor of
`I + init_mixing * G` (G a fixed Gaussian matrix): 0 starts every mixing at the identity,
larger values at more thorough rotations.

[1] Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions.
    https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

import tempfile

import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from tfp_flows import datasets
from tfp_flows.bijectors import InvertibleConv1x1, lu_factors
from tfp_flows.steps import CouplingStep, ScalingStep


class LinearMixing(keras.layers.Layer):
    """A step: a learned invertible `size` x `size` matrix, LU-parametrised.

    Args:
        size: the event size D.
        init_mixing: how far from the identity the matrix starts (see the module docstring).
        seed: the seed of the fixed Gaussian matrix G.
    """

    def __init__(self, size: int, init_mixing: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        gaussian = np.random.default_rng(seed).standard_normal((size, size))
        q, r = np.linalg.qr(np.eye(size) + init_mixing * gaussian)
        rotation = q * np.sign(np.diag(r))  # the factor with diag(r) > 0: I at init_mixing=0
        self.factors = {
            name: self.add_weight(shape=value.shape, name=name,
                                  trainable=name not in ("permutation", "sign_diag"),
                                  initializer=keras.initializers.Constant(value))
            for name, value in lu_factors(rotation).items()}

    def bijectors(self, context=None, initialize: bool = False):
        return [InvertibleConv1x1(**self.factors, event_ndims=1)]


@tfp_flows.register_family("linear_mixing")
class LinearMixingFlow(tfp_flows.Flow):
    """Couplings with learned LU-parametrised linear mixings between them, on vectors."""

    arguments = (
        tfp_flows.Argument("num_couplings", int, 4, "Coupling layers.", ranks=(1,), minimum=1),
        tfp_flows.Argument("hidden", int, 64, "Hidden units of the conditioner networks.",
                           ranks=(1,), minimum=1),
        tfp_flows.Argument("num_hidden", int, 2, "Hidden layers per conditioner.", ranks=(1,),
                           minimum=0),
        tfp_flows.Argument("init_mixing", float, 1.0, "How far from the identity each linear "
                           "mixing starts (0: the identity).", ranks=(1,), minimum=0.0),
    )
    default_transform = "affine"
    transform_defaults = {"affine": {"scale_fn": "tanh"}}

    def __init__(self, event_shape, num_couplings: int | None = None, hidden: int | None = None,
                 num_hidden: int | None = None, init_mixing: float | None = None, **kwargs):
        super().__init__(event_shape, num_couplings=num_couplings, hidden=hidden,
                         num_hidden=num_hidden, init_mixing=init_mixing, **kwargs)
        if self.is_image or self.event_shape[0] < 2:
            raise ValueError(f"linear_mixing takes vectors (D,) with D >= 2, got event shape "
                             f"{self.event_shape}.")
        size = self.event_shape[0]
        self.steps = []
        for i in range(self.num_couplings):
            self.steps.append(CouplingStep(self.transform, size, parity=i % 2,
                                           hidden=self.hidden, num_hidden=self.num_hidden,
                                           context_size=self.context_size,
                                           name=f"coupling_{i}"))
            self.steps.append(LinearMixing(size, self.init_mixing, seed=i, name=f"mixing_{i}"))
        self.steps.append(ScalingStep(size, name="scaling"))


def main(directory: str | None = None, epochs: int = 3) -> dict:
    """Trains a small `linear_mixing` flow on two moons, saves, reloads and exports it.

    Returns the model and where it was written ("keras", "saved_model"), with the data used.
    """
    directory = directory or tempfile.mkdtemp()
    keras.utils.set_random_seed(0)
    x = datasets.load_arrays("two_moons", num_examples=512)["x_train"]
    model = tfp_flows.build("linear_mixing", (2,), num_couplings=3, hidden=16, num_hidden=1,
                            init_mixing=0.5)
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x, batch_size=64, epochs=epochs, verbose=0)

    keras_path = f"{directory}/linear_mixing.keras"
    model.save(keras_path)
    reloaded = keras.models.load_model(keras_path)  # this module is imported: the name resolves
    export_path = tfp_flows.export_saved_model(model, f"{directory}/serving/1")
    served = tf.saved_model.load(export_path).signatures["log_prob"]
    x_test = x[:8]
    print(f"loss after {epochs} epochs: {history.history['loss'][-1]:.3f} nats")
    print("log p(x):          ", model.log_prob(x_test).numpy().round(3))
    print("reloaded .keras:   ", reloaded.log_prob(x_test).numpy().round(3))
    print("served SavedModel: ", served(x=tf.constant(x_test))["log_prob"].numpy().round(3))
    return {"model": model, "keras": keras_path, "saved_model": export_path, "x": x_test}


if __name__ == "__main__":
    main()
