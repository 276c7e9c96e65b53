"""An elementwise transform with given parameters, as a TFP bijector."""

from __future__ import annotations

import tensorflow as tf

from tfp_flows.bijectors.one_pass import OnePassBijector

__all__ = ["Elementwise"]


class Elementwise(OnePassBijector):
    """The bijector z -> x of a `tfp_flows.Transform` with fixed parameters, entry by entry.

        inverse (data -> latent):  z = transform(x, params, inverse=True)
        forward (latent -> data):  x = transform(z, params, inverse=False)
        log|det J| = the transform's elementwise log-det (0 for a volume-preserving one)

    A scalar bijector (`forward_min_event_ndims=0`): TFP sums its log-dets over the event.
    It is what an autoregressive layer's `bijector_fn` returns, so that
    `tfb.MaskedAutoregressiveFlow` takes any transform; the transform's output and log-det
    come from one call (see `OnePassBijector`).

    Args:
        transform: the elementwise transform (any `tfp_flows.Transform`).
        params: its parameters, `transform.params_per_entry` blocks of the event's size on
            the last axis (see `tfp_flows.Transform`).
    """

    def __init__(self, transform, params, validate_args: bool = False,
                 name: str = "elementwise"):
        parameters = dict(locals())
        self._transform = transform
        self._params = params
        super().__init__(forward_min_event_ndims=0, validate_args=validate_args,
                         is_constant_jacobian=transform.volume_preserving,
                         parameters=parameters, name=name)

    @property
    def transform(self):
        """The elementwise `Transform`."""
        return self._transform

    @property
    def params(self):
        """The transform's parameters, broadcast against the event."""
        return self._params

    def _transform_and_log_det(self, x, inverse: bool):
        y, log_det = self._transform(x, self._params, inverse)
        return y, tf.zeros_like(x) if log_det is None else log_det
