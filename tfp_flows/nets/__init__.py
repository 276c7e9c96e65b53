"""Keras 3 layers that compute coupling and autoregressive parameters."""

from tfp_flows.nets.conv_net import ConvNet
from tfp_flows.nets.made import MADE
from tfp_flows.nets.mlp import MLP

__all__ = ["MADE", "ConvNet", "MLP"]
