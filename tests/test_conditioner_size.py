"""A flow whose conditioner cannot fit is refused at once, with its parameter count."""

import time

import pytest

import tfp_flows
from tfp_flows import families
from tfp_flows.steps import MAX_CONDITIONER_PARAMETERS


@pytest.mark.parametrize(("build", "name", "count"), [
    # 128 hidden units -> 3 * 10**6 - 1 outputs per entry, one entry: 128 * 2,999,999 + ...
    (lambda: tfp_flows.nsf((2,), bins=10**6), "coupling_0_net", "387,016,639"),
    (lambda: tfp_flows.maf((2,), transform="spline", bins=10**6), "autoregressive_0_made",
     "3,078,263,166"),
    (lambda: tfp_flows.glow((8, 8, 3), num_scales=1, depth=2, hidden=16, transform="spline",
                            bins=10**6), "scale0_steps_coupling_net", "5,219,999,124"),
    (lambda: tfp_flows.realnvp((4, 4, 1), num_scales=1, hidden=10**5), "scale0_checkerboard_0_net",
     "10,002,900,002"),
    (lambda: tfp_flows.nice((784,), hidden=10**6), "coupling_0_net", "4,000,398,000,392"),
])
def test_oversized_conditioner_is_refused_with_its_parameter_count(build, name, count):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="parameters") as error:
        build()
    message = str(error.value)
    assert name in message and count in message, message
    assert f"{MAX_CONDITIONER_PARAMETERS:,}" in message
    # Before the check, nsf((2,), bins=10**6) ran for ten minutes and 21 GB.
    assert time.perf_counter() - start < 10.0


def test_large_sizes_that_fit_are_built():
    # 64 bins on 784-vectors: 128 x 16,072 outputs per coupling, 2.1 million parameters.
    flow = families.NSF((784,), bins=64)
    assert len(flow.conditioners) == 6
