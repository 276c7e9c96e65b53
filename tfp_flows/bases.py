"""Base distributions: the latent's distribution p(z | c) of a flow, as Keras layers.

A flow's density is p(x | c) = p_base(f_c^-1(x) | c) |det J_{f_c^-1}(x)|. The base is a
`Base`: a Keras layer that owns its parameters (so they are model weights: trained, saved in
`.keras` files and checkpoints, exported, mirrored under a distribution strategy, and listed in
`trainable_variables` of the model and of its TFP distributions) and returns a
`tfd.Distribution` over the latent. Every family takes `base=`: a registered name
(`"normal"`, the default), an instance, or a dict `{"name": ..., **config}`.

Writing a base (a plugin)::

    @tfp_flows.register_base("laplace")
    class Laplace(tfp_flows.Base):
        def build(self, latent_shape):
            self.log_scale = self.add_weight(shape=latent_shape, initializer="zeros",
                                             name="log_scale")

        def distribution(self, context=None, temperature=1.0):
            scale = tfp.util.DeferredTensor(self.log_scale.value,
                                            lambda v: tf.exp(v) * temperature)
            return tfd.Independent(tfd.Laplace(0.0, scale), len(self.latent_shape))

The contract:

- `__init__` takes the base's options as keyword arguments and `get_config` returns them
  (JSON values; not Keras' name or dtype): a saved model rebuilds the base as
  `cls(**get_config())`.
- `build(latent_shape)` creates the weights with `add_weight` (or sublayers). The model calls
  `build_for(latent_shape, context_size)` once, which sets `latent_shape` and `context_size`
  first; `latent_shape` is the flow's latent shape (the data's shape for most flows).
- `distribution(context=None, temperature=1.0)` returns a float32 `tfd.Distribution` with event
  shape `latent_shape`. Build it on every call and read the variables lazily (the variable
  itself, or `tfp.util.DeferredTensor` over it), so that a distribution built before a
  `tf.GradientTape` opens still gets gradients. `temperature` (> 0; a Python float or a scalar
  tensor) is the sampling temperature: Glow's convention is that it multiplies the base's
  scales, and 1 is the density itself.
- `conditional = True` declares a base whose distribution depends on the context; it is built
  for conditional flows only and then gets the context as the float vectors the conditioners
  see (class labels one-hot): a tensor of shape `batch + (context_size,)`, and the
  distribution's batch shape is `batch` (`()` for one context). An unconditional base
  (`conditional = False`) gets no context and has batch shape `()`; it fits any flow.
- Sampling uses `distribution.sample(n, seed=s)` with a stateless seed (an int32 pair), so the
  same seed gives the same latents in Python and in the exported `sample` signature.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability import distributions as tfd

from tfp_flows.bijectors.squeeze import Squeeze
from tfp_flows.registry import Registry

__all__ = ["BASES", "Base", "ConditionalDiagonalNormal", "DiagonalNormal", "GaussianMixture",
           "Normal", "get", "register_base", "serialize", "top_scale_channels"]


class Base(keras.layers.Layer):
    """The base distribution of a flow: a Keras layer owning its parameters.

    See the module's documentation for the contract a subclass fulfils. Weights are float32
    whatever the global dtype policy (densities are accumulated in float32).

    Attributes:
        conditional: whether the distribution depends on the context (class attribute).
        latent_shape: the shape of one latent, set by `build_for` (None before).
        context_size: the size of the context vectors (0: an unconditional flow).
    """

    conditional = False

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("name", getattr(type(self), "registered_name", None))
        super().__init__(**kwargs)
        self.latent_shape: tuple[int, ...] | None = None
        self.context_size = 0

    def build_for(self, latent_shape, context_size: int = 0) -> None:
        """Fixes the latent shape and the context size, then creates the weights (`build`).

        Raises ValueError for a conditional base on an unconditional flow, or a base built
        before for another latent shape or context size (one base instance serves one flow).
        """
        latent_shape = tuple(int(d) for d in latent_shape)
        context_size = int(context_size)
        if self.conditional and not context_size:
            raise ValueError(f"the base {self.name!r} is conditional (its distribution depends "
                             f"on the context) and needs a conditional flow: build the flow "
                             f"with context_shape=(K,) or num_classes=N, or use an "
                             f"unconditional base such as 'normal'.")
        if self.built:
            if (latent_shape, context_size) != (self.latent_shape, self.context_size):
                raise ValueError(f"the base {self.name!r} was built for latents of shape "
                                 f"{self.latent_shape} and context size {self.context_size}, "
                                 f"not {latent_shape} and {context_size}; give each flow its "
                                 f"own base.")
            return
        self.latent_shape, self.context_size = latent_shape, context_size
        self.build(latent_shape)

    def build(self, latent_shape):
        """Creates the weights for latents of `latent_shape` (none by default)."""
        self.built = True

    def distribution(self, context=None, temperature=1.0) -> tfd.Distribution:
        """The distribution of the latent (given the context, for a conditional base)."""
        raise NotImplementedError(f"{type(self).__name__} must define distribution(context, "
                                  f"temperature), the contract of tfp_flows.Base.")

    def get_config(self) -> dict:
        """The base's options, as `__init__` takes them (none by default)."""
        return {}

    def _checked(self, context, temperature):
        """`context` as a float32 tensor (or None) and `temperature` as a float32 scalar,
        refusing a context that the base cannot take (or its absence)."""
        if self.latent_shape is None:
            raise ValueError(f"the base {self.name!r} is not built: a flow builds it "
                             f"(build_for(latent_shape, context_size)).")
        if self.conditional and context is None:
            raise ValueError(f"the base {self.name!r} is conditional and needs the context "
                             f"vectors (shape (..., {self.context_size})); got none.")
        if not self.conditional and context is not None:
            raise ValueError(f"the base {self.name!r} is unconditional and takes no context; "
                             f"got one.")
        if context is not None:
            context = tf.convert_to_tensor(context, tf.float32)
            if context.shape.rank == 0 or context.shape[-1] not in (None, self.context_size):
                raise ValueError(f"the base {self.name!r} takes context vectors of shape "
                                 f"(..., {self.context_size}), got shape {tuple(context.shape)}.")
        return context, tf.cast(temperature, tf.float32)


BASES = Registry("base", Base)
"""The bases registry: name -> `Base` subclass."""
register_base = BASES.register
"""A decorator registering a `Base` subclass under a name: `@register_base("student_t")`."""


def get(spec) -> Base:
    """A base from `spec`: a registered name, a `Base` instance, or `{"name": ..., **config}`."""
    if isinstance(spec, Base):
        return spec
    if isinstance(spec, str):
        return BASES.get(spec)()
    if isinstance(spec, dict) and "name" in spec:
        config = dict(spec)
        cls = BASES.get(config.pop("name"))
        try:
            return cls(**config)
        except TypeError as error:
            raise ValueError(f"the base {spec['name']!r} does not take the options "
                             f"{sorted(config)} ({error}).") from None
    raise TypeError(f"base must be a registered name ({', '.join(BASES.names())}), a "
                    f"tfp_flows.Base or a dict {{'name': ..., **options}}; got {spec!r}.")


def serialize(base: Base) -> dict:
    """`{"name": registered name, **base.get_config()}`, what `get` takes back."""
    name = getattr(type(base), "registered_name", None)
    if name is None or name not in BASES or BASES.get(name) is not type(base):
        raise ValueError(f"{type(base).__name__} is not registered, so a model using it cannot "
                         f"be saved; register it with @tfp_flows.register_base(name).")
    return {"name": name, **base.get_config()}


def _scale(log_scale, temperature):
    """exp(log_scale) * temperature, read from the variable on every use."""
    return tfp.util.DeferredTensor(log_scale.value, lambda v: tf.exp(v) * temperature)


@register_base("normal")
class Normal(Base):
    """The standard normal N(0, I): no parameters; at temperature T, N(0, T^2 I)."""

    def distribution(self, context=None, temperature=1.0) -> tfd.Distribution:
        _, temperature = self._checked(context, temperature)
        return tfd.Sample(tfd.Normal(tf.constant(0.0), temperature),
                          sample_shape=self.latent_shape)


@register_base("diagonal_normal")
class DiagonalNormal(Base):
    """N(mu, diag(sigma^2)) with a learned mean and log-scale per latent entry.

    Both start at zero (the standard normal). At temperature T the scales are T sigma.
    """

    def build(self, latent_shape):
        self.loc = self.add_weight(shape=latent_shape, initializer="zeros", name="loc")
        self.log_scale = self.add_weight(shape=latent_shape, initializer="zeros",
                                         name="log_scale")

    def distribution(self, context=None, temperature=1.0) -> tfd.Distribution:
        _, temperature = self._checked(context, temperature)
        return tfd.Independent(tfd.Normal(self.loc.value, _scale(self.log_scale, temperature)),
                               reinterpreted_batch_ndims=len(self.latent_shape))


@register_base("gaussian_mixture")
class GaussianMixture(Base):
    """A mixture of `num_components` diagonal Gaussians over the whole latent.

    Learned per component: a weight (softmax of a logit), a mean and a log-scale per latent
    entry. Initially the weights are equal, the scales 1 and the means drawn from
    N(0, `init_spread`^2) with `seed` (distinct components, reproducibly). At temperature T
    every component's scales are T sigma_k about its own mean; the weights and the means do not
    change, so a low temperature concentrates the samples near the means, not near zero.

    Args:
        num_components: the number of components (>= 1).
        init_spread: the standard deviation of the initial means.
        seed: the seed of the initial means.
    """

    def __init__(self, num_components: int = 2, init_spread: float = 1.0, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_components, bool) or not isinstance(
                num_components, numbers.Integral) or num_components < 1:
            raise ValueError(f"GaussianMixture needs an integer num_components >= 1, got "
                             f"{num_components!r}.")
        if isinstance(init_spread, bool) or not isinstance(init_spread, numbers.Real) or not (
                0 <= init_spread < np.inf):
            raise ValueError(f"GaussianMixture needs a finite init_spread >= 0, got "
                             f"{init_spread!r}.")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"GaussianMixture needs an integer seed, got {seed!r}.")
        self.num_components = int(num_components)
        self.init_spread = float(init_spread)
        self.seed = int(seed)

    def build(self, latent_shape):
        shape = (self.num_components, *latent_shape)
        self.logits = self.add_weight(shape=(self.num_components,), initializer="zeros",
                                      name="logits")
        self.loc = self.add_weight(shape=shape, name="loc", initializer=keras.initializers
                                   .RandomNormal(stddev=self.init_spread, seed=self.seed))
        self.log_scale = self.add_weight(shape=shape, initializer="zeros", name="log_scale")

    def distribution(self, context=None, temperature=1.0) -> tfd.Distribution:
        _, temperature = self._checked(context, temperature)
        components = tfd.Independent(
            tfd.Normal(self.loc.value, _scale(self.log_scale, temperature)),
            reinterpreted_batch_ndims=len(self.latent_shape))
        return tfd.MixtureSameFamily(tfd.Categorical(logits=self.logits.value), components)

    def get_config(self) -> dict:
        return {"num_components": self.num_components, "init_spread": self.init_spread,
                "seed": self.seed}


def top_scale_channels(latent_shape, num_scales: int) -> np.ndarray:
    """Where the top scale's channels sit in a multi-scale latent (`MultiScale`'s layout).

    Each of `num_scales` scales squeezes 2x2 and factors out half of the channels; the last
    keeps all of its (H / 2^L, W / 2^L, C 2^(L+1)) block, the top latent. Returns an int array
    of `latent_shape` holding, per latent entry, the top latent's channel it is, or -1 for the
    entries factored out by the earlier scales.
    """
    height, width, channels = latent_shape

    def level(shape, remaining):
        squeezed = (shape[0] // 2, shape[1] // 2, 4 * shape[2])
        if remaining == 1:
            h = np.broadcast_to(np.arange(squeezed[2], dtype="float32"), squeezed)
        else:
            kept = level(squeezed[:2] + (2 * shape[2],), remaining - 1)
            h = np.concatenate([kept, np.full(kept.shape, -1.0, "float32")], axis=-1)
        return Squeeze().inverse(tf.constant(h)).numpy()

    return level((height, width, channels), num_scales).astype("int32")


@register_base("conditional_diagonal_normal")
class ConditionalDiagonalNormal(Base):
    """N(mu(c), diag(sigma(c)^2)): mean and log-scale from the context by a dense map.

    The map is zero-initialised (kernel and bias), so the base starts as the standard normal.
    At temperature T the scales are T sigma(c).

    Args:
        num_scales: None for a mean and log-scale per latent entry. For the latent of a
            multi-scale flow with that many scales, each squeezing 2x2 and factoring out half
            of the channels (Glow's `num_scales`): one mean and log-scale per channel of the
            top latent (the block the last scale keeps), shared across its positions, with
            the entries factored out earlier standard normal. That is Glow's class-conditional
            prior (Kingma and Dhariwal 2018, section 5), a conditional Glow's default base.
    """

    conditional = True

    def __init__(self, num_scales: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if num_scales is not None and (isinstance(num_scales, bool) or not isinstance(
                num_scales, numbers.Integral) or num_scales < 1):
            raise ValueError(f"ConditionalDiagonalNormal takes num_scales=None or an integer "
                             f">= 1, got {num_scales!r}.")
        self.num_scales = None if num_scales is None else int(num_scales)

    def build(self, latent_shape):
        if self.num_scales is None:
            self._where = np.arange(int(np.prod(latent_shape)), dtype="int32").reshape(
                latent_shape)
        else:
            factor = 2 ** self.num_scales
            if len(latent_shape) != 3 or latent_shape[0] % factor or latent_shape[1] % factor:
                raise ValueError(f"ConditionalDiagonalNormal(num_scales={self.num_scales}) "
                                 f"needs (H, W, C) latents with H and W divisible by {factor}, "
                                 f"got {latent_shape}.")
            self._where = top_scale_channels(latent_shape, self.num_scales)
        # One mean and one log-scale per parameterised entry, in this order (as Glow's prior
        # always had them, so its saved weights keep their meaning).
        self.dense = keras.layers.Dense(2 * (int(self._where.max()) + 1), dtype="float32",
                                        kernel_initializer="zeros", name="dense")
        self.dense.build((None, self.context_size))

    def _parameter(self, context, index: int):
        """The mean (0) or log-scale (1) of every latent entry, shaped `batch + latent`."""
        vectors = tf.reshape(context, [-1, self.context_size])
        params = tf.split(tf.matmul(vectors, self.dense.kernel.value) + self.dense.bias.value,
                          2, axis=-1)[index]
        # Entries without a parameter of their own (-1) read the zero in front.
        padded = tf.pad(params, [[0, 0], [1, 0]])
        entries = tf.gather(padded, self._where + 1, axis=-1)
        return tf.reshape(entries, tf.concat([tf.shape(context)[:-1], self.latent_shape], 0))

    def distribution(self, context=None, temperature=1.0) -> tfd.Distribution:
        context, temperature = self._checked(context, temperature)
        kernel = self.dense.kernel.value
        loc = tfp.util.DeferredTensor(kernel, lambda _: self._parameter(context, 0),
                                      also_track=[self.dense.bias.value],
                                      shape=[*context.shape[:-1], *self.latent_shape])
        scale = tfp.util.DeferredTensor(
            kernel, lambda _: tf.exp(self._parameter(context, 1)) * temperature,
            also_track=[self.dense.bias.value], shape=[*context.shape[:-1], *self.latent_shape])
        return tfd.Independent(tfd.Normal(loc, scale),
                               reinterpreted_batch_ndims=len(self.latent_shape))

    def get_config(self) -> dict:
        return {"num_scales": self.num_scales}
