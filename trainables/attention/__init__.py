"""Sequence mixers behind one interface: ``forward(x (B, N, D), mask (B, N) bool | None) -> (B, N, D)``.

A masked-out token never changes another token's output, so padded sets and sequences can be
batched freely. Each mechanism lives in its own module and registers a factory with
``@register_attention(name)``; models build them with ``create_attention(name, dim, **options)``,
so a search space can make the attention kind a categorical parameter. Every factory takes
``dim`` and keyword-only options with defaults, so the contract tests can build each one.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from trainables.plugins import ATTENTION
from trainables.registry import Registry, import_submodules

AttentionFactory = Callable[..., nn.Module]

_registry: Registry[AttentionFactory] = Registry("attention")


def register_attention(name: str) -> Callable[[AttentionFactory], AttentionFactory]:
    return _registry.register(name)


def create_attention(name: str, dim: int, **options: Any) -> nn.Module:
    """Build attention ``name`` of width ``dim``; unknown names fail with the list of known ones."""
    _import_mechanisms()
    return _registry.get(name)(dim, **options)


def attention_kinds() -> tuple[str, ...]:
    _import_mechanisms()
    return tuple(_registry)


def attention_options(name: str) -> tuple[str, ...]:
    _import_mechanisms()
    return _registry.hyperparameters(name)


def _import_mechanisms() -> None:
    import_submodules(__name__, ATTENTION)  # registration happens on import
