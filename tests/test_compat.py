"""Canaries for a TF / Keras / TFP upgrade: each shim of tfp_flows.compat still does what the
library relies on, against the installed versions (checked with TF 2.21, Keras 3.15.1, TFP 0.25).
"""

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.distribute import multi_worker_util
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

import tfp_flows
from tfp_flows import compat
from tfp_flows.bijectors.one_pass import OnePassBijector


class _CountingScale(OnePassBijector):
    """y = 3 x, counting the passes that compute it (the stand-in for a coupling network)."""

    def __init__(self):
        self.passes = 0
        super().__init__(forward_min_event_ndims=1, name="counting_scale")

    def _transform_and_log_det(self, x, inverse: bool):
        self.passes += 1
        scale = 1 / 3 if inverse else 3.0
        return x * scale, tf.fill(tf.shape(x)[:-1], x.shape[-1] * np.log(scale).astype("float32"))


def test_greedy_bijector_cache_keeps_the_log_det_of_the_pass_that_computed_the_output():
    bijector = _CountingScale()
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    distribution = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), [2]), bijector)
    log_prob = distribution.log_prob(x)
    assert bijector.passes == 1  # inverse and inverse_log_det_jacobian shared one pass
    expected = tfd.Sample(tfd.Normal(0.0, 1.0), [2]).log_prob(x / 3) - 2 * np.log(3.0)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-6)
    y = bijector.forward(x)
    assert set(bijector._cache.inverse_attributes(y)) == {"fldj", "ildj"}
    np.testing.assert_allclose(bijector.forward_log_det_jacobian(x), [2 * np.log(3.0)] * 2,
                               rtol=1e-6)
    assert bijector.passes == 2  # forward once; its log-det came from the cache


def test_set_untracked_keeps_variables_and_containers_out_of_keras_tracking():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    foreign = [keras.Variable(np.zeros(4, "float32"), name="foreign")]
    functions = {"f": tf.function(lambda: 1)}
    compat.set_untracked(layer, "foreign", foreign)
    compat.set_untracked(layer, "functions", functions)
    assert layer.foreign is foreign and layer.__dict__["functions"] is functions
    assert type(layer.functions) is dict
    assert len(layer.weights) == 2
    # What the shim avoids: a built layer refuses new tracked state, an unbuilt one adopts it.
    with pytest.raises(ValueError, match="already built"):
        layer.tracked = foreign
    unbuilt = keras.layers.Dense(2)
    unbuilt.tracked = foreign
    assert len(unbuilt.weights) == 1


class _Nested(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(1, name="first")
        self.inner = keras.Sequential([keras.layers.Dense(1, name="in_sequential")],
                                      name="sequential")
        self.listed = [keras.layers.Dense(1, name="listed_a"), keras.layers.Dense(1, name="b")]
        self.mapped = {"x": keras.layers.Dense(1, name="mapped"), "again": self.first}


def test_sublayers_lists_what_keras_flatten_layers_lists_in_its_order():
    layer = _Nested()
    names = [sub.name for sub in compat.sublayers(layer)]
    assert names == [sub.name for sub in layer._flatten_layers(include_self=False)]
    assert sorted(names) == ["b", "first", "in_sequential", "listed_a", "mapped", "sequential"]
    model = tfp_flows.glow((4, 4, 3), num_scales=2, depth=2, hidden=4)
    model.log_prob(np.zeros((1, 4, 4, 3), "float32"))
    assert ([id(sub) for sub in compat.sublayers(model.flow)]
            == [id(sub) for sub in model.flow._flatten_layers(include_self=False)])


def test_tf_variable_is_the_storage_of_the_keras_variable():
    variable = keras.Variable(np.array([1.0, 2.0], "float32"))
    assert not isinstance(variable, tf.Variable)  # why the shim exists
    underlying = compat.tf_variable(variable)
    assert isinstance(underlying, tf.Variable)
    variable.assign([5.0, 6.0])
    np.testing.assert_array_equal(underlying.numpy(), [5.0, 6.0])
    plain = tf.Variable(1.0)
    assert compat.tf_variable(plain) is plain
    with pytest.raises(TypeError, match="expected a Keras variable .* got ndarray"):
        compat.tf_variable(np.zeros(2))


@pytest.mark.parametrize("cluster", [
    {},
    {"worker": ["localhost:1"]},
    {"worker": ["localhost:1", "localhost:2"]},
    {"chief": ["localhost:1"], "worker": ["localhost:2"]},
    {"chief": ["localhost:1"], "worker": ["localhost:2", "localhost:3"],
     "ps": ["localhost:4"], "evaluator": ["localhost:5"]},
])
def test_worker_count_counts_as_multi_worker_mirrored_strategy_does(cluster):
    spec = tf.train.ClusterSpec(cluster)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type="worker" if cluster else None, task_id=0)
    strategy = types.SimpleNamespace(cluster_resolver=resolver)
    # MultiWorkerMirroredStrategy's `_in_multi_worker_mode()` is `_num_workers > 1`, and
    # `_num_workers` is TF's worker_count of the cluster (1 without one).
    expected = multi_worker_util.worker_count(spec, "worker") if cluster else 1
    assert compat.worker_count(strategy) == expected


def test_worker_count_of_a_single_machine_strategy_is_one():
    assert compat.worker_count(tf.distribute.get_strategy()) == 1


def test_keras_still_reduces_multi_worker_step_outputs_on_its_own_path():
    # FlowModel reshapes its logs for this Keras code path; if it is gone, the reshape may be too.
    from keras.src.backend.tensorflow import trainer

    assert callable(trainer._collective_all_reduce_multi_worker)
    assert tfb.Bijector._cache is not None  # TFP still consults a class-level cache


def test_onednn_enabled_follows_tf_enable_onednn_opts():
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting not in ("0", "1"):
        pytest.skip("TF_ENABLE_ONEDNN_OPTS is not set (make test sets it in both passes)")
    assert compat.onednn_enabled() is (setting == "1")
