"""Sweep files: ``sweeper launch --config sweep.yaml`` reads every launch setting from YAML.

The keys are the options of ``sweeper launch`` (``family``, ``preset``, ``trials``, ``objectives``,
``sampler``, ``scheduler`` and their settings, resources, ``storage``, ``tracking_uri``, ``plugins``
...), with ``-`` or ``_`` alike; flags on the command line override the file. Lists are YAML lists
(``objectives: [val_mean_error_m, latency_ms_p95]``). A path (``search_space``, ``data``) is
relative to the file's folder; ``search_space`` may also be the space itself, written inline (a
mapping with ``family`` and ``parameters``, as in a search-space file). Problems are found before anything runs and named with the file,
the key and what was expected, in one line.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from search_spaces import InlineSpace
from trainables.errors import ConfigError

PATHS = ("search_space", "data")


class SweepFileError(ConfigError):
    pass


def read_sweep_file(path: Path, fields: tuple[dataclasses.Field, ...], hints: Mapping[str, Any]) -> dict[str, Any]:
    """The settings in ``path``, checked against ``fields`` (the launch options' dataclass fields
    and their resolved type hints); raise SweepFileError naming the file, the key and the fix."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SweepFileError(f"sweep file {path}: cannot be read ({error.strerror}); check the path") from None
    except yaml.YAMLError as error:
        raise SweepFileError(f"sweep file {path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(document, dict):
        raise SweepFileError(f"sweep file {path}: expected a mapping of launch settings, got {type(document).__name__}")
    known = {field.name for field in fields}
    settings = {}
    for key, value in document.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise SweepFileError(f"sweep file {path}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        settings[name] = _checked(path, key, value, hints[name])
        if name in PATHS and isinstance(settings[name], Path):
            settings[name] = (path.parent / settings[name]).resolve()
    return settings


def _checked(path: Path, key: str, value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` asks for (str, int, float, Path, a tuple of str, or optional)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in (o for o in options if o is not type(None)):
        if typing.get_origin(option) is tuple:
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                return tuple(value)
        elif option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif option is Path and isinstance(value, str):
            return Path(value)
        elif option is InlineSpace and isinstance(value, dict):
            return InlineSpace(value, f"{path}: {key}")  # checked against the family by the search-space loader
        elif option in (str, int, bool) and type(value) is option:
            return value
    expected = " or ".join(_describe(option) for option in options)
    raise SweepFileError(f"sweep file {path}: {key}: expected {expected}, got {value!r}")


def _describe(option: Any) -> str:
    if typing.get_origin(option) is tuple:
        return "a list of names"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path", type(None): "null",
             InlineSpace: "a search space (a mapping)"}  # fmt: skip
    return names[option]


def as_yaml(settings: Mapping[str, Any]) -> str:
    """The effective settings, as a sweep file that would reproduce them."""
    given = {key: _plain(value) for key, value in settings.items() if value is not None and value != ()}
    return yaml.safe_dump(given, sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, InlineSpace):
        return dict(value.document)
    return str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
