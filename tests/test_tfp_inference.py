"""model.distribution in TFP's variational inference: its variables are the model's own."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows

tfd = tfp.distributions

BUILDERS = {"iaf": tfp_flows.iaf, "maf": tfp_flows.maf}
# A correlated-free but anisotropic, shifted Gaussian: far from the flows' N(0, I) start.
TARGET = tfd.MultivariateNormalDiag(loc=[1.0, -1.0], scale_diag=[0.5, 2.0])


def _model(name: str) -> tfp_flows.FlowModel:
    keras.utils.set_random_seed(0)
    return BUILDERS[name]((2,), hidden=8, num_layers=2)


def _elbo(q, n: int = 4096) -> float:
    """Monte Carlo ELBO of q against TARGET with a fixed seed."""
    z, log_q = q.experimental_sample_and_log_prob(n, seed=(0, 7))
    return float(tf.reduce_mean(TARGET.log_prob(z) - log_q))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_distribution_trainable_variables_are_the_models_as_tf_variables(name):
    model = _model(name)
    dist_variables = model.distribution.trainable_variables
    assert len(model.trainable_variables) > 0
    assert len(dist_variables) == len(model.trainable_variables)
    assert all(isinstance(v, tf.Variable) for v in dist_variables)
    # The very variables underneath the model's Keras variables, not copies.
    assert ({v.ref() for v in dist_variables}
            == {v.value.ref() for v in model.trainable_variables})


def test_fit_surrogate_posterior_trains_the_models_own_weights():
    model = _model("iaf")
    x = tf.constant([[0.5, -1.0], [2.0, 1.0]])
    weights_before = [v.numpy().copy() for v in model.trainable_variables]
    log_prob_before = model.log_prob(x).numpy()
    elbo_before = _elbo(model.distribution)

    q = model.distribution
    losses = tfp.vi.fit_surrogate_posterior(
        TARGET.log_prob, q, optimizer=keras.optimizers.Adam(0.02), num_steps=40,
        sample_size=64, seed=(0, 1), trainable_variables=q.trainable_variables).numpy()

    assert np.all(np.isfinite(losses))
    changed = [not np.allclose(before, v.numpy())
               for before, v in zip(weights_before, model.trainable_variables, strict=True)]
    assert all(changed), f"unchanged variables: {changed.count(False)} of {len(changed)}"
    assert not np.allclose(model.log_prob(x).numpy(), log_prob_before)
    # A fresh view of the distribution sees the trained weights.
    np.testing.assert_allclose(model.distribution.log_prob(x).numpy(), model.log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-5)
    # KL(N(0, I) || TARGET) = 3.25 nats at the start; the fit must recover most of it.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    assert _elbo(model.distribution) > elbo_before + 2.0


def _saturated(name: str, raw_log_scale: float) -> tfp_flows.FlowModel:
    """A 2-layer flow whose MADEs all output `raw_log_scale` as the raw log-scale, as weights
    that a diverging variational fit reaches."""
    model = _model(name)
    for made in model.flow.conditioners:
        bias = made.biases[-1]
        # Output columns are (position, parameter): parameter 1 is the raw log-scale.
        bias.assign(np.tile([0.0, raw_log_scale], bias.shape[0] // 2).astype("float32"))
    return model


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("raw_log_scale", [-100.0, 100.0])
def test_autoregressive_scale_is_soft_clamped_by_default(name, raw_log_scale):
    # Unbounded (the paper's exp), a raw log-scale of +-100 overflows float32 in one direction:
    # samples or densities of inf, the NaN losses of variational fits to Neal's funnel.
    model = _saturated(name, raw_log_scale)
    x = model.sample(64, seed=1)
    log_prob = model.log_prob(x).numpy()
    data_log_prob = model.log_prob(np.array([[0.5, -1.0], [2.0, 1.0]], "float32")).numpy()
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(log_prob))
    assert np.all(np.isfinite(data_log_prob))
    # Two layers of two dimensions, each log-scale within +-3: |log det| <= 12 in all.
    base = tfd.MultivariateNormalDiag(loc=[0.0, 0.0])
    z = model.encode(x)
    assert np.all(np.abs(log_prob - base.log_prob(z).numpy()) <= 12.0 + 1e-3)


def test_unbounded_scale_stays_available_and_old_saved_models_keep_it():
    model = tfp_flows.maf((2,), hidden=8, num_layers=1, scale_fn="exp")
    assert model.flow.get_config()["transform"] == {"name": "affine", "scale_fn": "exp"}
    assert tfp_flows.maf((2,), hidden=8, num_layers=1).flow.get_config()["transform"] == (
        {"name": "affine", "scale_fn": "soft_clamp"})
    # A MAF saved before scale_fn existed (flat "transform": "affine", or no transform at all)
    # was trained with the unbounded scale.
    config = tfp_flows.maf((2,), hidden=8, num_layers=1).flow.get_config()
    for old in ({**config, "transform": "affine"}, {k: v for k, v in config.items()
                                                  if k != "transform"}):
        assert tfp_flows.MAF.from_config(old).transform.scale_fn == "exp"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_sigmoid_scale_is_refused_for_autoregressive_flows(name):
    # Glow's sigmoid only shrinks data -> latent: an IAF could not widen its base.
    with pytest.raises(ValueError, match="not 'sigmoid'"):
        BUILDERS[name]((2,), hidden=8, num_layers=1, scale_fn="sigmoid")
