"""Glow's invertible 1x1 convolution."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["InvertibleConv1x1", "lu_factors"]


def lu_factors(weight: np.ndarray) -> dict[str, np.ndarray]:
    """Splits an invertible matrix into the factors of the LU parametrisation.

    Returns `permutation`, `lower`, `upper`, `log_abs_diag`, `sign_diag` with
    weight = permutation @ (lower + I) @ (upper + diag(sign_diag * exp(log_abs_diag))), where
    `lower` is strictly lower and `upper` strictly upper triangular.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"lu_factors expects a square matrix, got shape {weight.shape}.")
    permutation, lower, upper = scipy.linalg.lu(weight)
    diag = np.diag(upper)
    if np.any(diag == 0):
        raise ValueError("lu_factors expects an invertible matrix; this one is singular.")
    return {
        "permutation": permutation,
        "lower": np.tril(lower, -1),
        "upper": np.triu(upper, 1),
        "log_abs_diag": np.log(np.abs(diag)),
        "sign_diag": np.sign(diag),
    }


def _mix_channels(x: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """y[..., d] = sum_c weight[d, c] x[..., c]."""
    # One flat matmul: on CPU (oneDNN) tf.einsum with an ellipsis ran this 10-30x slower,
    # forward and backward, and was the largest non-network cost of a Glow training step.
    return tf.tensordot(x, weight, axes=[[-1], [1]])


class InvertibleConv1x1(tfb.Bijector):
    """A learned channel mixing, the same C x C matrix W applied at every position.

        forward:  x[..., i, j, :] = W @ z[..., i, j, :]
        inverse:  z[..., i, j, :] = W^-1 @ x[..., i, j, :]
        log|det J_forward| = (number of positions) * log|det W|

    Two parametrisations:
    - plain: `InvertibleConv1x1(weight=W)`, log|det W| from a QR decomposition (O(C^3)).
    - LU (Glow's default, section 3.2): `InvertibleConv1x1(permutation=P, lower=L, upper=U,
      log_abs_diag=log|s|, sign_diag=sign(s))` with W = P (L + I) (U + diag(sign * exp(log|s|)));
      log|det W| = sum(log|s|) in O(C). `P` and `sign_diag` stay fixed; `lower`, `upper` and
      `log_abs_diag` are the trainable parts (the strict triangles are taken of whatever is
      passed, so the variables may be dense).

    `event_ndims` is 3 for `(H, W, C)` images and 1 for vectors, where it is a learned linear
    map (a generalised permutation).

    #### Examples

    ```python
    factors = lu_factors(scipy.stats.ortho_group.rvs(4))
    variables = {k: tf.Variable(v, dtype=tf.float32) for k, v in factors.items()}
    bijector = InvertibleConv1x1(**variables)
    ```

    #### References

    [1] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(self, weight=None, *, permutation=None, lower=None, upper=None,
                 log_abs_diag=None, sign_diag=None, event_ndims: int = 3,
                 validate_args: bool = False, name: str = "invertible_conv1x1"):
        parameters = dict(locals())
        lu = (permutation, lower, upper, log_abs_diag, sign_diag)
        if weight is None and any(part is None for part in lu):
            raise ValueError("InvertibleConv1x1 needs either `weight` or all five LU factors "
                             "(permutation, lower, upper, log_abs_diag, sign_diag).")
        if weight is not None and any(part is not None for part in lu):
            raise ValueError("InvertibleConv1x1 takes `weight` or the LU factors, not both.")
        self._weight = weight
        self._lu = None if weight is not None else lu
        self._event_ndims = event_ndims
        super().__init__(forward_min_event_ndims=event_ndims, is_constant_jacobian=True,
                         validate_args=validate_args, parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    @property
    def uses_lu(self) -> bool:
        """Whether W is parametrised by its LU factors (else a plain matrix)."""
        return self._lu is not None

    def _upper_with_diag(self, dtype):
        _, _, upper, log_abs_diag, sign_diag = self._lu
        diag = tf.cast(sign_diag, dtype) * tf.exp(tf.cast(log_abs_diag, dtype))
        return tf.linalg.set_diag(tf.linalg.band_part(tf.cast(upper, dtype), 0, -1), diag)

    def _unit_lower(self, dtype):
        lower = tf.linalg.band_part(tf.cast(self._lu[1], dtype), -1, 0)
        return tf.linalg.set_diag(lower, tf.ones_like(tf.linalg.diag_part(lower)))

    def weight(self, dtype=tf.float32) -> tf.Tensor:
        """The mixing matrix W."""
        if self._lu is None:
            return tf.cast(self._weight, dtype)
        permutation = tf.cast(self._lu[0], dtype)
        return permutation @ self._unit_lower(dtype) @ self._upper_with_diag(dtype)

    def _inverse_weight(self, dtype) -> tf.Tensor:
        if self._lu is None:
            return tf.linalg.inv(tf.cast(self._weight, dtype))
        # W^-1 = U^-1 L^-1 P^T by two triangular solves: cheaper and better conditioned than inv.
        permutation_t = tf.transpose(tf.cast(self._lu[0], dtype))
        lower_inv = tf.linalg.triangular_solve(self._unit_lower(dtype), permutation_t, lower=True)
        return tf.linalg.triangular_solve(self._upper_with_diag(dtype), lower_inv, lower=False)

    def _log_abs_det_weight(self, dtype) -> tf.Tensor:
        if self._lu is None:
            # |det W| = prod |diag R| of W = QR. Not slogdet: it has no XLA kernel, and Keras
            # compiles train steps with XLA by default on GPUs.
            r = tf.linalg.qr(tf.cast(self._weight, dtype))[1]
            return tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))))
        return tf.reduce_sum(tf.cast(self._lu[3], dtype))

    def _forward(self, z):
        return _mix_channels(z, self.weight(z.dtype))

    def _inverse(self, x):
        return _mix_channels(x, self._inverse_weight(x.dtype))

    def _forward_log_det_jacobian(self, z):
        positions = tf.shape(z)[tf.rank(z) - self._event_ndims:-1]
        return tf.cast(tf.reduce_prod(positions), z.dtype) * self._log_abs_det_weight(z.dtype)

    def _inverse_log_det_jacobian(self, x):
        return -self._forward_log_det_jacobian(x)
