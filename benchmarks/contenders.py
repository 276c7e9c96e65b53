"""The two sides of each comparison: our family and TFP's built-in peer at the same size.

Our side of flow `name` is `tfp_flows.build(name, ...)`, the registered family in a
`FlowModel`; TFP's side is its peer built from TFP's bijectors (`tfb.Glow`, `tfb.RealNVP`,
`tfb.MaskedAutoregressiveFlow`).
The flows the benchmark compares are the families that have a peer here (`FLOWS`). For the
`fit` timings, `UnguardedFlowModel` is our model without the step guard and `DensityModel`
trains TFP's side through the same Keras `fit`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import warnings
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

import tfp_flows
from tfp_flows import compat


@dataclasses.dataclass
class Contender:
    """One side of a comparison: a density with its parameters and conditioner networks.

    Attributes:
        log_prob: x -> log p(x), one value per example.
        variables: the trainable variables the step updates.
        sample: n -> n samples.
        conditioners: (network, input shape without batch) for every conditioner network.
        init: runs data-dependent initialisation (ActNorm) on a batch.
        model: our FlowModel, for the `fit` timings (None for TFP's side).
    """

    log_prob: Callable[[tf.Tensor], tf.Tensor]
    variables: list
    sample: Callable[[int], tf.Tensor]
    conditioners: list[tuple[Callable, tuple[int, ...]]]
    init: Callable[[tf.Tensor], None]
    model: tfp_flows.FlowModel | None = None

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.variables))


# ---------------------------------------------------------------------------------- ours

def _our_arguments(flow: str, cfg: argparse.Namespace) -> tuple[tuple[int, ...], dict]:
    """The event shape and family arguments of our `flow` at the benchmark's size."""
    if flow == "glow":
        return cfg.glow_shape, {"num_scales": cfg.glow_levels, "depth": cfg.glow_depth,
                                "hidden": cfg.glow_hidden, "num_levels": 256}
    if flow == "realnvp":
        return (cfg.dim,), {"num_couplings": cfg.couplings, "hidden": cfg.vector_hidden,
                            "num_hidden": 2}
    return (cfg.dim,), {"num_layers": cfg.maf_layers, "hidden": cfg.vector_hidden,
                        "num_hidden": 2}


def conditioner_inputs(model) -> list[tuple]:
    """(conditioner, the input shape it was built for) for every network of our flow; each
    copy of a stacked network (the steps of a Glow level) is a conditioner of its own."""
    nets = []
    for net in model.flow.conditioners:
        shape = tuple(net.get_build_config()["input_shape"][1:])
        copies = getattr(net, "copies", None)
        nets += ([(net, shape)] if copies is None else
                 [(functools.partial(net, copy=k), shape) for k in range(copies)])
    return nets


def ours(flow: str, cfg: argparse.Namespace) -> Contender:
    """Our `flow`: the registered family of that name, built under Keras' seed 0."""
    shape, arguments = _our_arguments(flow, cfg)
    keras.utils.set_random_seed(0)
    model = tfp_flows.build(flow, shape, **arguments)

    def init(x):
        if model.flow.uses_data_dependent_init:
            model.initialize_from_data(x.numpy())

    return Contender(model.log_prob, model.trainable_variables,
                     lambda n: model.sample(n, seed=1), conditioner_inputs(model), init, model)


def size(flow: str, cfg: argparse.Namespace) -> str:
    """The size of both sides of `flow`, for the tables."""
    if flow == "glow":
        h, w, c = cfg.glow_shape
        return (f"{h}x{w}x{c}, L={cfg.glow_levels} K={cfg.glow_depth} "
                f"hidden={cfg.glow_hidden}, batch {cfg.glow_batch}")
    layers = cfg.couplings if flow == "realnvp" else cfg.maf_layers
    return (f"D={cfg.dim}, {layers} layers, 2x{cfg.vector_hidden}, "
            f"batch {cfg.vector_batch}")


# ------------------------------------------------------------------------------- TFP's

def tfp_glow(cfg: argparse.Namespace) -> Contender:
    shape, levels, depth, hidden = cfg.glow_shape, cfg.glow_levels, cfg.glow_depth, cfg.glow_hidden

    def coupling_net(input_shape):
        return tfb.GlowDefaultNetwork(input_shape, num_hidden=hidden)

    glow = tfb.Glow(output_shape=shape, num_glow_blocks=levels, num_steps_per_block=depth,
                    coupling_bijector_fn=coupling_net,
                    exit_bijector_fn=tfb.GlowDefaultExitNetwork, seed=0)
    # The same pixel scaling as ours (x / 256 - 1/2), so both NLLs are in pixel space.
    bijector = tfb.Chain([tfb.Scale(256.0), tfb.Shift(0.5), glow])
    distribution = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [int(np.prod(shape))]), bijector)
    # TFP's networks are tf_keras models built on an Input of the shape they see.
    nets = [(net, tuple(net.input_shape[1:])) for net in _tfp_glow_networks(glow)]

    def init(x):
        # TFP's ActNorm initialises itself from the first batch it sees, in a tf.cond.
        distribution.log_prob(x)

    # TFP's Glow is a tf.Module that tracks the variables of its tf_keras networks itself.
    return Contender(distribution.log_prob, list(glow.trainable_variables),
                     lambda n: distribution.sample(n, seed=1), nets, init)


def _tfp_glow_networks(glow: tfb.Glow) -> list:
    """The coupling and exit networks of TFP's Glow (tf_keras models it holds as submodules)."""
    kinds = (tfb.GlowDefaultNetwork, tfb.GlowDefaultExitNetwork)
    return list({id(m): m for m in glow.submodules if isinstance(m, kinds)}.values())


def tfp_realnvp(cfg: argparse.Namespace) -> Contender:
    dim, couplings, hidden = cfg.dim, cfg.couplings, cfg.vector_hidden
    templates, layers = [], []
    for i in range(couplings):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            template = tfb.real_nvp_default_template(hidden_layers=[hidden, hidden],
                                                     name=f"real_nvp_template_{i}")
        templates.append(template)
        layers.append(tfb.RealNVP(num_masked=dim // 2, shift_and_log_scale_fn=template))
        if i < couplings - 1:
            layers.append(tfb.Permute(list(reversed(range(dim)))))
    distribution = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [dim]), tfb.Chain(layers))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distribution.log_prob(tf.zeros([1, dim]))  # creates the templates' variables

    def template_net(template):
        return lambda x: tf.concat(template(x, dim - dim // 2), axis=-1)

    nets = [(template_net(t), (dim // 2,)) for t in templates]
    variables = [v for t in templates for v in t.trainable_variables]
    return Contender(distribution.log_prob, variables, lambda n: distribution.sample(n, seed=1),
                     nets, lambda x: None)


def tfp_maf(cfg: argparse.Namespace) -> Contender:
    dim, num_layers, hidden = cfg.dim, cfg.maf_layers, cfg.vector_hidden
    mades, layers = [], []
    for i in range(num_layers):
        made = tfb.AutoregressiveNetwork(params=2, event_shape=[dim],
                                         hidden_units=[hidden, hidden], activation="relu")
        mades.append(made)
        layers.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made))
        if i < num_layers - 1:
            layers.append(tfb.Permute(list(reversed(range(dim)))))
    distribution = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [dim]), tfb.Chain(layers))
    distribution.log_prob(tf.zeros([1, dim]))
    return Contender(distribution.log_prob, [v for m in mades for v in m.trainable_variables],
                     lambda n: distribution.sample(n, seed=1), [(m, (dim,)) for m in mades],
                     lambda x: None)


# TFP's peer of each of our families that has one, in the order the benchmark runs them.
TFP_PEERS = {"glow": tfp_glow, "realnvp": tfp_realnvp, "maf": tfp_maf}
FLOWS = tuple(name for name in TFP_PEERS if name in tfp_flows.FAMILIES)


def build(flow: str, cfg, first_batch: tf.Tensor) -> tuple[Contender, Contender]:
    """Ours and TFP's `flow`, initialised on `first_batch`; TFP's is built after ours, under
    the random state building ours left."""
    sides = ours(flow, cfg), TFP_PEERS[flow](cfg)
    for contender in sides:
        contender.init(first_batch)
    return sides


# ------------------------------------------------------------------------ the fit timings

class UnguardedFlowModel(tfp_flows.FlowModel):
    """FlowModel without the step guard (every update applied unchecked): the guard's cost."""

    def _step_guard(self, loss, gradients):
        return tf.no_op()


class DensityModel(keras.Model):
    """A log-density and its variables trained by Keras `fit` (TFP's side of the fit timing):
    the mean NLL, GradientTape and the optimizer, with a loss metric as FlowModel keeps."""

    def __init__(self, log_prob, variables):
        super().__init__()
        # Plain attributes: the variables are TFP's tf.Variables, not Keras-tracked weights.
        compat.set_untracked(self, "_density", log_prob)
        compat.set_untracked(self, "_density_variables", list(variables))
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @property
    def metrics(self):
        return [self._loss_tracker]

    def train_step(self, x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self._density(x))
        gradients = tape.gradient(loss, self._density_variables)
        self.optimizer.apply(gradients, self._density_variables)
        self._loss_tracker.update_state(loss)
        return {"loss": self._loss_tracker.result()}
