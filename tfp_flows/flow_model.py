"""FlowModel: a normalizing flow as a Keras 3 model with a TFP distribution inside."""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

from tfp_flows import compat, dequantizers, inputs

__all__ = ["FlowModel"]

# What the noise of a learned dequantizer is drawn for in fit's and evaluate's steps (see
# `FlowModel.compile`'s dequantization_seed).
_TRAINING, _EVALUATION = 0, 1


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowModel(keras.Model):
    """A normalizing flow p(x | c) = p_base(f_c^-1(x) | c) |det J_{f_c^-1}(x)| as a Keras model.

    `flow` is a layer that owns the parameters and assembles the bijector f (latent -> data),
    such as the families in `tfp_flows.families`, and its base distribution p_base, the layer
    `flow.base` (`tfp_flows.bases`; the standard normal unless the flow was given another,
    which the model builds for the latent shape). The model trains with `fit` on the mean negative
    log-likelihood in nats per example of the data the model sees, and reports
    `bits_per_dim` = loss / (D ln 2). For image flows the data are dequantized pixel values
    in [0, num_levels), and the scaling to [0, 1) (and the logit) are bijectors in the chain,
    so `log_prob` is the density of the pixel values and bits/dim is exact in 8-bit space.
    A flow with a learned dequantizer (`dequantization="variational"`, see
    `tfp_flows.dequantizers`) takes the integer pixels instead (other values are refused,
    see `tfp_flows.inputs.check_pixels`) and adds its own noise
    u ~ q(u | x): its `log_prob`, and the `loss` and `bits_per_dim` of `fit` and `evaluate`, are
    then one-sample estimates of the variational bound log p(x + u) - log q(u | x) on the
    discrete log P(x), in the same units; `importance_weighted_log_prob` tightens it.

    A conditional flow (built with `context_shape=(K,)` or `num_classes=N`) takes a context
    everywhere: `fit(x, context)` or a dataset of `(x, context)` pairs, `log_prob(x, context)`,
    `sample(n, context=c)`, `encode`/`decode` with `context=`, and
    `conditional_distribution(c)`, the `tfd.TransformedDistribution` for one context (or a
    batch of them). A context is a float vector `(K,)` per example, or an integer label; one
    context (shape `(K,)`, or a scalar label) applies to a whole batch. A context with NaN
    or Inf gets the rule of a NaN x: its rows' log-density, latent and sample are NaN (in
    every method, distribution and exported signature; `fit` refuses such batches); class
    labels out of range are refused (by an in-graph check inside `fit`/`evaluate`/`predict`
    on a dataset, and NaN where XLA drops that check).

    `model(x)` returns `log_prob(x)`; `model.distribution` is a `tfd.TransformedDistribution`
    over the same variables, usable in any TF pipeline, including TFP's inference
    (`tfp.vi.fit_surrogate_posterior`): its `trainable_variables` are the model's variables as
    `tf.Variable`s.

    Before the first `fit` step, flows with ActNorm run Glow's data-dependent initialisation on
    the first batch (all-reduced over replicas under a distribution strategy).
    """

    def __init__(self, flow: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.flow = flow
        self.event_shape = tuple(flow.event_shape)
        self.event_size = int(np.prod(self.event_shape))
        self._dequantization_seed = None  # see `compile`
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._bits_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.data_initialized = self.add_weight(
            shape=(), dtype="bool", initializer="zeros", trainable=False,
            aggregation="only_first_replica", name="data_initialized")
        flow.attach_base(self.latent_shape)
        self.build((None, *self.event_shape))

    def build(self, input_shape=None):
        """Creates every weight with one pass on a dummy batch (called by the constructor)."""
        if self.built:
            return
        # One pass on a dummy batch creates the conditioner networks' weights, so the model
        # is complete (and loadable) before it has seen data.
        self._log_prob(tf.zeros((1, *self.event_shape)), self._dummy_context(1))
        self.built = True

    # ------------------------------------------------------------------------------ context

    @property
    def is_conditional(self) -> bool:
        """Whether the model is a conditional density p(x | c) (`num_classes`, `context_shape`)."""
        return bool(self.flow.context_size)

    def _dummy_context(self, batch: int):
        if not self.is_conditional:
            return None
        if self.flow.num_classes:
            return tf.zeros((batch,), tf.int32)
        return tf.zeros((batch, self.flow.context_size))

    # ----------------------------------------------------------------------------- density

    @property
    def bijector(self) -> tfb.Bijector:
        """The flow's bijector f: latent z -> data x (a stateless view of the variables).

        Unconditional models only; see `conditional_bijector`.
        """
        return self.conditional_bijector(None)

    def conditional_bijector(self, context, where: str = "conditional_bijector"
                             ) -> tfb.Bijector:
        """f_c: latent z -> data x given `context` (checked as everywhere else; errors name
        `where`)."""
        return self._bijector(inputs.check_context(self.flow, context, where), where=where)

    def _bijector(self, context, initialize: bool = False,
                  where: str = "conditional_distribution") -> tfb.Bijector:
        """The flow's bijector for `context`, undefined (NaN) where the context is invalid.

        The conditioners would turn a NaN context into numbers (a ReLU maps NaN to 0), so a
        NaN or Inf context, or a label out of range that no check refused (inside a graph),
        is given the rule of a NaN x: a last step x = z + NaN on its rows makes their
        log-density, latent and sample NaN, on every path (the distributions, the exported
        signatures) and with no effect on the values or gradients of the other rows.
        """
        bijector = self.flow.bijector(context, initialize)
        if context is None:
            return bijector
        undefined = tf.where(inputs.valid_context(self.flow, context), 0.0, np.nan)
        rank = len(self.event_shape)
        # One context keeps the event's shape (no batch axis of 1 is added to an unbatched
        # event); a batch of them pairs row by row.
        leading = () if context.shape[0] == 1 else (-1,)
        undefined = tf.reshape(undefined, leading + (1,) * rank)
        return tfb.Chain([inputs.UndefinedWhere(undefined, rank, where), bijector])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of the latent z = encode(x) of one example."""
        if "_latent_shape" not in self.__dict__:
            bijector = self.flow.bijector(self._dummy_context(1))
            shape = tuple(bijector.inverse_event_shape(self.event_shape).as_list())
            compat.set_untracked(self, "_latent_shape", shape)
        return self._latent_shape

    def _base(self, context, temperature=1.0) -> tfd.Distribution:
        """The base distribution p(z | context): the one place it is made.

        `context` is checked (None, or a leading batch axis of 1 or batch). An unconditional
        base ignores it; a conditional one gets the context vectors (one-hot labels), without
        the batch axis for one context, so its batch shape is `()` or the contexts' batch.
        """
        base = self.flow.base
        if not base.conditional:
            return base.distribution(temperature=temperature)
        vectors = self.flow.context_vector(context)
        return base.distribution(vectors[0] if vectors.shape[0] == 1 else vectors, temperature)

    def base_distribution(self, context=None, temperature: float = 1.0) -> tfd.Distribution:
        """The flow's base distribution (`flow.base`) over the latent shape.

        Given `context` for a conditional base (checked as everywhere else); at `temperature`
        the base's scales are multiplied by it (the standard normal becomes N(0, T^2 I)).
        """
        context = inputs.check_context(self.flow, context, "base_distribution")
        return self._base(context, temperature)

    def _distribution(self, context, where: str) -> tfd.TransformedDistribution:
        # The bijector lists the variables underneath the Keras ones (`FlowBijector`), the
        # base's included, which is what TFP (tfp.vi, tfp.math.minimize) trains.
        return tfd.TransformedDistribution(self._base(context),
                                           self._bijector(context, where=where))

    @property
    def distribution(self) -> tfd.TransformedDistribution:
        """p(x) as a `tfd.TransformedDistribution` of the base through the flow.

        Its `trainable_variables` are the model's trainable variables as `tf.Variable`s, so
        TFP's optimisation and inference APIs can train it. Unconditional models only; see
        `conditional_distribution`.
        """
        if self.is_conditional:
            raise ValueError("this model is conditional: use conditional_distribution(context) "
                             f"({inputs.context_description(self.flow)}).")
        return self._distribution(None, "distribution")

    def conditional_distribution(self, context) -> tfd.TransformedDistribution:
        """p(x | context) as a `tfd.TransformedDistribution` bound to `context`.

        With one context (`(K,)`, or a scalar label) `dist.log_prob(x)` scores any batch of
        x under it and `dist.sample(n)` draws n samples from it; with a batch of contexts,
        `dist.log_prob(x)` pairs them with a batch of x of the same size.
        """
        if not self.is_conditional:
            raise ValueError("this model is unconditional: use model.distribution.")
        where = "conditional_distribution"
        return self._distribution(inputs.check_context(self.flow, context, where), where)

    @property
    def dequantizer(self):
        """The flow's learned dequantizer q(u | x) (`tfp_flows.dequantizers`), or None when
        the data pipeline dequantizes (uniform noise, the default)."""
        return getattr(self.flow, "dequantizer", None)

    def _log_prob(self, x, context=None):
        if self.dequantizer is None:
            return self._density(x, context)
        # A learned dequantizer: one sample of the bound, with fresh noise.
        seed = tf.random.uniform([], maxval=tf.int64.max, dtype=tf.int64)
        return self._importance_weighted(x, tf.constant(1, tf.int32), seed, context)

    def _importance_weighted(self, x, num_samples, seed, context=None):
        """log (1/K) sum_k p(x + u_k) / q(u_k | x), u_k ~ q(. | x) keyed by the int64 `seed`."""
        return self._weighted(x, num_samples, tf.bitcast(tf.cast(seed, tf.int64), tf.int32),
                              context)

    def _weighted(self, x, num_samples, key, context=None):
        """`_importance_weighted` keyed by a stateless int32 `[2]` key."""
        u, log_q = self.dequantizer.sample(x, num_samples, key)
        batch = tf.shape(x)[0]
        shape = tf.concat([[num_samples * batch], tf.shape(x)[1:]], 0)
        # Sample-major rows: sample k of image i is row k * batch + i, as are the contexts.
        x_plus_u = dequantizers.add_noise(tf.reshape(tf.broadcast_to(x[None], tf.shape(u)),
                                                       shape), tf.reshape(u, shape))
        if context is not None and context.shape[0] != 1:
            context = tf.tile(context, tf.concat([[num_samples], tf.ones(
                [tf.rank(context) - 1], tf.int32)], 0))
        log_p = tf.reshape(self._density(x_plus_u, context), [num_samples, batch])
        return (tf.reduce_logsumexp(log_p - log_q, axis=0)
                - tf.math.log(tf.cast(num_samples, tf.float32)))

    def importance_weighted_log_prob(self, x, context=None, num_samples: int = 16,
                                     seed=None) -> tf.Tensor:
        """The importance-weighted estimate of log P(x) of discrete pixels, in nats per example.

        For a model with a learned dequantizer (`dequantization="variational"`):
        log (1/K) sum_k p(x + u_k) / q(u_k | x) with K = `num_samples` noises u_k ~ q(u | x).
        Its expectation is a lower bound on log P(x) that rises with K towards log P(x)
        (Burda et al. 2016); K = 1 is the variational bound that `log_prob` and `fit` use.
        `bits_per_dim` of it gives the discrete data's bits/dim, in the units of uniform
        dequantization's.

        Args:
            x: integer pixel values (an integer or float array), `(batch, *event_shape)`.
            context: the context of a conditional model, as for `log_prob`.
            num_samples: K >= 1; memory grows with K times the batch.
            seed: an int; the same seed gives the same estimate. None draws fresh noise.
        """
        if self.dequantizer is None:
            raise ValueError(
                "importance_weighted_log_prob needs a model with a learned dequantizer "
                "(dequantization='variational'); this one has uniform dequantization, whose "
                "log_prob(x + u) already scores the dequantized pixels.")
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or (
                num_samples < 1):
            raise ValueError(f"importance_weighted_log_prob needs an integer num_samples "
                             f">= 1, got {num_samples!r}.")
        if seed is None:
            seed = tf.random.uniform([], maxval=tf.int64.max, dtype=tf.int64)
        x, context = inputs.check_inputs(self.flow, x, context, "importance_weighted_log_prob")
        return self._compiled("importance_weighted_log_prob", self._importance_weighted, x,
                              tf.constant(num_samples, tf.int32), tf.constant(seed, tf.int64),
                              context)

    def _density(self, x, context=None):
        """log p(x | context) of the flow's continuous density, in nats per example."""
        bijector = self._bijector(context)
        z = bijector.inverse(x)
        event_ndims = len(self.event_shape)
        log_det = bijector.inverse_log_det_jacobian(x, event_ndims=event_ndims)
        # The log-det is accumulated in float32 even when the networks run in a lower precision.
        log_prob = (self._base(context).log_prob(tf.cast(z, tf.float32))
                    + tf.cast(log_det, tf.float32))
        # A finite x so far out that float32 overflows inside the flow (a latent of inf, then
        # inf - inf) comes out NaN; its density is below float32's range: -inf. A NaN in x
        # (or an invalid context) stays NaN.
        finite = tf.reduce_all(tf.math.is_finite(x), axis=list(range(-event_ndims, 0)))
        if context is not None:
            finite &= inputs.valid_context(self.flow, context)
        return tf.where(tf.math.is_nan(log_prob) & finite,
                        tf.constant(-np.inf, log_prob.dtype), log_prob)

    def _compiled(self, name: str, fn, *args):
        """`fn(*args)` through a `tf.function` made for `name` on its first eager call.

        The public methods check their inputs eagerly (clear errors), then run here: one trace
        per model and method, whatever the batch size, `n`, temperature or seed, because the
        signature leaves the batch axis open and passes scalars as tensors. Inside a caller's
        own `tf.function` (or Keras' train/predict steps) `fn` runs inline. The functions live
        in a plain dict outside Keras' tracking, so saving never sees them.
        """
        args = [a for a in args if a is not None]
        if not tf.executing_eagerly():
            return fn(*args)
        functions = self.__dict__.get("_public_functions")
        if functions is None:
            functions = {}
            compat.set_untracked(self, "_public_functions", functions)
        if name not in functions:
            signature = [tf.TensorSpec([None, *a.shape[1:]] if a.shape.rank else [], a.dtype)
                         for a in args]
            functions[name] = tf.function(fn, input_signature=signature, autograph=False)
        return functions[name](*args)

    def computations(self) -> dict:
        """The computations behind `log_prob`, `sample`, `encode` and `decode`, unchecked.

        Plain functions of tensors, for one's own `tf.function` (the exported signatures are
        made of them) or for timing: `log_prob(x, context=None)`, `sample(n, temperature,
        seed, context=None)`, `encode(x, context=None)` and `decode(z, context=None)`, with x
        float32 of shape `(batch, *event_shape)`, z of `(batch, *latent_shape)`, a context as
        the public methods make it (a leading batch axis of 1 or batch: float32 vectors or
        int labels), n an int32 and temperature a float32 scalar, and seed an int64 scalar.
        They check nothing beyond what the graph checks; the public methods check first.
        A model with a learned dequantizer adds `importance_weighted_log_prob(x, num_samples,
        seed, context=None)`, num_samples an int32 scalar.
        """
        return {"log_prob": self._log_prob, "sample": self._sample, "encode": self._encode,
                "decode": self._decode, **({} if self.dequantizer is None else {
                    "importance_weighted_log_prob": self._importance_weighted})}

    def compiled_functions(self) -> dict:
        """The `tf.function`s the public methods made so far, by method name (one each,
        traced once whatever the batch size, n, temperature or seed)."""
        return dict(self.__dict__.get("_public_functions", {}))

    def log_prob(self, x, context=None) -> tf.Tensor:
        """log p(x | context) in nats, one value per example.

        For a model with a learned dequantizer, x are integer pixels and this is one sample
        of the variational bound log p(x + u) - log q(u | x), u ~ q(u | x) (fresh noise on
        each call), a stochastic lower bound on log P(x); see `importance_weighted_log_prob`.
        """
        return self._compiled("log_prob", self._log_prob,
                              *inputs.check_inputs(self.flow, x, context, "log_prob"))

    def call(self, x, context=None):
        """log p(x) (or log p(x | context)) in nats, one per example: what `predict` returns."""
        return self.log_prob(x, context)

    def bits_per_dim(self, log_prob) -> tf.Tensor:
        """-log p(x) / (D ln 2), the units flows are compared in."""
        return -log_prob / (self.event_size * math.log(2.0))

    def encode(self, x, context=None) -> tf.Tensor:
        """z = f_c^-1(x), the latent of data x."""
        return self._compiled("encode", self._encode,
                              *inputs.check_inputs(self.flow, x, context, "encode",
                                                   pixels=False))

    def _encode(self, x, context=None):
        return self._bijector(context).inverse(x)

    def _decode(self, z, context=None):
        return self._bijector(context).forward(z)

    def decode(self, z, context=None) -> tf.Tensor:
        """x = f_c(z), the data of latent z."""
        z = inputs.check_latent(z, self.latent_shape, "decode")
        context = inputs.check_context(self.flow, context, "decode", batch=z.shape[0])
        return self._compiled("decode", self._decode, z, context)

    def latent_noise(self, n, temperature, seed, context=None) -> tf.Tensor:
        """`n` latents z from the base at `temperature`, a stateless function of `seed`.

        The int64 `seed`'s two 32-bit halves are the stateless seed of the base's sampler
        (for the standard normal and 0 <= seed < 2**31: `tf.random.stateless_normal` with
        seed `[seed, 0]`, times the temperature). The same seed gives the same noise here and
        in the exported `sample` signature. A conditional base takes the (checked) context:
        one for all n latents, or n of them.
        """
        seed = tf.bitcast(tf.cast(seed, tf.int64), tf.int32)
        if context is None or not self.flow.base.conditional:
            return self._base(context, temperature).sample(n, seed=seed)
        context = tf.broadcast_to(context, tf.concat([[n], tf.shape(context)[1:]], 0))
        return self._base(context, temperature).sample(seed=seed)

    def _sample(self, n, temperature, seed, context=None):
        return self._bijector(context).forward(self.latent_noise(n, temperature, seed, context))

    def sample(self, n: int, context=None, temperature: float = 1.0, seed=None) -> tf.Tensor:
        """`n` samples x = f_c(z) with z from the base at `temperature`.

        Args:
            n: number of samples.
            context: for a conditional model, one context (all samples share it) or a batch
                of `n` contexts (one per sample).
            temperature: multiplies the base's scales: z ~ N(0, temperature^2 I) for the
                standard normal (Glow samples at 0.5-0.7).
            seed: an int; the same seed gives the same samples (also through the exported
                `sample` signature). None draws fresh noise.

        Returns:
            float32 samples of shape `(n, *event_shape)`, in the data's units (pixel values
            for images), not clipped: the flow maps all of R^D onto all of R^D, so samples can
            leave the data's range (e.g. [0, num_levels)), most often at high temperature;
            clip them to display them. Glow bounds how much each coupling and split prior can
            amplify while sampling, and a trained Glow gave no non-finite sample at
            temperatures up to 1 (experiments/glow_images.py); above 1 nothing is promised.
        """
        n = inputs.check_sample_args(n, temperature, seed)
        context = inputs.check_context(self.flow, context, "sample", batch=n)
        if seed is None:
            seed = tf.random.uniform([], maxval=tf.int64.max, dtype=tf.int64)
        return self._compiled("sample", self._sample, tf.constant(n, tf.int32),
                              tf.constant(temperature, tf.float32),
                              tf.constant(seed, tf.int64), context)

    # ---------------------------------------------------------------------------- training

    @property
    def metrics(self):
        return [self._loss_tracker, self._bits_tracker]

    def _record(self, log_prob) -> None:
        # Per example, so a smaller last batch weighs by its size, not as much as a full one.
        self._loss_tracker.update_state(-log_prob)
        self._bits_tracker.update_state(self.bits_per_dim(log_prob))

    def train_step(self, data):
        """One guarded training step on `x` or `(x, context)`: refuses a non-finite batch, loss or
        gradient without changing any weight or optimizer state."""
        x, context = inputs.check_inputs(self.flow, *inputs.unpack(data), "fit")
        valid = tf.debugging.Assert(
            inputs.valid_batch(self.flow, x, context),
            ["fit: the batch holds NaN or Inf values (or class labels out of range); clean the "
             "data. No weights were changed."])
        with tf.control_dependencies([valid]), tf.GradientTape() as tape:
            with self.flow.training_pass():
                log_prob = self._step_log_prob(x, context, _TRAINING)
            loss = -tf.reduce_mean(log_prob)
            # Each replica sees 1/N of the global batch; the optimizer sums the replicas'
            # gradients, so the per-replica loss is divided by N to get the global mean.
            scaled = loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)
            scaled = self.optimizer.scale_loss(scaled)
        # Stacked weights read row by row (`GlowSteps`) get sparse gradients; one dense update
        # each is what the optimizer and the guard want.
        gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                     for g in tape.gradient(scaled, self.trainable_variables)]
        # Every op of the update, the iteration count's increment included, waits for the guard.
        with tf.control_dependencies([self._step_guard(loss, gradients)]):
            self.optimizer.apply([tf.identity(g) for g in gradients], self.trainable_variables)
        self._record(log_prob)
        return self._step_logs()

    def _step_guard(self, loss, gradients) -> tf.Operation:
        """Fails the step, before anything is updated, unless the update would be finite.

        One check for the whole step: the loss and the sum of squared gradients must be
        finite. A gradient that is finite but whose square overflows float32 (about 1.8e19)
        would make the second moments of Adam or RMSprop infinite and ruin every later step,
        so it is refused too. The update itself (and the optimizer's iteration count) depends
        on the check, so a refused step changes no weight and no optimizer state. Under a
        dynamic loss-scale optimizer the gradients are left to it: it skips non-finite steps
        and lowers its scale by design.
        """
        checked = loss
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            checked += tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32)))
                                 for g in gradients if g is not None]) * 0.0
        return tf.debugging.Assert(
            tf.math.is_finite(checked),
            ["fit: step refused, nothing was updated (no weight, no optimizer state): the loss, "
             "a gradient or a squared gradient is NaN or Inf, so the update would not be "
             "finite. Lower the learning rate or rescale the data. Loss:", loss])

    def test_step(self, data):
        """Records the NLL and bits/dim of one evaluation batch."""
        x, context = inputs.check_inputs(self.flow, *inputs.unpack(data), "evaluate")
        self._record(self._step_log_prob(x, context, _EVALUATION))
        return self._step_logs()

    def _step_log_prob(self, x, context, purpose: int):
        """log p(x | context) in the steps of `fit` (purpose `_TRAINING`) and `evaluate`
        (`_EVALUATION`): `_log_prob`, but with a `dequantization_seed` (see `compile`) the
        noise of a learned dequantizer is keyed by the seed, the purpose, the optimizer's
        iteration count and the replica."""
        if self._dequantization_seed is None:
            return self._log_prob(x, context)
        key = tf.random.experimental.stateless_fold_in(
            tf.constant([self._dequantization_seed, purpose], tf.int64),
            self.optimizer.iterations)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int32))
        return self._weighted(x, tf.constant(1, tf.int32), key, context)

    def _step_logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        strategy = tf.distribute.get_strategy()
        # Keras 3 reduces the step outputs of a multi-worker run with strategy.reduce(axis=0),
        # which fails on scalars (tensorflow/tensorflow#72388); it reduces a length-1 axis away.
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and compat.worker_count(strategy) > 1):
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def predict_step(self, data):
        """log p(x) of one batch (`x` or `(x, context)`)."""
        x, context = inputs.unpack(data)
        if context is None and isinstance(x, (tuple, list)):
            x, context = inputs.unpack(tuple(x))  # predict((x, context)) arrives as one input
        return self._log_prob(*inputs.check_inputs(self.flow, x, context, "predict"))

    def compile(self, optimizer="adam", loss=None, jit_compile=False, dequantization_seed=None,
                **kwargs):
        """Keras `compile`; the loss is the flow's NLL, so no `loss` argument is taken.

        `jit_compile` defaults to False rather than Keras' "auto" (XLA whenever a GPU is
        present): XLA drops `tf.debugging.Assert`, and with it the guards that stop `fit`
        before a NaN or Inf reaches the weights. On CPU XLA was slower for every flow
        (benchmarks/). Pass `jit_compile=True` to trade the guards for XLA.

        A flow built with `precision="float16"` trains with dynamic loss scaling: the
        optimizer is wrapped in `keras.optimizers.LossScaleOptimizer` (unless it is one), so
        that small float16 gradients of the conditioners do not flush to zero; a step whose
        scaled gradients overflow is skipped and the scale lowered. bfloat16 has float32's
        exponent range and needs none.

        `dequantization_seed` (an int; a model with a learned dequantizer only) makes the
        noise u ~ q(u | x) of `fit` and `evaluate` reproducible: a function of the seed and
        the optimizer's iteration count (and the replica), instead of fresh noise at each step.
        A run restored from a checkpoint (weights and optimizer) then draws, step for step,
        the noise of a run never stopped, as the training command needs; every batch of one
        `evaluate` pass draws with the same key (each image's noise still from its own q(u | x)).
        `log_prob`, `predict` and `importance_weighted_log_prob` keep their own noise.
        """
        if loss is not None:
            raise ValueError("FlowModel trains on its own negative log-likelihood; "
                             f"compile takes no `loss` argument, got loss={loss!r}.")
        if dequantization_seed is not None:
            if self.dequantizer is None:
                raise ValueError(
                    "dequantization_seed applies to a model with a learned dequantizer; this "
                    "one has uniform dequantization, whose noise the data pipeline draws "
                    "(seeded by tfp_flows.datasets.load).")
            if isinstance(dequantization_seed, bool) or not isinstance(
                    dequantization_seed, numbers.Integral) or not (
                    -(2**63) <= dequantization_seed < 2**63):
                raise ValueError(f"dequantization_seed must be an integer in [-2**63, 2**63) or "
                                 f"None, got {dequantization_seed!r}.")
            dequantization_seed = int(dequantization_seed)
        self._dequantization_seed = dequantization_seed
        if getattr(self.flow, "precision", "float32") == "float16":
            optimizer = keras.optimizers.get(optimizer)
            if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compiling on load when `compile` is overridden; ours only adds a check.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras `fit`; `y` is the context of a conditional model (or None).

        Runs the data-dependent initialisation of ActNorm on the first batch first.
        """
        y = inputs.check_arrays(self.flow, x, y, "fit")
        self.initialize_from_data(x, batch_size, context=y)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            # Without a strategy Keras builds the optimizer inside the first trace of the train
            # step; creating its slots there makes tf.function trace the whole step twice.
            with self.distribute_strategy.scope():
                optimizer.build(self.trainable_variables)
        if isinstance(x, tf.data.Dataset):
            # Keras' default shuffle=True does nothing to a dataset but warn that it does
            # nothing; a dataset shuffles itself.
            kwargs.setdefault("shuffle", False)
        with inputs.refusals_as_value_errors():
            return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """Keras `evaluate`; `y` is the context of a conditional model (or None)."""
        y = inputs.check_arrays(self.flow, x, y, "evaluate")
        with inputs.refusals_as_value_errors():
            return super().evaluate(x, y, **kwargs)

    def predict(self, x, **kwargs):
        """Keras `predict`: log p(x) per example; `x` may be `(x, context)`."""
        if isinstance(x, tuple) and len(x) == 2:
            x = (x[0], inputs.check_arrays(self.flow, *x, "predict"))
        else:
            inputs.check_arrays(self.flow, x, None, "predict")
        with inputs.refusals_as_value_errors():
            return super().predict(x, **kwargs)

    def initialize_from_data(self, data, batch_size=None, *, context=None) -> None:
        """Runs ActNorm's data-dependent initialisation once, on the first batch of `data`.

        `data` is an array of x (with `context` for a conditional model) or a dataset of x or
        `(x, context)` batches. Under a distribution strategy each replica takes its share of
        the first global batch and the statistics are all-reduced, so every replica assigns
        the same values. Does nothing for flows without ActNorm, or once done (the flag is
        saved with the weights).
        """
        if not self.flow.uses_data_dependent_init or bool(self.data_initialized.numpy()):
            return
        if isinstance(data, tf.data.Dataset):
            first = data.take(1).map(lambda *batch: inputs.unpack(batch))
        else:
            x, context = inputs.check_inputs(self.flow, *inputs.unpack((data, context)), "fit")
            size = batch_size or 32
            first = tf.data.Dataset.from_tensors(
                (x[:size], None if context is None else context[:size]))
        strategy = self.distribute_strategy
        batch = next(iter(strategy.experimental_distribute_dataset(first)))

        def replica_init(x, context):
            x, context = inputs.check_inputs(self.flow, x, context, "fit")
            # Every assignment depends on x, so a bad batch stops before any of them.
            valid = tf.debugging.Assert(
                inputs.valid_batch(self.flow, x, context) & (tf.size(x) > 0),
                ["ActNorm's data-dependent initialisation needs a first batch that is not "
                 "empty, has no NaN or Inf (and labels in range)."])
            with tf.control_dependencies([valid]):
                x = tf.identity(x)
            if self.dequantizer is not None:
                # The statistics of the values the flow models: integer pixels plus noise.
                u, _ = self.dequantizer.sample(x, 1, tf.zeros([2], tf.int32))
                x = dequantizers.add_noise(x, u[0])
            z = self.flow.bijector(context, initialize=True).inverse(x)
            with tf.control_dependencies([z]):
                self.data_initialized.assign(True)

        # ActNorm layers assign in turn, so a refusal part-way through restores the earlier ones.
        before = [v.numpy() for v in self.weights]
        try:
            tf.function(lambda b: strategy.run(replica_init, args=b))(batch)
        except tf.errors.InvalidArgumentError as error:
            for variable, value in zip(self.weights, before, strict=True):
                variable.assign(value)
            unchanged = "No weights were changed and the model is still uninitialised."
            refusal = inputs.refusal_message(error) or ""
            if refusal.startswith(f"fit {inputs.NOT_PIXELS}"):
                raise ValueError(f"{refusal}. {unchanged}") from None
            raise ValueError(
                f"fit: the first batch is empty or holds NaN or Inf values (or class labels out "
                f"of range, or values so large that their statistics overflow float32), so "
                f"ActNorm's data-dependent initialisation cannot use it; clean the data. "
                f"{unchanged}") from None

    # -------------------------------------------------------------------------- serialising

    def get_config(self):
        return {"name": self.name, "flow": keras.saving.serialize_keras_object(self.flow)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        flow = keras.saving.deserialize_keras_object(config.pop("flow"))
        return cls(flow, **config)
