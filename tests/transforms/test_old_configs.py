"""Configs written before transforms were pluggable (flat "transform": name with its options
beside it) still build the same flows: same transform, same weights, same density."""

import keras
import numpy as np
import pytest

import tfp_flows

BASE = {"num_levels": None, "preprocessing": "logit", "alpha": 0.05, "reversible": False,
        "context_shape": None, "num_classes": None}
# (family, the config as the previous release wrote it, the transform it holds now)
OLD = {
    "realnvp": (tfp_flows.RealNVP,
                {**BASE, "event_shape": [4], "num_couplings": 2, "num_scales": None,
                 "hidden": 8, "num_hidden": 2, "transform": "affine", "scale_fn": "tanh"},
                {"name": "affine", "scale_fn": "tanh"}),
    "realnvp_additive": (tfp_flows.RealNVP,
                         {**BASE, "event_shape": [4], "num_couplings": 2, "num_scales": None,
                          "hidden": 8, "num_hidden": 2, "transform": "additive"},
                         {"name": "additive"}),
    "nsf": (tfp_flows.NSF,
            {**BASE, "event_shape": [4, 4, 1], "num_levels": 17, "num_couplings": None,
             "num_scales": 1, "hidden": 4, "num_hidden": 1, "transform": "spline", "bins": 3,
             "bound": 4.0},
            {"name": "spline", "bins": 3, "bound": 4.0}),
    "glow": (tfp_flows.Glow,
             {**BASE, "event_shape": [4], "preprocessing": "center", "num_scales": None,
              "depth": 2, "hidden": 8, "lu": True, "split_prior": None, "transform": "spline",
              "bins": 3, "bound": 2.5},
             {"name": "spline", "bins": 3, "bound": 2.5}),
    "maf": (tfp_flows.MAF,
            {**BASE, "event_shape": [4], "num_layers": 2, "hidden": 8, "num_hidden": 2,
             "transform": "affine", "scale_fn": "tanh"},
            {"name": "affine", "scale_fn": "tanh"}),
    # Saved before scale_fn existed: trained with the unbounded scale.
    "maf_without_scale_fn": (tfp_flows.MAF,
                             {**BASE, "event_shape": [4], "num_layers": 2, "hidden": 8,
                              "num_hidden": 2, "transform": "affine"},
                             {"name": "affine", "scale_fn": "exp"}),
    "iaf": (tfp_flows.IAF,
            {**BASE, "event_shape": [4], "num_layers": 2, "hidden": 8, "num_hidden": 2,
             "transform": "spline", "bins": 3, "bound": 4.0},
            {"name": "spline", "bins": 3, "bound": 4.0}),
}


@pytest.mark.parametrize("name", sorted(OLD))
@pytest.mark.kernel_independent
def test_an_old_config_builds_the_same_flow(name):
    family, old, transform = OLD[name]
    keras.utils.set_random_seed(0)
    loaded = tfp_flows.FlowModel(family.from_config(old))
    assert loaded.flow.get_config()["transform"] == transform
    new_style = {key: value for key, value in old.items()
                 if key not in ("scale_fn", "bins", "bound")}
    keras.utils.set_random_seed(0)
    rebuilt = tfp_flows.FlowModel(family(**{**new_style, "transform": transform}))
    # The same variables, named alike below the model's own (numbered) name.
    assert ([v.path.split("/", 1)[1] for v in loaded.weights]
            == [v.path.split("/", 1)[1] for v in rebuilt.weights])
    rng = np.random.default_rng(1)
    for target, source in zip(rebuilt.weights, loaded.weights, strict=True):
        value = source.numpy() + 0.1 * rng.standard_normal(source.shape).astype("float32")
        source.assign(value)
        target.assign(value)
    shape = (3, *loaded.event_shape)
    x = (rng.random(shape) * 16 if loaded.flow.num_levels else rng.standard_normal(shape))
    np.testing.assert_array_equal(loaded.log_prob(x.astype("float32")),
                                  rebuilt.log_prob(x.astype("float32")))
