"""The registries behind the extension points: names in, clear errors out."""

import pytest

from tfp_flows.registry import Registry


class Shape:
    pass


def test_registered_class_is_found_by_name_and_knows_it():
    registry = Registry("shape", Shape)

    @registry.register("square")
    class Square(Shape):
        pass

    assert registry.get("square") is Square
    assert Square.registered_name == "square"
    assert "square" in registry and registry.names() == ("square",)


def test_unknown_name_lists_the_known_ones():
    registry = Registry("shape", Shape)
    registry.register("circle")(type("Circle", (Shape,), {}))
    with pytest.raises(ValueError, match=r"unknown shape 'cube'; registered shapes: circle"):
        registry.get("cube")


def test_a_name_cannot_be_taken_twice_by_different_classes():
    registry = Registry("shape", Shape)
    registry.register("square")(type("Square", (Shape,), {}))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("square")(type("Other", (Shape,), {}))


def test_registering_the_same_class_again_is_harmless():
    registry = Registry("shape", Shape)
    square = type("Square", (Shape,), {})
    registry.register("square")(square)
    registry.register("square")(square)
    assert registry.get("square") is square


@pytest.mark.parametrize("name", ["", "two words", "3d", None])
def test_names_must_be_identifiers(name):
    with pytest.raises(ValueError, match="identifier"):
        Registry("shape").register(name)


def test_registered_classes_must_subclass_the_contract():
    with pytest.raises(TypeError, match="subclass of .*Shape"):
        Registry("shape", Shape).register("int")(int)
