"""The flow families: each a list of step layers, and the registry the tools read.

Each family is a Keras layer (`NICE`, `RealNVP`, `NSF`, `Glow`, `MAF`, `IAF`) that writes its
steps (`tfp_flows.steps`) once, in `__init__`, and whose `bijector(context)` returns the TFP
bijector f: latent -> data over the layer's variables. The builders `nice`, `realnvp`, `nsf`,
`glow`, `maf` and `iaf` wrap one in a `FlowModel`. `FAMILIES` maps each name to its class;
the training command and the benchmark read it.

Steps are listed in the data -> latent order of the papers: `tfb.Chain([a, b]).inverse`
applies `a^-1` first, so the first step is the one nearest the data.
"""

from __future__ import annotations

import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows import bases, compat, transforms
from tfp_flows.bijectors import FlowBijector, ReversibleChain
from tfp_flows.flow_model import FlowModel
from tfp_flows.nets import MADE, ConvNet
from tfp_flows.nets.stack import ZeroInitStack
from tfp_flows.steps import (
    AutoregressiveStep,
    ConditionalPrior,
    CouplingStep,
    GlowSteps,
    ScaleLevel,
    ScalingStep,
)

__all__ = ["FAMILIES", "IAF", "MAF", "NICE", "NSF", "Flow", "Glow", "RealNVP", "glow", "iaf",
           "maf", "nice", "nsf", "realnvp"]

PREPROCESSING = ("logit", "center")


def _integer(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _boolean(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def _renamed(kwargs: dict, old: str, new: str, value):
    """Takes the deprecated keyword `old` out of `kwargs`, as the value of `new`."""
    if old not in kwargs:
        return value
    if value is not None:
        raise ValueError(f"{old}= is the deprecated name of {new}=; pass only {new}=.")
    warnings.warn(f"{old}= is deprecated and will be removed in the next release; use "
                  f"{new}= instead.", DeprecationWarning, stacklevel=3)
    return kwargs.pop(old)


def _check_image(event_shape, family: str, squeezes: int):
    if len(event_shape) != 3:
        raise ValueError(f"{family} with scales needs an (H, W, C) event shape, "
                         f"got {event_shape}.")
    height, width, _ = event_shape
    factor = 2 ** squeezes
    if height % factor or width % factor:
        raise ValueError(f"{family} squeezes {squeezes} times, so height and width must be "
                         f"divisible by {factor}; got {event_shape}. Use fewer num_scales.")


class Flow(keras.layers.Layer):
    """Base of the flow families: event shape, context, image preprocessing, composition.

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
        context_shape: `(K,)` to condition on a real-valued context vector of size K, which
            reaches every conditioner (concatenated to its input).
        num_classes: N to condition on integer class labels in [0, N), one-hot encoded and
            then used as a context vector of size N.
        base: the latent's distribution (`tfp_flows.bases`): a registered name, a
            `tfp_flows.Base` or `{"name": ..., **options}`; the standard normal by default.
            The model attaches it (`attach_base`) once it knows the latent shape.
    """

    uses_data_dependent_init = False
    # The size arguments the family takes for vectors and for images (the training command's
    # flags and the benchmark read these).
    vector_args: tuple[str, ...] = ()
    image_args: tuple[str, ...] = ()
    # The coupling (or autoregressive) transform options the family takes.
    transform_args: tuple[str, ...] = ()

    def __init__(self, event_shape, num_levels: int | None = None,
                 preprocessing: str = "logit", alpha: float = 0.05, reversible: bool = False,
                 context_shape=None, num_classes: int | None = None, base="normal", **kwargs):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        # Keras fixes its default policy on first use, so a later set_floatx("float64") shows
        # only in floatx (and in the dtype of what keras.ops creates).
        if "float64" in (policy.variable_dtype, policy.compute_dtype, keras.config.floatx()):
            # The bijectors' constants and the log-det accumulation are float32: a float64
            # policy built a float32 model, whose image preprocessing then failed on float64.
            raise ValueError(
                f"tfp_flows flows compute in float32 (or a mixed float16/bfloat16 policy); got "
                f"the dtype policy {policy.name!r} with floatx {keras.config.floatx()!r} (from "
                f"dtype= or keras.config.set_floatx). "
                f"Build the flow with float32; float64 inputs are accepted and computed in "
                f"float32.")
        if isinstance(event_shape, (str, bytes)) or not hasattr(event_shape, "__len__") or any(
                isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in event_shape):
            raise ValueError(f"event_shape must be a tuple of integers, (D,) or (H, W, C); "
                             f"got {event_shape!r}.")
        event_shape = tuple(int(d) for d in event_shape)
        if len(event_shape) not in (1, 3) or min(event_shape) < 1:
            raise ValueError(f"event_shape must be (D,) or (H, W, C) with positive sizes, "
                             f"got {event_shape}.")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, "
                             f"got {preprocessing!r}.")
        if num_levels is not None:
            num_levels = _integer("num_levels", num_levels, 2)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (
                0.0 < alpha < 0.5):
            raise ValueError(f"alpha must be a number in (0, 0.5), got {alpha!r}.")
        if context_shape is not None and num_classes is not None:
            raise ValueError("pass context_shape=(K,) for a context vector or num_classes=N "
                             "for class labels, not both.")
        if context_shape is not None:
            if isinstance(context_shape, numbers.Integral) or len(context_shape) != 1:
                raise ValueError(f"context_shape must be (K,), a context vector's shape; "
                                 f"got {context_shape!r}.")
            context_shape = (_integer("context_shape[0]", context_shape[0]),)
        if num_classes is not None:
            num_classes = _integer("num_classes", num_classes, 2)
        self.event_shape = event_shape
        self.num_levels = num_levels
        self.preprocessing = preprocessing
        self.alpha = float(alpha)
        self.reversible = _boolean("reversible", reversible)
        self.context_shape = context_shape
        self.num_classes = num_classes
        self.context_size = num_classes or (context_shape[0] if context_shape else 0)
        if base is not None:
            self._keep_base(base)

    def _keep_base(self, base) -> None:
        """Keeps the base for `attach_base`, untracked by Keras until then: attached after the
        steps, its weights follow theirs in the model's weights, where Glow's class-conditional
        prior had them before it became a base (so optimizer states saved then still load)."""
        compat.set_untracked(self, "_base", bases.get(base))

    def attach_base(self, latent_shape) -> bases.Base:
        """Tracks the base as the layer `self.base`, built for `latent_shape` (once)."""
        if getattr(self, "base", None) is None:
            self.base = self._base
        self.base.build_for(latent_shape, self.context_size)
        return self.base

    @property
    def is_image(self) -> bool:
        return len(self.event_shape) == 3

    @property
    def conditioners(self) -> list[keras.layers.Layer]:
        """Every conditioner network of the flow (coupling nets, MADEs, split priors)."""
        return [layer for layer in compat.sublayers(self)
                if isinstance(layer, (ZeroInitStack, MADE))]

    def get_config(self):
        return {**super().get_config(), "event_shape": list(self.event_shape),
                "num_levels": self.num_levels, "preprocessing": self.preprocessing,
                "alpha": self.alpha, "reversible": self.reversible,
                "context_shape": None if self.context_shape is None else list(self.context_shape),
                "num_classes": self.num_classes, "base": bases.serialize(self._base)}

    def context_vector(self, context):
        """The context as the float `(batch, K)` tensor the conditioners see (or None).

        Class labels become one-hot vectors. The caller (`FlowModel`) checks shapes and dtypes.
        """
        if context is None:
            return None
        if self.num_classes:
            return tf.one_hot(tf.cast(context, tf.int32), self.num_classes)
        return tf.cast(context, tf.float32)

    def bijector(self, context=None, initialize: bool = False) -> FlowBijector:
        """f: latent -> data, preprocessing included, for `context` (None if unconditional).

        A `FlowBijector`: float32, and its `trainable_variables` (and those of any TFP
        distribution that holds it) are this layer's trainable variables as `tf.Variable`s.
        It takes any sample and batch shape in front of the event; a context's leading axes
        pair with the input's batch axes (see `tfp_flows.nets.batch`). `initialize=True`
        builds ActNorm in its data-dependent initialisation mode.
        """
        if (context is None) != (self.context_size == 0):
            raise ValueError(
                f"this flow is {'conditional' if self.context_size else 'unconditional'}: "
                f"{'pass a context' if self.context_size else 'it takes no context'}.")
        flow = self._flow_bijector(self.context_vector(context), initialize)
        if self.num_levels is not None:
            flow = tfb.Chain([self._preprocessing_bijector(), flow])
        return FlowBijector(flow, self.variables, name=self.name)

    def _preprocessing_bijector(self) -> tfb.Bijector:
        levels, alpha = float(self.num_levels), self.alpha
        if self.preprocessing == "logit":
            # x = levels * (sigmoid(y) - alpha) / (1 - 2 alpha), as one Sigmoid with bounds.
            return tfb.Sigmoid(low=-levels * alpha / (1 - 2 * alpha),
                               high=levels * (1 - alpha) / (1 - 2 * alpha))
        return tfb.Chain([tfb.Scale(levels), tfb.Shift(0.5)])

    def _chain(self, bijectors: list, event_ndims: int) -> tfb.Bijector:
        """A chain of same-shape bijectors, reversible (memory-saving) when asked for."""
        if self.reversible:
            return ReversibleChain(bijectors, event_ndims)
        return tfb.Chain(bijectors)

    def _flow_bijector(self, context, initialize: bool) -> tfb.Bijector:
        """The steps composed: runs of plain steps chained, each `ScaleLevel` nesting the rest."""
        event_ndims = len(self.event_shape)
        inner, run = None, []

        def composed():
            parts = ([self._chain(run, event_ndims)] if run else []) + (
                [inner] if inner is not None else [])
            return parts[0] if len(parts) == 1 else tfb.Chain(parts)

        for step in reversed(self.steps):
            if isinstance(step, ScaleLevel):
                inner = step.bijector(context, initialize,
                                      inner=composed() if run or inner is not None else None,
                                      chain=self._chain)
                run = []
            else:
                run = step.bijectors(context, initialize) + run
        return composed()

    def _transform(self, transform, scale_fn, bins, bound,
                   default_scale_fn: str) -> transforms.Transform:
        """The coupling (or autoregressive) transform, kept as `self.transform`.

        `transform` is a registered name, a `tfp_flows.Transform` or a `{"name": ...}` dict
        (see `tfp_flows.transforms.get`). The shortcuts `scale_fn`, `bins` and `bound`, when
        not None, are options of a transform given by name; the named transform refuses one
        it does not take. `default_scale_fn` is the family's scale for "affine" by name.
        """
        shortcuts = {key: value for key, value in
                     {"scale_fn": scale_fn, "bins": bins, "bound": bound}.items()
                     if value is not None}
        if shortcuts and not isinstance(transform, str):
            raise ValueError(f"{', '.join(shortcuts)} apply to a transform given by name, not "
                             f"to transform={transform!r}: give the options to the transform "
                             f"itself.")
        if transform == "affine":
            shortcuts.setdefault("scale_fn", default_scale_fn)
        self.transform = transforms.get(transform, **shortcuts)
        # A config must name the transform: an unregistered one is refused now, not when the
        # model is saved after training.
        transforms.serialize(self.transform)
        return self.transform

    def _transform_config(self) -> dict:
        return {"transform": transforms.serialize(self.transform)}

    def _reject_ignored(self, given: dict, applies_to: str):
        ignored = [name for name, value in given.items() if value is not None]
        if ignored:
            kind = "images" if self.is_image else "vectors"
            raise ValueError(f"{type(self).__name__} on {kind} ignores "
                             f"{', '.join(ignored)} (it applies to {applies_to} only); "
                             f"remove it.")


@keras.saving.register_keras_serializable(package="tfp_flows")
class NICE(Flow):
    """NICE: additive couplings on the flattened data and a diagonal scaling.

    Defaults follow the paper's MNIST model: 4 additive couplings, each conditioner 5 hidden
    layers of 1000 ReLUs, alternating halves, then the diagonal scaling. The paper's base is
    logistic; ours is the standard normal shared by all families.

    [1] Dinh, Krueger, Bengio. NICE. https://arxiv.org/abs/1410.8516
    """

    vector_args = image_args = ("num_couplings", "hidden", "num_hidden")

    def __init__(self, event_shape, num_couplings: int = 4, hidden: int = 1000,
                 num_hidden: int = 5, **kwargs):
        super().__init__(event_shape, **kwargs)
        self.num_couplings = _integer("num_couplings", num_couplings)
        self.hidden = _integer("hidden", hidden)
        self.num_hidden = _integer("num_hidden", num_hidden, 0)
        size = int(np.prod(self.event_shape))
        if size < 2:
            raise ValueError(f"NICE needs at least 2 dimensions, got event shape {event_shape}.")
        additive = transforms.AdditiveTransform()
        self.steps = [CouplingStep(additive, size, parity=i % 2, hidden=self.hidden,
                                   num_hidden=self.num_hidden, context_size=self.context_size,
                                   name=f"coupling_{i}") for i in range(self.num_couplings)]
        self.steps.append(ScalingStep(size, name="scaling"))

    def get_config(self):
        return {**super().get_config(), "num_couplings": self.num_couplings,
                "hidden": self.hidden, "num_hidden": self.num_hidden}

    def _flow_bijector(self, context, initialize):
        size = int(np.prod(self.event_shape))
        flow = self._chain([b for step in self.steps
                            for b in step.bijectors(context, initialize)], 1)
        if not self.is_image:
            return flow
        return tfb.Chain([tfb.Reshape(event_shape_out=self.event_shape, event_shape_in=(size,)),
                          flow])


@keras.saving.register_keras_serializable(package="tfp_flows")
class RealNVP(Flow):
    """RealNVP: couplings; multi-scale with checkerboard and channel masks on images.

    Vectors `(D,)`: `num_couplings` couplings with alternating halves, conditioners with
    `num_hidden` dense layers of `hidden` units.

    Images `(H, W, C)`: at each of the first `num_scales - 1` scales, 3 checkerboard couplings,
    a squeeze, 3 channel couplings, then half of the channels are factored out; the last scale
    has 4 checkerboard couplings (RealNVP section 4.1). Conditioners are convolutional with
    `hidden` channels.

    The coupling transform is affine by default (`scale_fn="tanh"` bounds the log-scale for
    stability), or `transform="additive"`, or `transform="spline"` (rational-quadratic, with
    `bins` and `bound`; see `NSF`).

    [1] Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP.
        https://arxiv.org/abs/1605.08803
    """

    vector_args = ("num_couplings", "hidden", "num_hidden")
    image_args = ("num_scales", "hidden", "num_hidden")
    transform_args = ("transform", "bins", "bound")
    default_transform = "affine"

    def __init__(self, event_shape, num_couplings: int | None = None,
                 num_scales: int | None = None, hidden: int | None = None, num_hidden: int = 2,
                 transform: str | None = None, scale_fn: str | None = None,
                 bins: int | None = None, bound: float | None = None, **kwargs):
        num_scales = _renamed(kwargs, "levels", "num_scales", num_scales)
        super().__init__(event_shape, **kwargs)
        transform = self._transform(transform or self.default_transform, scale_fn, bins, bound,
                                    "tanh")
        if self.is_image:
            self._reject_ignored({"num_couplings": num_couplings}, "vectors")
            self.num_couplings = None
            self.num_scales = _integer("num_scales", 3 if num_scales is None else num_scales)
        else:
            self._reject_ignored({"num_scales": num_scales}, "images")
            self.num_scales = None
            self.num_couplings = _integer("num_couplings",
                                          5 if num_couplings is None else num_couplings)
        self.hidden = _integer("hidden", hidden if hidden is not None
                               else (64 if self.is_image else 256))
        self.num_hidden = _integer("num_hidden", num_hidden, 0)
        options = {"hidden": self.hidden, "num_hidden": self.num_hidden,
                   "context_size": self.context_size}
        if not self.is_image:
            size = self.event_shape[0]
            if size < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 dimensions, "
                                 f"got {event_shape}.")
            self.steps = [CouplingStep(transform, size, parity=i % 2, name=f"coupling_{i}",
                                       **options) for i in range(self.num_couplings)]
            return
        _check_image(self.event_shape, type(self).__name__, self.num_scales - 1)
        self.steps = []
        channels = self.event_shape[-1]
        for scale in range(self.num_scales):
            last = scale == self.num_scales - 1
            self.steps += [CouplingStep(transform, channels, mask="checkerboard", parity=i % 2,
                                        event_rank=3, name=f"scale{scale}_checkerboard_{i}",
                                        **options) for i in range(4 if last else 3)]
            if not last:
                self.steps.append(ScaleLevel(
                    [CouplingStep(transform, 4 * channels, parity=i % 2, event_rank=3,
                                  name=f"scale{scale}_channel_{i}", **options) for i in range(3)],
                    name=f"scale{scale}"))
                channels *= 2

    def get_config(self):
        return {**super().get_config(), "num_couplings": self.num_couplings,
                "num_scales": self.num_scales, "hidden": self.hidden,
                "num_hidden": self.num_hidden, **self._transform_config()}


@keras.saving.register_keras_serializable(package="tfp_flows")
class NSF(RealNVP):
    """Neural spline flow: RealNVP's layout with rational-quadratic spline couplings.

    The coupling transform is a monotonic rational-quadratic spline with `bins` bins on
    [-bound, bound] and identity (linear) tails outside it, so no input is rejected (Durkan et
    al. 2019, on TFP's `tfb.RationalQuadraticSpline`). Vectors: `num_couplings` couplings with
    alternating halves (default 6, 128 hidden units); images: RealNVP's multi-scale layout.

    [1] Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural Spline Flows.
        NeurIPS 2019. https://arxiv.org/abs/1906.04032
    """

    default_transform = "spline"

    def __init__(self, event_shape, num_couplings: int | None = None,
                 num_scales: int | None = None, hidden: int | None = None, num_hidden: int = 2,
                 bins: int | None = None, bound: float | None = None, **kwargs):
        transform = kwargs.pop("transform", "spline")
        # The name, a spline, or the dict a saved NSF's config holds.
        if not (transform == "spline" or isinstance(transform, transforms.SplineTransform) or (
                isinstance(transform, dict) and transform.get("name") == "spline")):
            raise ValueError(f"NSF couplings are splines; got transform={transform!r} "
                             f"(use RealNVP for other transforms).")
        vector = len(tuple(event_shape)) == 1
        if vector and num_couplings is None:
            num_couplings = 6
        if vector and hidden is None:
            hidden = 128
        super().__init__(event_shape, num_couplings=num_couplings, num_scales=num_scales,
                         hidden=hidden, num_hidden=num_hidden, transform=transform, bins=bins,
                         bound=bound, **kwargs)


@keras.saving.register_keras_serializable(package="tfp_flows")
class Glow(Flow):
    """Glow: scales of (squeeze, depth x [ActNorm, invertible 1x1 conv, coupling], split).

    Defaults follow the paper: 3 scales of 32 steps, 512 hidden channels, affine coupling
    with sigmoid scale, LU-parametrised 1x1 convolutions, learned conditional prior on each
    split. On vectors `(D,)` the steps run without squeeze or split. `transform` may also be
    "additive" or "spline" (with `bins` and `bound`).

    A conditional Glow (`context_shape` or `num_classes`) also predicts the top latent's mean
    and scale from the context: the class-conditional prior of the paper (section 5), its
    default base `ConditionalDiagonalNormal(num_scales)` (see `tfp_flows.bases`).

    [1] Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1 Convolutions.
        https://arxiv.org/abs/1807.03039
    """

    uses_data_dependent_init = True
    vector_args = ("depth", "hidden")
    image_args = ("num_scales", "depth", "hidden")
    transform_args = ("transform", "bins", "bound")

    def __init__(self, event_shape, num_scales: int | None = None, depth: int = 32,
                 hidden: int = 512, transform: str | None = None, lu: bool = True,
                 split_prior: bool | None = None, preprocessing: str = "center",
                 scale_fn: str | None = None, bins: int | None = None,
                 bound: float | None = None, base=None, **kwargs):
        num_scales = _renamed(kwargs, "levels", "num_scales", num_scales)
        transform = _renamed(kwargs, "coupling", "transform", transform)
        super().__init__(event_shape, preprocessing=preprocessing, base=base, **kwargs)
        coupling = self._transform(transform or "affine", scale_fn, bins, bound, "sigmoid")
        self.depth = _integer("depth", depth)
        self.hidden = _integer("hidden", hidden)
        self.lu = _boolean("lu", lu)
        options = {"hidden": self.hidden, "lu": self.lu, "context_size": self.context_size}
        channels = self.event_shape[-1]
        if not self.is_image:
            self._reject_ignored({"num_scales": num_scales, "split_prior": split_prior},
                                 "images")
            self.num_scales, self.split_prior = None, None
            self.steps = [GlowSteps(coupling, self.event_shape, self.depth, name="steps",
                                    **options)]
            self._default_base(base, self.steps)
            return
        self.num_scales = _integer("num_scales", 3 if num_scales is None else num_scales)
        self.split_prior = _boolean("split_prior", True if split_prior is None else split_prior)
        _check_image(self.event_shape, "Glow", self.num_scales)
        self.steps = []
        height, width = self.event_shape[:2]
        for scale in range(self.num_scales):
            height, width, channels = height // 2, width // 2, channels * 4
            last = scale == self.num_scales - 1
            steps = [GlowSteps(coupling, (height, width, channels), self.depth,
                               name=f"scale{scale}_steps", **options)]
            prior = None
            if self.split_prior and not last:
                prior = ConvNet(channels, num_hidden=0, context_size=self.context_size,
                                name=f"scale{scale}_split_prior")
            self.steps.append(ScaleLevel(steps, prior, name=f"scale{scale}"))
            channels //= 2
        self._default_base(base, self.steps[-1].steps)

    def _default_base(self, base, top_steps: list) -> None:
        """Without a `base`: the class-conditional prior when conditional, else N(0, I).

        That prior was once the last step of the top level; `ConditionalPrior` there now only
        shows the weights files of those Glows where its dense map is.
        """
        if base is not None:
            return
        if not self.context_size:
            self._keep_base("normal")
            return
        self._keep_base(bases.ConditionalDiagonalNormal(num_scales=self.num_scales))
        top_steps.append(ConditionalPrior(self._base, name="conditional_prior"))

    def get_config(self):
        return {**super().get_config(), "num_scales": self.num_scales, "depth": self.depth,
                "hidden": self.hidden, "lu": self.lu, "split_prior": self.split_prior,
                **self._transform_config()}


@keras.saving.register_keras_serializable(package="tfp_flows")
class MAF(Flow):
    """Masked autoregressive flow: `num_layers` MADE-conditioned autoregressive layers.

    Built on TFP's `tfb.MaskedAutoregressiveFlow` with our Keras 3 `MADE`; consecutive layers
    reverse the variable order. Density (the inverse) is one pass; sampling is sequential,
    D passes. Vectors only. `transform="spline"` makes each layer a rational-quadratic
    autoregressive spline (with `bins` and `bound`) instead of MAF's affine map,
    `transform="additive"` a volume-preserving MAF; any registered transform works.

    The affine map's log-scale is soft-clamped to +-3 per layer by default
    (`scale_fn="soft_clamp"`, or "tanh"; see `AffineTransform`): the paper's unbounded one
    (`scale_fn="exp"`) can overflow float32 in one layer and turn a whole variational fit
    NaN (`experiments/vi_stability.py`). A MAF saved without `scale_fn` loads as "exp", the
    scale it was trained with.

    [1] Papamakarios, Pavlakou, Murray. Masked Autoregressive Flow for Density Estimation.
        https://arxiv.org/abs/1705.07057
    """

    vector_args = image_args = ("num_layers", "hidden", "num_hidden")
    transform_args = ("transform", "bins", "bound")

    def __init__(self, event_shape, num_layers: int = 5, hidden: int = 512, num_hidden: int = 2,
                 transform: str | None = None, scale_fn: str | None = None,
                 bins: int | None = None, bound: float | None = None, **kwargs):
        super().__init__(event_shape, **kwargs)
        if self.is_image:
            raise ValueError(f"{type(self).__name__} takes vector events (D,), got "
                             f"{self.event_shape}; flatten images first.")
        autoregressive = self._transform(transform or "affine", scale_fn, bins, bound,
                                         "soft_clamp")
        self.num_layers = _integer("num_layers", num_layers)
        self.hidden = _integer("hidden", hidden)
        self.num_hidden = _integer("num_hidden", num_hidden, 0)
        self.steps = [AutoregressiveStep(autoregressive, self.event_shape[0], hidden=self.hidden,
                                         num_hidden=self.num_hidden, reverse=i % 2 == 1,
                                         context_size=self.context_size,
                                         name=f"autoregressive_{i}")
                      for i in range(self.num_layers)]

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "hidden": self.hidden,
                "num_hidden": self.num_hidden, **self._transform_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("transform", "affine") == "affine":
            # Saved before scale_fn was an option: those weights were trained unbounded.
            config.setdefault("scale_fn", "exp")
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfp_flows")
class IAF(MAF):
    """Inverse autoregressive flow: the MAF layers inverted (`tfb.Invert`).

    Sampling is one pass and density is sequential: the mirror image of MAF, made for fast
    sampling (and for variational posteriors, where densities of own samples are cheap).

    [1] Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational Inference
        with Inverse Autoregressive Flow. https://arxiv.org/abs/1606.04934
    """

    def _flow_bijector(self, context, initialize):
        return tfb.Invert(super()._flow_bijector(context, initialize))


FAMILIES: dict[str, type[Flow]] = {"nice": NICE, "realnvp": RealNVP, "nsf": NSF, "glow": Glow,
                                   "maf": MAF, "iaf": IAF}


def _builder(name: str):
    family = FAMILIES[name]

    def build(event_shape, **kwargs) -> FlowModel:
        return FlowModel(family(event_shape, **kwargs))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"A {family.__name__} `FlowModel`; keyword arguments go to "
                     f"`tfp_flows.zoo.{family.__name__}`.")
    return build


nice = _builder("nice")
realnvp = _builder("realnvp")
nsf = _builder("nsf")
glow = _builder("glow")
maf = _builder("maf")
iaf = _builder("iaf")
