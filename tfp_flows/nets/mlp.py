"""Fully connected conditioner for couplings on vectors."""

from __future__ import annotations

import keras

from tfp_flows.nets.stack import ZeroInitStack

__all__ = ["MLP"]


@keras.saving.register_keras_serializable(package="tfp_flows")
class MLP(ZeroInitStack):
    """Dense -> activation -> ... -> zero-initialised Dense.

    The conditioner of NICE's and RealNVP's couplings on vectors. The zero-initialised last
    layer makes each coupling start as the identity.

    Args:
        output_dim: size of the output (transformed size for an additive coupling, twice
            that for an affine coupling).
        hidden_units: widths of the hidden layers.
        activation: activation of the hidden layers.
        context_size: size K of a context vector concatenated to the input (0: none).
        copies: None for one network, or K for K networks with stacked weights, called as
            `net(x, copy=k)` (see `ZeroInitStack`).
    """

    event_rank = 1
    output_name = "zero_dense"

    def __init__(self, output_dim: int, hidden_units=(256, 256), activation: str = "relu",
                 context_size: int = 0, copies: int | None = None, **kwargs):
        super().__init__(context_size=context_size, copies=copies, **kwargs)
        self.output_dim = output_dim
        self.hidden_units = tuple(hidden_units)
        self.activation = activation

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.hidden_units

    @property
    def output_size(self) -> int:
        return self.output_dim

    def kernel_shape(self, index: int, fan_in: int, fan_out: int) -> tuple[int, ...]:
        return (fan_in, fan_out)

    def linear(self, x, kernel):
        return keras.ops.matmul(x, kernel)

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim,
                "hidden_units": list(self.hidden_units), "activation": self.activation}
