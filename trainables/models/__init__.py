"""The model registry: ``create_model(family, architecture, context, **hyperparameters)``.

Each architecture is a small factory registered with :func:`register_model`. ``context`` holds
what the model must know about the data (input sizes, normalisation statistics from the training
split); the keyword-only arguments are the hyperparameters a search space may set.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from trainables.plugins import MODELS
from trainables.registry import Registry, UnknownNameError, import_submodules

ModelFactory = Callable[..., nn.Module]

_registries: dict[str, Registry[ModelFactory]] = {}


def _family_registry(family: str) -> Registry[ModelFactory]:
    return _registries.setdefault(family, Registry(f"{family} architecture"))


def register_model(family: str, name: str) -> Callable[[ModelFactory], ModelFactory]:
    return _family_registry(family).register(name)


def architectures(family: str) -> tuple[str, ...]:
    _import_model_modules()
    return tuple(_family_registry(family))


def model_hyperparameters(family: str, architecture: str) -> tuple[str, ...]:
    _import_model_modules()
    return _family_registry(family).hyperparameters(architecture)


def create_model(
    family: str, architecture: str, context: Mapping[str, Any], **hyperparameters: Any
) -> nn.Module:
    """Build ``architecture`` of ``family``; unknown names fail with the list of known ones."""
    _import_model_modules()
    return _family_registry(family).get(architecture)(context, **hyperparameters)


def _import_model_modules() -> None:
    import_submodules(__name__, MODELS)  # registration happens on import; this keeps `create_model` the one door


__all__ = [
    "UnknownNameError",
    "architectures",
    "create_model",
    "model_hyperparameters",
    "register_model",
]
