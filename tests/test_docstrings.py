"""Every public name of the API reference has a docstring (the reference is generated from them).

The public names are those in the `__all__` of each module the reference renders
(docs/api/*.md); for each public class, its public methods and properties too. A method that
overrides a documented one (Keras' `call`, a `Base`'s `distribution`) inherits its docstring.
"""

import inspect
import re
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]')")

ROOT = Path(__file__).resolve().parent.parent
RENDERED = sorted({name for page in (ROOT / "docs" / "api").glob("*.md")
                   for name in re.findall(r"^::: (\S+)$", page.read_text(), re.M)})


def test_the_reference_renders_every_public_subpackage():
    import tfp_flows

    subpackages = {f"tfp_flows.{name}" for name in tfp_flows.__all__
                   if inspect.ismodule(getattr(tfp_flows, name))}
    assert subpackages <= set(RENDERED)
    assert {"tfp_flows.flow_model", "tfp_flows.datasets", "tfp_flows.export",
            "tfp_flows.registry", "tfp_flows.training"} <= set(RENDERED)


def _undocumented_exports(package, module) -> list[str]:
    """The names in `module`'s `__all__` without a docstring: a function's or class's own, or
    for a constant, the string under its assignment (read by griffe, as the reference is)."""
    static = package[module.__name__[len("tfp_flows."):]]
    missing = []
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.ismodule(value):
            continue
        if inspect.isclass(value) or inspect.isroutine(value):
            documented = bool(value.__doc__ and value.__doc__.strip())
        else:
            target = static[name]
            documented = bool((target.final_target if target.is_alias else target).docstring)
        if not documented:
            missing.append(f"{module.__name__}.{name}")
    return missing


def _undocumented_members(cls) -> list[str]:
    """The public methods and properties `cls` defines without a docstring of its own or its
    bases'."""
    missing = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            if not inspect.getdoc(getattr(cls, name)):
                missing.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
    return missing


def test_every_public_name_has_a_docstring():
    import importlib

    package = griffe.load("tfp_flows", search_paths=[str(ROOT)], resolve_aliases=True,
                          resolve_external=False)
    missing = []
    for module_name in RENDERED:
        module = importlib.import_module(module_name)
        missing += _undocumented_exports(package, module)
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value):
                missing += _undocumented_members(value)
    assert sorted(set(missing)) == [], "\n".join(sorted(set(missing)))


def test_every_builder_is_listed_in_the_reference():
    """The builders are made by a factory, which griffe cannot render: the families page lists
    each, so a new built-in family's builder cannot be left out of the reference."""
    from tfp_flows import families

    page = (ROOT / "docs" / "api" / "families.md").read_text()
    builders = [name for name in families.__all__
                if inspect.isfunction(getattr(families, name)) and name[0].islower()
                and name not in ("build", "register_family")]
    assert builders and all(f"`tfp_flows.{name}(event_shape, **kwargs)`" in page
                            for name in builders)


def test_the_package_page_lists_every_top_level_name():
    import tfp_flows

    page = (ROOT / "docs" / "api" / "tfp_flows.md").read_text()
    assert [name for name in tfp_flows.__all__ if f"| [`{name}`]" not in page
            and f"| `{name}` |" not in page] == []
