"""SavedModel export of a trained flow, for TF Serving and any TensorFlow runtime.

The exported graph holds only TensorFlow ops and the model's variables: it loads with plain
`tf.saved_model.load` (no Keras, no TensorFlow Probability, no tfp_flows) and with the
session-based C++ loader of TF Serving and `saved_model_cli`.
"""

from __future__ import annotations

import os
import warnings

import tensorflow as tf

from tfp_flows import compat
from tfp_flows.flow_model import FlowModel
from tfp_flows.inputs import check_pixels

__all__ = ["export_saved_model"]


def _event_spec(shape: tuple[int, ...], name: str) -> tf.TensorSpec:
    return tf.TensorSpec([None, *shape], tf.float32, name=name)


def _context_spec(model: FlowModel) -> list[tf.TensorSpec]:
    """The context input of every signature: none, int32 labels [batch], or float [batch, K]."""
    if not model.is_conditional:
        return []
    if model.flow.num_classes:
        return [tf.TensorSpec([None], tf.int32, name="context")]
    return [tf.TensorSpec([None, model.flow.context_size], tf.float32, name="context")]


def _checked_context(model: FlowModel, context, batch):
    """Fails unless the context has batch size 1 or `batch`, and labels are in range."""
    if not context:
        return None
    (context,) = context
    size = tf.shape(context)[0]
    checks = [tf.debugging.Assert(
        (size == 1) | (size == batch),
        ["the context needs batch size 1 or the batch size of the other input; got", size,
         "and", batch])]
    if model.flow.num_classes:
        checks.append(tf.debugging.assert_less(
            context, model.flow.num_classes, message="class labels must be < num_classes"))
        checks.append(tf.debugging.assert_non_negative(
            context, message="class labels must be >= 0"))
    with tf.control_dependencies(checks):
        return tf.identity(context)


def _serving_functions(model: FlowModel) -> dict:
    """The signatures' concrete functions, traced over the model's current variables."""
    event_shape, latent_shape = model.event_shape, model.latent_shape
    context_spec = _context_spec(model)
    computations = model.computations()
    # Every input goes through tf.ensure_shape: loaded signatures and the C++ session loader of
    # TF Serving and saved_model_cli feed tensors without checking them against the signature,
    # and the graph's static shapes would then lie. EnsureShape fails with "Shape of tensor x
    # [2,4,4,1] is not compatible with expected shape [?,8,8,1]" instead of an error deep in
    # the flow, or none at all. autograph=False: the flows have no tensor-dependent Python
    # control flow, and converting TFP's call stack only costs tracing time.
    def context_for(context, batch):
        return _checked_context(model, [tf.ensure_shape(c, spec.shape) for c, spec in zip(
            context, context_spec, strict=True)], batch)

    def inputs(tensor, shape, context):
        tensor = tf.ensure_shape(tensor, [None, *shape])
        return tensor, context_for(context, tf.shape(tensor)[0])

    def density_inputs(x, context, where):
        """The inputs of a density: for a learned dequantizer, x must be integer pixels."""
        x, context = inputs(x, event_shape, context)
        if model.dequantizer is not None:
            x = check_pixels(model.flow, x, where)
        return x, context

    @tf.function(autograph=False,
                 input_signature=[_event_spec(event_shape, "x"), *context_spec])
    def log_prob(x, *context):
        log_p = computations["log_prob"](*density_inputs(x, context, "log_prob"))
        return {"log_prob": log_p, "bits_per_dim": model.bits_per_dim(log_p)}

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([], tf.int32, name="n"),
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int64, name="seed"), *context_spec])
    def sample(n, temperature, seed, *context):
        n, temperature, seed = (tf.ensure_shape(t, []) for t in (n, temperature, seed))
        checks = [
            tf.debugging.assert_positive(n, message="sample expects n >= 1"),
            tf.debugging.Assert((temperature > 0) & tf.math.is_finite(temperature),
                                ["sample expects a finite temperature > 0, got", temperature]),
        ]
        with tf.control_dependencies(checks):
            n = tf.identity(n)
        # FlowModel.sample's own function: equal seeds, equal samples.
        return {"x": computations["sample"](n, temperature, seed, context_for(context, n))}

    @tf.function(autograph=False,
                 input_signature=[_event_spec(event_shape, "x"), *context_spec])
    def encode(x, *context):
        return {"z": computations["encode"](*inputs(x, event_shape, context))}

    @tf.function(autograph=False,
                 input_signature=[_event_spec(latent_shape, "z"), *context_spec])
    def decode(z, *context):
        return {"x": computations["decode"](*inputs(z, latent_shape, context))}

    log_prob = log_prob.get_concrete_function()
    functions = {"serving_default": log_prob, "log_prob": log_prob,
                 "sample": sample.get_concrete_function(),
                 "encode": encode.get_concrete_function(),
                 "decode": decode.get_concrete_function()}
    if model.dequantizer is not None:
        @tf.function(autograph=False, input_signature=[
            _event_spec(event_shape, "x"), tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.int64, name="seed"), *context_spec])
        def importance_weighted_log_prob(x, num_samples, seed, *context):
            num_samples, seed = (tf.ensure_shape(t, []) for t in (num_samples, seed))
            check = tf.debugging.assert_positive(
                num_samples, message="importance_weighted_log_prob expects num_samples >= 1")
            with tf.control_dependencies([check]):
                num_samples = tf.identity(num_samples)
            x, context = density_inputs(x, context, "importance_weighted_log_prob")
            log_p = computations["importance_weighted_log_prob"](x, num_samples, seed, context)
            return {"log_prob": log_p, "bits_per_dim": model.bits_per_dim(log_p)}

        functions["importance_weighted_log_prob"] = (
            importance_weighted_log_prob.get_concrete_function())
    return functions


def export_saved_model(model: FlowModel, path: str | os.PathLike) -> str:
    """Writes `model` as a SavedModel with the signatures TF Serving serves.

    Signatures (inputs -> outputs, batch axis first):

    - `serving_default`, `log_prob`: x float32 [batch, *event_shape] ->
      log_prob float32 [batch] (nats), bits_per_dim float32 [batch].
    - `sample`: n int32 scalar, temperature float32 scalar, seed int64 scalar ->
      x float32 [n, *event_shape]; the same seed gives the same samples, and the same
      samples as `model.sample(n, temperature=t, seed=seed)` in Python.
    - `encode`: x float32 [batch, *event_shape] -> z float32 [batch, *latent_shape].
    - `decode`: z float32 [batch, *latent_shape] -> x float32 [batch, *event_shape].
    - `importance_weighted_log_prob`, for a model with a learned dequantizer only: x float32
      integer pixels [batch, *event_shape], num_samples int32 scalar K >= 1, seed int64
      scalar -> log_prob float32 [batch] (nats), bits_per_dim float32 [batch]; equal to
      `model.importance_weighted_log_prob(x, num_samples=K, seed=seed)`. Such a model's
      `log_prob` signature is one sample of the variational bound, with fresh noise; both
      fail with an InvalidArgumentError on x that are not integer pixels in
      [0, num_levels).

    A conditional model's signatures all take one more input, `context`: int32 class labels
    [batch] (`num_classes` models) or float32 vectors [batch, K] (`context_shape` models),
    with batch size 1 (one context for every example or sample) or that of the other input.
    A context vector with NaN or Inf gives NaN outputs for its rows, as a NaN x does; class
    labels out of range fail with an InvalidArgumentError.

    Inputs of the wrong dtype are rejected by the signature; inputs of the wrong event shape
    fail with an InvalidArgumentError naming the expected shape. The graph reads the current
    values of the variables only: ActNorm's data-dependent initialisation does not run here,
    so fit (or `initialize_from_data`) a Glow model before exporting it; exporting one whose
    ActNorm was never initialised warns (its layers are identities, its densities those of an
    untrained model).

    The SavedModel serves values, not gradients: the gradient functions of custom-gradient
    ops (FFJORD's adjoint ODE solves, a reversible chain's recomputing backward pass) are not
    saved, so differentiating a loaded signature through one is not supported.

    TF Serving expects a numbered version directory under the model's base path: export to
    `base/1`, `base/2`, ... and point the server at `base`.

    Args:
        model: a `FlowModel`.
        path: the directory to write (created; an existing SavedModel there is overwritten).

    Returns:
        `path` as a string.
    """
    if not isinstance(model, FlowModel):
        raise TypeError(f"export_saved_model expects a tfp_flows FlowModel, "
                        f"got {type(model).__name__}.")
    path = os.fspath(path)
    if model.flow.uses_data_dependent_init and not bool(model.data_initialized.numpy()):
        warnings.warn(
            f"export_saved_model: {type(model.flow).__name__}'s ActNorm layers were never "
            f"initialised from data (model.data_initialized is False), so the export holds "
            f"an untrained model. Call model.fit or model.initialize_from_data first.",
            UserWarning, stacklevel=2)
    # The saved object holds the plain tf.Variables only (not the Keras wrappers, not the
    # model), so no Keras or TFP object enters the SavedModel's object graph; the signatures'
    # concrete functions are not attributes, or saving would trace them again.
    root = tf.Module(name="flow")
    root.model_variables = [compat.tf_variable(v) for v in model.variables]
    # Serving evaluates the signatures and never differentiates them, so the gradient functions
    # of custom-gradient ops are not traced into the SavedModel: for FFJORD that tracing took
    # three quarters of the export (17 s of 21) and most of loading it (6 s of 7).
    tf.saved_model.save(root, path, signatures=_serving_functions(model),
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    return path
