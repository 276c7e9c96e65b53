"""A bijector base whose transform and log-det come out of the same pass."""

from __future__ import annotations

from tensorflow_probability import bijectors as tfb

from tfp_flows import compat

__all__ = ["OnePassBijector"]


class OnePassBijector(tfb.Bijector):
    """Base for bijectors that compute the output and the log-det together.

    Coupling layers and multi-scale levels evaluate a network to get both the output and the
    log-det. Subclasses implement `_transform_and_log_det(x, inverse) -> (y, log_det)` where
    `log_det` is log|det J| of the direction taken (per event). TFP's greedy attribute cache
    stores the log-det while the output is computed, so `TransformedDistribution.log_prob`,
    which calls `inverse` and then `inverse_log_det_jacobian` on the same tensor, runs each
    network once instead of twice.
    """

    _cache = compat.greedy_bijector_cache("_augmented_forward", "_augmented_inverse")

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _transform_and_log_det(self, x, inverse: bool):
        raise NotImplementedError

    def _augmented_forward(self, z):
        x, log_det = self._transform_and_log_det(z, inverse=False)
        return x, {"fldj": log_det, "ildj": -log_det}

    def _augmented_inverse(self, x):
        z, log_det = self._transform_and_log_det(x, inverse=True)
        return z, {"ildj": log_det, "fldj": -log_det}

    def _forward(self, z):
        return self._augmented_forward(z)[0]

    def _inverse(self, x):
        return self._augmented_inverse(x)[0]

    def _forward_log_det_jacobian(self, z):
        cached = self._cache.forward_attributes(z)
        if "fldj" not in cached:
            cached.update(self._augmented_forward(z)[1])
        return cached["fldj"]

    def _inverse_log_det_jacobian(self, x):
        cached = self._cache.inverse_attributes(x)
        if "ildj" not in cached:
            cached.update(self._augmented_inverse(x)[1])
        return cached["ildj"]
