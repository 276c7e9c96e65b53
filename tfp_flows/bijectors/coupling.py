"""Coupling layers: half of the input conditions an elementwise transform of the rest."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfp_flows.bijectors.one_pass import OnePassBijector

__all__ = ["Coupling", "MASKS"]

MASKS = ("checkerboard", "channel")


def checkerboard(height: int, width: int, parity: int, dtype) -> tf.Tensor:
    """A (H, W, 1) mask of ones where (i + j + parity) is even: the conditioning pixels."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    mask = ((rows + cols + parity) % 2 == 0).astype(np.float64)
    return tf.constant(mask[..., None], dtype=dtype)


class Coupling(OnePassBijector):
    """A coupling bijector: half of the input conditions a transform of the rest.

    With `(a, b)` the conditioning and transformed parts chosen by the mask and
    `theta = conditioner(a)`:

        inverse (data -> latent, the training pass):  z_a = x_a,  z_b = g(x_b; theta)
        forward (latent -> data):                      x_a = z_a,  x_b = g^-1(z_b; theta)
        log|det J_inverse| = sum log|g'(x_b; theta)|

    `transform` is the elementwise g, any `tfp_flows.Transform` (the built-in ones are in
    `tfp_flows.transforms`, a plugin's work alike); the conditioner returns
    `transform.params_per_entry` values per transformed entry. Both directions take one pass
    of the conditioner, and `log_prob` runs it once (see `OnePassBijector`).

    Masks:
    - "channel": the last axis is split in two, the first `C // 2` entries (parity 0) or the
      last `C - C // 2` (parity 1) condition the others. For vectors this is the half split.
    - "checkerboard" (images only): pixels with (i + j + parity) even condition the others;
      the conditioner sees the masked image and returns parameters for every position, of
      which only the transformed positions are used (RealNVP, section 3.4).

    A conditioned flow passes a conditioner that closes over its context; the bijector itself
    does not know about contexts.

    #### Examples

    ```python
    spline = tfp_flows.transforms.get("spline", bins=8)
    net = tfp_flows.nets.MLP(spline.params_per_entry * 2)
    bijector = Coupling(net, spline, mask="channel", event_ndims=1)
    ```

    #### References

    [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
        ICLR 2017. https://arxiv.org/abs/1605.08803
    [2] Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural Spline Flows.
        NeurIPS 2019. https://arxiv.org/abs/1906.04032
    """

    def __init__(self, conditioner, transform, *, mask: str = "channel",
                 parity: int = 0, event_ndims: int = 3, validate_args: bool = False,
                 name: str = "coupling", parameters: dict | None = None):
        parameters = dict(locals()) if parameters is None else parameters
        if not callable(transform) or not all(
                hasattr(transform, name) for name in ("params_per_entry", "volume_preserving")):
            raise TypeError(f"transform must be a tfp_flows.Transform (callable as "
                            f"transform(x, params, inverse), with params_per_entry and "
                            f"volume_preserving), got {type(transform).__name__}.")
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}.")
        if event_ndims not in (1, 3):
            raise ValueError(f"event_ndims must be 1 (vectors) or 3 (images), got {event_ndims!r}.")
        if mask == "checkerboard" and event_ndims != 3:
            raise ValueError("the checkerboard mask needs (H, W, C) events (event_ndims=3), "
                             f"got event_ndims={event_ndims}.")
        if parity not in (0, 1) or isinstance(parity, bool):
            raise ValueError(f"parity must be 0 or 1, got {parity!r}.")
        self._conditioner = conditioner
        self._transform = transform
        self._mask = mask
        self._parity = parity
        self._event_ndims = event_ndims
        super().__init__(forward_min_event_ndims=event_ndims, validate_args=validate_args,
                         is_constant_jacobian=transform.volume_preserving,
                         parameters=parameters, name=name)

    @property
    def transform(self):
        """The elementwise `Transform` applied to the transformed half."""
        return self._transform

    @property
    def conditioner(self):
        """The network mapping the kept half (and context) to the transform's parameters."""
        return self._conditioner

    @property
    def mask(self) -> str:
        """The split of the entries: one of `MASKS`."""
        return self._mask

    @property
    def parity(self) -> int:
        """Which half is transformed (0 or 1)."""
        return self._parity

    @staticmethod
    def conditioned_size(size: int, parity: int) -> tuple[int, int]:
        """(conditioning, transformed) sizes of the last axis under the channel mask."""
        first = size // 2
        return (first, size - first) if parity == 0 else (size - first, first)

    def _conditioner_params(self, inputs, transformed: int, dtype):
        """The conditioner's output, checked to hold the transform's parameters for each of
        the `transformed` entries of the last axis (broadcasting would change the event)."""
        params = self._conditioner(inputs)
        width = None if transformed is None else self._transform.params_per_entry * transformed
        if None not in (width, params.shape[-1]) and params.shape[-1] != width:
            raise ValueError(
                f"{self.name}: the conditioner returned {params.shape[-1]} values on the last "
                f"axis; {type(self._transform).__name__} needs "
                f"{self._transform.params_per_entry} per transformed entry, {width} for "
                f"{transformed} entries (output shape {params.shape}).")
        return tf.cast(params, dtype)

    def _transform_and_log_det(self, x, inverse: bool):
        event_axes = list(range(-self._event_ndims, 0))
        if self._mask == "checkerboard":
            height, width = x.shape[-3], x.shape[-2]
            mask = checkerboard(height, width, self._parity, x.dtype)
            params = self._conditioner_params(x * mask, x.shape[-1], x.dtype)
            y, log_det = self._transform(x, params, inverse)
            y = mask * x + (1.0 - mask) * y
            if log_det is not None:
                log_det = (1.0 - mask) * log_det
        else:
            size = x.shape[-1]
            if size < 2:
                raise ValueError(f"the channel mask needs at least 2 entries on the last axis, got "
                                 f"{size}; squeeze or use the checkerboard mask first.")
            first = size // 2
            head, tail = tf.split(x, [first, size - first], axis=-1)
            conditioning, transformed = (head, tail) if self._parity == 0 else (tail, head)
            params = self._conditioner_params(conditioning, transformed.shape[-1], x.dtype)
            y_part, log_det = self._transform(transformed, params, inverse)
            parts = [conditioning, y_part] if self._parity == 0 else [y_part, conditioning]
            y = tf.concat(parts, axis=-1)
        if log_det is None:
            total = tf.zeros(tf.shape(x)[:tf.rank(x) - self._event_ndims], dtype=x.dtype)
        else:
            total = tf.reduce_sum(log_det, axis=event_axes)
        return y, total
