"""Plugins: the user modules a run imports so that the families, transforms and data sources
they register are found by name (`--plugin=module`)."""

from __future__ import annotations

import importlib

from tfp_flows.training.errors import ConfigError, reason

__all__ = ["import_plugins"]


def import_plugins(given: tuple[str, ...], trained: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Imports the plugin modules of a run: those it was trained with, then the `given` ones.

    Args:
        given: The modules this command names (`--plugin`).
        trained: The modules the run in the output directory was trained with (its
            config.json), which a resumed run needs though the command may not name them.

    Returns:
        The modules imported, `trained` first, each once: the run's plugins from now on.

    Raises:
        ConfigError: Naming the module that cannot be imported, and why.
    """
    plugins = tuple(dict.fromkeys((*trained, *given)))
    for name in plugins:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 (a user's module may raise anything)
            source = ("the run in --output_dir was trained with --plugin" if name not in given
                      else "--plugin")
            raise ConfigError(f"{source} {name!r} cannot be imported ({reason(error)}); check "
                              f"the module's name, that it is on PYTHONPATH, and that it "
                              f"imports") from None
    return plugins
