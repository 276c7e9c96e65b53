"""Property-based tests (hypothesis): hostile input at every public entry point.

What the suite guarantees, for generated malformed inputs, extreme values and bad arguments
thrown at the five builders (and IAF), the `FlowModel` methods (`log_prob`, `encode`, `decode`,
`sample`, `fit`, `evaluate`, `predict`, `initialize_from_data`), the SavedModel signatures
(`log_prob`, `encode`, `decode`, `sample`) and the training command (`python -m
tfp_flows.train`):

- every call either gives a correct answer or raises a clear error: a `ValueError` or
  `TypeError` (`tf.errors.InvalidArgumentError` from an exported signature) whose message
  names the method or the argument at fault, never a raw internal error ("'<' not
  supported", "NoneType", "unknown rank", a Keras data-adapter message, an int32 overflow);
- a correct answer is one that agrees with the model on the same input written plainly: a
  float64/float16/bfloat16 or list input gives what its float32 copy gives, one context for a
  batch gives what the same context repeated gives, `decode(encode(x))` is `x`, samples have
  the asked shape and are finite at temperatures in (0, 1], predict and evaluate agree with
  `log_prob`, and the exported signatures agree with the in-process model within 1e-4;
- after every call (refused or not; `fit` on malformed data is always refused) the model's
  variables and its optimizer's variables (iteration count included) are finite and bit for
  bit what they were; a data-dependent initialisation that runs leaves finite weights;
- the training command answers every bad flag with exit code 2, a one-line `error: ...` on
  stderr and no traceback, and writes nothing.

The models are built once per module; hypothesis runs derandomized (the same examples on
every run) with few examples per property, so the file runs in a few minutes on two cores.
"""

from __future__ import annotations

import math
import os
import re
import runpy
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import tfp_flows
from tfp_flows import families

# No shrinking: a failure reports the example as generated (shrinking re-runs TensorFlow
# calls hundreds of times); derandomize: the same examples on every run.
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate), report_multiple_bugs=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=12)

REFUSALS = (ValueError, TypeError, tf.errors.InvalidArgumentError)
# Fragments of raw internal errors: a message holding one is not a clear error.
RAW = ("NoneType", "not supported between", "unknown rank", "Unrecognized data type",
       "Invalid dtype", "pop from an empty set", "Can't convert Python", "out-of-range integer",
       "cannot access local variable", "has no attribute", "index out of range",
       "Received an invalid value for `units`", "Traceback")
LABELS = 3          # classes of the conditional "labels" model
CONTEXT = 2         # context size of the conditional "context" model
LEVELS = 17         # pixel levels of the Glow model
SPECIALS = (np.nan, np.inf, -np.inf, 1e30, -1e30, 3e38, 1e15, -1e10, 0.0, 1e-30, -1e-30)


# ---------------------------------------------------------------------------------- helpers

def assert_clear(error: BaseException, *names: str, graph: bool = False) -> None:
    """`error` is a refusal whose message is not raw and names one of `names`: a ValueError
    or TypeError, or (`graph`: an exported signature) an InvalidArgumentError too."""
    allowed = REFUSALS if graph else (ValueError, TypeError)
    assert isinstance(error, allowed), f"{type(error).__name__}: {error}"
    # Without the Python stack and node names a graph error carries (its "File ..., in
    # sample" lines and "__inference__sample" would name the method for any message).
    text = "\n".join(line for line in str(error).splitlines()
                     if not line.strip().startswith("File "))
    text = re.sub(r"\[Op:[^\]]*\]|\{\{node [^}]*\}\}|Detected at node .*", "", text)
    assert text.strip(), f"empty {type(error).__name__}"
    raw = [fragment for fragment in RAW if fragment in text]
    assert not raw, f"raw message ({raw}): {text[:600]}"
    assert any(name in text for name in names), f"names none of {names}: {text[:600]}"


def brief(value) -> str:
    """A short description of an input, for failure messages."""
    if tf.is_tensor(value) or isinstance(value, np.ndarray):
        array = np.asarray(tf.cast(value, tf.float32)) if tf.is_tensor(value) else value
        return (f"{type(value).__name__}(shape={tuple(value.shape)}, dtype={value.dtype.name}, "
                f"values={np.asarray(array).ravel()[:4].tolist()})")
    return repr(value)[:120]


def snapshot(model) -> list[np.ndarray]:
    variables = [*model.weights]
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables += list(optimizer.variables)
    return [np.array(v.numpy(), copy=True) for v in variables]


def assert_unchanged(model, before: list[np.ndarray]) -> None:
    after = snapshot(model)
    assert len(after) == len(before), "variables were added or removed"
    for old, new in zip(before, after, strict=True):
        if new.dtype.kind == "f":
            assert np.all(np.isfinite(new)), "a variable is not finite"
        assert np.array_equal(old, new), "a variable changed"


def assert_finite_state(model) -> None:
    for value in snapshot(model):
        if value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), "a variable is not finite"


def attempt(model, call):
    """(result, error) of `call()`; the model's state must be unchanged and finite after it."""
    before = snapshot(model)
    try:
        result = call()
    except Exception as error:  # noqa: BLE001 - the oracle judges every exception
        assert_unchanged(model, before)
        return None, error
    assert_unchanged(model, before)
    return result, None


def expect_answer(result, error):
    if error is not None:
        raise AssertionError(f"refused a valid call: {type(error).__name__}: "
                             f"{str(error)[:600]}") from error
    return result


def clean_data(model, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *model.event_shape)
    if model.flow.num_levels:
        return (rng.integers(0, model.flow.num_levels, shape) + rng.random(shape)).astype(
            "float32")
    return rng.standard_normal(shape).astype("float32")


def clean_context(model, n: int, seed: int = 0):
    rng = np.random.default_rng(seed + 1)
    if not model.is_conditional:
        return None
    if model.flow.num_classes:
        return rng.integers(0, model.flow.num_classes, n).astype("int32")
    return rng.standard_normal((n, model.flow.context_size)).astype("float32")


def moderate(x: np.ndarray, model) -> np.ndarray:
    """Per row: all values finite and of moderate size (an answer must then be finite)."""
    flat = rows_of(x).astype("float64")
    return np.all(np.isfinite(flat) & (np.abs(flat) <= 50.0), axis=1)


def rows_of(x: np.ndarray) -> np.ndarray:
    """`x` as a (batch, size) array (also for an empty batch)."""
    return np.asarray(x).reshape(len(x), int(np.prod(np.shape(x)[1:])))


def full_context(model, context, n: int):
    """The context as one row per example, in the model's own dtype."""
    if context is None:
        return None
    if model.flow.num_classes:
        return np.broadcast_to(np.asarray(context).astype("int32").reshape(-1), (n,)).copy()
    array = np.asarray(context).astype("float32").reshape(-1, model.flow.context_size)
    return np.broadcast_to(array, (n, model.flow.context_size)).copy()


# --------------------------------------------------------------------------------- fixtures

BUILDERS = {
    "realnvp": lambda: tfp_flows.realnvp((2,), hidden=8, num_couplings=2),
    "maf": lambda: tfp_flows.maf((3,), hidden=8, num_layers=2),
    "glow": lambda: tfp_flows.glow((4, 4, 1), num_scales=1, depth=1, hidden=8,
                                   num_levels=LEVELS),
    "labels": lambda: tfp_flows.realnvp((2,), hidden=8, num_couplings=2, num_classes=LABELS),
    "context": lambda: tfp_flows.maf((3,), hidden=8, num_layers=2,
                                     context_shape=(CONTEXT,)),
}
NAMES = sorted(BUILDERS)


@pytest.fixture(scope="module")
def models():
    """Each model compiled with Adam and fitted one step (ActNorm initialised, Adam built)."""
    built = {}
    for name, build in BUILDERS.items():
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(keras.optimizers.Adam(1e-3))
        x = clean_data(model, 16)
        model.fit(x, clean_context(model, 16), batch_size=16, epochs=1, verbose=0)
        built[name] = model
    return built


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """The Glow and the class-conditional model as loaded SavedModels."""
    root = tmp_path_factory.mktemp("properties_export")
    loaded = {}
    for name in ("glow", "labels"):
        path = tfp_flows.export_saved_model(models[name], root / name)
        loaded[name] = tf.saved_model.load(path)
    return loaded


# ------------------------------------------------------------------------------- strategies

FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
BAD_DTYPES = ("int8", "int32", "int64", "uint8", "bool", "complex64", "str")


@st.composite
def arrays(draw, shape: tuple[int, ...], max_batch: int = 4):
    """(input, valid): an input meant for `shape` events, valid or malformed.

    Valid inputs are floating-point arrays (numpy, or bfloat16 tensors, or nested lists) of
    shape (batch, *shape), batch 0 included, possibly holding NaN, Inf and extreme values.
    """
    kind = draw(st.sampled_from(["valid", "valid", "valid", "list", "dtype", "shape", "junk"]))
    batch = draw(st.integers(0, max_batch))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((batch, *shape)) * 2 + (8 if len(shape) == 3 else 0))
    if kind in ("valid", "list") and batch and draw(st.booleans()):
        special = draw(st.sampled_from(SPECIALS))
        mask = rng.random(base.shape) < draw(st.sampled_from([0.0, 0.3, 1.0]))
        base[mask] = special
    if kind == "valid":
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
        if dtype == "bfloat16":
            return tf.constant(base, tf.bfloat16), True
        with np.errstate(over="ignore"):
            return base.astype(dtype), True
    if kind == "list":
        return base.astype("float32").tolist(), batch > 0
    if kind == "dtype":
        dtype = draw(st.sampled_from(BAD_DTYPES))
        if dtype == "str":
            return base.astype(str), False
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(base).astype(dtype), False
    if kind == "shape":
        wrong = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
        if len(wrong) == len(shape) + 1 and wrong[1:] == tuple(shape):
            wrong = (*wrong, 1)
        return rng.standard_normal(wrong).astype("float32"), False
    return draw(st.sampled_from([None, 3.0, "x", b"bytes", {"x": np.zeros((2, *shape))},
                                 np.array([{"x": 1.0}, {"x": 2.0}]),
                                 [np.zeros(shape), np.zeros((1, *shape))], [], ()])), False


def as_float32(x) -> np.ndarray:
    if tf.is_tensor(x):
        return tf.cast(x, tf.float32).numpy()
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype="float64").astype("float32")


@st.composite
def contexts(draw, model, batch: int):
    """(context, valid) for `model` and a batch of `batch` examples."""
    missing_or_none = draw(st.integers(0, 7)) == 0
    if not model.is_conditional:
        if missing_or_none:
            return None, True
        return draw(st.sampled_from([np.zeros(batch, "int32"), np.zeros((batch, 2)), 1])), False
    if missing_or_none:
        return None, False
    kind = draw(st.sampled_from(["valid", "valid", "valid", "range", "dtype", "shape", "batch"]))
    labels = bool(model.flow.num_classes)
    rows = draw(st.sampled_from([batch, 1, None]))   # None: one context without a batch axis
    event = () if labels else (model.flow.context_size,)
    shape = event if rows is None else (rows, *event)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "valid":
        if labels:
            dtype = draw(st.sampled_from(["int8", "uint8", "int32", "int64"]))
            return rng.integers(0, model.flow.num_classes, shape).astype(dtype), True
        dtype = draw(st.sampled_from(["float16", "float32", "float64", "int32"]))
        return (rng.standard_normal(shape) * 2).astype(dtype), True
    if kind == "range":
        if not labels:
            return rng.standard_normal((*shape[:-1], model.flow.context_size + 1)), False
        value = draw(st.sampled_from([LABELS, LABELS + 4, -1, 2**31 - 1, 2**32, 2**32 + 1, 2**40,
                                      -2**40]))
        context = rng.integers(0, LABELS, shape).astype("int64")
        context.reshape(-1)[:1] = value
        return context, False
    if kind == "dtype":
        dtype = draw(st.sampled_from(["float32", "bool", "str"] if labels else ["bool", "str"]))
        return np.zeros(shape).astype(dtype), False
    if kind == "shape":
        return np.zeros((*(shape or (1,)), 2), "int32" if labels else "float32"), False
    wrong = batch + 1 if batch + 1 != 1 else 2
    return np.zeros((wrong, *event), "int32" if labels else "float32"), False


# ---------------------------------------------------------------------- density, encode/decode

def draw_case(data, models, shape_of):
    """A model, an input of its `shape_of(model)` shape and a context, each maybe malformed:
    (model, array, context, valid), valid when both are well formed."""
    model = models[data.draw(st.sampled_from(NAMES), label="model")]
    array, array_valid = data.draw(arrays(shape_of(model)), label="input")
    batch = len(array) if array_valid else 1
    context, context_valid = data.draw(contexts(model, batch), label="context")
    return model, array, context, array_valid and context_valid


def refused(method, error, valid, array, context) -> bool:
    """True when the call had to be refused (and was, clearly); False when it must answer."""
    if valid:
        return False
    assert error is not None, f"{method} accepted {brief(array)}, context={brief(context)}"
    assert_clear(error, method)
    return True


@SETTINGS
@given(data=st.data())
def test_log_prob_answers_correctly_or_refuses_clearly(models, data):
    model, x, context, valid = draw_case(data, models, lambda m: m.event_shape)
    result, error = attempt(model, lambda: model.log_prob(x, context))
    if refused("log_prob", error, valid, x, context):
        return
    result = expect_answer(result, error).numpy()
    x32 = as_float32(x)
    assert result.shape == (len(x32),) and result.dtype == np.float32
    reference = model.log_prob(x32, full_context(model, context, len(x32))).numpy()
    np.testing.assert_allclose(result, reference, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.all(np.isfinite(result[moderate(x32, model)])), "non-finite log_prob of clean x"
    assert not np.any(result == np.inf), "log_prob is +inf"


@FEW
@given(data=st.data())
def test_log_prob_of_extreme_finite_input_is_never_nan(models, data):
    """A finite input, however large, has a density: -inf in float32 at worst, never NaN
    (NaN would be a silent wrong answer)."""
    name = data.draw(st.sampled_from(NAMES), label="model")
    model = models[name]
    value = data.draw(st.sampled_from([1e10, -1e10, 1e15, 1e30, -1e30, 3e38]), label="value")
    x = clean_data(model, 3)
    x[1:] = value
    context = clean_context(model, 3)
    result = expect_answer(*attempt(model, lambda: model.log_prob(x, context))).numpy()
    assert not np.any(np.isnan(result)), f"log_prob of finite x = {value} is {result}"
    assert not np.any(result == np.inf)


@SETTINGS
@given(data=st.data())
def test_encode_and_decode_invert_each_other_or_refuse_clearly(models, data):
    model, x, context, valid = draw_case(data, models, lambda m: m.event_shape)
    z, error = attempt(model, lambda: model.encode(x, context))
    if refused("encode", error, valid, x, context):
        return
    z = expect_answer(z, error)
    x32 = as_float32(x)
    assert tuple(z.shape) == (len(x32), *model.latent_shape) and z.dtype == tf.float32
    # decode takes what encode takes: the latent in the caller's dtype (or as a list) too.
    if tf.is_tensor(x):
        z_in = tf.cast(z, x.dtype)
    elif isinstance(x, np.ndarray):
        z_in = z.numpy().astype(x.dtype)
    else:
        z_in = z.numpy().tolist()
    back = expect_answer(*attempt(model, lambda: model.decode(z_in, context))).numpy()
    assert back.shape == x32.shape and back.dtype == np.float32
    if (tf.as_dtype(x.dtype).name if hasattr(x, "dtype") else "float32") in ("float32",
                                                                            "float64"):
        rows = moderate(x32, model) & np.all(np.isfinite(rows_of(z.numpy())), axis=1)
        np.testing.assert_allclose(back[rows], x32[rows], rtol=1e-3, atol=1e-3)


@SETTINGS
@given(data=st.data())
def test_decode_answers_correctly_or_refuses_clearly(models, data):
    model, z, context, valid = draw_case(data, models, lambda m: m.latent_shape)
    x, error = attempt(model, lambda: model.decode(z, context))
    if refused("decode", error, valid, z, context):
        return
    x = expect_answer(x, error).numpy()
    z32 = as_float32(z)
    assert x.shape == (len(z32), *model.event_shape) and x.dtype == np.float32
    reference = model.decode(z32, full_context(model, context, len(z32))).numpy()
    np.testing.assert_allclose(x, reference, rtol=1e-5, atol=1e-5, equal_nan=True)
    rows = np.all(np.isfinite(rows_of(z32)) & (np.abs(rows_of(z32)) <= 4), axis=1)
    assert np.all(np.isfinite(x[rows]))


# ----------------------------------------------------------------------------------- sample

VALID_N = st.one_of(st.integers(1, 6), st.integers(1, 6).map(np.int32),
                    st.integers(1, 6).map(np.int64),
                    st.integers(1, 6).map(lambda n: tf.constant(n, tf.int32)),
                    st.integers(1, 6).map(lambda n: tf.constant(n, tf.int64)))
BAD_N = st.sampled_from([0, -1, -(2**40), 2.5, 3.0, True, False, "3", None, [2], 2**31, 2**33,
                         2**63, 10**20, tf.constant([2]), tf.constant(2.0), tf.constant(0),
                         tf.constant(-3), np.float64(2.0)])
VALID_TEMPERATURE = st.one_of(st.floats(1e-30, 1.0), st.sampled_from([1, 0.5, 1e-30]),
                              st.floats(1e-6, 1.0).map(np.float32))
BAD_TEMPERATURE = st.sampled_from([0, 0.0, -0.0, -1.0, -1e-30, math.nan, math.inf, -math.inf,
                                   True, "1", None, np.float32(np.nan), 1e300])
VALID_SEED = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1),
                       st.integers(-(2**31), 2**31).map(np.int64))
BAD_SEED = st.sampled_from([2.5, 1.0, True, "1", 2**63, 2**64, -(2**63) - 1, 2**70, [1]])


@SETTINGS
@given(data=st.data())
def test_sample_answers_correctly_or_refuses_clearly(models, data):
    name = data.draw(st.sampled_from(NAMES), label="model")
    model = models[name]
    bad = data.draw(st.sampled_from(["none", "n", "temperature", "seed", "context"]), label="bad")
    n = data.draw(BAD_N if bad == "n" else VALID_N, label="n")
    temperature = data.draw(BAD_TEMPERATURE if bad == "temperature" else VALID_TEMPERATURE,
                            label="temperature")
    seed = data.draw(BAD_SEED if bad == "seed" else VALID_SEED, label="seed")
    rows = int(n) if bad != "n" else 2
    if bad == "context":
        context, context_valid = data.draw(contexts(model, rows), label="context")
        bad = "none" if context_valid else bad
    else:
        context = clean_context(model, data.draw(st.sampled_from([rows, 1]), label="rows"))
    result, error = attempt(model, lambda: model.sample(n, context=context,
                                                        temperature=temperature, seed=seed))
    if bad != "none":
        assert error is not None, (f"sample accepted a bad {bad}: n={brief(n)}, "
                                   f"temperature={temperature!r}, seed={seed!r}, "
                                   f"context={brief(context)}")
        assert_clear(error, "sample")
        return
    x = expect_answer(result, error).numpy()
    assert x.shape == (rows, *model.event_shape) and x.dtype == np.float32
    assert np.all(np.isfinite(x)), f"non-finite samples at temperature {temperature}"
    if seed is not None:
        again = model.sample(int(n), context=context, temperature=float(temperature),
                             seed=int(seed)).numpy()
        np.testing.assert_array_equal(x, again)


@FEW
@given(temperature=st.sampled_from([1.5, 3.0, 10.0, 1e3, 1e10, 1e30]),
       name=st.sampled_from(NAMES), seed=st.integers(0, 100))
def test_sample_at_a_high_temperature_answers_or_refuses_clearly(models, temperature, name,
                                                                 seed):
    """Temperatures above 1 are accepted and give samples of the right shape and dtype; their
    values are not promised to be finite (sample's docstring): latents of 1e10 overflow any
    float32 flow."""
    model = models[name]
    x, error = attempt(model, lambda: model.sample(4, context=clean_context(model, 1),
                                                   temperature=temperature, seed=seed))
    if error is not None:
        assert_clear(error, "sample", "temperature")
        return
    assert tuple(x.shape) == (4, *model.event_shape) and x.dtype == tf.float32


# ---------------------------------------------------------------------- fit, evaluate, predict

@st.composite
def malformed_batches(draw, model):
    """(x, context, kind): training data that must be refused, or extreme data ("extreme")
    that may be refused or trained on, but must never leave non-finite weights."""
    kind = draw(st.sampled_from(["nonfinite", "nonfinite", "extreme", "empty", "shape",
                                 "dtype", "junk", "context"]))
    n = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    x = clean_data(model, n, seed)
    context = clean_context(model, n, seed)
    if kind == "nonfinite":
        x.reshape(-1)[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(
            [np.nan, np.inf, -np.inf]))
    elif kind == "extreme":
        x[:] = draw(st.sampled_from([1e10, 1e15, -1e15, 1e20, 1e30, -1e30, 3e38]))
    elif kind == "empty":
        x, context = x[:0], None if context is None else context[:0]
    elif kind == "shape":
        x = np.zeros(draw(st.sampled_from([(n, 5), (n,), (n, 4, 4), (n, 2, 2, 1), (n, 4, 4, 2),
                                           (n, 3, 1)])), "float32")
    elif kind == "dtype":
        x = np.zeros(x.shape, draw(st.sampled_from(["int32", "int64", "bool", "complex64"])))
    elif kind == "junk":
        x = draw(st.sampled_from([None, {"x": x}, x.astype(str), "data"]))
    elif model.is_conditional:
        context, valid = draw(contexts(model, n))
        if valid:
            context = None
    else:
        context = np.zeros(n, "int32")   # a context for an unconditional model
    return x, context, kind


TRAIN_NAMES = ("fit", "NaN", "Inf", "empty", "shape", "dtype", "context", "Data cardinality")


@SETTINGS
@given(data=st.data())
def test_fit_refuses_malformed_data_and_changes_nothing(models, data):
    name = data.draw(st.sampled_from(NAMES), label="model")
    model = models[name]
    x, context, kind = data.draw(malformed_batches(model), label="batch")
    before = snapshot(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # One batch, one step: the refused step is the whole call.
            model.fit(x, context, batch_size=8, epochs=1, verbose=0, shuffle=False)
    except Exception as error:  # noqa: BLE001 - the oracle judges every exception
        assert_unchanged(model, before)
        assert_clear(error, *TRAIN_NAMES)
        return
    assert kind == "extreme", f"fit accepted {kind} data: x={brief(x)}, context={brief(context)}"
    assert_finite_state(model)


@SETTINGS
@given(data=st.data())
def test_evaluate_and_predict_agree_with_log_prob_or_refuse_clearly(models, data):
    name = data.draw(st.sampled_from(NAMES), label="model")
    model = models[name]
    x, x_valid = data.draw(arrays(model.event_shape, max_batch=6), label="x")
    if x_valid and isinstance(x, list) or tf.is_tensor(x):
        x = as_float32(x)   # Keras takes arrays; lists and bfloat16 are log_prob's affair
    batch = len(x) if x_valid else 1
    context = clean_context(model, batch) if x_valid else clean_context(model, 1)
    method = data.draw(st.sampled_from(["evaluate", "predict"]), label="method")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "predict":
            inputs = x if context is None else (x, context)
            result, error = attempt(model, lambda: model.predict(inputs, batch_size=4,
                                                                 verbose=0))
        else:
            result, error = attempt(model, lambda: model.evaluate(
                x, context, batch_size=4, verbose=0, return_dict=True))
    names = (method, "log_prob", "empty", "no examples", "Data cardinality")
    if not x_valid:
        assert error is not None, f"{method} accepted x={brief(x)}"
        assert_clear(error, *names)
        return
    if batch == 0:
        # No examples: a clear error, or (predict) no values.
        if error is not None or method == "evaluate":
            assert error is not None, f"evaluate of no examples gave {result}"
            assert_clear(error, *names)
        else:
            assert np.shape(result) == (0,)
        return
    result = expect_answer(result, error)
    log_prob = model.log_prob(as_float32(x), context).numpy()
    if method == "predict":
        np.testing.assert_allclose(result, log_prob, rtol=1e-5, atol=1e-4, equal_nan=True)
    elif np.all(np.isfinite(log_prob)):
        # The mean over the examples, whatever the batch size (the last batch may be partial).
        assert result["loss"] == pytest.approx(-float(np.mean(log_prob.astype("float64"))),
                                               rel=1e-4, abs=1e-4)


@FEW
@given(data=st.data())
def test_actnorm_initialisation_refuses_bad_batches_and_never_stores_non_finite_values(data):
    """A first batch that is empty, malformed or non-finite is refused with the model left
    uninitialised and unchanged; a finite one, however extreme, initialises finite weights."""
    keras.utils.set_random_seed(0)
    model = BUILDERS["glow"]()
    x, _, kind = data.draw(malformed_batches(model), label="batch")
    if kind == "context":
        return
    before = snapshot(model)
    try:
        model.initialize_from_data(x)
    except Exception as error:  # noqa: BLE001 - the oracle judges every exception
        assert_unchanged(model, before)
        assert not bool(model.data_initialized.numpy())
        assert_clear(error, "fit", "initialisation", "first batch")
        return
    assert kind == "extreme", f"initialize_from_data accepted {kind} data: {brief(x)}"
    assert bool(model.data_initialized.numpy())
    assert_finite_state(model)


# --------------------------------------------------------------------------------- builders

FAMILY_DEFAULT_EVENT = {"nice": (4,), "realnvp": (4,), "nsf": (4,), "glow": (4,), "maf": (4,),
                        "iaf": (4,), "ffjord": (4,), "planar": (4,), "radial": (4,)}
SMALL = {"nice": {"hidden": 4, "num_hidden": 1, "num_couplings": 1},
         "realnvp": {"hidden": 4, "num_couplings": 1}, "nsf": {"hidden": 4, "num_couplings": 1},
         "glow": {"hidden": 4, "depth": 1}, "maf": {"hidden": 4, "num_layers": 1},
         "iaf": {"hidden": 4, "num_layers": 1}, "ffjord": {"hidden": 4, "num_hidden": 1},
         "planar": {"num_layers": 1}, "radial": {"num_layers": 1}}
# The built-in families (plugins that other tests register are not drawn).
BUILDER_FUNCTIONS = {name: getattr(tfp_flows, name) for name in SMALL}
MIN_SIZE = {"num_hidden": 0, "bins": 2}
BAD_SIZES = (0, -1, 2.5, 3.0, True, False, "3", np.float64(4.0), 1e9, [4])
BAD_BOOLEANS = ("no", "yes", "False", 1, 0, 1.0, None)
BAD_VALUES = {
    "num_levels": (1, 0, -3, 256.5, True, "17", 17.0),
    "alpha": (0, 0.5, -0.1, 1.0, math.nan, math.inf, True, "0.05"),
    "bound": (0, -1.0, math.nan, math.inf, True, "4"),
    "transform": ("affinee", 1, "SPLINE", True),
    "scale_fn": ("softplus", 1, True),
    "rtol": (0, -1e-5, math.nan, math.inf, True, "1e-5"),
    "atol": (0, -1e-5, math.nan, math.inf, True, "1e-5"),
    "integration_time": (0, -1.0, math.nan, math.inf, True, "1"),
    "solver": ("euler", "bdf", 1, True),
    "trace_estimator": ("rademacher", "EXACT", 1, True),
    "eval_trace_estimator": ("rademacher", "EXACT", 1, True),
    "preprocessing": ("x", 1, True),
    "num_classes": (1, 0, -2, 2.5, True, "3"),
    "context_shape": ((0,), (2, 2), (), 3, "3", (2.5,), (True,), (-1,)),
    "event_shape": ((), (0,), (-1,), (2.5,), (True, 2), "4", 4, None, (4, 4), (4, 4, 1, 1),
                    (4.0,), (4, 0, 1)),
}


def builder_arguments(family: str) -> list[str]:
    cls = families.FAMILIES.get(family)
    names = [argument.name for argument in cls.arguments_for(1)
             if not (family == "nsf" and argument.name == "scale_fn")]
    names += ["num_levels", "alpha", "reversible", "num_classes", "context_shape",
              "preprocessing", "event_shape", "colour"]
    if family == "glow":
        names += ["num_scales", "split_prior"]
    return names


def bad_values(family: str, argument: str):
    if argument in ("reversible", "lu", "split_prior"):
        return BAD_BOOLEANS if argument != "split_prior" else BAD_BOOLEANS[:-1]
    if argument in BAD_VALUES:
        values = BAD_VALUES[argument]
        if argument == "transform" and family == "nsf":
            values = (*values, "affine")
        return values
    if argument == "colour":
        return ("red", 1)
    minimum = MIN_SIZE.get(argument, 1)
    return (*(v for v in BAD_SIZES if not (type(v) is int and v >= minimum)), minimum - 1)


@SETTINGS
@given(data=st.data())
def test_builders_refuse_bad_arguments_naming_them(data):
    family = data.draw(st.sampled_from(sorted(SMALL)), label="family")
    argument = data.draw(st.sampled_from(builder_arguments(family)), label="argument")
    value = data.draw(st.sampled_from(bad_values(family, argument)), label="value")
    kwargs = dict(SMALL[family])
    event_shape = FAMILY_DEFAULT_EVENT[family]
    if argument in ("num_scales", "split_prior"):
        event_shape, kwargs = (4, 4, 1), {"hidden": 4, "depth": 1, "num_scales": 1}
    if argument in ("bins", "bound") and family != "nsf":
        kwargs["transform"] = "spline"
    if argument == "event_shape":
        event_shape = value
        kwargs.pop("num_couplings", None)
    else:
        kwargs[argument] = value
    try:
        model = BUILDER_FUNCTIONS[family](event_shape, **kwargs)
    except Exception as error:  # noqa: BLE001 - the oracle judges every exception
        assert_clear(error, argument, repr(value))
        return
    raise AssertionError(f"{family}({event_shape!r}, {argument}={value!r}) built "
                         f"{model.flow.get_config()}")


NUMPY_SCALARS = (np.int8, np.int16, np.int32, np.int64, np.uint8)


@FEW
@given(family=st.sampled_from(sorted(SMALL)), kind=st.sampled_from(NUMPY_SCALARS),
       as_list=st.booleans(), flag=st.sampled_from([np.bool_(True), np.bool_(False)]))
@pytest.mark.kernel_independent
def test_builders_take_numpy_integers_and_booleans_like_python_ones(family, kind, as_list,
                                                                    flag):
    """sizes given as numpy integers, event shapes as lists and booleans as numpy booleans
    build the same model as their Python counterparts."""
    if family in ("ffjord", "planar", "radial"):
        # They refuse reversible=True (FFJORD's adjoint saves memory already; planar and
        # radial layers have no closed-form or cheap inverse to rebuild activations with).
        flag = np.bool_(False)
    plain = dict(SMALL[family], reversible=bool(flag))
    numpy = {key: kind(value) for key, value in SMALL[family].items()}
    numpy["reversible"] = flag
    shape = FAMILY_DEFAULT_EVENT[family]
    event_shape = [kind(d) for d in shape] if as_list else tuple(kind(d) for d in shape)
    try:
        model = BUILDER_FUNCTIONS[family](event_shape, **numpy)
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{family}({event_shape!r}, **{numpy!r}) refused: "
                             f"{type(error).__name__}: {error}") from error
    reference = BUILDER_FUNCTIONS[family](shape, **plain)
    config, expected = model.flow.get_config(), reference.flow.get_config()
    config.pop("name"), expected.pop("name")
    assert config == expected
    assert [v.shape for v in model.weights] == [v.shape for v in reference.weights]


# ----------------------------------------------------------------------- SavedModel signatures

@SETTINGS
@given(data=st.data())
def test_exported_signatures_agree_with_the_model_or_refuse_clearly(models, exported, data):
    name = data.draw(st.sampled_from(sorted(exported)), label="model")
    model, loaded = models[name], exported[name]
    signatures = loaded.signatures
    before = [v.numpy().copy() for v in loaded.model_variables]
    method = data.draw(st.sampled_from(["log_prob", "encode", "decode"]), label="method")
    shape = model.latent_shape if method == "decode" else model.event_shape
    x, valid = data.draw(arrays(shape), label="input")
    # A server feeds tensors: Python objects that are no array are TensorFlow's affair.
    assume(tf.is_tensor(x) or isinstance(x, (np.ndarray, list)) and not (
        isinstance(x, np.ndarray) and x.dtype == object))
    if not tf.is_tensor(x):
        try:
            x = np.asarray(x)
        except ValueError:
            assume(False)
    dtype_ok = valid and x.dtype in (np.float32, tf.float32)
    batch = len(x) if valid else 1
    kwargs = {"z" if method == "decode" else "x": x}
    context, context_valid = None, True
    if model.is_conditional:
        context, context_valid = data.draw(contexts(model, batch), label="context")
        if context is not None:
            kwargs["context"] = context
    try:
        with np.errstate(all="ignore"):
            result = signatures[method](**{k: v if tf.is_tensor(v) else tf.constant(v)
                                           for k, v in kwargs.items()})
    except Exception as error:  # noqa: BLE001 - the oracle judges every exception
        result = error
    for old, variable in zip(before, loaded.model_variables, strict=True):
        assert np.array_equal(old, variable.numpy())
    context32 = context is not None and np.asarray(context).dtype == np.int32 and np.ndim(
        context) == 1
    accepted = dtype_ok and context_valid and (not model.is_conditional or context32)
    if not accepted:
        assert isinstance(result, Exception), (f"signature {method} accepted {brief(x)}, "
                                               f"context={brief(context)}")
        assert_clear(result, "shape", "expected", "context", "class labels", "batch size",
                     "required argument", graph=True)
        return
    if isinstance(result, Exception):
        raise AssertionError(f"signature {method} refused a valid input: {result}")
    out = result[{"log_prob": "log_prob", "encode": "z", "decode": "x"}[method]].numpy()
    own = getattr(model, method)(x, context).numpy()
    np.testing.assert_allclose(out, own, rtol=1e-4, atol=1e-4, equal_nan=True)


@SETTINGS
@given(data=st.data())
def test_exported_sample_agrees_with_the_model_or_refuses_clearly(models, exported, data):
    name = data.draw(st.sampled_from(sorted(exported)), label="model")
    model, signatures = models[name], exported[name].signatures
    n = data.draw(st.integers(-3, 5), label="n")
    temperature = data.draw(st.one_of(st.floats(1e-30, 1.0).map(np.float32), st.sampled_from(
        [0.0, -1.0, math.nan, math.inf, -math.inf])), label="temperature")
    seed = data.draw(st.integers(-(2**63), 2**63 - 1), label="seed")
    dtypes = data.draw(st.sampled_from([(tf.int32, tf.float32, tf.int64)] * 4 + [
        (tf.int64, tf.float32, tf.int64), (tf.int32, tf.float64, tf.int64),
        (tf.int32, tf.float32, tf.int32)]), label="dtypes")
    kwargs = {"n": tf.constant(n, dtypes[0]), "temperature": tf.constant(temperature, dtypes[1]),
              "seed": tf.constant(seed if dtypes[2] == tf.int64 else seed % 2**31, dtypes[2])}
    valid = n >= 1 and 0 < temperature < math.inf and dtypes == (tf.int32, tf.float32, tf.int64)
    if model.is_conditional:
        kwargs["context"] = tf.constant(clean_context(model, max(n, 1) if data.draw(
            st.booleans(), label="per-sample context") else 1), tf.int32)
    try:
        result = signatures["sample"](**kwargs)["x"].numpy()
    except Exception as error:  # noqa: BLE001 - the oracle judges every exception
        assert not valid, f"the signature refused a valid call: {error}"
        assert_clear(error, "sample expects", "expected", graph=True)
        return
    assert valid, "the signature accepted a bad n, temperature or dtype"
    assert result.shape == (n, *model.event_shape) and np.all(np.isfinite(result))
    own = model.sample(n, context=None if "context" not in kwargs else kwargs["context"],
                       temperature=float(np.float32(temperature)), seed=seed).numpy()
    np.testing.assert_allclose(result, own, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------- the training command

BASE_ARGV = {"flow": "realnvp", "dataset": "two_moons", "num_examples": "300", "hidden": "4",
             "num_couplings": "1", "epochs": "1", "batch_size": "64", "checkpoint_steps": "0"}
# Each changes one or two flags of BASE_ARGV so that the command must refuse to train.
BAD_FLAGS = [
    {"epochs": "0"}, {"epochs": "-2"}, {"batch_size": "0"}, {"batch_size": "-64"},
    {"hidden": "0"}, {"hidden": "-1"}, {"num_couplings": "0"}, {"num_examples": "0"},
    {"num_examples": "-5"}, {"patience": "-1"}, {"checkpoint_steps": "-1"}, {"seed": "-1"},
    {"learning_rate": "0"}, {"learning_rate": "-0.001"}, {"learning_rate": "nan"},
    {"learning_rate": "abc"}, {"epochs": "2.5"}, {"hidden": "many"}, {"flow": "vae"},
    {"flow": ""}, {"flow": "RealNVP"}, {"strategy": "bogus"}, {"temperatures": "0"},
    {"temperatures": "-1,0.5"}, {"temperatures": "a,b"}, {"temperatures": "nan"},
    {"dataset": "no_such_dataset"}, {"transform": "bogus"}, {"depth": "3"},
    {"num_scales": "0"}, {"num_layers": "-1"}, {"transform": "spline", "bins": "1"},
    {"transform": "spline", "bound": "-1"}, {"conditional": "maybe"}, {"colour": "red"},
    {"output_dir": "FILE"},
]
SIZE_FLAGS = ("epochs", "batch_size", "hidden", "num_couplings", "num_examples")


def _train_flag_names() -> list[str]:
    from absl import flags

    from tfp_flows.train import define_flags

    fresh = flags.FlagValues()
    define_flags(fresh)
    return list(fresh)


def run_command(argv: list[str]) -> int:
    """`python -m tfp_flows.train *argv` in this process; returns the exit code."""
    from absl import flags

    for name in _train_flag_names():
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    old_argv = sys.argv
    sys.argv = ["tfp_flows.train", *argv]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runpy.run_module("tfp_flows.train", run_name="__main__", alter_sys=False)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old_argv
    return 0


def check_command_refuses(root, capsys, bad: dict) -> None:
    """Runs the command with `bad` over BASE_ARGV: exit 2, one `error:` line, nothing written."""
    output_dir = root / "run"
    values = {**BASE_ARGV, "output_dir": str(output_dir), **bad}
    if values["output_dir"] == "FILE":
        output_dir = root / "file"
        output_dir.write_text("not a directory")
        values["output_dir"] = str(output_dir)
    capsys.readouterr()
    code = run_command([f"--{key}={value}" for key, value in values.items()])
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"exit code {code} for {bad}; stderr: {stderr[-800:]}"
    assert "Traceback" not in stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"stderr: {stderr[-800:]}"
    assert any(key in errors[0] for key in bad), errors[0]
    if "output_dir" not in bad:
        assert not os.path.exists(output_dir), "a refused command wrote its output_dir"
    else:
        assert output_dir.read_text() == "not a directory"


@pytest.mark.parametrize("bad", BAD_FLAGS, ids=lambda bad: ",".join(
    f"{key}={value}" for key, value in bad.items()))
def test_the_training_command_answers_a_bad_flag_with_one_error_line_and_exit_2(
        tmp_path, capsys, bad):
    check_command_refuses(tmp_path, capsys, bad)


@FEW
@given(flag=st.sampled_from(SIZE_FLAGS), value=st.one_of(
    st.integers(-(2**40), 0).map(str), st.floats(0.1, 1e3).map(lambda v: f"{v:.3f}"),
    st.text("abcxyz-+", min_size=1, max_size=4)))
def test_the_training_command_refuses_any_bad_size(tmp_path_factory, capsys, flag, value):
    check_command_refuses(tmp_path_factory.mktemp("command"), capsys, {flag: value})


# ------------------------------------------------------- the cases the properties turned up
# Each is a minimal case that a property above found (some only for some of its examples);
# written out so that they run on every version of the strategies.

HUGE_LABELS = (2**32, 2**32 + 1, 2**40, -(2**40), 2**63 - 1)


@pytest.mark.parametrize("label", HUGE_LABELS)
@pytest.mark.parametrize("method", ["log_prob", "encode", "decode", "sample", "fit"])
def test_found_class_labels_beyond_int32_are_refused_not_wrapped(models, method, label):
    """A label that wraps to a valid one when cast to int32 (2**32 -> 0) is out of range."""
    model = models["labels"]
    x, context = clean_data(model, 2), np.array([label, 0], "int64")
    calls = {"log_prob": lambda: model.log_prob(x, context),
             "encode": lambda: model.encode(x, context),
             "decode": lambda: model.decode(x, context),
             "sample": lambda: model.sample(2, context=context, seed=0),
             "fit": lambda: model.fit(x, context, batch_size=2, verbose=0)}
    result, error = attempt(model, calls[method])
    assert error is not None, f"{method} took label {label} as {label % 2**32}"
    assert_clear(error, method, "class labels", "fit")


@pytest.mark.parametrize("kwargs", [{"temperature": 1e39}, {"temperature": 1e300},
                                    {"seed": 2**63}, {"seed": -(2**63) - 1}, {"n": 2**31},
                                    {"n": 2**63}])
def test_found_sample_refuses_numbers_that_overflow_its_dtypes(models, kwargs):
    """temperature is float32, seed int64 and n int32 inside: values beyond them are refused
    with a message naming sample, not NaN samples or a conversion error."""
    model = models["realnvp"]
    arguments = {"n": 2, "temperature": 1.0, "seed": 0, **kwargs}
    result, error = attempt(model, lambda: model.sample(
        arguments["n"], temperature=arguments["temperature"], seed=arguments["seed"]))
    assert error is not None, f"sample({arguments}) gave {result.numpy().ravel()[:4]}"
    assert_clear(error, "sample")


@pytest.mark.parametrize("name", ["labels", "context"])
def test_found_predict_of_a_conditional_model_gives_log_prob(models, name):
    model = models[name]
    x, context = clean_data(model, 5), clean_context(model, 5)
    result = expect_answer(*attempt(model, lambda: model.predict((x, context), batch_size=4,
                                                                 verbose=0)))
    np.testing.assert_allclose(result, model.log_prob(x, context), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["realnvp", "glow"])
def test_found_evaluate_averages_over_examples_not_batches(models, name):
    """5 examples in batches of 4: the loss is the mean over the 5, not of the 2 batch means."""
    model = models[name]
    x = clean_data(model, 5, seed=3)
    result = model.evaluate(x, batch_size=4, verbose=0, return_dict=True)
    nll = -float(np.mean(model.log_prob(x).numpy().astype("float64")))
    assert result["loss"] == pytest.approx(nll, rel=1e-5)


@pytest.mark.parametrize("value", [1e20, 1e30, -1e30])
def test_found_actnorm_never_initialises_to_non_finite_values(value):
    keras.utils.set_random_seed(0)
    model = BUILDERS["glow"]()
    before = snapshot(model)
    try:
        model.initialize_from_data(np.full((4, *model.event_shape), value, "float32"))
    except REFUSALS as error:
        assert_unchanged(model, before)
        assert not bool(model.data_initialized.numpy())
        assert_clear(error, "fit", "initialisation", "first batch")
        return
    assert_finite_state(model)


def test_found_nice_takes_numpy_integer_sizes():
    model = tfp_flows.nice((4,), hidden=np.int64(4), num_hidden=np.int64(1),
                           num_couplings=np.int64(1))
    assert model.flow.hidden == 4


@pytest.mark.parametrize("case", ["fit None", "fit str", "evaluate scalar", "predict empty",
                                  "evaluate rank 1", "fit rank 3", "log_prob ragged",
                                  "decode ragged"])
def test_found_keras_entry_points_refuse_junk_clearly(models, case):
    """Inputs Keras' data adapters or numpy choke on get the library's own message."""
    model = models["realnvp"]
    calls = {
        "fit None": lambda: model.fit(None, verbose=0),
        "fit str": lambda: model.fit("data", verbose=0),
        "evaluate scalar": lambda: model.evaluate(np.float32(3.0), verbose=0),
        "predict empty": lambda: model.predict(np.zeros((0, 2), "float32"), verbose=0),
        "evaluate rank 1": lambda: model.evaluate(np.zeros(2, "float32"), verbose=0),
        "fit rank 3": lambda: model.fit(np.zeros((4, 2, 1), "float32"), verbose=0),
        "log_prob ragged": lambda: model.log_prob([np.zeros(2), np.zeros((1, 2))]),
        "decode ragged": lambda: model.decode([np.zeros(2), np.zeros((1, 2))]),
    }
    method = case.split()[0]
    result, error = attempt(model, calls[case])
    if case == "predict empty" and error is None:
        assert np.shape(result) == (0,)
        return
    assert error is not None, f"{case} gave {result}"
    assert_clear(error, method, "empty", "no examples")
