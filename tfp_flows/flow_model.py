"""FlowModel: a normalizing flow as a Keras 3 model with a TFP distribution inside."""

from __future__ import annotations

import contextlib
import math
import numbers
import re

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

from tfp_flows import compat

__all__ = ["FlowModel"]


def _unpack(data):
    """(x, context) of a batch given as x, (x,), (x, context) or (x, context, sample_weight)."""
    x, context, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if sample_weight is not None:
        raise ValueError("FlowModel does not take sample weights; got a third element in the "
                         "batch. Pass (x,) or (x, context).")
    return x, context


_INT32_MAX = int(np.iinfo(np.int32).max)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _require_examples(x, where: str) -> None:
    """Refuses an array or tensor of x with no rows (Keras would run no step, silently)."""
    shape = getattr(x, "shape", None)
    if getattr(x, "ndim", 0) and shape[0] == 0:
        raise ValueError(f"{where} got no examples (x has shape {_describe_shape(tuple(shape))}); "
                         f"pass at least one.")


def _array_like(value, where: str, expected: str):
    """`value` if it has a dtype, else as a numpy array; ValueError for what is no array."""
    if isinstance(value, dict):
        raise ValueError(f"{where} expects {expected}, got a dict with keys "
                         f"{sorted(map(str, value))}; pass the array itself.")
    if isinstance(value, (tuple, list)) and any(
            tf.is_tensor(v) and not tf.executing_eagerly() for v in tf.nest.flatten(value)):
        raise ValueError(f"{where} expects {expected}, got a {type(value).__name__} of "
                         f"{len(value)} tensors (a dataset of (x, (context,))?); pass the "
                         f"tensor itself: (x, context).")
    if value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"{where} expects {expected}, got {value!r}.")
    if not hasattr(value, "dtype"):
        try:
            value = np.asarray(value)
        except ValueError:
            raise ValueError(f"{where} expects {expected}, got a ragged nested list (rows of "
                             f"different shapes).") from None
    if value.dtype == object:
        raise ValueError(f"{where} expects {expected}, got an array of Python objects (dtype "
                         f"object, e.g. dicts or ragged lists).")
    return value


class _Refused(ValueError, tf.errors.InvalidArgumentError):
    """A refusal found by an in-graph check: the promised ValueError, and still the
    InvalidArgumentError that code written against TF's own error catches."""

    def __init__(self, message: str):
        tf.errors.InvalidArgumentError.__init__(self, None, None, message)


@contextlib.contextmanager
def _refusals_as_value_errors():
    """Turns a failed in-graph check (`tf.debugging.Assert` in Keras' step functions) into
    the ValueError it stands for, with its message and without TF's graph traceback."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = re.search(r"assertion failed: \[(.*?)\]\n", error.message + "\n")
        if found is None or isinstance(error, _Refused):
            raise
        raise _Refused(found.group(1).replace("] [", " ")) from None


class _UndefinedWhere(tfb.Bijector):
    """x = z + u with u 0 or NaN per context row: the rows of invalid contexts become NaN.

    `undefined` has shape `(batch, 1, ...)` (a batch of contexts, paired row by row with the
    inputs) or `(1, ...)` (one context for any input), with `event_ndims` trailing ones.
    """

    def __init__(self, undefined, event_ndims: int, where: str):
        parameters = dict(locals())
        self._undefined, self._event_ndims, self._where = undefined, event_ndims, where
        super().__init__(forward_min_event_ndims=event_ndims, is_constant_jacobian=True,
                         parameters=parameters, name="undefined_where")

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _paired(self, t):
        """`t` once its batch is checked against the contexts' (a clear error, not a
        broadcasting failure deep in a conditioner)."""
        if self._undefined.shape.rank == self._event_ndims:
            return t
        contexts, axis = tf.shape(self._undefined)[0], t.shape.rank - self._event_ndims - 1
        static = self._undefined.shape[0], t.shape[axis] if axis >= 0 else 1
        message = (f"{self._where}: a batch of contexts pairs with the inputs' last batch axis, "
                   f"of the same size (or give one context for any batch)")
        if None not in static and static[0] not in (1, static[1]):
            raise ValueError(f"{message}; got {static[0]} contexts and inputs of shape "
                             f"{tuple(t.shape)}.")
        if None in static:
            size = tf.shape(t)[axis] if axis >= 0 else 1
            with tf.control_dependencies([tf.debugging.Assert(
                    (contexts == 1) | (size == contexts), [message + "; got contexts and inputs:",
                                               contexts, size])]):
                return tf.identity(t)
        return t

    def _forward(self, z):
        return self._paired(z) + tf.cast(self._undefined, z.dtype)

    def _inverse(self, x):
        return self._paired(x) - tf.cast(self._undefined, x.dtype)

    def _forward_log_det_jacobian(self, z):
        return tf.zeros([], z.dtype)


def _describe_shape(shape) -> str:
    return "(" + ", ".join("batch" if i == 0 and d is None else str(d)
                           for i, d in enumerate(shape)) + ")"


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowModel(keras.Model):
    """A normalizing flow p(x | c) = N(f_c^-1(x); 0, I) |det J_{f_c^-1}(x)| as a Keras model.

    `flow` is a layer that owns the parameters and assembles the bijector f (latent -> data),
    such as the families in `tfp_flows.families`. The model trains with `fit` on the mean negative
    log-likelihood in nats per example of the data the model sees, and reports
    `bits_per_dim` = loss / (D ln 2). For image flows the data are dequantized pixel values
    in [0, num_levels), and the scaling to [0, 1) (and the logit) are bijectors in the chain,
    so `log_prob` is the density of the pixel values and bits/dim is exact in 8-bit space.

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
        self._log_prob(tf.zeros((1, *self.event_shape)), self._dummy_context(1))
        self.built = True

    # ------------------------------------------------------------------------------ context

    @property
    def is_conditional(self) -> bool:
        return bool(self.flow.context_size)

    def _context_description(self) -> str:
        if self.flow.num_classes:
            return f"integer class labels in [0, {self.flow.num_classes})"
        return f"float context vectors of shape (batch, {self.flow.context_size})"

    def _dummy_context(self, batch: int):
        if not self.is_conditional:
            return None
        if self.flow.num_classes:
            return tf.zeros((batch,), tf.int32)
        return tf.zeros((batch, self.flow.context_size))

    def _check_context(self, context, where: str, batch=None):
        """The context as a tensor with a leading batch axis (1 or `batch`), or None.

        Raises ValueError when a conditional model gets no context, an unconditional one gets
        one, or the context has the wrong dtype, shape or (eagerly checked) label range.
        """
        if not self.is_conditional:
            if context is not None:
                raise ValueError(f"{where}: this model is unconditional and takes no context; "
                                 f"got one. Build the flow with context_shape=(K,) or "
                                 f"num_classes=N to condition it.")
            return None
        if context is None:
            raise ValueError(f"{where}: this model is conditional and needs a context "
                             f"({self._context_description()}); got none.")
        context = _array_like(context, where, self._context_description())
        dtype = tf.as_dtype(context.dtype)
        labels = bool(self.flow.num_classes)
        if (labels and not dtype.is_integer) or (not labels and not (
                dtype.is_floating or dtype.is_integer)) or dtype == tf.bool:
            raise ValueError(f"{where} expects {self._context_description()}, got dtype "
                             f"{dtype.name}.")
        context = tf.convert_to_tensor(context)
        if labels and tf.executing_eagerly():
            # Checked before the cast: a label beyond int64 must not wrap into range.
            values = context.numpy()
            if values.size and (values.min() < 0 or values.max() >= self.flow.num_classes):
                raise ValueError(f"{where} expects class labels in [0, {self.flow.num_classes}),"
                                 f" got values in [{values.min()}, {values.max()}].")
        # int64 labels: a graph's int64 labels reach the in-graph range check unwrapped.
        context = tf.cast(context, tf.int64 if labels else tf.float32)
        if labels and not tf.executing_eagerly():
            # A dataset's labels arrive inside Keras' step functions: checked there, as fit
            # checks its batches (where XLA drops the check, they give NaN: see _bijector).
            in_range = tf.debugging.Assert(tf.reduce_all(self._valid_context(context)), [
                f"{where} expects class labels in [0, {self.flow.num_classes}), got values "
                f"in", tf.reduce_min(context), tf.reduce_max(context)])
            with tf.control_dependencies([in_range]):
                context = tf.identity(context)
        event_rank = 0 if labels else 1
        shape = tuple(context.shape)
        if len(shape) == event_rank:
            context = context[None]
            shape = (1, *shape)
        wrong = len(shape) != event_rank + 1 or (
            not labels and shape[-1] is not None and shape[-1] != self.flow.context_size)
        if not wrong and batch is not None and shape[0] is not None and shape[0] != 1:
            wrong = batch is not None and shape[0] != batch
        if wrong:
            expected = ("(batch,) or a scalar" if labels
                        else f"(batch, {self.flow.context_size}) or ({self.flow.context_size},)")
            with_batch = "" if batch is None else f" with batch {batch} (or 1)"
            raise ValueError(f"{where} expects a context of shape {expected}{with_batch}, "
                             f"got shape {_describe_shape(shape)}.")
        return context

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
        return self._bijector(self._check_context(context, where), where=where)

    def _valid_context(self, context) -> tf.Tensor:
        """Per context row: finite (a vector) or in [0, num_classes) (a label)."""
        if self.flow.num_classes:
            return (context >= 0) & (context < self.flow.num_classes)
        return tf.reduce_all(tf.math.is_finite(context), axis=-1)

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
        undefined = tf.where(self._valid_context(context), 0.0, np.nan)
        rank = len(self.event_shape)
        # One context keeps the event's shape (no batch axis of 1 is added to an unbatched
        # event); a batch of them pairs row by row.
        leading = () if context.shape[0] == 1 else (-1,)
        undefined = tf.reshape(undefined, leading + (1,) * rank)
        return tfb.Chain([_UndefinedWhere(undefined, rank, where), bijector])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        if "_latent_shape" not in self.__dict__:
            bijector = self.flow.bijector(self._dummy_context(1))
            shape = tuple(bijector.inverse_event_shape(self.event_shape).as_list())
            compat.set_untracked(self, "_latent_shape", shape)
        return self._latent_shape

    def base_distribution(self, temperature: float = 1.0) -> tfd.Distribution:
        """Standard normal (scaled by `temperature`) over the latent shape."""
        return tfd.Sample(tfd.Normal(tf.constant(0.0), tf.constant(temperature, tf.float32)),
                          sample_shape=self.latent_shape)

    def _distribution(self, bijector) -> tfd.TransformedDistribution:
        # The bijector lists the variables underneath the Keras ones (`FlowBijector`), which
        # is what TFP (tfp.vi, tfp.math.minimize) trains.
        return tfd.TransformedDistribution(self.base_distribution(), bijector)

    @property
    def distribution(self) -> tfd.TransformedDistribution:
        """p(x) as a `tfd.TransformedDistribution` of the standard normal through the flow.

        Its `trainable_variables` are the model's trainable variables as `tf.Variable`s, so
        TFP's optimisation and inference APIs can train it. Unconditional models only; see
        `conditional_distribution`.
        """
        if self.is_conditional:
            raise ValueError("this model is conditional: use conditional_distribution(context) "
                             f"({self._context_description()}).")
        return self._distribution(self.bijector)

    def conditional_distribution(self, context) -> tfd.TransformedDistribution:
        """p(x | context) as a `tfd.TransformedDistribution` bound to `context`.

        With one context (`(K,)`, or a scalar label) `dist.log_prob(x)` scores any batch of
        x under it and `dist.sample(n)` draws n samples from it; with a batch of contexts,
        `dist.log_prob(x)` pairs them with a batch of x of the same size.
        """
        if not self.is_conditional:
            raise ValueError("this model is unconditional: use model.distribution.")
        return self._distribution(self.conditional_bijector(context,
                                                            "conditional_distribution"))

    def _log_prob(self, x, context=None):
        bijector = self._bijector(context)
        z = bijector.inverse(x)
        base = self.base_distribution()
        event_ndims = len(self.event_shape)
        log_det = bijector.inverse_log_det_jacobian(x, event_ndims=event_ndims)
        # The log-det is accumulated in float32 even when the networks run in a lower precision.
        log_prob = base.log_prob(tf.cast(z, tf.float32)) + tf.cast(log_det, tf.float32)
        # A finite x so far out that float32 overflows inside the flow (a latent of inf, then
        # inf - inf) comes out NaN; its density is below float32's range: -inf. A NaN in x
        # (or an invalid context) stays NaN.
        finite = tf.reduce_all(tf.math.is_finite(x), axis=list(range(-event_ndims, 0)))
        if context is not None:
            finite &= self._valid_context(context)
        return tf.where(tf.math.is_nan(log_prob) & finite,
                        tf.constant(-np.inf, log_prob.dtype), log_prob)

    def _check_input(self, x, where: str) -> tf.Tensor:
        """Converts `x` to a float32 tensor, or raises ValueError naming what was expected."""
        expected = f"(batch, {', '.join(map(str, self.event_shape))})"
        x = _array_like(x, where, f"floating-point inputs of shape {expected}")
        dtype = tf.as_dtype(x.dtype)
        if not dtype.is_floating:
            raise ValueError(
                f"{where} expects floating-point inputs of shape {expected}, got dtype "
                f"{dtype.name}. Dequantize integer pixels first (x + uniform noise), e.g. with "
                f"tfp_flows.datasets.")
        x = tf.convert_to_tensor(x)
        if dtype == tf.float64:
            # A finite value beyond float32's range would become inf in the cast, and an inf
            # x has no density (NaN); as the largest float32 its density underflows to -inf,
            # the answer float32's own 3e38 gets.
            x = tf.where(tf.math.is_finite(x), tf.clip_by_value(x, -_FLOAT32_MAX, _FLOAT32_MAX),
                         x)
        x = tf.cast(x, tf.float32)
        shape = tuple(x.shape)
        if len(shape) != len(self.event_shape) + 1 or any(
                got is not None and got != want
                for got, want in zip(shape[1:], self.event_shape, strict=False)):
            raise ValueError(f"{where} expects inputs of shape {expected}, "
                             f"got shape {_describe_shape(shape)}.")
        return x

    def _inputs(self, x, context, where: str):
        x = self._check_input(x, where)
        return x, self._check_context(context, where, batch=x.shape[0])

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

    def log_prob(self, x, context=None) -> tf.Tensor:
        """log p(x | context) in nats, one value per example."""
        return self._compiled("log_prob", self._log_prob, *self._inputs(x, context, "log_prob"))

    def call(self, x, context=None):
        return self.log_prob(x, context)

    def bits_per_dim(self, log_prob) -> tf.Tensor:
        """-log p(x) / (D ln 2), the units flows are compared in."""
        return -log_prob / (self.event_size * math.log(2.0))

    def encode(self, x, context=None) -> tf.Tensor:
        """z = f_c^-1(x), the latent of data x."""
        return self._compiled("encode", self._encode, *self._inputs(x, context, "encode"))

    def _encode(self, x, context=None):
        return self._bijector(context).inverse(x)

    def _decode(self, z, context=None):
        return self._bijector(context).forward(z)

    def decode(self, z, context=None) -> tf.Tensor:
        """x = f_c(z), the data of latent z."""
        z = _array_like(z, "decode", f"floating-point latents of shape (batch, "
                        f"{', '.join(map(str, self.latent_shape))})")
        if not tf.as_dtype(z.dtype).is_floating:
            raise ValueError(f"decode expects floating-point latents, got dtype "
                             f"{tf.as_dtype(z.dtype).name}.")
        z = tf.cast(z, tf.float32)
        if tuple(z.shape[1:]) != self.latent_shape or z.shape.rank != len(self.latent_shape) + 1:
            raise ValueError(f"decode expects latents of shape (batch, "
                             f"{', '.join(map(str, self.latent_shape))}), "
                             f"got {_describe_shape(tuple(z.shape))}.")
        context = self._check_context(context, "decode", batch=z.shape[0])
        return self._compiled("decode", self._decode, z, context)

    def latent_noise(self, n, temperature, seed) -> tf.Tensor:
        """`n` latents z ~ N(0, temperature^2 I), a stateless function of the integer `seed`.

        The same seed gives the same noise here and in the exported `sample` signature.
        """
        shape = tf.concat([[n], tf.constant(self.latent_shape, tf.int32)], axis=0)
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
        return tf.random.stateless_normal(shape, seed=seed) * tf.cast(temperature, tf.float32)

    def _sample(self, n, temperature, seed, context=None):
        return self._bijector(context).forward(self.latent_noise(n, temperature, seed))

    def sample(self, n: int, context=None, temperature: float = 1.0, seed=None) -> tf.Tensor:
        """`n` samples x = f_c(z) with z ~ N(0, temperature^2 I).

        Args:
            n: number of samples.
            context: for a conditional model, one context (all samples share it) or a batch
                of `n` contexts (one per sample).
            temperature: standard deviation of the latent (Glow samples at 0.5-0.7).
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
        if (tf.is_tensor(n) and tf.executing_eagerly() and n.dtype.is_integer
                and n.shape.rank == 0):
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (
                1 <= n <= _INT32_MAX):
            raise ValueError(f"sample expects a positive integer number of samples (at most "
                             f"{_INT32_MAX}), got {n!r}.")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
                0 < temperature <= _FLOAT32_MAX):
            raise ValueError(f"sample expects a finite temperature > 0 (at most float32's "
                             f"{_FLOAT32_MAX:.4g}), got {temperature!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(
                seed, (int, np.integer)) or not -(2**63) <= seed < 2**63):
            raise ValueError(f"sample expects an integer seed in [-2**63, 2**63) or None, "
                             f"got {seed!r}.")
        context = self._check_context(context, "sample", batch=int(n))
        if seed is None:
            seed = tf.random.uniform([], maxval=tf.int64.max, dtype=tf.int64)
        return self._compiled("sample", self._sample, tf.constant(int(n), tf.int32),
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

    def _valid_batch(self, x, context) -> tf.Tensor:
        """True when x (and a context vector) is finite and every class label is in range."""
        valid = tf.reduce_all(tf.math.is_finite(x))
        if context is not None:
            valid &= tf.reduce_all(self._valid_context(context))
        return valid

    def train_step(self, data):
        x, context = self._inputs(*_unpack(data), "fit")
        valid = tf.debugging.Assert(
            self._valid_batch(x, context),
            ["fit: the batch holds NaN or Inf values (or class labels out of range); clean the "
             "data. No weights were changed."])
        with tf.control_dependencies([valid]), tf.GradientTape() as tape:
            with self.flow.training_pass():
                log_prob = self._log_prob(x, context)
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
        x, context = self._inputs(*_unpack(data), "evaluate")
        self._record(self._log_prob(x, context))
        return self._step_logs()

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
        x, context = _unpack(data)
        if context is None and isinstance(x, (tuple, list)):
            x, context = _unpack(tuple(x))  # predict((x, context)) arrives as one input
        return self._log_prob(*self._inputs(x, context, "predict"))

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
        """Keras `fit`; `y` is the context of a conditional model (or None).

        Runs the data-dependent initialisation of ActNorm on the first batch first.
        """
        y = self._check_arrays(x, y, "fit")
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
        with _refusals_as_value_errors():
            return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """Keras `evaluate`; `y` is the context of a conditional model (or None)."""
        y = self._check_arrays(x, y, "evaluate")
        with _refusals_as_value_errors():
            return super().evaluate(x, y, **kwargs)

    def predict(self, x, **kwargs):
        """Keras `predict`: log p(x) per example; `x` may be `(x, context)`."""
        if isinstance(x, tuple) and len(x) == 2:
            x = (x[0], self._check_arrays(*x, "predict"))
        else:
            self._check_arrays(x, None, "predict")
        with _refusals_as_value_errors():
            return super().predict(x, **kwargs)

    def _check_arrays(self, x, context, where: str):
        """The library's checks on array inputs of fit/evaluate/predict, before Keras sees them.

        Keras' data adapters turn bad arrays into errors about their own internals (or run no
        step at all); datasets and generators are checked batch by batch in the steps. Returns
        the context, repeated for every example when one context was given for an array of x
        (Keras' adapters take only one per example).
        """
        if isinstance(x, (tf.data.Dataset, keras.utils.PyDataset)) or (
                x is not None and not hasattr(x, "dtype") and hasattr(x, "__next__")):
            return context
        x = _array_like(x, where, f"x of shape (batch, {', '.join(map(str, self.event_shape))})"
                                  f" or a tf.data.Dataset")
        if not getattr(x, "ndim", 0):
            self._check_input(x, where)  # a scalar: refused with the expected shape
        _require_examples(x, where)
        self._check_input(x[:1], where)
        checked = self._check_context(context, where, batch=x.shape[0])
        if checked is None or np.ndim(context) == checked.shape.rank and len(x) == len(checked):
            return context
        return np.repeat(checked.numpy(), len(x), axis=0)

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
            first = data.take(1).map(lambda *batch: _unpack(batch))
        else:
            x, context = self._inputs(*_unpack((data, context)), "fit")
            size = batch_size or 32
            first = tf.data.Dataset.from_tensors(
                (x[:size], None if context is None else context[:size]))
        strategy = self.distribute_strategy
        batch = next(iter(strategy.experimental_distribute_dataset(first)))

        def replica_init(x, context):
            x, context = self._inputs(x, context, "fit")
            # Every assignment depends on x, so a bad batch stops before any of them.
            valid = tf.debugging.Assert(
                self._valid_batch(x, context) & (tf.size(x) > 0),
                ["ActNorm's data-dependent initialisation needs a first batch that is not "
                 "empty, has no NaN or Inf (and labels in range)."])
            with tf.control_dependencies([valid]):
                x = tf.identity(x)
            z = self.flow.bijector(context, initialize=True).inverse(x)
            with tf.control_dependencies([z]):
                self.data_initialized.assign(True)

        # ActNorm layers assign in turn, so a refusal part-way through restores the earlier ones.
        before = [v.numpy() for v in self.weights]
        try:
            tf.function(lambda b: strategy.run(replica_init, args=b))(batch)
        except tf.errors.InvalidArgumentError:
            for variable, value in zip(self.weights, before, strict=True):
                variable.assign(value)
            raise ValueError(
                "fit: the first batch is empty or holds NaN or Inf values (or class labels out "
                "of range, or values so large that their statistics overflow float32), so "
                "ActNorm's data-dependent initialisation cannot use it; clean the data. No "
                "weights were changed and the model is still uninitialised.") from None

    # -------------------------------------------------------------------------- serialising

    def get_config(self):
        return {"name": self.name, "flow": keras.saving.serialize_keras_object(self.flow)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        flow = keras.saving.deserialize_keras_object(config.pop("flow"))
        return cls(flow, **config)
