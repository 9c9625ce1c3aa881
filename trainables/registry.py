"""A name -> factory registry with a decorator, in the spirit of timm's model registry."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Generic, Iterator, TypeVar

Factory = TypeVar("Factory", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[Factory]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Factory] = {}

    def register(self, name: str) -> Callable[[Factory], Factory]:
        def decorator(factory: Factory) -> Factory:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Factory:
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


def import_submodules(package: str) -> None:
    """Import every module of ``package``, so the ones that register entries on import are found."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")
