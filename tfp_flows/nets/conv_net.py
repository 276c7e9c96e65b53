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
        copies: None for one network, or K for K networks with stacked weights, called as
            `net(x, copy=k)` (see `ZeroInitStack`).
    """

    event_rank = 3
    output_name = "zero_conv"

    def __init__(self, output_channels: int, hidden_channels: int = 512, num_hidden: int = 2,
                 context_size: int = 0, copies: int | None = None, **kwargs):
        super().__init__(context_size=context_size, copies=copies, **kwargs)
        self.output_channels = output_channels
        self.hidden_channels = hidden_channels
        self.num_hidden = num_hidden

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return (self.hidden_channels,) * self.num_hidden

    @property
    def output_size(self) -> int:
        return self.output_channels

    def kernel_shape(self, index: int, fan_in: int, fan_out: int) -> tuple[int, ...]:
        size = 3 if index in (0, self.num_hidden) else 1
        return (size, size, fan_in, fan_out)

    def linear(self, x, kernel):
        return keras.ops.conv(x, kernel, padding="same")

    def get_config(self):
        return {**super().get_config(), "output_channels": self.output_channels,
                "hidden_channels": self.hidden_channels, "num_hidden": self.num_hidden}
