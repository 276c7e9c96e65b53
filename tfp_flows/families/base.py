"""The contract of a flow family: a Keras layer made of steps, and the arguments it declares.

A family is a `Flow` subclass registered under a name (`register_family`). It declares its
own arguments once, as `Argument`s in the class attribute `arguments`: name, type, default
(one value, or one per event rank), help, and the event ranks they apply to. From that one
declaration come the argument checks (`Flow.__init__` validates every declared argument and
sets it as an attribute), the saved config (`get_config`), `tfp_flows.build(name, ...)`, the
training command's flags and the benchmark's choices. The family's `__init__` then writes
its steps (`tfp_flows.steps`) into `self.steps`, data -> latent order.

Steps are listed in the data -> latent order of the papers: `tfb.Chain([a, b]).inverse`
applies `a^-1` first, so the first step is the one nearest the data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows import bases, compat, dequantizers, transforms
from tfp_flows.bijectors import FlowBijector, ReversibleChain
from tfp_flows.flow_model import FlowModel
from tfp_flows.nets import MADE
from tfp_flows.nets.stack import ZeroInitStack
from tfp_flows.registry import Registry
from tfp_flows.steps import ScaleLevel

__all__ = ["Argument", "FAMILIES", "Flow", "PRECISION", "PRECISIONS", "TRANSFORM_ARGUMENTS",
           "build", "check_image", "register_family"]

PREPROCESSING = ("logit", "center")
# What a value of each declared type must be, in words.
_EXPECTED = {int: "an integer", float: "a number", bool: "True or False", str: "a string"}


def _integer(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_image(event_shape, family: str, squeezes: int) -> None:
    """Refuses an event shape that is not an image whose sides survive `squeezes` squeezes."""
    if len(event_shape) != 3:
        raise ValueError(f"{family} with scales needs an (H, W, C) event shape, "
                         f"got {event_shape}.")
    height, width, _ = event_shape
    factor = 2 ** squeezes
    if height % factor or width % factor:
        raise ValueError(f"{family} squeezes {squeezes} times, so height and width must be "
                         f"divisible by {factor}; got {event_shape}. Use fewer num_scales.")


@dataclasses.dataclass(frozen=True)
class Argument:
    """One argument of a family, declared once.

    Args:
        name: the keyword (and the training command's flag).
        type: int, float, bool or str.
        default: the value when the argument is not given (or given as None): one value, or a
            dict `{event rank: value}` when it depends on vectors (1) or images (3).
        help: one line for the training command's help and the docs.
        ranks: the event ranks it applies to; given for another rank, it is refused.
        minimum: the smallest value an int or float may take (inclusive).
        choices: the values a str may take (None: any).
        positive: a float must be > 0 and finite.
        deprecated_name: an older keyword still accepted with a DeprecationWarning.
    """

    name: str
    type: type
    default: object = None
    help: str = ""
    ranks: tuple[int, ...] = (1, 3)
    minimum: float | None = None
    choices: tuple | None = None
    positive: bool = False
    deprecated_name: str | None = None

    def default_for(self, rank: int):
        """The default for an event of `rank` (1: vectors, 3: images)."""
        if isinstance(self.default, dict):
            return self.default.get(rank)
        return self.default

    def check(self, value):
        """`value` as this argument's type, or a ValueError saying what was expected."""
        kind = self.type
        if kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{self.name} must be True or False, got {value!r}.")
            return bool(value)
        if kind is int:
            minimum = 0 if self.minimum is None else int(self.minimum)
            return _integer(self.name, value, minimum)
        if kind is float:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or (
                    self.positive and not (math.isfinite(value) and value > 0)) or (
                    self.minimum is not None and not value >= self.minimum):
                bound = (" > 0 and finite" if self.positive else
                         f" >= {self.minimum}" if self.minimum is not None else "")
                raise ValueError(f"{self.name} must be a number{bound}, got {value!r}.")
            return float(value)
        if not isinstance(value, kind) or (self.choices is not None
                                           and value not in self.choices):
            allowed = (f"one of {self.choices}" if self.choices is not None
                       else _EXPECTED.get(kind, kind.__name__))
            raise ValueError(f"{self.name} must be {allowed}, got {value!r}.")
        return value

    def with_default(self, default) -> Argument:
        """The same argument with another default (a subclass family's)."""
        return dataclasses.replace(self, default=default)


FAMILIES = Registry("family")
"""The families registry: name -> `Flow` subclass (`FAMILIES.get(name)`, `FAMILIES.names()`)."""

# The transform arguments of a family with a choice of coupling (or autoregressive) transform:
# the transform, and shortcuts for the built-in transforms' options.
TRANSFORM_ARGUMENTS = (
    Argument("transform", str, None, "The coupling or autoregressive transform: a registered "
             "name (an instance or a serialized dict in Python); default: the family's."),
    Argument("scale_fn", str, None, "The affine transform's scale function; default: the "
             "family's."),
    Argument("bins", int, None, "Bins of a spline transform; default: the transform's."),
    Argument("bound", float, None, "A spline transform acts on [-bound, bound] (the identity "
             "outside); default: the transform's."),
)
"""The `Argument`s of a family with a choice of transform: `transform`, and the shortcuts
for the built-in transforms' options."""


PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
"""The precisions a flow's conditioner networks compute in, with the Keras dtype policy of each
(variables stay float32 under all three; see `Flow`)."""
PRECISION = Argument("precision", str, "float32", "What the conditioner networks compute in: "
                     "float32, bfloat16 or float16 (mixed precision: variables, log-dets, the "
                     "base density, the loss and every output stay float32).",
                     choices=tuple(PRECISIONS))
"""Every family's `precision=` (the training command's --precision)."""


def register_family(name: str):
    """Registers a `Flow` subclass as the family `name`: `build(name, ...)`, `--flow=name`."""
    def decorate(family):
        if not (isinstance(family, type) and issubclass(family, Flow)):
            raise TypeError(f"register_family({name!r}) takes a subclass of "
                            f"tfp_flows.Flow, got {family!r}.")
        names = [argument.name for argument in family.arguments]
        if len(set(names)) != len(names) or set(names) & set(Flow.common_arguments):
            raise ValueError(f"{family.__name__} declares an argument twice or redeclares one "
                             f"of Flow's own ({', '.join(Flow.common_arguments)}): {names}.")
        if keras.saving.get_registered_name(family) == family.__name__:
            # Not yet known to Keras: a saved model names it "tfp_flows>ClassName".
            family = keras.saving.register_keras_serializable(package="tfp_flows")(family)
        return FAMILIES.register(name)(family)

    return decorate


def build(name: str, event_shape, **kwargs) -> FlowModel:
    """A `FlowModel` of the registered family `name`; keyword arguments go to the family."""
    return FlowModel(FAMILIES.get(name)(event_shape, **kwargs))


class Flow(keras.layers.Layer):
    """Base of the flow families: event shape, context, image preprocessing, composition.

    Args:
        event_shape: `(D,)` for vectors or `(H, W, C)` for images.
        num_levels: for images, the number of pixel levels (256 for 8-bit). The model then
            expects dequantized pixels in [0, num_levels) and puts the scaling to [0, 1)
            and the preprocessing in the bijector, so their log-dets are part of log p(x).
            `None` for continuous data.
        preprocessing: "logit" (RealNVP: y = logit(alpha + (1 - 2 alpha) x / num_levels))
            or "center" (Glow: y = x / num_levels - 1/2). None: the family's default.
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
        dequantization: for images with `num_levels`, how discrete pixels get their noise
            (`tfp_flows.dequantizers`): "uniform" (the default: the data pipeline adds
            u ~ Uniform[0, 1) and the model sees pixel values in [0, num_levels)), or a
            learned dequantizer, "variational" (Flow++), a `Dequantizer` or
            `{"name": ..., **options}`: the model then sees the integer pixels and its
            log_prob is a one-sample estimate of the variational bound on log P(x).
        precision: what the conditioner networks (`conditioners`: coupling nets, MADEs,
            split priors, FFJORD's dynamics) compute in: "float32" (default), "bfloat16" or
            "float16", as the Keras dtype policies "mixed_bfloat16" / "mixed_float16" on
            those networks only (no global policy is set). Their variables stay float32,
            and their outputs are cast to float32 before they enter a transform, so the
            log-dets, the base log-density, the loss and everything the model returns are
            float32: the density is exact for the map the low-precision networks compute.
            `FlowModel.compile` scales the loss under "float16". Under "float32" the
            networks keep the policy Keras gives them (a global policy a user set applies).
        **kwargs: the family's declared `arguments` (None: the declared default), then
            Keras layer arguments (`name`, ...).

    A subclass declares `arguments`, calls `super().__init__(event_shape, **everything)`, and
    then writes `self.steps`: step layers (`tfp_flows.steps`) with `bijectors(context,
    initialize)`, or `ScaleLevel`s, which nest the steps after them. A family that works on
    the flattened event (NICE, MAF) sets `flattens_images = True`.
    """

    # The family's own arguments (see `Argument`); a subclass family adds to its parent's.
    arguments: tuple[Argument, ...] = ()
    # The keywords every family takes, checked here rather than declared.
    common_arguments = ("event_shape", "num_levels", "preprocessing", "alpha", "reversible",
                        "context_shape", "num_classes", "base", "dequantization",
                        "precision")
    default_preprocessing = "logit"
    # The family's transform when none is given (None: the family has no choice of it), and
    # the options a transform gets when chosen by name and not given them.
    default_transform: str | None = None
    transform_defaults: dict[str, dict] = {}
    # Whether the steps see images as vectors of H * W * C entries.
    flattens_images = False
    uses_data_dependent_init = False

    def __init__(self, event_shape, num_levels: int | None = None,
                 preprocessing: str | None = None, alpha: float = 0.05,
                 reversible: bool = False, context_shape=None, num_classes: int | None = None,
                 base="normal", dequantization=dequantizers.UNIFORM,
                 precision: str | None = None, **kwargs):
        declared = self._take_declared(kwargs)
        transform = self._take_transform(kwargs)
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
        preprocessing = self.default_preprocessing if preprocessing is None else preprocessing
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
        if not isinstance(reversible, (bool, np.bool_)):
            raise ValueError(f"reversible must be True or False, got {reversible!r}.")
        self.event_shape = event_shape
        self.num_levels = num_levels
        self.preprocessing = preprocessing
        self.alpha = float(alpha)
        self.reversible = bool(reversible)
        self.context_shape = context_shape
        self.num_classes = num_classes
        self.context_size = num_classes or (context_shape[0] if context_shape else 0)
        self.precision = PRECISION.check(PRECISION.default if precision is None else precision)
        self._set_declared(declared)
        self.transform = transform
        self.dequantizer = self._dequantizer(dequantization)
        if base is not None:
            self._keep_base(base)

    def _dequantizer(self, spec) -> dequantizers.Dequantizer | None:
        """The learned dequantizer of `dequantization=` (None for uniform), built for the
        images; refused for vectors and continuous data, which have no pixels."""
        dequantizer = dequantizers.get(spec)
        if dequantizer is None:
            return None
        if not self.is_image or self.num_levels is None:
            raise ValueError(
                f"dequantization={spec!r} learns the noise of discrete pixels, so it needs an "
                f"image flow with pixel levels: an (H, W, C) event shape and num_levels; got "
                f"event_shape={self.event_shape} and num_levels={self.num_levels}.")
        dequantizer.build_for(self.event_shape, self.num_levels)
        return dequantizer

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

    def _take_transform(self, kwargs: dict):
        """The transform built from `transform=` and its shortcut options, or None for a
        family without a choice of transform."""
        given = {argument.name: kwargs.pop(argument.name, None)
                 for argument in TRANSFORM_ARGUMENTS}
        if self.default_transform is None:
            given = [name for name, value in given.items() if value is not None]
            if given:
                raise ValueError(f"{type(self).__name__} has no choice of transform; remove "
                                 f"{', '.join(given)}.")
            return None
        spec = given.pop("transform")
        # The shortcuts, when given, are options of a transform given by name.
        options = {name: value for name, value in given.items() if value is not None}
        if spec is None:
            spec = self.default_transform
        if options and not isinstance(spec, str):
            raise ValueError(f"{', '.join(options)} apply to a transform given by name, not to "
                             f"transform={spec!r}: give the options to the transform itself.")
        if isinstance(spec, str):
            options = {**self.transform_defaults.get(spec, {}), **options}
        transform = transforms.get(spec, **options)
        # A config must name the transform: an unregistered one is refused now, not when the
        # model is saved after training.
        transforms.serialize(transform)
        return transform

    def _take_declared(self, kwargs: dict) -> dict:
        """Pops the declared arguments (and their deprecated names) out of `kwargs`."""
        given = {}
        for argument in self.arguments:
            value = kwargs.pop(argument.name, None)
            old = argument.deprecated_name
            if old is not None and old in kwargs:
                if value is not None:
                    raise ValueError(f"{old}= is the deprecated name of {argument.name}=; "
                                     f"pass only {argument.name}=.")
                warnings.warn(f"{old}= is deprecated and will be removed in the next "
                              f"release; use {argument.name}= instead.", DeprecationWarning,
                              stacklevel=4)
                value = kwargs.pop(old)
            given[argument.name] = value
        return given

    def _set_declared(self, given: dict) -> None:
        """Checks each declared argument and sets it as an attribute (None where it does not
        apply to this event rank); one given for the other rank is refused."""
        rank = len(self.event_shape)
        ignored = [name for name, value in given.items() if value is not None
                   and rank not in self._declaration(name).ranks]
        if ignored:
            other = "images" if rank == 1 else "vectors"
            kind = "images" if rank == 3 else "vectors"
            raise ValueError(f"{type(self).__name__} on {kind} ignores {', '.join(ignored)} "
                             f"(it applies to {other} only); remove it.")
        for argument in self.arguments:
            value = given[argument.name]
            if rank not in argument.ranks:
                setattr(self, argument.name, None)
                continue
            if value is None:
                value = argument.default_for(rank)
            setattr(self, argument.name, None if value is None else argument.check(value))

    @classmethod
    def _declaration(cls, name: str) -> Argument:
        return next(argument for argument in cls.arguments if argument.name == name)

    @classmethod
    def arguments_for(cls, rank: int) -> tuple[Argument, ...]:
        """The declared arguments that apply to events of rank 1 (vectors) or 3 (images),
        with the transform's when the family has a choice of transform."""
        own = tuple(argument for argument in cls.arguments if rank in argument.ranks)
        return own + (TRANSFORM_ARGUMENTS if cls.default_transform is not None else ())

    @property
    def is_image(self) -> bool:
        """Whether the event is an image (rank 3, (H, W, C))."""
        return len(self.event_shape) == 3

    @property
    def flat_size(self) -> int:
        """The number of entries of an event."""
        return int(np.prod(self.event_shape))

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
                "num_classes": self.num_classes, "base": bases.serialize(self._base),
                "precision": self.precision,
                # Only a learned dequantizer is written: a uniform flow's config is unchanged.
                **({} if self.dequantizer is None
                   else {"dequantization": dequantizers.serialize(self.dequantizer)}),
                **{argument.name: getattr(self, argument.name) for argument in self.arguments},
                **({} if self.transform is None
                   else {"transform": transforms.serialize(self.transform)})}

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
        self._set_conditioner_policy()
        flow = self._flow_bijector(self.context_vector(context), initialize)
        if self.flattens_images and self.is_image:
            flow = tfb.Chain([tfb.Reshape(event_shape_out=self.event_shape,
                                          event_shape_in=(self.flat_size,)), flow])
        if self.num_levels is not None:
            flow = tfb.Chain([self._preprocessing_bijector(), flow])
        return FlowBijector(flow, self.variables, name=self.name)

    @tf.autograph.experimental.do_not_convert
    def _set_conditioner_policy(self) -> None:
        """Gives the conditioner networks (and their sublayers) the precision's dtype policy.

        Done when the first bijector is built: the family's `__init__` writes its steps after
        `Flow.__init__`, and the networks build their (float32) weights on their first call,
        inside the bijector. Keras then casts their inputs and weights to the compute dtype.
        Under "float32" the layers keep the policy Keras gave them (float32, unless a user
        set a global mixed policy, which then still applies as before `precision=` existed).
        """
        if self.precision == "float32":
            return
        policy = PRECISIONS[self.precision]
        for net in self.conditioners:
            for layer in (net, *compat.sublayers(net)):
                if layer.dtype_policy.name != policy:
                    layer.dtype_policy = policy

    def training_pass(self) -> contextlib.AbstractContextManager:
        """The context in which `FlowModel.train_step` builds its bijector.

        A family whose training density is an estimate of its exact one (FFJORD's stochastic
        trace) switches to it inside; by default nothing changes.
        """
        return contextlib.nullcontext()

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
        event_ndims = 1 if self.flattens_images else len(self.event_shape)
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
