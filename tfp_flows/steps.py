"""The steps flows are made of: Keras layers that own their weights and return their bijectors.

A step is a layer with `bijectors(context=None, initialize=False)`, the list of TFP bijectors
it contributes, in data -> latent order (`tfb.Chain(list).inverse` applies `list[0]`'s inverse
first). The bijectors are stateless views over the step's variables, built anew per call, so
the same step serves any context: `context` is a float tensor `(batch or 1, K)` that the step
hands to every conditioner, or None for an unconditional flow. `initialize=True` builds
ActNorm in its data-dependent initialisation mode (see `tfp_flows.bijectors.ActNorm`).

`ScaleLevel` is the one step that nests: `bijector(context, initialize, inner)` factors out
half of its channels and hands the rest to `inner`, the bijector of every step after it.
"""

from __future__ import annotations

import keras
import numpy as np
from tensorflow_probability import bijectors as tfb

from tfp_flows import compat
from tfp_flows.bijectors import (
    ActNorm,
    Coupling,
    Elementwise,
    InvertibleConv1x1,
    MultiScale,
    Scaling,
    lu_factors,
)
from tfp_flows.nets import MADE, MLP, ConvNet
from tfp_flows.nets.stack import stacked_row
from tfp_flows.transforms import Transform

__all__ = ["AutoregressiveStep", "ConditionalPrior", "CouplingStep", "GlowSteps", "ScaleLevel",
           "ScalingStep", "conditioner_of"]


def conditioner_of(net: keras.layers.Layer, context):
    """`net` as a function of its input alone, with `context` bound when there is one."""
    if context is None:
        return net
    return lambda inputs: net(inputs, context)


def _constant_weight(layer: keras.layers.Layer, value: np.ndarray, name: str, trainable: bool):
    return layer.add_weight(shape=value.shape, name=name, trainable=trainable,
                            initializer=lambda shape, dtype=None: np.asarray(value, "float32"))


# The most parameters one conditioner network may hold: 2**28 is 1 GiB of float32 weights,
# 4 GiB with their gradient and Adam's two moments. A size past it (bins=10**6 made 2.3e9
# parameters) spent minutes and tens of GB allocating zeros before anything failed.
MAX_CONDITIONER_PARAMETERS = 2 ** 28


def _refuse_oversized(name: str, transform: Transform, sizes: list[int], kernel_shape,
                      copies: int = 1):
    """Refuses, before any weight exists, a conditioner whose dense or convolutional layers
    map `sizes[0]` inputs through `sizes[1:]` (`kernel_shape(index, fan_in, fan_out)` gives
    a layer's kernel) and that would hold more than `MAX_CONDITIONER_PARAMETERS`."""
    layers = enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    count = copies * sum(int(np.prod(kernel_shape(index, fan_in, fan_out))) + fan_out
                         for index, (fan_in, fan_out) in layers)
    if count > MAX_CONDITIONER_PARAMETERS:
        raise ValueError(
            f"{name} would hold at least {count:,} parameters ({count * 4 / 2**30:,.1f} GiB of "
            f"float32 weights), more than the {MAX_CONDITIONER_PARAMETERS:,} one conditioner "
            f"may hold: {sizes[-2]:,} hidden units feed {sizes[-1]:,} outputs "
            f"({transform.params_per_entry:,} per entry for {transform!r}). Lower hidden, or "
            f"bins for a spline.")


def _coupling_net(transform: Transform, transformed: int, event_rank: int, hidden: int,
                  num_hidden: int, context_size: int, **kwargs):
    """A coupling's conditioner: an `MLP` for vectors, a `ConvNet` for images, with outputs
    for `transformed` entries of `transform`."""
    width = transform.params_per_entry * transformed
    if event_rank == 1:
        net = MLP(width, (hidden,) * num_hidden, context_size=context_size, **kwargs)
    else:
        net = ConvNet(width, hidden, num_hidden, context_size=context_size, **kwargs)
    # One conditioning input at least: the count is a lower bound.
    _refuse_oversized(net.name, transform, [context_size + 1, *net.hidden_sizes, width],
                      net.kernel_shape, net.copies or 1)
    return net


class CouplingStep(keras.layers.Layer):
    """A coupling layer and the conditioner network that it owns.

    Args:
        transform: the elementwise transform, any `tfp_flows.Transform`; its
            `params_per_entry` sets the conditioner's output width.
        channels: size of the last axis of the events this step sees.
        mask: "channel" or "checkerboard" (images only).
        parity: which half conditions (0 or 1).
        event_rank: 1 for vectors (an `MLP` conditioner), 3 for images (a `ConvNet`).
        hidden: width of the conditioner's hidden layers.
        num_hidden: number of hidden layers.
        context_size: size of the context vector the conditioner sees (0: none).
    """

    def __init__(self, transform: Transform, channels: int, *, mask: str = "channel",
                 parity: int = 0, event_rank: int = 1, hidden: int = 256, num_hidden: int = 2,
                 context_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.transform = transform
        self.mask, self.parity, self.event_rank = mask, parity, event_rank
        transformed = (channels if mask == "checkerboard"
                       else Coupling.conditioned_size(channels, parity)[1])
        # Named after the step: Keras builds the network inside the model's name scope, so
        # the step's name is what keeps the variables' paths unique.
        self.net = _coupling_net(transform, transformed, event_rank, hidden, num_hidden,
                                 context_size, name=f"{self.name}_net")

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        """This step's bijectors over its weights, data end first; `initialize` runs
        data-dependent initialisation (ActNorm) on this pass."""
        return [Coupling(conditioner_of(self.net, context), self.transform, mask=self.mask,
                         parity=self.parity, event_ndims=self.event_rank)]


class _Row:
    """Row `index` of a stacked variable: read on every use, as a variable is, and assignable.

    What a bijector that reads its parameters on every call (ActNorm, the 1x1 convolution)
    needs from a variable, for one step of a `GlowSteps`.
    """

    def __init__(self, variable, index: int):
        self._variable, self._index = variable, index

    @property
    def dtype(self):
        return self._variable.dtype

    def __tf_tensor__(self, dtype=None, name=None):
        return keras.ops.convert_to_tensor(stacked_row(self._variable, self._index), dtype=dtype)

    def assign(self, value):
        return self._variable[self._index].assign(value)


class GlowSteps(keras.layers.Layer):
    """`depth` steps of Glow on one event shape: ActNorm, invertible 1x1 convolution, coupling.

    Each step is an ActNorm, an invertible 1x1 convolution (LU-parametrised by default) and a
    channel-mask coupling whose conditioner sees the first half of the channels. The steps'
    parameters are stacked: each kind (ActNorm's loc, the LU factors, every kernel and bias of
    the coupling networks, one `ConvNet` or `MLP` with `copies=depth`) is one variable whose
    leading axis indexes the step. That is 11 trainable variables for any depth instead of
    11 per step; an optimizer such as Keras' Adam spends about 15 small ops on each variable,
    which was a tenth of a small Glow's training step on CPU. Step k reads row k of each
    variable on every use (as ActNorm reads a variable), so a gradient with respect to a
    stacked variable is a `tf.IndexedSlices` of rows: Keras and TF optimizers take it as it
    is, `FlowModel.fit` makes it dense (one op per variable), `tf.convert_to_tensor` does too.

    Args:
        transform: the coupling's elementwise transform.
        event_shape: shape of the events the steps see, `(D,)` or `(H, W, C)`.
        depth: number of steps.
        hidden: width of the couplings' conditioners.
        lu: LU-parametrised 1x1 convolution (Glow's default) instead of a dense matrix.
        context_size: size of the context vector the conditioners see (0: none).
    """

    def __init__(self, transform: Transform, event_shape: tuple[int, ...], depth: int, *,
                 hidden: int = 512, lu: bool = True, context_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.transform, self.depth, self.event_rank = transform, depth, len(event_shape)
        channels = event_shape[-1]
        # "only_first_replica" lets the data-dependent initialisation assign in replica context.
        self.loc, self.log_scale = (
            self.add_weight(shape=(depth, channels), initializer="zeros", name=f"actnorm_{p}",
                            aggregation="only_first_replica") for p in ("loc", "log_scale"))
        rotations = [keras.ops.convert_to_numpy(
            keras.initializers.Orthogonal()((channels, channels))) for _ in range(depth)]
        if lu:
            factors = [lu_factors(rotation) for rotation in rotations]
            fixed = ("permutation", "sign_diag")
            self.conv = {key: _constant_weight(self, np.stack([f[key] for f in factors]),
                                               f"conv1x1_{key}", key not in fixed)
                         for key in factors[0]}
        else:
            self.conv = {"weight": _constant_weight(self, np.stack(rotations), "conv1x1_weight",
                                                    True)}
        conditioning, transformed = Coupling.conditioned_size(channels, 0)
        self.net = _coupling_net(transform, transformed, self.event_rank, hidden, 2,
                                 context_size, copies=depth, name=f"{self.name}_coupling_net")
        self.net.build((None, *event_shape[:-1], conditioning))

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        """This step's bijectors over its weights, data end first; `initialize` runs
        data-dependent initialisation (ActNorm) on this pass."""
        ndims, net = self.event_rank, self.net
        steps = []
        for k in range(self.depth):
            conv = {key: _Row(variable, k) for key, variable in self.conv.items()}
            steps += [
                ActNorm(_Row(self.loc, k), _Row(self.log_scale, k), event_ndims=ndims,
                        initialize=initialize),
                InvertibleConv1x1(**conv, event_ndims=ndims),
                Coupling(lambda x, k=k: net(x, context, copy=k), self.transform,
                         mask="channel", parity=0, event_ndims=ndims)]
        return steps


class AutoregressiveStep(keras.layers.Layer):
    """A masked autoregressive layer (MAF) with its MADE, over vectors.

    Built on TFP's `tfb.MaskedAutoregressiveFlow`: the inverse (density) is one pass, the
    forward (sampling) D passes. MADE gives each entry the parameters of `transform` from the
    entries before it; the transform applied is `transform.autoregressive()` (an `Elementwise`
    bijector per MADE call). `reverse=True` orders the variables D..1, so stacked layers
    alternate orders.

    Args:
        transform: any `tfp_flows.Transform`: "affine" is MAF's shift and log-scale (with a
            `scale_fn` that scales both ways), "spline" a rational-quadratic autoregressive
            flow, "additive" a volume-preserving MAF.
        event_size: D.
        hidden: width of MADE's hidden layers.
        num_hidden: number of hidden layers.
        reverse: reverse the variable order.
        context_size: size of the context vector MADE sees (0: none).
    """

    def __init__(self, transform: Transform, event_size: int, *, hidden: int = 512,
                 num_hidden: int = 2, reverse: bool = False, context_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.transform = transform.autoregressive()
        # MADE makes its masks when constructed, as large as its weights: check first.
        _refuse_oversized(f"{self.name}_made", transform,
                          [event_size, *(hidden,) * num_hidden,
                           event_size * transform.params_per_entry],
                          lambda index, fan_in, fan_out: (fan_in, fan_out))
        self.made = MADE(event_size, (hidden,) * num_hidden, params=transform.params_per_entry,
                         reverse=reverse, context_size=context_size, name=f"{self.name}_made")

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        """This step's bijectors over its weights, data end first; `initialize` runs
        data-dependent initialisation (ActNorm) on this pass."""
        made = conditioner_of(self.made, context)
        transform = self.transform
        # tfb.MaskedAutoregressiveFlow asks for the bijector of the same tensor for the
        # inverse and again for its log-det; keeping the last one runs MADE and the transform
        # once per log_prob (the log-det is cached with the output). It lives as long as the
        # bijector, like TFP's own cache.
        last = {}

        def bijector_fn(x, **kwargs):
            if last.get("x") is not x:
                # MADE's (..., D, P) as the transform's P blocks of D on the last axis.
                params = keras.ops.cast(made(x), x.dtype)
                blocks = keras.ops.concatenate(keras.ops.unstack(params, axis=-1), axis=-1)
                last.update(x=x, bijector=Elementwise(transform, blocks))
            return last["bijector"]

        return [tfb.MaskedAutoregressiveFlow(bijector_fn=bijector_fn)]


class ScalingStep(keras.layers.Layer):
    """NICE's diagonal scaling, a learned log-scale per dimension."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.log_scale = self.add_weight(shape=(size,), initializer="zeros", name="log_scale")

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        """This step's bijectors over its weights, data end first; `initialize` runs
        data-dependent initialisation (ActNorm) on this pass."""
        return [Scaling(self.log_scale)]


class ConditionalPrior(keras.layers.Layer):
    """Where Glows saved before `tfp_flows.bases` keep their class-conditional prior's weights.

    Glow's class-conditional prior was the last step of the top level; it is now the flow's
    base (`bases.ConditionalDiagonalNormal`). A conditional Glow with its default base still
    lists this layer there, so that the weights files of those Glows (their dense map at
    `.../steps/conditional_prior/dense`) load into the base: `dense` is the base's dense map,
    shown here without being tracked (the base owns it). It adds no bijector.

    Args:
        base: the Glow's `ConditionalDiagonalNormal`.
    """

    def __init__(self, base, **kwargs):
        super().__init__(**kwargs)
        compat.set_untracked(self, "_base", base)

    @property
    def dense(self) -> keras.layers.Layer:
        """The conditional base's dense map (not tracked here: the base owns it)."""
        return self._base.dense

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        """This step's bijectors over its weights, data end first; `initialize` runs
        data-dependent initialisation (ActNorm) on this pass."""
        return []


class ScaleLevel(keras.layers.Layer):
    """One scale of a multi-scale flow: squeeze, `steps`, factor out half of the channels.

    Args:
        steps: the step layers that run after the squeeze, on (H/2, W/2, 4C).
        split_prior: a layer giving the factored-out half's mean and log-scale from the kept
            half (Glow's learned prior, called as `split_prior(h_keep[, context])`), or None
            for a standard normal.

    Memory-saving gradients are chosen per call: `bijector(chain=ReversibleChain)`.
    """

    def __init__(self, steps: list, split_prior=None, **kwargs):
        super().__init__(**kwargs)
        self.steps = list(steps)
        self.split_prior = split_prior

    def bijector(self, context=None, initialize: bool = False, inner=None,
                 chain=tfb.Chain) -> tfb.Bijector:
        """The level as a `MultiScale` bijector whose kept half goes through `inner`.

        `chain(bijectors, event_ndims)` composes the steps (plain or reversible).
        """
        flow = chain([b for step in self.steps for b in step.bijectors(context, initialize)], 3)
        prior = (None if self.split_prior is None
                 else conditioner_of(self.split_prior, context))
        return MultiScale(flow, inner=inner, split_prior=prior)
