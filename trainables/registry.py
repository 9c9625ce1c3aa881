"""A name -> entry registry with a decorator, in the spirit of timm's model registry. Entries are
model and attention factories, or families."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

from trainables.plugins import load_entry_points

Entry = TypeVar("Entry")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[Entry]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str) -> Callable[[Entry], Entry]:
        def decorator(entry: Entry) -> Entry:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def hyperparameters(self, name: str) -> tuple[str, ...]:
        """The keyword arguments a factory accepts, so search spaces can be checked against them."""
        parameters = inspect.signature(self.get(name)).parameters.values()
        return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))


def import_submodules(package: str, plugin_group: str) -> None:
    """Import every module of ``package`` and of the plugins installed in ``plugin_group``, so the
    ones that register entries on import are found."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")
    load_entry_points(plugin_group)
