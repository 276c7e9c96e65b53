"""The transform registry: names, instances and saved dicts in, transforms and clear errors out."""

import pytest

import tfp_flows
from tfp_flows import transforms
from tfp_flows.transforms import (
    AdditiveTransform,
    AffineTransform,
    SplineTransform,
    Transform,
    register_transform,
)

BUILT_IN = [AffineTransform("tanh"), AdditiveTransform(), SplineTransform(bins=5, bound=2.5)]


class _Unregistered(Transform):
    def __call__(self, x, params, inverse):
        return x, None


def test_built_in_transforms_are_registered_under_their_names():
    assert {"affine", "additive", "spline"} <= set(transforms.TRANSFORMS.names())
    assert type(transforms.get("affine")) is AffineTransform
    assert type(transforms.get("additive")) is AdditiveTransform
    assert transforms.get("spline", bins=3).params_per_entry == 8


def test_the_public_api_exports_the_contract():
    assert tfp_flows.Transform is Transform
    assert tfp_flows.register_transform is register_transform
    assert tfp_flows.transforms.get is transforms.get


@pytest.mark.parametrize("transform", BUILT_IN, ids=repr)
def test_serialize_and_get_round_trip(transform):
    config = transforms.serialize(transform)
    assert config["name"] == type(transform).registered_name
    again = transforms.get(config)
    assert type(again) is type(transform) and transforms.serialize(again) == config
    assert again.params_per_entry == transform.params_per_entry


def test_an_instance_is_returned_as_it_is():
    spline = SplineTransform(bins=3)
    assert transforms.get(spline) is spline


@pytest.mark.parametrize("call, error, message", [
    (lambda: transforms.get("quadratic"), ValueError,
     "unknown transform 'quadratic'; registered transforms: .*affine"),
    (lambda: transforms.get("affine", bins=3), ValueError,
     "transform 'affine' takes no option 'bins'; its options: scale_fn"),
    (lambda: transforms.get("additive", scale_fn="tanh"), ValueError,
     "'additive' takes no option 'scale_fn'; its options: none"),
    (lambda: transforms.get({"name": "spline", "bin": 3}), ValueError,
     "'spline' takes no option 'bin'; its options: bins, bound"),
    (lambda: transforms.get("spline", bins=1), ValueError, "bins must be an integer >= 2"),
    (lambda: transforms.get(AffineTransform(), scale_fn="tanh"), ValueError,
     "not with a transform instance"),
    (lambda: transforms.get({"name": "affine"}, scale_fn="tanh"), ValueError,
     "put them in the dict"),
    (lambda: transforms.get({"bins": 3}), ValueError, "needs the transform's registered name"),
    (lambda: transforms.get(3), TypeError, r"registered transform name .*got 3 \(int\)"),
    (lambda: transforms.get(AffineTransform), TypeError, "got <class"),
])
def test_bad_specs_are_refused_clearly(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_an_unregistered_transform_works_but_cannot_be_serialized():
    transform = _Unregistered()
    assert transforms.get(transform) is transform
    with pytest.raises(ValueError, match="_Unregistered is not a registered transform.*"
                                         "register_transform"):
        transforms.serialize(transform)


def test_a_subclass_of_a_registered_transform_is_not_its_parent_by_name():
    class Tighter(AffineTransform):
        max_log_scale = 1.0

    with pytest.raises(ValueError, match="Tighter is not a registered transform"):
        transforms.serialize(Tighter("soft_clamp"))


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="'affine' is already registered"):
        register_transform("affine")(_Unregistered)


def test_only_transforms_can_be_registered():
    with pytest.raises(TypeError, match="takes a subclass of tfp_flows.transforms.base.Transform"):
        register_transform("not_a_transform")(dict)


@pytest.mark.parametrize("attributes, message", [
    ({"params_per_entry": 0}, "params_per_entry must be a positive integer, got 0"),
    ({"params_per_entry": 2.0}, "params_per_entry must be a positive integer, got 2.0"),
    ({"volume_preserving": 1}, "volume_preserving must be True or False, got 1"),
])
def test_a_transform_with_a_bad_declaration_is_refused(attributes, message):
    bad = type("Bad", (_Unregistered,), attributes)
    with pytest.raises(ValueError, match=message):
        transforms.get(bad())


def test_a_config_that_is_not_json_is_refused_at_serialize():
    class Opaque(_Unregistered):
        def __init__(self, table=None):
            self.table = table

        def get_config(self):
            return {"table": self.table}

    register_transform("opaque_for_the_test")(Opaque)
    assert transforms.serialize(Opaque([1, 2])) == {"name": "opaque_for_the_test",
                                                    "table": [1, 2]}
    with pytest.raises(ValueError, match="must return JSON values"):
        transforms.serialize(Opaque(object()))


def test_the_default_repr_shows_the_options():
    assert repr(SplineTransform(bins=3, bound=2.0)) == "SplineTransform(bins=3, bound=2.0)"
    assert repr(AdditiveTransform()) == "AdditiveTransform()"
