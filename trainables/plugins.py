"""Users' own families, models and attention mechanisms, from their own packages.

Two ways in, both of which just import a module that registers things on import (with
``register_family``, ``register_model`` or ``register_attention``), as the built-in ones do:

- an installed package declares Python entry points in the groups of :data:`GROUPS`, e.g. in its
  pyproject.toml ``[project.entry-points."attention_sweeper.families"] vibration = "vibration_family"``;
  each registry loads its group the first time it is asked for a name;
- code that is not installed is named with ``sweeper launch --plugin my_package.module``; the
  sweep records the names, so every later command (and every Ray worker) imports them too.

A plugin that does not import is the user's to fix: one line names it and what to do.
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Sequence

from trainables.errors import UserError

FAMILIES, MODELS, ATTENTION = "attention_sweeper.families", "attention_sweeper.models", "attention_sweeper.attention"
GROUPS = (FAMILIES, MODELS, ATTENTION)

_loaded_groups: set[str] = set()


class PluginError(UserError):
    pass


def load_entry_points(group: str) -> None:
    """Import every module the installed packages declare in ``group`` (once per process)."""
    if group in _loaded_groups:
        return
    _loaded_groups.add(group)  # before importing: a plugin module may itself ask the registry for names
    for entry in entry_points(group=group):
        try:
            entry.load()
        except Exception as error:  # noqa: BLE001 (any failure of a user's module is theirs to fix)
            _loaded_groups.discard(group)
            distribution = f" of the installed package {entry.dist.name!r}" if entry.dist else ""
            raise PluginError(
                f"entry point {entry.name!r} in group {group!r}{distribution} does not import "
                f"({type(error).__name__}: {error}); fix or uninstall that package"
            ) from error


def import_plugins(names: Sequence[str]) -> list[ModuleType]:
    """Import the ``--plugin`` modules (dotted names, importable from the current folder or
    PYTHONPATH) and return them; the console script does not put the current folder on the path,
    ``python -m`` does, so it is added here for both to behave alike."""
    if names and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as error:  # noqa: BLE001 (any failure of a user's module is theirs to fix)
            raise PluginError(
                f"plugin {name!r} does not import ({type(error).__name__}: {error}); give a dotted module name "
                "importable from the current folder or PYTHONPATH, and fix the error it raises"
            ) from error
    return modules


def shipped_modules(names: Sequence[str]) -> list[ModuleType]:
    """The top-level packages (or single-file modules) of the ``--plugin`` modules: what Ray's
    runtime environment (``py_modules``) must copy to every worker of a cluster."""
    tops = dict.fromkeys(name.split(".")[0] for name in names)
    return [sys.modules[top] for top in tops]
