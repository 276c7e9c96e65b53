"""Learned dequantization: a flow's own noise distribution q(u | x) for discrete pixels.

An image flow models a density p over pixel values in [0, L), and discrete pixels x in
{0, ..., L-1}^D have the probability P(x) = integral over [0, 1)^D of p(x + u) du. Any density
q(u | x) on [0, 1)^D gives the variational bound (Theis et al. 2016; Ho et al. 2019)

    log P(x) >= E_{u ~ q(. | x)} [log p(x + u) - log q(u | x)],

and the importance-weighted bound with K samples (Burda et al. 2016),

    log P(x) >= E [log (1/K) sum_k p(x + u_k) / q(u_k | x)],

which is at least the former and tends to log P(x) as K grows. Uniform dequantization is the
case q = 1; it needs no model-side code, the data pipeline adds the noise
(`tfp_flows.datasets.load`, the default). `dequantization="variational"` on an image flow
learns q jointly with p (Flow++): the model then takes the integer pixels themselves
(`tfp_flows.datasets.load(..., dequantize=False)`) and its `log_prob` is a one-sample estimate
of the bound. Bits/dim keeps the library's units (nats per example of pixel values,
`-log / (D ln 2)`), so the bound's bits/dim and those of uniform dequantization (a bound too,
with q = 1) compare directly.

A dequantizer is a `Dequantizer` layer registered with `register_dequantizer(name)`; a flow
takes `dequantization=` as a registered name, an instance or `{"name": ..., **options}`.

[1] Ho, Chen, Srinivas, Duan, Abbeel. Flow++: Improving Flow-Based Generative Models with
    Variational Dequantization and Architecture Design. https://arxiv.org/abs/1902.00275
[2] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders.
    https://arxiv.org/abs/1509.00519
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.registry import Registry

__all__ = ["DEQUANTIZERS", "UNIFORM", "Dequantizer", "VariationalDequantizer", "add_noise",
           "get", "register_dequantizer", "serialize"]

UNIFORM = "uniform"
"""The default dequantization: the data pipeline adds uniform noise, the model holds no
dequantizer."""


def add_noise(x, u) -> tf.Tensor:
    """x + u for integer pixels x and noise u in [0, 1), kept below x + 1: in float32, x + u
    rounds up to x + 1 for u within an ulp of 1 (~1e-5 of pixels at 255)."""
    return tf.minimum(x + u, tf.math.nextafter(x + 1.0, x))


class Dequantizer(keras.layers.Layer):
    """The noise distribution q(u | x) on [0, 1)^D of a flow's learned dequantization.

    A subclass creates its weights in `build_for` and defines `sample`. Weights are float32
    whatever the global dtype policy.

    Attributes:
        event_shape: the shape of one image `(H, W, C)`, set by `build_for`.
        num_levels: the number of pixel levels L (pixels are integers in [0, L)).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("name", getattr(type(self), "registered_name", None))
        super().__init__(**kwargs)
        self.event_shape: tuple[int, ...] | None = None
        self.num_levels: int | None = None

    def build_for(self, event_shape, num_levels: int) -> None:
        """Fixes the image shape and the number of levels, then creates the weights."""
        event_shape, num_levels = tuple(int(d) for d in event_shape), int(num_levels)
        if self.built:
            if (event_shape, num_levels) != (self.event_shape, self.num_levels):
                raise ValueError(f"the dequantizer {self.name!r} was built for images of shape "
                                 f"{self.event_shape} with {self.num_levels} levels, not "
                                 f"{event_shape} with {num_levels}; give each flow its own.")
            return
        self.event_shape, self.num_levels = event_shape, num_levels
        self.build(event_shape)

    def sample(self, x, num_samples, seed):
        """`num_samples` noises u ~ q(u | x) per image, and log q(u | x).

        Args:
            x: float32 integer pixel values, `(batch, *event_shape)`.
            num_samples: int32 scalar K >= 1.
            seed: an int32 `[2]` stateless seed; the same seed gives the same noise.

        Returns:
            u, float32 `(K, batch, *event_shape)` in [0, 1), and log q(u | x) in nats, float32
            `(K, batch)`.
        """
        raise NotImplementedError(f"{type(self).__name__} must define sample(x, num_samples, "
                                  f"seed), the contract of tfp_flows.dequantizers.Dequantizer.")

    def get_config(self) -> dict:
        """The dequantizer's options, as `__init__` takes them (none by default)."""
        return {}


DEQUANTIZERS = Registry("dequantizer", Dequantizer)
"""The dequantizers registry: name -> `Dequantizer` subclass."""
register_dequantizer = DEQUANTIZERS.register
"""A decorator registering a `Dequantizer` subclass under a name: `@register_dequantizer("q")`."""


def get(spec) -> Dequantizer | None:
    """The dequantizer of `spec`: None for "uniform" (the pipeline's noise), else a registered
    name, a `Dequantizer` instance or `{"name": ..., **options}`."""
    if isinstance(spec, Dequantizer):
        return spec
    if spec == UNIFORM:
        return None
    name, config = (spec, {}) if isinstance(spec, str) else (
        (spec.get("name"), {k: v for k, v in spec.items() if k != "name"})
        if isinstance(spec, dict) else (None, None))
    if name not in DEQUANTIZERS:
        raise ValueError(f"dequantization must be {UNIFORM!r} (the default: the data pipeline "
                         f"adds uniform noise), a registered dequantizer "
                         f"({', '.join(DEQUANTIZERS.names())}), a "
                         f"tfp_flows.dequantizers.Dequantizer or a dict {{'name': ..., "
                         f"**options}}; got {spec!r}.")
    try:
        return DEQUANTIZERS.get(name)(**config)
    except TypeError as error:
        raise ValueError(f"the dequantizer {name!r} does not take the options {sorted(config)} "
                         f"({error}).") from None


def serialize(dequantizer: Dequantizer | None):
    """"uniform" for None, else `{"name": registered name, **get_config()}`: what `get` takes."""
    if dequantizer is None:
        return UNIFORM
    name = getattr(type(dequantizer), "registered_name", None)
    if name is None or name not in DEQUANTIZERS or DEQUANTIZERS.get(name) is not type(
            dequantizer):
        raise ValueError(f"{type(dequantizer).__name__} is not registered, so a model using it "
                         f"cannot be saved; register it with "
                         f"@tfp_flows.register_dequantizer(name).")
    return {"name": name, **dequantizer.get_config()}


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"VariationalDequantizer needs an integer {name} >= {minimum}, got "
                         f"{value!r}.")
    return int(value)


def _conv(filters: int, name: str, zero: bool = False, kernel_size: int = 3):
    initializer = "zeros" if zero else "glorot_uniform"
    return keras.layers.Conv2D(filters, kernel_size, padding="same", dtype="float32",
                               kernel_initializer=initializer, name=name)


@register_dequantizer("variational")
class VariationalDequantizer(Dequantizer):
    """Flow++'s variational dequantization: q(u | x) a conditional coupling flow on [0, 1)^D.

    u = sigmoid(g_x(eps)), eps ~ N(0, I) of the image's shape, where g_x is an elementwise
    affine map (location and log-scale per pixel) followed by `num_couplings` affine couplings
    with alternating checkerboard masks, all conditioned on features of x from a small conv
    net (`hidden` channels, 2 layers of 3x3 convolutions on x / L - 1/2). Coupling log-scales
    are tanh-bounded; the layers that output the affine parameters start at zero, so q starts
    as the logit-normal sigmoid(N(0, I)) for every image.

    log q(u | x) = log N(eps) - log |det dg_x/deps| - sum log sigmoid'(g_x(eps)), exactly.

    Args:
        num_couplings: coupling layers of the flow (>= 1).
        hidden: channels of the conditioning features and of each coupling's network (>= 1).
    """

    def __init__(self, num_couplings: int = 4, hidden: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.num_couplings = _count("num_couplings", num_couplings, 1)
        self.hidden = _count("hidden", hidden, 1)

    def build(self, event_shape):
        """Creates the conditioning net and the couplings for images of `event_shape`."""
        height, width, channels = event_shape
        self.features = [_conv(self.hidden, "features_0"), _conv(self.hidden, "features_1")]
        self.affine = _conv(2 * channels, "affine", zero=True, kernel_size=1)
        self.couplings = [[_conv(self.hidden, f"coupling_{i}_hidden"),
                           _conv(2 * channels, f"coupling_{i}_out", zero=True)]
                          for i in range(self.num_couplings)]
        shape = (None, height, width)
        self.features[0].build((*shape, channels))
        self.features[1].build((*shape, self.hidden))
        self.affine.build((*shape, self.hidden))
        for first, second in self.couplings:
            first.build((*shape, channels + self.hidden))
            second.build((*shape, self.hidden))
        # The checkerboard: entries where (row + column) is even are 1.
        rows, columns = np.indices((height, width))
        self._checkerboard = ((rows + columns) % 2 == 0).astype("float32")[..., None]
        self.built = True

    def conditioning_features(self, x):
        """The features of images `x` that every layer of q sees (the conditioning net)."""
        h = x / float(self.num_levels) - 0.5
        for conv in self.features:
            h = tf.nn.relu(conv(h))
        return h

    def sample(self, x, num_samples, seed):
        x = tf.convert_to_tensor(x, tf.float32)
        batch = tf.shape(x)[0]
        flat = tf.concat([[num_samples * batch], tf.shape(x)[1:]], 0)
        eps = tf.reshape(tf.random.stateless_normal(
            tf.concat([[num_samples], tf.shape(x)], 0), seed=seed), flat)
        # The features of each image, repeated for each of its K samples (sample-major).
        features = self.conditioning_features(x)
        features = tf.reshape(tf.broadcast_to(features[None], tf.concat(
            [[num_samples], tf.shape(features)], 0)), tf.concat(
            [[num_samples * batch], tf.shape(features)[1:]], 0))
        u, log_q = self.transform(eps, features)
        log_q = tf.reshape(log_q, [num_samples, batch])
        return tf.reshape(u, tf.concat([[num_samples], tf.shape(x)], 0)), log_q

    def transform(self, eps, features):
        """u = sigmoid(g(eps)) for base noise `eps` and the images' `features` (the output of
        the conditioning net), with log q(u) = log N(eps) - log |det du/deps|: the map that
        `sample` applies, exposed for checking its log-density."""
        axes = [1, 2, 3]
        log_q = tf.reduce_sum(-0.5 * tf.square(eps) - 0.5 * math.log(2 * math.pi), axes)
        loc, log_scale = tf.split(self.affine(features), 2, axis=-1)
        v = loc + eps * tf.exp(log_scale)
        log_q -= tf.reduce_sum(log_scale, axes)
        for i, (first, second) in enumerate(self.couplings):
            keep = self._checkerboard if i % 2 == 0 else 1.0 - self._checkerboard
            h = tf.nn.relu(first(tf.concat([v * keep, features], -1)))
            shift, raw = tf.split(second(h), 2, axis=-1)
            coupling_log_scale = tf.tanh(raw) * (1.0 - keep)
            v = v * keep + (1.0 - keep) * (v * tf.exp(coupling_log_scale) + shift)
            log_q -= tf.reduce_sum(coupling_log_scale, axes)
        # log sigmoid'(v) = log sigmoid(v) + log sigmoid(-v), stable for large |v|.
        log_q -= tf.reduce_sum(-tf.nn.softplus(-v) - tf.nn.softplus(v), axes)
        # In float32 sigmoid(v) rounds to 1 for v > ~17; u stays in [0, 1).
        u = tf.minimum(tf.sigmoid(v), np.nextafter(np.float32(1), np.float32(0)))
        return u, log_q

    def get_config(self) -> dict:
        return {"num_couplings": self.num_couplings, "hidden": self.hidden}
