"""Registries: the names under which transforms, families, bases, dequantizers and data sources
are found.

Each extension point keeps one `Registry`. A user adds to it from their own module with the
registry's decorator, for example::

    @tfp_flows.register_transform("my_transform")
    class MyTransform(tfp_flows.Transform):
        ...

and the name then works wherever a built-in one does (`transform="my_transform"`, the
training command's `--transform`, a saved model's config). Registering a name twice is an
error unless it is the same object again (a module imported twice, or reloaded), so two
plugins cannot silently replace each other's extensions.
"""

from __future__ import annotations

__all__ = ["Registry"]


class Registry:
    """Names -> registered objects of one kind.

    Args:
        kind: what is registered, in words ("transform", "family"), for error messages.
        base: the class every registered class must subclass, or None to accept any object.
    """

    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self._entries: dict[str, object] = {}

    def register(self, name: str):
        """A decorator that registers its argument under `name` and returns it unchanged."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a {self.kind}'s name must be a Python identifier (it becomes a "
                             f"keyword value and a command-line choice), got {name!r}.")

        def decorate(entry):
            if self.base is not None and not (
                    isinstance(entry, type) and issubclass(entry, self.base)):
                raise TypeError(f"register_{self.kind}({name!r}) takes a subclass of "
                                f"{self.base.__module__}.{self.base.__qualname__}, got "
                                f"{entry!r}.")
            known = self._entries.get(name)
            if known is not None and _identity(known) != _identity(entry):
                raise ValueError(f"the {self.kind} name {name!r} is already registered to "
                                 f"{_identity(known)}; choose another name for "
                                 f"{_identity(entry)}.")
            self._entries[name] = entry
            if isinstance(entry, type):
                entry.registered_name = name
            return entry

        return decorate

    def get(self, name: str):
        """The object registered as `name`; a ValueError naming the known ones if none is."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        raise ValueError(f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                         f"{', '.join(self.names())}. A plugin's {self.kind} is registered "
                         f"when its module is imported (the training command: --plugin=module).")

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self):
        """The (name, object) pairs, in registration order."""
        return tuple(self._entries.items())

    def values(self):
        """The registered objects, in registration order."""
        return tuple(self._entries.values())

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self):
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


def _identity(entry) -> str:
    """Module and qualified name: the same class reloaded is the same extension."""
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"
