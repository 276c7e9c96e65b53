"""2x2 space-to-depth squeeze."""

from __future__ import annotations

import tensorflow as tf
from tensorflow_probability import bijectors as tfb

__all__ = ["Squeeze"]


def _swap_block_axes(x: tf.Tensor, blocks: list, out: list) -> tf.Tensor:
    """Reshapes the event to five axes, swaps the middle two, reshapes to `out`.

    Space-to-depth is (H/2, 2, W/2, 2, C) -> (H/2, W/2, 2, 2, C); depth-to-space is
    (H, W, 2, 2, C) -> (H, 2, W, 2, C): the same swap of axes 2 and 3 of five.
    """
    batch = tf.shape(x)[:-3]
    rank = x.shape.rank + 2
    perm = list(range(rank - 5)) + [rank - 5, rank - 3, rank - 4, rank - 2, rank - 1]
    moved = tf.transpose(tf.reshape(x, tf.concat([batch, blocks], axis=0)), perm)
    return tf.reshape(moved, tf.concat([batch, out], axis=0))


class Squeeze(tfb.Bijector):
    """Trades spatial resolution for channels: (H, W, C) <-> (H/2, W/2, 4C).

        forward:  space-to-depth with 2x2 blocks, the channel order of `tf.nn.space_to_depth`
        inverse:  depth-to-space
        log|det J| = 0 (a permutation)

    In a flow written latent -> data, the data end squeezes on the way in, so chains use
    `tfb.Invert(Squeeze())` where the data-to-latent pass squeezes.

    #### References

    [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
        ICLR 2017, section 3.6. https://arxiv.org/abs/1605.08803
    """

    def __init__(self, validate_args: bool = False, name: str = "squeeze"):
        parameters = dict(locals())
        super().__init__(forward_min_event_ndims=3, is_constant_jacobian=True,
                         validate_args=validate_args, parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _forward(self, x):
        height, width = x.shape[-3], x.shape[-2]
        if height is not None and width is not None and (height % 2 or width % 2):
            raise ValueError(f"Squeeze needs even height and width, got ({height}, {width}).")
        h, w, c = tf.unstack(tf.shape(x)[-3:])
        y = _swap_block_axes(x, [h // 2, 2, w // 2, 2, c], [h // 2, w // 2, 4 * c])
        # The reshape to a computed shape loses the static event shape when the batch size is
        # unknown (tf.function, SavedModel); couplings need the static channel count.
        y.set_shape(self._forward_event_shape(x.shape))
        return y

    def _inverse(self, y):
        h, w, c = tf.unstack(tf.shape(y)[-3:])
        x = _swap_block_axes(y, [h, w, 2, 2, c // 4], [2 * h, 2 * w, c // 4])
        x.set_shape(self._inverse_event_shape(y.shape))
        return x

    def _forward_log_det_jacobian(self, x):
        return tf.zeros([], dtype=x.dtype)

    def _inverse_log_det_jacobian(self, y):
        return tf.zeros([], dtype=y.dtype)

    def _forward_event_shape(self, input_shape):
        height, width, channels = input_shape[-3:]
        half = [None if d is None else d // 2 for d in (height, width)]
        return input_shape[:-3].concatenate(
            [half[0], half[1], None if channels is None else 4 * channels])

    def _inverse_event_shape(self, output_shape):
        height, width, channels = output_shape[-3:]
        double = [None if d is None else 2 * d for d in (height, width)]
        return output_shape[:-3].concatenate(
            [double[0], double[1], None if channels is None else channels // 4])

    def _forward_event_shape_tensor(self, input_shape):
        return tf.concat([input_shape[:-3], input_shape[-3:-1] // 2, input_shape[-1:] * 4], 0)

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.concat([output_shape[:-3], output_shape[-3:-1] * 2, output_shape[-1:] // 4], 0)
