"""The flow families, each a registered `Flow` layer, and the builders that wrap one in a model.

`tfp_flows.build(name, event_shape, **kwargs)` builds any registered family (a plugin's
too); `nice`, `realnvp`, `nsf`, `glow`, `maf`, `iaf`, `planar`, `radial` and `ffjord` are
the built-ins' own builders.
`FAMILIES` is the registry: `FAMILIES.get(name)` is the class, `FAMILIES.names()` the names.
"""

from tfp_flows.families.base import (
    FAMILIES,
    PRECISION,
    PRECISIONS,
    TRANSFORM_ARGUMENTS,
    Argument,
    Flow,
    build,
    register_family,
)
from tfp_flows.families.ffjord import FFJORD
from tfp_flows.families.glow import Glow
from tfp_flows.families.iaf import IAF
from tfp_flows.families.maf import MAF
from tfp_flows.families.nice import NICE
from tfp_flows.families.nsf import NSF
from tfp_flows.families.planar import Planar
from tfp_flows.families.radial import Radial
from tfp_flows.families.realnvp import RealNVP

__all__ = ["FAMILIES", "FFJORD", "IAF", "MAF", "NICE", "NSF", "PRECISION", "PRECISIONS",
           "TRANSFORM_ARGUMENTS", "Argument", "Flow", "Glow", "Planar", "Radial", "RealNVP",
           "build", "ffjord", "glow", "iaf", "maf", "nice", "nsf", "planar", "radial", "realnvp",
           "register_family"]


def _builder(name: str):
    family = FAMILIES.get(name)

    def builder(event_shape, **kwargs):
        return build(name, event_shape, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (f"A {family.__name__} `FlowModel`: `build({name!r}, event_shape, "
                       f"**kwargs)`; keyword arguments go to `tfp_flows.{family.__name__}`.")
    return builder


nice = _builder("nice")
realnvp = _builder("realnvp")
nsf = _builder("nsf")
glow = _builder("glow")
maf = _builder("maf")
iaf = _builder("iaf")
planar = _builder("planar")
radial = _builder("radial")
ffjord = _builder("ffjord")
