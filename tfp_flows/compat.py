"""What tfp_flows relies on beyond the public APIs of TensorFlow, Keras and TFP, in one place.

Each function is one such dependency: why it is needed, what breaks without it, and the
versions it was checked against (TF 2.21, Keras 3.15.1, TFP 0.25). tests/test_compat.py checks
every one against the installed versions; after an upgrade it is the first test to run.
Two of them no longer touch a private name (`sublayers`, `worker_count`): they give from public
APIs what the code took from private ones before, and their tests check that they still agree
with the private originals.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import keras
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
from tensorflow_probability.python.internal import cache_util

__all__ = ["greedy_bijector_cache", "onednn_enabled", "set_untracked", "sublayers", "tf_variable",
           "worker_count"]


def greedy_bijector_cache(forward_name: str, inverse_name: str):
    """TFP's bijector cache that also keeps side results of a transform, for `tfb.Bijector._cache`.

    A bijector class that sets `_cache = greedy_bijector_cache("_augmented_forward",
    "_augmented_inverse")` has its `forward(x)` run `_augmented_forward(x) -> (y, attributes)`,
    and the dict `attributes` stays attached to the pair (x, y): `_cache.forward_attributes(x)`
    and `_cache.inverse_attributes(y)` return it. `OnePassBijector` keeps its log-det there, so
    `TransformedDistribution.log_prob` (an `inverse`, then an `inverse_log_det_jacobian` of the
    same tensor) runs each coupling network once. TFP has no public hook for this
    (`tensorflow_probability.python.internal.cache_util.BijectorCacheWithGreedyAttrs`; TFP's
    own Glow and RealNVP use it). Without it every log_prob runs the networks twice.

    Checked against TFP 0.25.
    """
    return cache_util.BijectorCacheWithGreedyAttrs(forward_name=forward_name,
                                                   inverse_name=inverse_name)


def set_untracked(layer: keras.layers.Layer, name: str, value) -> None:
    """`setattr(layer, name, value)` without Keras' attribute tracking.

    Keras' `Layer.__setattr__` wraps lists and dicts into tracked containers and adds the
    layers and variables it finds in them to the layer's weights, and whatever it tracks is
    saved. Caches (a dict of `tf.function`s, a shape) and variables owned by something else
    (TFP's `tf.Variable`s in a benchmark model) must stay out: tracked, the functions would be
    traced again by `save`, and foreign variables would count as the layer's weights. Keras 3
    has no public switch for this; `object.__setattr__` skips its `__setattr__`. Read such an
    attribute back from `layer.__dict__` or as a plain attribute.

    Checked against Keras 3.15.1.
    """
    object.__setattr__(layer, name, value)


def sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer nested in `layer` (at any depth, each once, `layer` itself excluded).

    Keras 3 lists them with the private `Layer._flatten_layers`; `Model.layers` gives only the
    direct children and plain layers have no such property (Keras 3 layers are not
    `tf.Module`s, so `submodules` is absent too). Keras tracks a sub-layer only when it is an
    attribute, or inside a list, tuple or dict attribute, so walking those finds the same
    layers with public Python (and also a layer stored with `set_untracked`, which Keras does
    not track). Used to find a flow's conditioner networks and Glow's stacked steps; without
    it they would have to be listed by hand in every family.

    Checked against Keras 3.15.1: the layers of `_flatten_layers(include_self=False)`, in its
    order.
    """
    def walk(value) -> Iterator[keras.layers.Layer]:
        if isinstance(value, keras.layers.Layer):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from walk(item)

    def children(parent: keras.layers.Layer) -> list[keras.layers.Layer]:
        return list({id(child): child for value in vars(parent).values()
                     for child in walk(value)}.values())

    # In `_flatten_layers`' order: a layer, then its children last to first, depth first.
    found, seen = [], {id(layer)}
    pending = collections.deque(children(layer))
    while pending:
        current = pending.popleft()
        if id(current) not in seen:
            seen.add(id(current))
            found.append(current)
            pending.extendleft(children(current))
    return found


def onednn_enabled() -> bool:
    """Whether this process runs TensorFlow's oneDNN CPU kernels.

    TF decides once, when it loads: `TF_ENABLE_ONEDNN_OPTS=1` or `0` when set, else on for
    CPUs with the AVX-512 extensions oneDNN targets (seen on an AMD EPYC with AVX512-BF16 as
    on Intel Xeons) and off for others (an AVX2-only AMD EPYC). There is no public API for
    the answer; TF's own `_pywrap_util_port.IsMklEnabled` gives it, and the machine record
    (`tfp_flows.machine.describe`) stores it beside every measurement, since oneDNN changes
    both speed and rounding.

    Checked against TF 2.21.
    """
    return bool(_pywrap_util_port.IsMklEnabled())


def tf_variable(variable) -> tf.Variable:
    """The `tf.Variable` under a Keras variable (a `tf.Variable` is returned as it is).

    Keras 3 variables are not `tf.Variable`s; on the TensorFlow backend `variable.value`
    holds one (outside an autocast scope, where it would be a cast tensor). TFP and
    `tf.Module`s find variables by that type: `FlowBijector.trainable_variables` (what
    `tfp.vi` trains) and the SavedModel export (which must not hold Keras objects) need the
    `tf.Variable`s; given the Keras wrappers, TFP would see no variables and the export would
    carry Keras' objects.

    Checked against Keras 3.15.1 with TF 2.21.
    """
    if isinstance(variable, tf.Variable):
        return variable
    value = getattr(variable, "value", None)
    if not isinstance(value, tf.Variable):
        raise TypeError(f"expected a Keras variable of the TensorFlow backend or a tf.Variable, "
                        f"got {type(variable).__name__} whose value is "
                        f"{type(value).__name__} (inside an autocast scope?)")
    return value


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many workers `strategy` trains on: the chief and worker tasks of its cluster.

    Keras 3 reduces the outputs of a step with `strategy.reduce(axis=0)` when a
    `MultiWorkerMirroredStrategy` runs on more than one worker, which fails on scalar logs
    (tensorflow/tensorflow#72388); `FlowModel` gives its logs a length-1 axis in that case. Keras
    decides with the private `strategy.extended._in_multi_worker_mode()`, TF's count of the
    cluster's chief and worker tasks; this counts the same from the public `cluster_resolver`
    (1 for strategies without a cluster). Without the reshape a multi-worker `fit` fails at
    its first step.

    Checked against TF 2.21 and Keras 3.15.1.
    """
    resolver = strategy.cluster_resolver
    if resolver is None:
        return 1
    spec = resolver.cluster_spec()
    return max(1, sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs))
