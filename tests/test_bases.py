"""Base distributions: exact densities, sampling and temperature, saving, export, plugins."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from exactness import move_off_init
from scipy.special import log_softmax, logsumexp
from scipy.stats import laplace, norm
from tensorflow_probability import distributions as tfd

import tfp_flows
from tfp_flows import bases

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
K = 3  # context size


@tfp_flows.register_base("test_laplace")
class Laplace(tfp_flows.Base):
    """A plugin's base: Laplace with a learned log-scale per latent entry."""

    def build(self, latent_shape):
        self.log_scale = self.add_weight(shape=latent_shape, initializer="zeros",
                                         name="log_scale")

    def distribution(self, context=None, temperature=1.0):
        scale = tf.exp(self.log_scale.value) * temperature
        return tfd.Independent(tfd.Laplace(tf.zeros(self.latent_shape), scale),
                               len(self.latent_shape))


def _conditional(spec):
    return spec.startswith("conditional")


BASES = {
    "normal": "normal",
    "diagonal_normal": "diagonal_normal",
    "gaussian_mixture": {"name": "gaussian_mixture", "num_components": 3},
    "conditional_diagonal_normal": "conditional_diagonal_normal",
    "test_laplace": "test_laplace",
}


def _model(name):
    keras.utils.set_random_seed(0)
    context = {"context_shape": (K,)} if _conditional(name) else {}
    return tfp_flows.realnvp((4,), num_couplings=2, hidden=8, base=BASES[name], **context)


def _inputs(model, n=5, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *model.event_shape)).astype("float32")
    context = rng.normal(size=(n, K)).astype("float32") if model.is_conditional else None
    return x, context


def _base_log_prob(base, z, context):
    """log p_base(z | context) in float64 numpy, from the base's parameters."""
    z = np.asarray(z, "float64")
    axes = tuple(range(1, z.ndim))
    if isinstance(base, Laplace):
        return laplace.logpdf(z, 0.0, np.exp(base.log_scale.numpy())).sum(axes)
    if isinstance(base, bases.GaussianMixture):
        loc, scale = base.loc.numpy(), np.exp(base.log_scale.numpy())
        per_component = norm.logpdf(z[:, None], loc, scale).sum(tuple(range(2, z.ndim + 1)))
        return logsumexp(log_softmax(base.logits.numpy()) + per_component, axis=1)
    if isinstance(base, bases.DiagonalNormal):
        return norm.logpdf(z, base.loc.numpy(), np.exp(base.log_scale.numpy())).sum(axes)
    if isinstance(base, bases.ConditionalDiagonalNormal):
        params = context @ base.dense.kernel.numpy() + base.dense.bias.numpy()
        mean, log_scale = np.split(params, 2, axis=-1)
        return norm.logpdf(z, mean.reshape(z.shape), np.exp(log_scale).reshape(z.shape)).sum(axes)
    return norm.logpdf(z).sum(axes)


@pytest.mark.parametrize("name", list(BASES))
def test_log_prob_is_the_base_density_of_the_latent_plus_the_log_det(name):
    model = _model(name)
    move_off_init(model.trainable_variables, 0.3)
    x, context = _inputs(model)
    bijector = model.conditional_bijector(context) if context is not None else model.bijector
    z = bijector.inverse(x).numpy()
    log_det = bijector.inverse_log_det_jacobian(x, event_ndims=1).numpy()
    expected = _base_log_prob(model.flow.base, z, context) + log_det
    np.testing.assert_allclose(model.log_prob(x, context), expected, rtol=1e-5, atol=1e-4)


def test_normal_gives_the_standard_normal_log_prob_bit_for_bit():
    """The default base computes what FlowModel's own N(0, I) computed before bases."""
    model = _model("normal")
    move_off_init(model.trainable_variables, 0.3)
    x, _ = _inputs(model)
    bijector = model.bijector
    z = bijector.inverse(x)
    before = (tfd.Sample(tfd.Normal(tf.constant(0.0), tf.constant(1.0, tf.float32)),
                         sample_shape=model.latent_shape).log_prob(z)
              + bijector.inverse_log_det_jacobian(x, event_ndims=1))
    np.testing.assert_array_equal(model.computations()["log_prob"](tf.constant(x)), before)
    np.testing.assert_array_equal(model.log_prob(x), before)


@pytest.mark.parametrize("name", list(BASES))
def test_samples_and_temperature(name):
    model = _model(name)
    move_off_init(model.trainable_variables, 0.3)
    _, context = _inputs(model, n=4)
    one = None if context is None else context[0]
    samples = model.sample(4, context=one, temperature=0.5, seed=3)
    assert samples.shape == (4, 4) and samples.dtype == tf.float32
    assert np.isfinite(samples.numpy()).all()
    checked = None if context is None else tf.constant(context)
    # The samples are the flow's image of the base's latents at that temperature.
    np.testing.assert_allclose(
        model.sample(4, context=context, temperature=0.5, seed=3),
        model.decode(model.latent_noise(4, 0.5, 3, checked), context), rtol=1e-5, atol=1e-5)
    if name == "gaussian_mixture":
        return  # test_mixture_temperature_scales_each_component_about_its_mean
    # Temperature T multiplies the base's scales: the latents' deviation from the mean.
    cold, warm = (model.latent_noise(4, t, 3, checked).numpy() for t in (0.5, 1.0))
    mean = model.base_distribution(context).mean().numpy() if name != "test_laplace" else 0.0
    np.testing.assert_allclose(cold - mean, 0.5 * (warm - mean), rtol=1e-5, atol=1e-6)


def test_mixture_temperature_scales_each_component_about_its_mean():
    model = _model("gaussian_mixture")
    move_off_init(model.trainable_variables, 0.3)
    cold, warm = (model.latent_noise(64, t, 5).numpy() for t in (0.3, 1.0))
    loc = model.flow.base.loc.numpy()
    # Each latent keeps its component (the same seed picks it) and shrinks towards its mean.
    gaps = np.abs((cold[:, None] - loc) - 0.3 * (warm[:, None] - loc)).max(axis=-1)
    assert (gaps.min(axis=1) < 1e-5).all()
    assert len(set(gaps.argmin(axis=1))) == 3  # every component is drawn


def test_normal_latent_noise_is_the_documented_stateless_normal():
    model = _model("normal")
    expected = tf.random.stateless_normal((3, 4), seed=[7, 0]) * 0.7
    np.testing.assert_array_equal(model.latent_noise(3, 0.7, 7), expected)


@pytest.mark.parametrize("name", list(BASES))
def test_base_weights_are_model_weights_and_distribution_variables(name):
    model = _model(name)
    base = model.flow.base
    ids = {id(v.value) for v in model.trainable_variables}
    assert {id(v.value) for v in base.trainable_variables} <= ids
    _, context = _inputs(model)
    distribution = (model.conditional_distribution(context) if context is not None
                    else model.distribution)
    listed = {id(v) for v in distribution.trainable_variables}
    assert {id(v.value) for v in base.trainable_variables} <= listed
    assert len(base.trainable_variables) == {"normal": 0, "gaussian_mixture": 3,
                                             "test_laplace": 1}.get(name, 2)


@pytest.mark.parametrize("name", list(BASES))
@pytest.mark.kernel_independent
def test_keras_file_reloads_with_the_same_log_prob(name, tmp_path):
    model = _model(name)
    move_off_init(model.trainable_variables, 0.3)
    x, context = _inputs(model)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.flow.base) is type(model.flow.base)
    np.testing.assert_array_equal(loaded.log_prob(x, context), model.log_prob(x, context))


def test_gradients_reach_the_base_in_fit():
    model = _model("diagonal_normal")
    x, _ = _inputs(model, n=32)
    model.compile(keras.optimizers.SGD(0.1))
    model.fit(x, batch_size=16, epochs=1, verbose=0)
    assert np.abs(model.flow.base.loc.numpy()).max() > 0


LOADER = textwrap.dedent("""
    import sys
    for blocked in ("tensorflow_probability", "tfp_flows", "keras", "tf_keras"):
        sys.modules[blocked] = None
    import numpy as np
    import tensorflow as tf

    for export_dir in sys.argv[1:]:
        inputs = dict(np.load(export_dir + "_inputs.npz"))
        signature = tf.saved_model.load(export_dir).signatures["log_prob"]
        out = signature(**{k: tf.constant(v) for k, v in inputs.items()})
        np.save(export_dir + "_log_prob.npy", out["log_prob"].numpy())
""")


@pytest.mark.kernel_independent
def test_export_loads_without_tfp_and_gives_the_same_log_prob(tmp_path):
    models = {}
    for name in BASES:
        model = _model(name)
        move_off_init(model.trainable_variables, 0.3)
        x, context = _inputs(model)
        path = str(tmp_path / name)
        tfp_flows.export_saved_model(model, path)
        np.savez(path + "_inputs.npz", x=x, **({} if context is None else {"context": context}))
        models[path] = model.log_prob(x, context).numpy()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", LOADER, *models], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for path, log_prob in models.items():
        np.testing.assert_allclose(np.load(path + "_log_prob.npy"), log_prob, rtol=1e-5,
                                   atol=1e-5, err_msg=path)


# ------------------------------------------------------------------------ Glow's class prior

def test_a_conditional_glow_keras_file_from_before_bases_loads_with_its_log_prob():
    """tests/data/conditional_glow_v0.keras was written by the code before bases (its prior a
    step of the top level, the dense map under `.../steps/conditional_prior/dense`): glow((4,
    4, 1), num_scales=2, depth=1, hidden=4, num_levels=4, num_classes=3), every trainable
    weight moved by 0.1 N(0, 1) from its initial value, its log_prob saved beside it."""
    expected = np.load(DATA / "conditional_glow_v0_expected.npz")
    model = keras.saving.load_model(DATA / "conditional_glow_v0.keras")
    base = model.flow.base
    assert isinstance(base, bases.ConditionalDiagonalNormal) and base.num_scales == 2
    assert np.abs(base.dense.kernel.numpy()).min() > 0  # the prior's weights, not zeros
    np.testing.assert_allclose(model.log_prob(expected["x"], expected["labels"]),
                               expected["log_prob"], rtol=1e-6, atol=1e-5)
    # The prior's weights stay last, where they were: optimizer states saved then still fit.
    assert [v.path for v in model.trainable_variables][-2:] == [
        v.path for v in base.trainable_variables]

    # A model built by the constructor (as a resumed training run builds it) reads the file.
    fresh = tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=4, num_levels=4,
                           num_classes=3)
    fresh.load_weights(DATA / "conditional_glow_v0.keras")
    np.testing.assert_allclose(fresh.log_prob(expected["x"], expected["labels"]),
                               expected["log_prob"], rtol=1e-6, atol=1e-5)


def test_a_glow_given_the_top_prior_as_base_gives_the_class_prior_numbers():
    """base=ConditionalDiagonalNormal(num_scales=2) passed explicitly is Glow's class-conditional
    prior: given the weights of the file written before bases (read by the default conditional
    Glow, whose layout it has), the same log_prob as then; with any weights, the same log_prob
    and the same samples as the default conditional Glow."""
    expected = np.load(DATA / "conditional_glow_v0_expected.npz")
    x, labels = expected["x"], expected["labels"]
    sizes = {"num_scales": 2, "depth": 1, "hidden": 4, "num_levels": 4, "num_classes": 3}
    default = tfp_flows.glow((4, 4, 1), **sizes)
    default.load_weights(DATA / "conditional_glow_v0.keras")
    explicit = tfp_flows.glow((4, 4, 1), **sizes,
                              base=bases.ConditionalDiagonalNormal(num_scales=2))
    configs = [{k: v for k, v in m.flow.get_config().items() if k != "name"}
               for m in (default, explicit)]
    assert configs[0] == configs[1]
    assert [v.shape for v in default.weights] == [v.shape for v in explicit.weights]
    explicit.set_weights(default.get_weights())
    np.testing.assert_allclose(explicit.log_prob(x, labels), expected["log_prob"], rtol=1e-6,
                               atol=1e-5)
    # Off the file's weights too, the prior's included.
    move_off_init(explicit.trainable_variables, 0.3)
    default.set_weights(explicit.get_weights())
    np.testing.assert_array_equal(default.log_prob(x, labels), explicit.log_prob(x, labels))
    classes = np.array([0, 1, 2])
    np.testing.assert_array_equal(default.sample(3, classes, seed=4),
                                  explicit.sample(3, classes, seed=4))


def test_conditional_glow_prior_is_per_channel_of_the_top_latent():
    """One mean and log-scale per channel of the top scale, on the entries it keeps."""
    where = bases.top_scale_channels((8, 8, 2), 2)
    # 2 scales on (8, 8, 2): the first factors out half (4, 4, 4); the top latent is the
    # second's (2, 2, 16), the other half of the 128 entries.
    assert sorted(np.unique(where)) == [-1, *range(16)]
    assert (where >= 0).sum() == 2 * 2 * 16
    # The top latent's entries are those the last squeeze-and-split keeps.
    marker = tfp_flows.bijectors.Squeeze().inverse(tf.concat(
        [tfp_flows.bijectors.Squeeze().inverse(tf.ones((2, 2, 16))), tf.zeros((4, 4, 4))],
        axis=-1)).numpy()
    np.testing.assert_array_equal(where >= 0, marker > 0)


@pytest.mark.kernel_independent
def test_old_configs_without_a_base_load_as_before():
    realnvp = tfp_flows.RealNVP((4,), num_couplings=2, hidden=8)
    config = realnvp.get_config()
    assert config.pop("base") == {"name": "normal"}
    assert isinstance(tfp_flows.RealNVP.from_config(config)._base, bases.Normal)
    glow = tfp_flows.Glow((4, 4, 1), num_scales=2, depth=1, hidden=4, num_classes=3)
    config = glow.get_config()
    assert config.pop("base") == {"name": "conditional_diagonal_normal", "num_scales": 2}
    restored = tfp_flows.Glow.from_config(config)._base
    assert isinstance(restored, bases.ConditionalDiagonalNormal) and restored.num_scales == 2


def test_a_conditional_glow_takes_another_base():
    model = tfp_flows.glow((4, 4, 1), num_scales=2, depth=1, hidden=4, num_classes=3,
                           base="normal")
    assert isinstance(model.flow.base, bases.Normal)
    assert [type(s).__name__ for s in model.flow.steps[-1].steps] == ["GlowSteps"]


# ---------------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("spec, error, message", [
    ("no_such_base", ValueError, "unknown base 'no_such_base'"),
    ({"name": "gaussian_mixture", "num_components": 0}, ValueError, "num_components >= 1"),
    ({"name": "gaussian_mixture", "components": 2}, ValueError, "keyword arguments .*components"),
    ({"name": "conditional_diagonal_normal", "num_scales": 0}, ValueError, "num_scales"),
    (3, TypeError, "base must be a registered name"),
    (tfd.Normal(0.0, 1.0), TypeError, "base must be a registered name"),
])
def test_bad_bases_are_refused(spec, error, message):
    with pytest.raises(error, match=message):
        tfp_flows.realnvp((4,), num_couplings=2, hidden=8, base=spec)


def test_a_conditional_base_needs_a_conditional_flow():
    with pytest.raises(ValueError, match="is conditional .* needs a conditional flow"):
        tfp_flows.realnvp((4,), num_couplings=2, hidden=8, base="conditional_diagonal_normal")


def test_a_top_scale_prior_needs_a_matching_image_latent():
    with pytest.raises(ValueError, match=r"needs \(H, W, C\) latents"):
        tfp_flows.realnvp((4,), num_couplings=2, hidden=8, context_shape=(K,),
                          base=bases.ConditionalDiagonalNormal(num_scales=2))


def test_bases_refuse_contexts_they_do_not_take():
    model = _model("diagonal_normal")
    with pytest.raises(ValueError, match="unconditional and takes no context"):
        model.flow.base.distribution(tf.zeros((2, K)))
    conditional = _model("conditional_diagonal_normal")
    with pytest.raises(ValueError, match="needs the context vectors"):
        conditional.flow.base.distribution()
    with pytest.raises(ValueError, match=r"context vectors of shape \(\.\.\., 3\)"):
        conditional.flow.base.distribution(tf.zeros((2, 5)))


def test_one_base_serves_one_flow():
    base = bases.DiagonalNormal()
    tfp_flows.realnvp((4,), num_couplings=2, hidden=8, base=base)
    with pytest.raises(ValueError, match="give each flow its own base"):
        tfp_flows.realnvp((6,), num_couplings=2, hidden=8, base=base)


def test_an_unregistered_base_works_but_cannot_be_saved():
    class Unregistered(bases.Normal):
        pass

    model = tfp_flows.realnvp((4,), num_couplings=2, hidden=8, base=Unregistered())
    assert model.log_prob(np.zeros((1, 4), "float32")).shape == (1,)
    with pytest.raises(ValueError, match="is not registered"):
        model.flow.get_config()


# --------------------------------------------------------------------------- the guide's numbers

def test_the_mixture_bases_guide_quotes_its_json():
    record = json.loads((ROOT / "experiments" / "results" / "mixture_base.json").read_text())
    guide = " ".join((ROOT / "docs" / "guides" / "mixture_bases.md").read_text().split())
    mixture, normal = record["bases"]["gaussian_mixture"], record["bases"]["normal"]
    assert (f"gets to {mixture['test_nll_nats']:.3f} nats against {normal['test_nll_nats']:.3f} "
            f"for the standard normal, on an entropy of {record['data_entropy_nats']:.3f}"
            in guide)
    assert (f"the same {record['steps']:,} batches of {record['batch_size']} "
            f"({record['epochs']} epochs)") in guide
    assert f"{record['train_points']:,} training and {record['test_points']:,} test" in guide
    weights = sorted(record["learned_mixture"]["weights"], reverse=True)
    assert "most of the mass on four components" in guide and sum(weights[:4]) > 0.9
