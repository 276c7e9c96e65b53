"""The `Transform` contract, the registry of transforms, and how a transform is named.

A transform is the elementwise `b -> g(b; theta)` of a coupling or an autoregressive layer:
the conditioner computes `theta` (from the conditioning part, or the preceding entries, and
the context) and the transform changes the transformed entries with it. The built-in ones
are registered as "affine", "additive" and "spline"; a plugin registers its own with
`register_transform` and then names it wherever a built-in one is named.
"""

from __future__ import annotations

import inspect
import json
import numbers
from collections.abc import Mapping

import tensorflow as tf

from tfp_flows.registry import Registry

__all__ = ["TRANSFORMS", "Transform", "get", "register_transform", "serialize"]


class Transform:
    """Base class of the elementwise transforms: the contract a plugin implements.

    Directions follow the bijectors': forward is latent -> data, and `inverse=True` is
    data -> latent, the training pass (the one pass that `log_prob` takes in a coupling flow,
    and in MAF).

    A subclass provides:

    - `params_per_entry`: how many conditioner outputs each transformed entry takes (a
      positive int, as a class attribute or set per instance in `__init__` when it depends on
      the options, as the spline's `3 * bins - 1`). The conditioner's last axis holds
      `params_per_entry` consecutive blocks of `T` values, `T` the number of transformed
      entries on that axis: block `k` is parameter `k` of every entry (`split` returns them).
    - `__call__(x, params, inverse) -> (y, log_det)`: `x` and `y` have the transformed
      part's shape, `params` that shape with `params_per_entry * T` on the last axis, and
      `log_det` is the elementwise log|dy/dx| (same shape as `x`), or None when the transform
      is volume preserving. `inverse=True` maps data to latent, `inverse=False` latent to
      data; each must undo the other for the same `params`. Write it with TensorFlow ops,
      for any leading (batch, sample, spatial) axes, in float32 and float64: it runs
      eagerly, in `tf.function` and under XLA.
    - `volume_preserving`: True when log|dy/dx| is 0 everywhere (then `__call__` returns None
      as `log_det`).
    - `__init__(**options)`: keyword options, each validated there with a ValueError that
      says what was expected and what came. Zero parameters should give (or come near) the
      identity: the families zero-initialise the conditioners' last layers.
    - `get_config()`: the options as a dict of JSON values, such that
      `from_config(get_config())` builds an equal transform. The default returns `{}`, right
      for a transform without options. `from_config(config)` defaults to `cls(**config)`.
    - `autoregressive()`: the transform an autoregressive step (MAF, IAF) applies for this
      one. The default is `self`, so any transform works there as in a coupling; override it
      to refuse (ValueError) an option an autoregressive layer cannot use, or to apply
      another parametrisation there.

    Register the class with `@tfp_flows.register_transform("name")`: the families then take
    `transform="name"` (options as `transform=tfp_flows.transforms.get("name", **options)`
    or as a `{"name": "name", **options}` dict), and a saved model names it in its config.

    #### Examples

    ```python
    @tfp_flows.register_transform("shift_log_scale")
    class ShiftLogScale(tfp_flows.Transform):
        '''inverse: z = x * exp(log_scale) + shift.'''

        params_per_entry = 2

        def __call__(self, x, params, inverse):
            shift, log_scale = self.split(params)
            if inverse:
                return x * tf.exp(log_scale) + shift, log_scale
            return (x - shift) * tf.exp(-log_scale), -log_scale

    model = tfp_flows.realnvp((2,), transform="shift_log_scale")
    ```
    """

    params_per_entry: int = 1
    volume_preserving: bool = False
    # Set by `register_transform` on the class it registers.
    registered_name: str | None = None

    def __call__(self, x, params, inverse: bool):
        raise NotImplementedError(f"{type(self).__name__} does not define __call__(x, params, "
                                  f"inverse), the transform itself.")

    def split(self, params) -> list:
        """The conditioner output as `params_per_entry` tensors of the transformed shape."""
        return tf.split(params, self.params_per_entry, axis=-1)

    def autoregressive(self) -> Transform:
        """The transform an autoregressive step applies for this one (default: itself)."""
        return self

    def get_config(self) -> dict:
        """The transform's options, JSON values only."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping) -> Transform:
        """The transform with the options `config` (what `get_config` returned)."""
        config = dict(config)
        _check_options(cls, config)
        return cls(**config)

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({options})"


TRANSFORMS = Registry("transform", Transform)
"""The transforms registry: name -> `Transform` subclass."""


def register_transform(name: str):
    """A class decorator registering a `Transform` subclass as `name`.

    The name (a Python identifier) then works wherever a built-in transform's does:
    `transform=name` in the families, `tfp_flows.transforms.get(name, **options)`, a saved
    model's config (its module must be imported before the model is loaded). A name taken by
    another class is refused.
    """
    return TRANSFORMS.register(name)


def _accepted_options(cls: type) -> tuple[str, ...] | None:
    """The keyword options `cls(...)` takes, or None when it takes any (`**kwargs`)."""
    parameters = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters
                 if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               inspect.Parameter.KEYWORD_ONLY))


def _check_options(cls: type, options: Mapping) -> None:
    accepted = _accepted_options(cls)
    unknown = [] if accepted is None else [key for key in options if key not in accepted]
    if unknown:
        name = cls.registered_name or cls.__qualname__
        raise ValueError(f"the transform {name!r} takes no option "
                         f"{', '.join(map(repr, unknown))}; its options: "
                         f"{', '.join(accepted) or 'none'}.")


def _checked(transform: Transform) -> Transform:
    """`transform`, once its `params_per_entry` and `volume_preserving` are seen to be valid."""
    count = transform.params_per_entry
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"{type(transform).__name__}.params_per_entry must be a positive "
                         f"integer, got {count!r}.")
    if not isinstance(transform.volume_preserving, bool):
        raise ValueError(f"{type(transform).__name__}.volume_preserving must be True or False, "
                         f"got {transform.volume_preserving!r}.")
    return transform


def get(spec, **options) -> Transform:
    """The transform that `spec` names.

    Args:
        spec: a registered name (then `options` go to its constructor), a `Transform`
            instance (returned as it is; no `options`), or a dict `{"name": name, **config}`
            as `serialize` writes it (the transform's `from_config(config)`; no `options`).
        **options: the named transform's options.

    Raises:
        ValueError: an unregistered name, an option the transform does not take (the error
            lists those it takes), options with an instance or a dict, a dict without "name".
        TypeError: a spec of another kind.
    """
    if isinstance(spec, Transform):
        if options:
            raise ValueError(f"options ({', '.join(options)}) go with a transform's name, not "
                             f"with a transform instance ({spec!r}): pass them to its "
                             f"constructor.")
        return _checked(spec)
    if isinstance(spec, str):
        cls = TRANSFORMS.get(spec)
        _check_options(cls, options)
        return _checked(cls(**options))
    if isinstance(spec, Mapping):
        if options:
            raise ValueError(f"options ({', '.join(options)}) go with a transform's name, not "
                             f"with a transform dict ({dict(spec)!r}): put them in the dict.")
        config = dict(spec)
        if "name" not in config:
            raise ValueError(f"a transform dict needs the transform's registered name under "
                             f"'name' (as tfp_flows.transforms.serialize writes it), got "
                             f"{config!r}.")
        cls = TRANSFORMS.get(config.pop("name"))
        return _checked(cls.from_config(config))
    raise TypeError(f"transform must be a registered transform name ({', '.join(TRANSFORMS)}), "
                    f"a tfp_flows.Transform, or a dict {{'name': ..., **options}}; got "
                    f"{spec!r} ({type(spec).__name__}).")


def serialize(transform: Transform) -> dict:
    """`{"name": registered name, **transform.get_config()}`, what `get` reads back.

    Raises:
        ValueError: `transform`'s class is not the one registered under a name (register it
            with `register_transform`), or its config is not JSON.
    """
    cls = type(transform)
    name = cls.registered_name
    if name is None or name not in TRANSFORMS or TRANSFORMS.get(name) is not cls:
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not a registered transform, "
                         f"so a config cannot name it: decorate the class with "
                         f"@tfp_flows.register_transform('a_name').")
    config = transform.get_config()
    if not isinstance(config, dict) or "name" in config:
        raise ValueError(f"{cls.__qualname__}.get_config() must return a dict of options "
                         f"without a 'name' key, got {config!r}.")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{cls.__qualname__}.get_config() must return JSON values (a saved "
                         f"model's config is JSON), got {config!r}: {error}.") from None
    return {"name": name, **config}
