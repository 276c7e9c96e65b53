"""A whole flow as one bijector that TFP sees the variables of."""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

from tfp_flows import compat

__all__ = ["FlowBijector"]


class FlowBijector(tfb.Bijector):
    """`bijector` itself, with a dtype and the variables it reads as TFP looks for them.

        forward, inverse and both log-dets: those of `bijector`

    A flow's bijectors read Keras variables, which are no `tf.Variable`s, through closures
    and Keras layers, which `tf.Module` does not search: TFP would find no variable in them
    and take the dtype as unknown (None). This bijector holds the `tf.Variable`s under the
    Keras ones, so `trainable_variables` of the bijector, and of any distribution or module
    that holds it (a user's own `tfd.TransformedDistribution`, a `JointDistribution`), lists
    them, and `tfp.vi` or `tfp.math.minimize` train them; `dtype` is the dtype of the data.

    #### Examples

    ```python
    bijector = model.flow.bijector()        # a FlowBijector
    q = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), [2]), bijector)
    q.trainable_variables                   # the model's trainable variables
    ```
    """

    def __init__(self, bijector: tfb.Bijector, variables: Iterable, dtype=tf.float32,
                 validate_args: bool = False, name: str = "flow"):
        parameters = dict(locals())
        self._bijector = bijector
        # tf.Module lists the tf.Variables it finds here, not Keras' wrappers of them.
        self._variables = tuple(compat.tf_variable(v) for v in variables)
        super().__init__(forward_min_event_ndims=bijector.forward_min_event_ndims,
                         inverse_min_event_ndims=bijector.inverse_min_event_ndims,
                         is_constant_jacobian=bijector.is_constant_jacobian, dtype=dtype,
                         validate_args=validate_args, parameters=parameters, name=name)

    @property
    def bijector(self) -> tfb.Bijector:
        """The wrapped bijector (latent z -> data x)."""
        return self._bijector

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _forward(self, z):
        return self._bijector.forward(z)

    def _inverse(self, x):
        return self._bijector.inverse(x)

    def _forward_log_det_jacobian(self, z):
        return self._bijector.forward_log_det_jacobian(
            z, event_ndims=self.forward_min_event_ndims)

    def _inverse_log_det_jacobian(self, x):
        return self._bijector.inverse_log_det_jacobian(
            x, event_ndims=self.inverse_min_event_ndims)

    def _forward_event_shape(self, input_shape):
        return self._bijector.forward_event_shape(input_shape)

    def _inverse_event_shape(self, output_shape):
        return self._bijector.inverse_event_shape(output_shape)

    def _forward_event_shape_tensor(self, input_shape):
        return self._bijector.forward_event_shape_tensor(input_shape)

    def _inverse_event_shape_tensor(self, output_shape):
        return self._bijector.inverse_event_shape_tensor(output_shape)
