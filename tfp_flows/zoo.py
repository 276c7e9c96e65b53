"""The flow families: layers that own their parameters and assemble their bijectors.

Each family is a Keras layer (`NICE`, `RealNVP`, `Glow`, `MAF`, `IAF`) whose `bijector()`
returns the TFP bijector f: latent -> data over the layer's variables. The builders `nice`,
`realnvp`, `glow`, `maf` and `iaf` wrap one in a `FlowModel`.

Chains are written in the data -> latent order of the papers: `tfb.Chain([a, b]).inverse`
applies `a^-1` first, so the first element of the list is the layer nearest the data.
"""

from __future__ import annotations

import keras
import numpy as np
from tensorflow_probability import bijectors as tfb

from tfp_flows.bijectors import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    InvertibleConv1x1,
    MultiScale,
    ReversibleChain,
    Scaling,
    lu_factors,
)
from tfp_flows.flow_model import FlowModel
from tfp_flows.nets import MADE, MLP, ConvNet

__all__ = ["IAF", "MAF", "NICE", "Flow", "Glow", "RealNVP", "glow", "iaf", "maf", "nice",
           "realnvp"]

PREPROCESSING = ("logit", "center")


class Flow(keras.layers.Layer):
    """Base of the flow families: event shape, image preprocessing, parameter helpers.

    Args:
        event_shape: `(D,)` for vectors or `(H, W, C)` for images.
        num_levels: for images, the number of pixel levels (256 for 8-bit). The model then
            expects dequantized pixels in [0, num_levels) and puts the scaling to [0, 1)
            and the preprocessing in the bijector, so their log-dets are part of log p(x).
            `None` for continuous data.
        preprocessing: "logit" (RealNVP: y = logit(alpha + (1 - 2 alpha) x / num_levels))
            or "center" (Glow: y = x / num_levels - 1/2).
        alpha: the logit's margin.
        reversible: train with memory-saving gradients (`ReversibleChain`): each chain of
            steps rebuilds its activations from its output in the backward pass instead of
            storing them, so training memory barely grows with depth, for about one extra
            forward pass of compute. For MAF and IAF the rebuild is sequential (D passes).
    """

    uses_data_dependent_init = False

    def __init__(self, event_shape, num_levels: int | None = None,
                 preprocessing: str = "logit", alpha: float = 0.05, reversible: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        event_shape = tuple(int(d) for d in event_shape)
        if len(event_shape) not in (1, 3) or min(event_shape) < 1:
            raise ValueError(f"event_shape must be (D,) or (H, W, C) with positive sizes, "
                             f"got {event_shape}.")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, "
                             f"got {preprocessing!r}.")
        if num_levels is not None and num_levels < 2:
            raise ValueError(f"num_levels must be >= 2 (or None), got {num_levels}.")
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {alpha}.")
        self.event_shape = event_shape
        self.num_levels = num_levels
        self.preprocessing = preprocessing
        self.alpha = alpha
        self.reversible = reversible

    def get_config(self):
        return {**super().get_config(), "event_shape": list(self.event_shape),
                "num_levels": self.num_levels, "preprocessing": self.preprocessing,
                "alpha": self.alpha, "reversible": self.reversible}

    def _chain(self, bijectors: list, event_ndims: int) -> tfb.Bijector:
        """A chain of same-shape layers, reversible (memory-saving) when asked for."""
        if self.reversible:
            return ReversibleChain(bijectors, event_ndims)
        return tfb.Chain(bijectors)

    def bijector(self) -> tfb.Bijector:
        """f: latent -> data, preprocessing included."""
        flow = self._flow_bijector()
        if self.num_levels is None:
            return flow
        return tfb.Chain([self._preprocessing_bijector(), flow])

    def _preprocessing_bijector(self) -> tfb.Bijector:
        levels, alpha = float(self.num_levels), self.alpha
        if self.preprocessing == "logit":
            # x = levels * (sigmoid(y) - alpha) / (1 - 2 alpha), as one Sigmoid with bounds.
            return tfb.Sigmoid(low=-levels * alpha / (1 - 2 * alpha),
                               high=levels * (1 - alpha) / (1 - 2 * alpha))
        return tfb.Chain([tfb.Scale(levels), tfb.Shift(0.5)])

    def _flow_bijector(self) -> tfb.Bijector:
        raise NotImplementedError

    def _actnorm_weights(self, channels: int, name: str):
        # "only_first_replica" lets the data-dependent initialisation assign in replica context.
        return tuple(self.add_weight(shape=(channels,), initializer="zeros", name=f"{name}_{p}",
                                     aggregation="only_first_replica")
                     for p in ("loc", "log_scale"))

    def _conv1x1_weights(self, channels: int, lu: bool, name: str) -> dict:
        rotation = keras.ops.convert_to_numpy(
            keras.initializers.Orthogonal()((channels, channels)))
        if not lu:
            return {"weight": self._constant_weight(rotation, f"{name}_weight", True)}
        fixed = ("permutation", "sign_diag")
        return {key: self._constant_weight(value, f"{name}_{key}", key not in fixed)
                for key, value in lu_factors(rotation).items()}

    def _constant_weight(self, value: np.ndarray, name: str, trainable: bool):
        return self.add_weight(shape=value.shape, name=name, trainable=trainable,
                               initializer=lambda shape, dtype=None: np.asarray(value, "float32"))


def _check_image(event_shape, family: str, squeezes: int):
    if len(event_shape) != 3:
        raise ValueError(f"{family} with levels needs an (H, W, C) event shape, got {event_shape}.")
    height, width, _ = event_shape
    factor = 2 ** squeezes
    if height % factor or width % factor:
        raise ValueError(f"{family} squeezes {squeezes} times, so height and width must be "
                         f"divisible by {factor}; got {event_shape}. Use fewer levels.")


@keras.saving.register_keras_serializable(package="tfp_flows")
class NICE(Flow):
    """NICE: additive couplings on the flattened data and a diagonal scaling.

    Defaults follow the paper's MNIST model: 4 additive couplings, each conditioner 5 hidden
    layers of 1000 ReLUs, alternating halves, then the diagonal scaling. The paper's base is
    logistic; ours is the standard normal shared by all families.

    [1] Dinh, Krueger, Bengio. NICE. https://arxiv.org/abs/1410.8516
    """

    def __init__(self, event_shape, num_couplings: int = 4, hidden: int = 1000,
                 num_hidden: int = 5, **kwargs):
        super().__init__(event_shape, **kwargs)
        self.num_couplings = num_couplings
        self.hidden = hidden
        self.num_hidden = num_hidden
        size = int(np.prod(self.event_shape))
        if size < 2:
            raise ValueError(f"NICE needs at least 2 dimensions, got event shape {event_shape}.")
        self.nets = [MLP(Coupling.conditioned_size(size, i % 2)[1], (hidden,) * num_hidden,
                         name=f"coupling_{i}") for i in range(num_couplings)]
        self.log_scale = self.add_weight(shape=(size,), initializer="zeros", name="log_scale")

    def get_config(self):
        return {**super().get_config(), "num_couplings": self.num_couplings,
                "hidden": self.hidden, "num_hidden": self.num_hidden}

    def _flow_bijector(self):
        size = int(np.prod(self.event_shape))
        layers = [AdditiveCoupling(net, mask="channel", parity=i % 2, event_ndims=1)
                  for i, net in enumerate(self.nets)]
        flow = self._chain([*layers, Scaling(self.log_scale)], 1)
        if len(self.event_shape) == 1:
            return flow
        return tfb.Chain([tfb.Reshape(event_shape_out=self.event_shape, event_shape_in=(size,)),
                          flow])


@keras.saving.register_keras_serializable(package="tfp_flows")
class RealNVP(Flow):
    """RealNVP: affine couplings; multi-scale with checkerboard and channel masks on images.

    Vectors `(D,)`: `num_couplings` affine couplings with alternating halves, conditioners
    with `num_hidden` dense layers of `hidden` units.

    Images `(H, W, C)`: at each of the first `levels - 1` scales, 3 checkerboard couplings,
    a squeeze, 3 channel couplings, then half of the channels are factored out; the last scale
    has 4 checkerboard couplings (RealNVP section 4.1). Conditioners are convolutional with
    `hidden` channels. `scale_fn="tanh"` bounds the log-scale for stability.

    [1] Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    """

    def __init__(self, event_shape, num_couplings: int = 5, levels: int = 3,
                 hidden: int | None = None, num_hidden: int = 2, scale_fn: str = "tanh",
                 **kwargs):
        super().__init__(event_shape, **kwargs)
        self.num_couplings = num_couplings
        self.levels = levels
        self.hidden = hidden if hidden is not None else (256 if len(self.event_shape) == 1 else 64)
        self.num_hidden = num_hidden
        self.scale_fn = scale_fn
        if len(self.event_shape) == 1:
            size = self.event_shape[0]
            if size < 2:
                raise ValueError(f"RealNVP needs at least 2 dimensions, got {event_shape}.")
            self.nets = [MLP(2 * Coupling.conditioned_size(size, i % 2)[1],
                             (self.hidden,) * num_hidden, name=f"coupling_{i}")
                         for i in range(num_couplings)]
            return
        _check_image(self.event_shape, "RealNVP", levels - 1)
        self.nets = []
        channels = self.event_shape[-1]
        for level in range(levels):
            last = level == levels - 1
            self.nets += [ConvNet(2 * channels, self.hidden, num_hidden,
                                  name=f"level{level}_checkerboard_{i}")
                          for i in range(4 if last else 3)]
            if not last:
                self.nets += [ConvNet(2 * Coupling.conditioned_size(4 * channels, i % 2)[1],
                                      self.hidden, num_hidden, name=f"level{level}_channel_{i}")
                              for i in range(3)]
                channels *= 2

    def get_config(self):
        return {**super().get_config(), "num_couplings": self.num_couplings,
                "levels": self.levels, "hidden": self.hidden, "num_hidden": self.num_hidden,
                "scale_fn": self.scale_fn}

    def _coupling(self, net, mask, parity, event_ndims):
        return AffineCoupling(net, mask=mask, parity=parity, scale_fn=self.scale_fn,
                              event_ndims=event_ndims)

    def _flow_bijector(self):
        if len(self.event_shape) == 1:
            return self._chain([self._coupling(net, "channel", i % 2, 1)
                                for i, net in enumerate(self.nets)], 1)
        nets = iter(self.nets)
        scales = []
        for level in range(self.levels):
            last = level == self.levels - 1
            checkerboard = [self._coupling(next(nets), "checkerboard", i % 2, 3)
                            for i in range(4 if last else 3)]
            channel = [] if last else [self._coupling(next(nets), "channel", i % 2, 3)
                                       for i in range(3)]
            scales.append((checkerboard, channel))
        inner = self._chain(scales[-1][0], 3)
        for checkerboard, channel in reversed(scales[:-1]):
            inner = tfb.Chain([self._chain(checkerboard, 3),
                               MultiScale(self._chain(channel, 3), inner=inner)])
        return inner


@keras.saving.register_keras_serializable(package="tfp_flows")
class Glow(Flow):
    """Glow: levels of (squeeze, depth x [ActNorm, invertible 1x1 conv, coupling], split).

    Defaults follow the paper: 3 levels of 32 steps, 512 hidden channels, affine coupling
    with sigmoid scale, LU-parametrised 1x1 convolutions, learned conditional prior on each
    split. On vectors `(D,)` the steps run without squeeze or split.

    [1] Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    """

    uses_data_dependent_init = True

    def __init__(self, event_shape, levels: int = 3, depth: int = 32, hidden: int = 512,
                 coupling: str = "affine", lu: bool = True, split_prior: bool = True,
                 preprocessing: str = "center", **kwargs):
        super().__init__(event_shape, preprocessing=preprocessing, **kwargs)
        if coupling not in ("affine", "additive"):
            raise ValueError(f"coupling must be 'affine' or 'additive', got {coupling!r}.")
        self.levels, self.depth, self.hidden = levels, depth, hidden
        self.coupling, self.lu, self.split_prior = coupling, lu, split_prior
        vector = len(self.event_shape) == 1
        if not vector:
            _check_image(self.event_shape, "Glow", levels)
        channels = self.event_shape[-1]
        self.actnorms, self.convs, self.nets, self.priors = [], [], [], []
        for level in range(1 if vector else levels):
            channels = channels if vector else 4 * channels
            for step in range(depth):
                name = f"level{level}_step{step}"
                self.actnorms.append(self._actnorm_weights(channels, f"{name}_actnorm"))
                self.convs.append(self._conv1x1_weights(channels, lu, f"{name}_conv1x1"))
                transformed = Coupling.conditioned_size(channels, 0)[1]
                out = 2 * transformed if coupling == "affine" else transformed
                self.nets.append(MLP(out, (hidden, hidden), name=f"{name}_coupling") if vector
                                 else ConvNet(out, hidden, name=f"{name}_coupling"))
            if not vector and level < levels - 1:
                if split_prior:
                    self.priors.append(ConvNet(channels, num_hidden=0, name=f"level{level}_prior"))
                channels //= 2

    def get_config(self):
        return {**super().get_config(), "levels": self.levels, "depth": self.depth,
                "hidden": self.hidden, "coupling": self.coupling, "lu": self.lu,
                "split_prior": self.split_prior}

    def _step(self, index, event_ndims):
        loc, log_scale = self.actnorms[index]
        coupling = (AffineCoupling(self.nets[index], mask="channel", scale_fn="sigmoid",
                                   event_ndims=event_ndims)
                    if self.coupling == "affine" else
                    AdditiveCoupling(self.nets[index], mask="channel", event_ndims=event_ndims))
        return [ActNorm(loc, log_scale, event_ndims=event_ndims),
                InvertibleConv1x1(**self.convs[index], event_ndims=event_ndims), coupling]

    def _flow_bijector(self):
        if len(self.event_shape) == 1:
            return self._chain([b for i in range(self.depth) for b in self._step(i, 1)], 1)
        levels = [self._chain([b for i in range(level * self.depth, (level + 1) * self.depth)
                               for b in self._step(i, 3)], 3)
                  for level in range(self.levels)]
        inner = MultiScale(levels[-1])
        for level in reversed(range(self.levels - 1)):
            prior = self.priors[level] if self.split_prior else None
            inner = MultiScale(levels[level], inner=inner, split_prior=prior)
        return inner


@keras.saving.register_keras_serializable(package="tfp_flows")
class MAF(Flow):
    """Masked autoregressive flow: `num_layers` MADE-conditioned affine autoregressive layers.

    Built on TFP's `tfb.MaskedAutoregressiveFlow` with our Keras 3 `MADE`; consecutive layers
    reverse the variable order. Density (the inverse) is one pass; sampling is sequential,
    D passes. Vectors only.

    [1] Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
        https://arxiv.org/abs/1705.07057
    """

    def __init__(self, event_shape, num_layers: int = 5, hidden: int = 512, num_hidden: int = 2,
                 **kwargs):
        super().__init__(event_shape, **kwargs)
        if len(self.event_shape) != 1:
            raise ValueError(f"{type(self).__name__} takes vector events (D,), got "
                             f"{self.event_shape}; flatten images first.")
        self.num_layers, self.hidden, self.num_hidden = num_layers, hidden, num_hidden
        self.mades = [MADE(self.event_shape[0], (hidden,) * num_hidden, reverse=i % 2 == 1,
                           name=f"made_{i}") for i in range(num_layers)]

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "hidden": self.hidden,
                "num_hidden": self.num_hidden}

    def _flow_bijector(self):
        def shift_and_log_scale(made):
            # tfb.MaskedAutoregressiveFlow calls this on the same tensor for the inverse and
            # again for its log-det; keeping the last result runs MADE once per log_prob. It
            # lives as long as the bijector, like TFP's own cache.
            last = {}

            def fn(x):
                if last.get("x") is not x:
                    params = keras.ops.cast(made(x), x.dtype)
                    last.update(x=x, params=(params[..., 0], params[..., 1]))
                return last["params"]
            return fn

        return self._chain([
            tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale(made))
            for made in self.mades], 1)


@keras.saving.register_keras_serializable(package="tfp_flows")
class IAF(MAF):
    """Inverse autoregressive flow: the MAF layers inverted (`tfb.Invert`).

    Sampling is one pass and density is sequential: the mirror image of MAF, made for fast
    sampling (and for variational posteriors, where densities of own samples are cheap).

    [1] Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational Inference
        with Inverse Autoregressive Flow. https://arxiv.org/abs/1606.04934
    """

    def _flow_bijector(self):
        return tfb.Invert(super()._flow_bijector())


def nice(event_shape, **kwargs) -> FlowModel:
    """A NICE `FlowModel`; keyword arguments go to `NICE`."""
    return FlowModel(NICE(event_shape, **kwargs))


def realnvp(event_shape, **kwargs) -> FlowModel:
    """A RealNVP `FlowModel`; keyword arguments go to `RealNVP`."""
    return FlowModel(RealNVP(event_shape, **kwargs))


def glow(event_shape, **kwargs) -> FlowModel:
    """A Glow `FlowModel`; keyword arguments go to `Glow`."""
    return FlowModel(Glow(event_shape, **kwargs))


def maf(event_shape, **kwargs) -> FlowModel:
    """A MAF `FlowModel`; keyword arguments go to `MAF`."""
    return FlowModel(MAF(event_shape, **kwargs))


def iaf(event_shape, **kwargs) -> FlowModel:
    """An IAF `FlowModel`; keyword arguments go to `IAF`."""
    return FlowModel(IAF(event_shape, **kwargs))
