"""Glow's convolutional conditioner."""

from __future__ import annotations

import keras

from tfp_flows.nets.stack import ZeroInitStack

__all__ = ["ConvNet"]


@keras.saving.register_keras_serializable(package="tfp_flows")
class ConvNet(ZeroInitStack):
    """Conv3x3 -> ReLU -> Conv1x1 -> ReLU -> ... -> zero-initialised Conv3x3.

    The conditioner of Glow's affine coupling (section 3.3) with `num_hidden=2`, and its
    learned split prior with `num_hidden=0` (a single zero-initialised 3x3 convolution).
    The last layer starts at zero so that every coupling starts as (nearly) the identity,
    which Glow found essential for training deep flows.

    Args:
        output_channels: channels of the output (e.g. 2 x transformed channels for an affine
            coupling: shift and scale).
        hidden_channels: width of the hidden convolutions.
        num_hidden: number of hidden convolutions; the first is 3x3, the others 1x1.
        context_size: size K of a context vector, repeated at every pixel and concatenated
            to the input channels (0: none).
    """

    event_rank = 3

    def __init__(self, output_channels: int, hidden_channels: int = 512, num_hidden: int = 2,
                 context_size: int = 0, **kwargs):
        super().__init__(context_size=context_size, **kwargs)
        self.output_channels = output_channels
        self.hidden_channels = hidden_channels
        self.num_hidden = num_hidden
        self.hidden = [
            keras.layers.Conv2D(hidden_channels, 3 if i == 0 else 1, padding="same",
                                activation="relu", name=f"hidden_{i}")
            for i in range(num_hidden)
        ]
        self.out = keras.layers.Conv2D(output_channels, 3, padding="same",
                                       kernel_initializer="zeros", name="zero_conv")

    def get_config(self):
        return {**super().get_config(), "output_channels": self.output_channels,
                "hidden_channels": self.hidden_channels, "num_hidden": self.num_hidden}
