"""TFP's shape contract: every family as a `tfd.Distribution` that TFP code can rely on.

Any sample shape ((), (n,), (a, b)) in `sample` and `log_prob`, conditional forms included;
a prior inside both `JointDistribution` kinds (sample, log_prob, pinning, XLA); the flow's
bijector lists the model's variables and has a dtype. Weights are moved off their initial
values first (the conditioners start at zero, which would hide a wrong pairing of rows).
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init
from tensorflow_probability import distributions as tfd

import tfp_flows

K = 2
FAMILIES = {
    "nice": lambda shape, **c: tfp_flows.nice(shape, num_couplings=2, hidden=8, num_hidden=1,
                                              **c),
    # Images: RealNVP and NSF at one scale (4 checkerboard couplings); Glow's two scales
    # cover the squeeze, the split and its learned prior.
    "realnvp": lambda shape, **c: tfp_flows.realnvp(shape, hidden=8, num_hidden=1, **(
        {"num_scales": 1} if len(shape) == 3 else {"num_couplings": 2}), **c),
    "nsf": lambda shape, **c: tfp_flows.nsf(shape, hidden=8, num_hidden=1, bins=3, **(
        {"num_scales": 1} if len(shape) == 3 else {"num_couplings": 2}), **c),
    "glow": lambda shape, **c: tfp_flows.glow(shape, hidden=8, **(
        {"num_scales": 2, "depth": 1} if len(shape) == 3 else {"depth": 2}), **c),
    "maf": lambda shape, **c: tfp_flows.maf(shape, num_layers=2, hidden=8, **c),
    "iaf": lambda shape, **c: tfp_flows.iaf(shape, num_layers=2, hidden=8, **c),
}
IMAGE_FAMILIES = ("nice", "realnvp", "nsf", "glow")
CASES = ([(name, (3,)) for name in FAMILIES]
         + [(name, (4, 4, 1)) for name in IMAGE_FAMILIES])
IDS = [f"{name}-{'image' if len(shape) == 3 else 'vector'}" for name, shape in CASES]
# The slower joint-distribution checks: every family on vectors, Glow on images (the multi-scale
# levels, the split prior, the conditional prior), RealNVP's checkerboard couplings.
JOINT_CASES = [(name, (3,)) for name in FAMILIES] + [("glow", (4, 4, 1)),
                                                       ("realnvp", (4, 4, 1))]
JOINT_IDS = [f"{name}-{'image' if len(shape) == 3 else 'vector'}" for name, shape in JOINT_CASES]


@functools.cache
def _model(name: str, shape: tuple, conditional: bool = False) -> tfp_flows.FlowModel:
    keras.utils.set_random_seed(0)
    model = FAMILIES[name](shape, **({"context_shape": (K,)} if conditional else {}))
    move_off_init(model.trainable_variables, 0.2, seed=1)
    return model


def _distribution(model, context=None):
    return model.distribution if context is None else model.conditional_distribution(context)


def _context(seed: int, *batch: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*batch, K)).astype("float32")


@pytest.mark.parametrize(
    ("name", "shape", "conditional"),
    [(*case, False) for case in CASES] + [(*case, True) for case in JOINT_CASES],
    ids=[f"{i}-plain" for i in IDS] + [f"{i}-conditional" for i in JOINT_IDS])
def test_sample_and_log_prob_take_any_sample_shape(name, shape, conditional):
    model = _model(name, shape, conditional)
    context = _context(0) if conditional else None
    dist = _distribution(model, context)
    rows = []
    for sample_shape in [(), (3,), (2, 3)]:
        x = dist.sample(sample_shape, seed=(0, len(sample_shape)))
        assert x.shape == (*sample_shape, *shape)
        # A fresh tensor: TFP's cache would hand back the sampled latent, not invert x.
        log_prob = dist.log_prob(tf.identity(x))
        assert log_prob.shape == sample_shape
        assert np.all(np.isfinite(log_prob))
        # The same numbers as the model's own batch path, row by row.
        flat = tf.reshape(x, (-1, *shape))
        np.testing.assert_allclose(tf.reshape(log_prob, [-1]), model.log_prob(flat, context),
                                   rtol=1e-4, atol=1e-4)
        rows.append(flat)
    assert not np.allclose(rows[1][0], rows[1][1])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_batch_of_contexts_pairs_with_the_last_batch_axis(name):
    model = _model(name, (3,), True)
    contexts = _context(1, 3)
    x = np.random.default_rng(2).normal(size=(2, 3, 3)).astype("float32")
    log_prob = model.conditional_distribution(contexts).log_prob(x)
    assert log_prob.shape == (2, 3)
    expected = model.log_prob(x.reshape(6, 3), np.tile(contexts, (2, 1)))
    np.testing.assert_allclose(tf.reshape(log_prob, [-1]), expected, rtol=1e-4, atol=1e-4)
    # Refused by the model's pairing check before the conditioners' own.
    with pytest.raises(ValueError, match="contexts pairs with the inputs' last batch axis"):
        model.conditional_distribution(contexts).log_prob(x[:, :2])


def _likelihood(x, event_rank):
    return tfd.Normal(tf.reduce_sum(x, axis=list(range(-event_rank, 0))), 1.0)


# `JointDistributionCoroutineAutoBatched` runs a batch of values through `tf.vectorized_map`
# unless told not to. Two flows cannot take that path, for reasons outside this library:
# TFP's `RationalQuadraticSpline` with per-example parameters gives wrong numbers under
# `tf.vectorized_map` (TFP's spline alone shows it), and XLA cannot compile the vectorized
# while loop of `tfb.MaskedAutoregressiveFlow.forward`, IAF's density. They are checked without it.
NOT_VECTORIZABLE = ("nsf", "iaf")


def _joints(prior, event_rank, vectorize: bool = True):
    sequential = tfd.JointDistributionSequential(
        [prior, lambda x: _likelihood(x, event_rank)])

    def model():
        x = yield tfd.JointDistributionCoroutineAutoBatched.Root(prior)
        yield _likelihood(x, event_rank)

    coroutine = tfd.JointDistributionCoroutineAutoBatched(model, use_vectorized_map=vectorize)
    return {"sequential": sequential, "coroutine": coroutine}


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
@pytest.mark.parametrize(("name", "shape"), JOINT_CASES, ids=JOINT_IDS)
@pytest.mark.kernel_independent
def test_a_prior_in_both_joint_distributions(name, shape, conditional):
    model = _model(name, shape, conditional)
    prior = _distribution(model, _context(0) if conditional else None)
    rank = len(shape)
    joints = _joints(prior, rank, vectorize=name not in NOT_VECTORIZABLE)
    for kind, joint in joints.items():
        x, y = joint.sample(seed=(1, 2))
        assert x.shape == shape and y.shape == ()
        expected = prior.log_prob(x) + _likelihood(x, rank).log_prob(y)
        np.testing.assert_allclose(joint.log_prob([x, y]), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=kind)
        pinned = joint.experimental_pin([None, y])
        np.testing.assert_allclose(pinned.unnormalized_log_prob([x]), expected, rtol=1e-4,
                                   atol=1e-4, err_msg=kind)
    xs, ys = joints["sequential"].sample(4, seed=(1, 3))
    assert xs.shape == (4, *shape) and ys.shape == (4,)
    expected = prior.log_prob(xs) + _likelihood(xs, rank).log_prob(ys)
    for kind, joint in joints.items():
        np.testing.assert_allclose(joint.log_prob([xs, ys]), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=kind)
    if conditional or rank == 3:
        return  # XLA compiles take seconds: once per family, on vectors.

    # One compilation for both kinds: samples, densities and a pinned density.
    @tf.function(jit_compile=True)
    def compiled(xs, ys):
        draws = joints["sequential"].sample(2, seed=(3, 4))[0]
        pinned = joints["coroutine"].experimental_pin([None, ys])
        return draws, [*(joint.log_prob([xs, ys]) for joint in joints.values()),
                       pinned.unnormalized_log_prob([xs])]

    draws, log_probs = compiled(xs, ys)
    assert draws.shape == (2, *shape) and np.all(np.isfinite(draws))
    for got in log_probs:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("name", "shape"), CASES, ids=IDS)
def test_the_bijector_alone_lists_the_variables_and_has_a_dtype(name, shape):
    model = _model(name, shape)
    bijector = model.distribution.bijector
    assert bijector.dtype == tf.float32
    base = tfd.Sample(tfd.Normal(0.0, 1.0), model.latent_shape)
    own = tfd.TransformedDistribution(base, bijector)
    variables = own.trainable_variables
    assert all(isinstance(v, tf.Variable) for v in variables)
    assert {v.ref() for v in variables} == {v.value.ref() for v in model.trainable_variables}
    assert {v.ref() for v in bijector.trainable_variables} == {v.ref() for v in variables}
    # A fresh tensor: TFP's cache (keyed by parameters, which these bijectors share) would
    # return the sampled latent without a computation to differentiate.
    x = tf.identity(model.distribution.sample(4, seed=(5, 6)))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(own.log_prob(x))
    gradients = tape.gradient(loss, variables)
    assert all(g is not None for g in gradients)
    # Eager against compiled: float32 summation order differs (a spline's bin widths and
    # derivatives pass it on; 6e-5 seen on an NSF image), so the file's usual 1e-4.
    np.testing.assert_allclose(own.log_prob(x), model.log_prob(x), rtol=1e-4, atol=1e-4)
