"""NICE: additive couplings on the flattened data and a diagonal scaling."""

from __future__ import annotations

from tfp_flows import transforms
from tfp_flows.families.base import Argument, Flow, register_family
from tfp_flows.steps import CouplingStep, ScalingStep

__all__ = ["NICE"]


@register_family("nice")
class NICE(Flow):
    """NICE: additive couplings on the flattened data and a diagonal scaling.

    Defaults follow the paper's MNIST model: 4 additive couplings, each conditioner 5 hidden
    layers of 1000 ReLUs, alternating halves, then the diagonal scaling. The paper's base is
    logistic; ours is the standard normal shared by all families.

    [1] Dinh, Krueger, Bengio. NICE. https://arxiv.org/abs/1410.8516
    """

    arguments = (
        Argument("num_couplings", int, 4, "Coupling layers.", minimum=1),
        Argument("hidden", int, 1000, "Hidden units of the conditioner networks.", minimum=1),
        Argument("num_hidden", int, 5, "Hidden layers per conditioner.", minimum=0),
    )
    flattens_images = True

    def __init__(self, event_shape, num_couplings: int | None = None, hidden: int | None = None,
                 num_hidden: int | None = None, **kwargs):
        super().__init__(event_shape, num_couplings=num_couplings, hidden=hidden,
                         num_hidden=num_hidden, **kwargs)
        size = self.flat_size
        if size < 2:
            raise ValueError(f"NICE needs at least 2 dimensions, got event shape {event_shape}.")
        additive = transforms.get("additive")
        self.steps = [CouplingStep(additive, size, parity=i % 2, hidden=self.hidden,
                                   num_hidden=self.num_hidden, context_size=self.context_size,
                                   name=f"coupling_{i}") for i in range(self.num_couplings)]
        self.steps.append(ScalingStep(size, name="scaling"))
