"""FlowModel: a normalizing flow as a Keras 3 model with a TFP distribution inside."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

from tfp_flows.bijectors.actnorm import data_dependent_init

__all__ = ["FlowModel"]


def _unpack_x(data):
    """The model input of a batch that may come as x, (x,), (x, y) or (x, y, sample_weight)."""
    return data[0] if isinstance(data, (tuple, list)) else data


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowModel(keras.Model):
    """A normalizing flow p(x) = N(f^-1(x); 0, I) |det J_{f^-1}(x)| as a Keras model.

    `flow` is a layer that owns the parameters and assembles the bijector f (latent -> data),
    such as the ones in `tfp_flows.zoo`. The model trains with `fit` on the mean negative
    log-likelihood in nats per example of the data the model sees, and reports
    `bits_per_dim` = loss / (D ln 2). For image flows the data are dequantized pixel values
    in [0, num_levels), and the scaling to [0, 1) (and the logit) are bijectors in the chain,
    so `log_prob` is the density of the pixel values and bits/dim is exact in 8-bit space.

    `model(x)` returns `log_prob(x)`; `model.distribution` is a `tfd.TransformedDistribution`
    over the same variables, usable in any TF pipeline.

    Before the first `fit` step, flows with ActNorm run Glow's data-dependent initialisation on
    the first batch (all-reduced over replicas under a distribution strategy).
    """

    def __init__(self, flow: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.flow = flow
        self.event_shape = tuple(flow.event_shape)
        self.event_size = int(np.prod(self.event_shape))
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._bits_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.data_initialized = self.add_weight(
            shape=(), dtype="bool", initializer="zeros", trainable=False,
            aggregation="only_first_replica", name="data_initialized")
        self.build((None, *self.event_shape))

    def build(self, input_shape=None):
        if self.built:
            return
        # One pass on a dummy batch creates the conditioner networks' weights, so the model
        # is complete (and loadable) before it has seen data.
        self._log_prob(tf.zeros((1, *self.event_shape)))
        self.built = True

    # ----------------------------------------------------------------------------- density

    @property
    def bijector(self) -> tfb.Bijector:
        """The flow's bijector f: latent z -> data x (a stateless view of the variables)."""
        return self.flow.bijector()

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.bijector.inverse_event_shape(self.event_shape).as_list())

    def base_distribution(self, temperature: float = 1.0) -> tfd.Distribution:
        """Standard normal (scaled by `temperature`) over the latent shape."""
        return tfd.Sample(tfd.Normal(tf.constant(0.0), tf.constant(temperature, tf.float32)),
                          sample_shape=self.latent_shape)

    @property
    def distribution(self) -> tfd.TransformedDistribution:
        """p(x) as a `tfd.TransformedDistribution` of the standard normal through the flow."""
        return tfd.TransformedDistribution(self.base_distribution(), self.bijector)

    def _log_prob(self, x):
        bijector = self.bijector
        z = bijector.inverse(x)
        base = self.base_distribution()
        log_det = bijector.inverse_log_det_jacobian(x, event_ndims=len(self.event_shape))
        # The log-det is accumulated in float32 even when the networks run in a lower precision.
        return base.log_prob(tf.cast(z, tf.float32)) + tf.cast(log_det, tf.float32)

    def _check_input(self, x, where: str) -> tf.Tensor:
        """Converts `x` to a float32 tensor, or raises ValueError naming what was expected."""
        expected = f"(batch, {', '.join(map(str, self.event_shape))})"
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
        dtype = tf.as_dtype(x.dtype)
        if not dtype.is_floating:
            raise ValueError(
                f"{where} expects floating-point inputs of shape {expected}, got dtype "
                f"{dtype.name}. Dequantize integer pixels first (x + uniform noise), e.g. with "
                f"tfp_flows.datasets.")
        x = tf.cast(x, tf.float32) if dtype != tf.float32 else tf.convert_to_tensor(x)
        shape = tuple(x.shape)
        if len(shape) != len(self.event_shape) + 1 or any(
                got is not None and got != want
                for got, want in zip(shape[1:], self.event_shape, strict=False)):
            given = "(" + ", ".join("batch" if i == 0 and d is None else str(d)
                                    for i, d in enumerate(shape)) + ")"
            raise ValueError(f"{where} expects inputs of shape {expected}, got shape {given}.")
        return x

    def log_prob(self, x) -> tf.Tensor:
        """log p(x) in nats, one value per example."""
        return self._log_prob(self._check_input(x, "log_prob"))

    def call(self, x):
        return self.log_prob(x)

    def bits_per_dim(self, log_prob) -> tf.Tensor:
        """-log p(x) / (D ln 2), the units flows are compared in."""
        return -log_prob / (self.event_size * math.log(2.0))

    def encode(self, x) -> tf.Tensor:
        """z = f^-1(x), the latent of data x."""
        return self.bijector.inverse(self._check_input(x, "encode"))

    def decode(self, z) -> tf.Tensor:
        """x = f(z), the data of latent z."""
        z = tf.convert_to_tensor(z, tf.float32)
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"decode expects latents of shape (batch, "
                             f"{', '.join(map(str, self.latent_shape))}), got {tuple(z.shape)}.")
        return self.bijector.forward(z)

    def sample(self, n: int, temperature: float = 1.0, seed=None) -> tf.Tensor:
        """`n` samples x = f(z) with z ~ N(0, temperature^2 I).

        Args:
            n: number of samples.
            temperature: standard deviation of the latent (Glow samples at 0.5-0.7).
            seed: an int or a stateless `int32[2]` seed; the same seed gives the same samples.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"sample expects a positive integer number of samples, got {n!r}.")
        if not temperature > 0:
            raise ValueError(f"sample expects temperature > 0, got {temperature!r}.")
        if isinstance(seed, (int, np.integer)):
            # TFP treats a Python int as a seed for a stateful draw; a pair is stateless.
            seed = (0, int(seed))
        z = self.base_distribution(temperature).sample(int(n), seed=seed)
        return self.bijector.forward(z)

    # ---------------------------------------------------------------------------- training

    @property
    def metrics(self):
        return [self._loss_tracker, self._bits_tracker]

    def _record(self, log_prob):
        loss = -tf.reduce_mean(log_prob)
        self._loss_tracker.update_state(loss)
        self._bits_tracker.update_state(self.bits_per_dim(-loss))
        return loss

    def train_step(self, data):
        x = self._check_input(_unpack_x(data), "fit")
        finite_data = tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(x)),
            ["fit: the batch holds NaN or Inf values; clean the data. No weights were changed."])
        with tf.control_dependencies([finite_data]), tf.GradientTape() as tape:
            log_prob = self._log_prob(x)
            loss = -tf.reduce_mean(log_prob)
            # Each replica sees 1/N of the global batch; the optimizer sums the replicas'
            # gradients, so the per-replica loss is divided by N to get the global mean.
            scaled = loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)
            scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, self.trainable_variables)
        finite_loss = tf.debugging.Assert(
            tf.math.is_finite(loss),
            ["fit: the loss became NaN or Inf (try a lower learning rate); training stopped "
             "before the update, so the weights hold their last finite values. Loss:", loss])
        with tf.control_dependencies([finite_loss]):
            gradients = [tf.identity(g) for g in gradients]
        self.optimizer.apply(gradients, self.trainable_variables)
        self._record(log_prob)
        return self._step_logs()

    def test_step(self, data):
        x = self._check_input(_unpack_x(data), "evaluate")
        self._record(self._log_prob(x))
        return self._step_logs()

    def _step_logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        strategy = tf.distribute.get_strategy()
        # Keras 3 reduces the step outputs of a multi-worker run with strategy.reduce(axis=0),
        # which fails on scalars (tensorflow/tensorflow#72388); it reduces a length-1 axis away.
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode()):
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def predict_step(self, data):
        return self.log_prob(_unpack_x(data))

    def compile(self, optimizer="adam", loss=None, jit_compile=False, **kwargs):
        """Keras `compile`; the loss is the flow's NLL, so no `loss` argument is taken.

        `jit_compile` defaults to False rather than Keras' "auto" (XLA whenever a GPU is
        present): XLA drops `tf.debugging.Assert`, and with it the guards that stop `fit`
        before a NaN or Inf reaches the weights. On CPU XLA was slower for every flow
        (benchmarks/). Pass `jit_compile=True` to trade the guards for XLA.
        """
        if loss is not None:
            raise ValueError("FlowModel trains on its own negative log-likelihood; "
                             f"compile takes no `loss` argument, got loss={loss!r}.")
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compiling on load when `compile` is overridden; ours only adds a check.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras `fit`, after the data-dependent initialisation of ActNorm on the first batch."""
        self.initialize_from_data(x, batch_size)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            # Without a strategy Keras builds the optimizer inside the first trace of the train
            # step; creating its slots there makes tf.function trace the whole step twice.
            with self.distribute_strategy.scope():
                optimizer.build(self.trainable_variables)
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    def initialize_from_data(self, data, batch_size=None) -> None:
        """Runs ActNorm's data-dependent initialisation once, on the first batch of `data`.

        Under a distribution strategy each replica takes its share of the first global batch
        and the statistics are all-reduced, so every replica assigns the same values. Does
        nothing for flows without ActNorm, or once done (the flag is saved with the weights).
        """
        if not self.flow.uses_data_dependent_init or bool(self.data_initialized.numpy()):
            return
        if isinstance(data, tf.data.Dataset):
            first = data.take(1).map(lambda *batch: _unpack_x(batch))
        else:
            x = _unpack_x(data)
            first = tf.data.Dataset.from_tensor_slices(np.asarray(x)).batch(
                batch_size or 32).take(1)
        strategy = self.distribute_strategy
        batch = next(iter(strategy.experimental_distribute_dataset(first)))

        def replica_init(x):
            x = self._check_input(x, "fit")
            self.bijector.inverse(x)
            self.data_initialized.assign(True)

        # Entered once around strategy.run, not in each replica: the flag is process-wide, and
        # replica threads entering and leaving the block in turn left it set for good, so every
        # step traced afterwards, in any model, re-initialised ActNorm.
        with data_dependent_init():
            tf.function(lambda b: strategy.run(replica_init, args=(b,)))(batch)

    # -------------------------------------------------------------------------- serialising

    def get_config(self):
        return {"name": self.name, "flow": keras.saving.serialize_keras_object(self.flow)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        flow = keras.saving.deserialize_keras_object(config.pop("flow"))
        return cls(flow, **config)
