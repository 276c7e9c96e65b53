"""The checks on what users hand a `FlowModel`, and the rule for invalid contexts.

Every public method of `FlowModel` (and `fit`, `evaluate`, `predict`) checks its inputs
eagerly here and raises a ValueError naming what was expected and what came, before Keras or
TensorFlow turn a bad input into an error about their internals. Inside graphs (datasets in
`fit`, exported signatures) the checks are `tf.debugging.Assert`s, turned back into ValueErrors
by `refusals_as_value_errors`; a context with NaN or Inf (or a label out of range that no check
refused) makes its rows NaN through `UndefinedWhere`, as a NaN x does.

The functions take the flow (`tfp_flows.Flow`: its `event_shape`, `context_size` and
`num_classes` say what is expected) and a `where`, the name of the method, for the messages.
"""

from __future__ import annotations

import contextlib
import numbers
import re

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["Refused", "UndefinedWhere", "array_like", "check_arrays", "check_context",
           "check_inputs", "check_latent", "check_pixels", "check_sample_args", "check_x",
           "context_description", "describe_shape", "refusal_message", "refusals_as_value_errors",
           "require_examples", "unpack", "valid_batch", "valid_context"]

INT32_MAX = int(np.iinfo(np.int32).max)
# How the refusal of inputs that are not integer pixels starts, after the method's name.
NOT_PIXELS = "expects integer pixel values in"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def unpack(data):
    """(x, context) of a batch given as x, (x,), (x, context) or (x, context, sample_weight)."""
    x, context, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if sample_weight is not None:
        raise ValueError("FlowModel does not take sample weights; got a third element in the "
                         "batch. Pass (x,) or (x, context).")
    return x, context


def describe_shape(shape) -> str:
    """A static shape for messages: `(batch, 4)` for `(None, 4)`."""
    return "(" + ", ".join("batch" if i == 0 and d is None else str(d)
                           for i, d in enumerate(shape)) + ")"


def require_examples(x, where: str) -> None:
    """Refuses an array or tensor of x with no rows (Keras would run no step, silently)."""
    shape = getattr(x, "shape", None)
    if getattr(x, "ndim", 0) and shape[0] == 0:
        raise ValueError(f"{where} got no examples (x has shape {describe_shape(tuple(shape))}); "
                         f"pass at least one.")


def array_like(value, where: str, expected: str):
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


class Refused(ValueError, tf.errors.InvalidArgumentError):
    """A refusal found by an in-graph check: the promised ValueError, and still the
    InvalidArgumentError that code written against TF's own error catches."""

    def __init__(self, message: str):
        tf.errors.InvalidArgumentError.__init__(self, None, None, message)


def refusal_message(error: tf.errors.InvalidArgumentError) -> str | None:
    """The message of the failed `tf.debugging.Assert` behind `error`, its items joined by
    spaces; None when `error` is no failed assertion."""
    found = re.search(r"assertion failed: \[(.*?)\]\n", error.message + "\n")
    return None if found is None else found.group(1).replace("] [", " ")


@contextlib.contextmanager
def refusals_as_value_errors():
    """Turns a failed in-graph check (`tf.debugging.Assert` in Keras' step functions) into
    the ValueError it stands for, with its message and without TF's graph traceback."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        message = refusal_message(error)
        if message is None or isinstance(error, Refused):
            raise
        raise Refused(message) from None


class UndefinedWhere(tfb.Bijector):
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


def context_description(flow) -> str:
    """What `flow` takes as a context, in words."""
    if flow.num_classes:
        return f"integer class labels in [0, {flow.num_classes})"
    return f"float context vectors of shape (batch, {flow.context_size})"


def valid_context(flow, context) -> tf.Tensor:
    """Per context row: finite (a vector) or in [0, num_classes) (a label)."""
    if flow.num_classes:
        return (context >= 0) & (context < flow.num_classes)
    return tf.reduce_all(tf.math.is_finite(context), axis=-1)


def valid_batch(flow, x, context) -> tf.Tensor:
    """True when x (and a context vector) is finite and every class label is in range."""
    valid = tf.reduce_all(tf.math.is_finite(x))
    if context is not None:
        valid &= tf.reduce_all(valid_context(flow, context))
    return valid


def check_context(flow, context, where: str, batch=None):
    """The context as a tensor with a leading batch axis (1 or `batch`), or None.

    Raises ValueError when a conditional flow gets no context, an unconditional one gets
    one, or the context has the wrong dtype, shape or (eagerly checked) label range.
    """
    if not flow.context_size:
        if context is not None:
            raise ValueError(f"{where}: this model is unconditional and takes no context; "
                             f"got one. Build the flow with context_shape=(K,) or "
                             f"num_classes=N to condition it.")
        return None
    if context is None:
        raise ValueError(f"{where}: this model is conditional and needs a context "
                         f"({context_description(flow)}); got none.")
    context = array_like(context, where, context_description(flow))
    dtype = tf.as_dtype(context.dtype)
    labels = bool(flow.num_classes)
    if (labels and not dtype.is_integer) or (not labels and not (
            dtype.is_floating or dtype.is_integer)) or dtype == tf.bool:
        raise ValueError(f"{where} expects {context_description(flow)}, got dtype "
                         f"{dtype.name}.")
    context = tf.convert_to_tensor(context)
    if labels and tf.executing_eagerly():
        # Checked before the cast: a label beyond int64 must not wrap into range.
        values = context.numpy()
        if values.size and (values.min() < 0 or values.max() >= flow.num_classes):
            raise ValueError(f"{where} expects class labels in [0, {flow.num_classes}),"
                             f" got values in [{values.min()}, {values.max()}].")
    # int64 labels: a graph's int64 labels reach the in-graph range check unwrapped.
    context = tf.cast(context, tf.int64 if labels else tf.float32)
    if labels and not tf.executing_eagerly():
        # A dataset's labels arrive inside Keras' step functions: checked there, as fit
        # checks its batches (where XLA drops the check, they give NaN: see UndefinedWhere).
        in_range = tf.debugging.Assert(tf.reduce_all(valid_context(flow, context)), [
            f"{where} expects class labels in [0, {flow.num_classes}), got values "
            f"in", tf.reduce_min(context), tf.reduce_max(context)])
        with tf.control_dependencies([in_range]):
            context = tf.identity(context)
    event_rank = 0 if labels else 1
    shape = tuple(context.shape)
    if len(shape) == event_rank:
        context = context[None]
        shape = (1, *shape)
    wrong = len(shape) != event_rank + 1 or (
        not labels and shape[-1] is not None and shape[-1] != flow.context_size)
    if not wrong and batch is not None and shape[0] is not None and shape[0] != 1:
        wrong = batch is not None and shape[0] != batch
    if wrong:
        expected = ("(batch,) or a scalar" if labels
                    else f"(batch, {flow.context_size}) or ({flow.context_size},)")
        with_batch = "" if batch is None else f" with batch {batch} (or 1)"
        raise ValueError(f"{where} expects a context of shape {expected}{with_batch}, "
                         f"got shape {describe_shape(shape)}.")
    return context


def check_x(flow, x, where: str, pixels: bool = True) -> tf.Tensor:
    """`x` as a float32 tensor of shape `(batch, *flow.event_shape)`, or a ValueError.

    For a flow with a learned dequantizer, x must be integer pixels (`check_pixels`) unless
    `pixels` is False: the values of its continuous density, x + u (`encode`).
    """
    expected = f"(batch, {', '.join(map(str, flow.event_shape))})"
    x = array_like(x, where, f"floating-point inputs of shape {expected}")
    dtype = tf.as_dtype(x.dtype)
    # A flow with a learned dequantizer takes the integer pixels themselves.
    if not dtype.is_floating and not (dtype.is_integer and getattr(flow, "dequantizer", None)):
        raise ValueError(
            f"{where} expects floating-point inputs of shape {expected}, got dtype "
            f"{dtype.name}. Dequantize integer pixels first (x + uniform noise), e.g. with "
            f"tfp_flows.datasets.")
    x = tf.convert_to_tensor(x)
    if dtype == tf.float64:
        # A finite value beyond float32's range would become inf in the cast, and an inf
        # x has no density (NaN); as the largest float32 its density underflows to -inf,
        # the answer float32's own 3e38 gets.
        x = tf.where(tf.math.is_finite(x), tf.clip_by_value(x, -FLOAT32_MAX, FLOAT32_MAX), x)
    x = tf.cast(x, tf.float32)
    shape = tuple(x.shape)
    if len(shape) != len(flow.event_shape) + 1 or any(
            got is not None and got != want
            for got, want in zip(shape[1:], flow.event_shape, strict=False)):
        raise ValueError(f"{where} expects inputs of shape {expected}, "
                         f"got shape {describe_shape(shape)}.")
    if pixels and getattr(flow, "dequantizer", None) is not None:
        x = check_pixels(flow, x, where)
    return x


def _pixels_expected(flow, where: str) -> str:
    return (f"{where} {NOT_PIXELS} [0, {flow.num_levels}) (a model with a "
            f"learned dequantizer adds its own noise: pass the pixels, not dequantized "
            f"values); got")


def check_pixels(flow, x: tf.Tensor, where: str) -> tf.Tensor:
    """`x` (float32) once its finite values are checked to be integers in [0, num_levels), the
    pixels that a flow with a learned dequantizer takes.

    Checked eagerly (a ValueError) or, inside a graph, by a `tf.debugging.Assert` that the
    result depends on (an InvalidArgumentError; `refusals_as_value_errors` makes it a
    ValueError), which XLA drops: under `jit_compile` such inputs are not refused. NaN and
    Inf are left to the rules of every model (a NaN density; `fit` refuses the batch).
    """
    finite = tf.math.is_finite(x)
    valid = ~finite | ((x == tf.round(x)) & (x >= 0.0) & (x < float(flow.num_levels)))
    if tf.executing_eagerly():
        values = x.numpy()
        bad = values[~valid.numpy()]
        if bad.size:
            seen = values[finite.numpy()]
            raise ValueError(f"{_pixels_expected(flow, where)} {bad.min():g} among values "
                             f"from {seen.min():g} to {seen.max():g}.")
        return x
    # Reductions only: no dynamic shapes in a graph that XLA may compile.
    check = tf.debugging.Assert(tf.reduce_all(valid), [
        _pixels_expected(flow, where), tf.reduce_min(tf.where(valid, np.inf, x)),
        "among values from", tf.reduce_min(tf.where(finite, x, np.inf)), "to",
        tf.reduce_max(tf.where(finite, x, -np.inf))])
    with tf.control_dependencies([check]):
        return tf.identity(x)


def check_inputs(flow, x, context, where: str, pixels: bool = True):
    """`(check_x(...), check_context(...))`, the context paired with x's batch."""
    x = check_x(flow, x, where, pixels)
    return x, check_context(flow, context, where, batch=x.shape[0])


def check_latent(z, latent_shape, where: str) -> tf.Tensor:
    """`z` as a float32 tensor of shape `(batch, *latent_shape)`, or a ValueError."""
    expected = f"(batch, {', '.join(map(str, latent_shape))})"
    z = array_like(z, where, f"floating-point latents of shape {expected}")
    if not tf.as_dtype(z.dtype).is_floating:
        raise ValueError(f"{where} expects floating-point latents, got dtype "
                         f"{tf.as_dtype(z.dtype).name}.")
    z = tf.cast(z, tf.float32)
    if tuple(z.shape[1:]) != tuple(latent_shape) or z.shape.rank != len(latent_shape) + 1:
        raise ValueError(f"{where} expects latents of shape {expected}, "
                         f"got {describe_shape(tuple(z.shape))}.")
    return z


def check_sample_args(n, temperature, seed) -> int:
    """The number of samples as an int, once n, temperature and seed are checked."""
    if (tf.is_tensor(n) and tf.executing_eagerly() and n.dtype.is_integer
            and n.shape.rank == 0):
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (
            1 <= n <= INT32_MAX):
        raise ValueError(f"sample expects a positive integer number of samples (at most "
                         f"{INT32_MAX}), got {n!r}.")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
            0 < temperature <= FLOAT32_MAX):
        raise ValueError(f"sample expects a finite temperature > 0 (at most float32's "
                         f"{FLOAT32_MAX:.4g}), got {temperature!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(
            seed, (int, np.integer)) or not -(2**63) <= seed < 2**63):
        raise ValueError(f"sample expects an integer seed in [-2**63, 2**63) or None, "
                         f"got {seed!r}.")
    return int(n)


def check_arrays(flow, x, context, where: str):
    """The checks on array inputs of fit/evaluate/predict, before Keras sees them.

    Keras' data adapters turn bad arrays into errors about their own internals (or run no
    step at all); datasets and generators are checked batch by batch in the steps. Returns
    the context, repeated for every example when one context was given for an array of x
    (Keras' adapters take only one per example).
    """
    if isinstance(x, (tf.data.Dataset, keras.utils.PyDataset)) or (
            x is not None and not hasattr(x, "dtype") and hasattr(x, "__next__")):
        return context
    x = array_like(x, where, f"x of shape (batch, {', '.join(map(str, flow.event_shape))})"
                             f" or a tf.data.Dataset")
    if not getattr(x, "ndim", 0):
        check_x(flow, x, where)  # a scalar: refused with the expected shape
    require_examples(x, where)
    check_x(flow, x[:1], where)
    checked = check_context(flow, context, where, batch=x.shape[0])
    if checked is None or np.ndim(context) == checked.shape.rank and len(x) == len(checked):
        return context
    return np.repeat(checked.numpy(), len(x), axis=0)
