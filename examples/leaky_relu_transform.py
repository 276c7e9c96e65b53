"""A transform of your own: a leaky ReLU with learned slopes, in any coupling or MAF.

    python examples/leaky_relu_transform.py

The one file a user writes to add an elementwise transform to tfp-flows (no edit to the
package): a `tfp_flows.Transform` subclass registered with `@tfp_flows.register_transform`.
Every family with a choice of transform then takes it by name (`transform="leaky_relu"`),
with options as a dict (`transform={"name": "leaky_relu", "max_log_slope": 2.0}`), and a
saved model names it in its config, so `keras.models.load_model` rebuilds it once this module
is imported. The training command takes it as `--plugin=leaky_relu_transform
--transform=leaky_relu` with this directory on PYTHONPATH.

The transform (Oliva et al.'s leaky ReLU transformation, with a shift and a slope on each
side of it), per entry with the conditioner's parameters `shift`, `a`, `b`:

    inverse (data -> latent): u = x - shift;  z = u * exp(s(a)) if u >= 0 else u * exp(s(b))
    forward (latent -> data): x = shift + z * exp(-s(a)) if z >= 0 else z * exp(-s(b))
    log|dz/dx| = s(a) or s(b), the slope of the side x is on,

with `s(t) = max_log_slope * tanh(t / max_log_slope)` bounding the log-slopes for stable
training. z has the sign of u, so each direction knows its side. Zero parameters give the
identity (the families start their conditioners at zero).

[1] Oliva et al. Transformation Autoregressive Networks. https://arxiv.org/abs/1801.09819
"""

from __future__ import annotations

import tempfile

import keras
import tensorflow as tf

import tfp_flows
from tfp_flows import datasets


@tfp_flows.register_transform("leaky_relu")
class LeakyReLUTransform(tfp_flows.Transform):
    """A leaky ReLU with a learned shift and learned slopes on both sides (3 parameters).

    Args:
        max_log_slope: the bound on each side's |log slope| (a positive number).
    """

    params_per_entry = 3

    def __init__(self, max_log_slope: float = 3.0):
        if isinstance(max_log_slope, bool) or not isinstance(max_log_slope, (int, float)) or (
                not 0.0 < max_log_slope < float("inf")):
            raise ValueError(f"max_log_slope must be a positive number, got {max_log_slope!r}.")
        self.max_log_slope = float(max_log_slope)

    def _log_slope(self, t):
        return self.max_log_slope * tf.tanh(t / self.max_log_slope)

    def __call__(self, x, params, inverse):
        shift, a, b = self.split(params)
        if inverse:
            u = x - shift
            log_slope = tf.where(u >= 0, self._log_slope(a), self._log_slope(b))
            return u * tf.exp(log_slope), log_slope
        log_slope = tf.where(x >= 0, self._log_slope(a), self._log_slope(b))
        return shift + x * tf.exp(-log_slope), -log_slope

    def get_config(self):
        return {"max_log_slope": self.max_log_slope}


def main(directory: str | None = None, epochs: int = 3) -> dict:
    """Trains a small RealNVP with this transform on two moons, saves, reloads and exports it.

    Returns the model and where it was written ("keras", "saved_model"), with the data used.
    """
    directory = directory or tempfile.mkdtemp()
    keras.utils.set_random_seed(0)
    x = datasets.load_arrays("two_moons", num_examples=512)["x_train"]
    model = tfp_flows.realnvp((2,), num_couplings=4, hidden=16, num_hidden=1,
                              transform={"name": "leaky_relu", "max_log_slope": 2.0})
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(x, batch_size=64, epochs=epochs, verbose=0)

    keras_path = f"{directory}/leaky_relu.keras"
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
