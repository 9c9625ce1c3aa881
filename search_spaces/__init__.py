"""Search spaces as data: one YAML file per family, validated here and turned into an Optuna
define-by-run function (the only place that knows Optuna's suggest API).

File format::

    family: localization
    parameters:
      architecture: {type: categorical, choices: [heimdall_net, heimdall_net_pro]}
      heads: {type: categorical, choices: [2, 4, 8], when: {architecture: heimdall_net_pro}}
      learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      batch_size: 32                      # a bare value is a constant

Types: ``float`` and ``int`` (``low``, ``high``, optional ``log`` or ``step``), ``categorical``
(``choices``), ``fixed`` (``value``). ``when`` maps earlier parameters to the value (or list of
values) they must have for this parameter to exist: that is how conditional parameters are written.
"""
from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from search_spaces.errors import UserError

PACKAGE_DIR = Path(__file__).parent
TYPES = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
    "fixed": {"value"},
}
COMMON_KEYS = {"type", "when"}
TOP_LEVEL_KEYS = {"family", "parameters"}
# Optuna's samplers compute in floating point: beyond 2**53 integers (and float steps) lose
# their exactness, and wider ranges fail inside the sampler instead of here.
LARGEST_EXACT_INTEGER = 2**53
# Optuna samples a log range as exp(uniform(log low, log high)); when high / low is within about
# 1e-12 of 1, rounding yields NaN or values just outside the range.
NARROWEST_LOG_RANGE = 1e-9


class SearchSpaceError(UserError):
    """A search-space file is invalid; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def applies(self, config: Mapping[str, Any]) -> bool:
        return all(name in config and config[name] in allowed for name, allowed in self.when)

    def contains(self, value: Any) -> bool:
        if self.type == "fixed":
            return value == self.value
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int if self.type == "int" else (int, float)):
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class InlineSpace:
    """A search space written inside another file: a sweep file's ``search_space:`` mapping."""

    document: Mapping[str, Any]
    source: str  # where it was written, for messages and the record, e.g. "sweep.yaml: search_space"


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; calling it with an Optuna trial samples one configuration."""

    source: str
    family: str
    parameters: tuple[Parameter, ...]

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Optuna define-by-run: suggest the parameters that apply, return the constants."""
        config: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for parameter in self.parameters:
            if not parameter.applies(config):
                continue
            if parameter.type == "fixed":
                config[parameter.name] = constants[parameter.name] = parameter.value
            else:
                config[parameter.name] = _suggest(trial, parameter)
        return constants

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` holds exactly the parameters that apply, each within its range."""
        expected = {p.name for p in self.parameters if p.applies(config)}
        by_name = {p.name: p for p in self.parameters}
        return set(config) == expected and all(by_name[name].contains(value) for name, value in config.items())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def distributions(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the sampled (not fixed) parameters that apply to ``config``."""
        return {p.name: _distribution(p) for p in self.parameters if p.type != "fixed" and p.applies(config) and p.name in config}


def _distribution(parameter: Parameter) -> Any:
    import optuna

    if parameter.type == "categorical":
        return optuna.distributions.CategoricalDistribution(list(parameter.choices))
    if parameter.type == "int":
        return optuna.distributions.IntDistribution(int(parameter.low), int(parameter.high), log=parameter.log, step=int(parameter.step or 1))
    return optuna.distributions.FloatDistribution(parameter.low, parameter.high, log=parameter.log, step=parameter.step)


def _suggest(trial: Any, parameter: Parameter) -> Any:
    if parameter.type == "categorical":
        return trial.suggest_categorical(parameter.name, list(parameter.choices))
    suggest = trial.suggest_int if parameter.type == "int" else trial.suggest_float
    step = {"step": parameter.step} if parameter.step is not None else {}
    return suggest(parameter.name, parameter.low, parameter.high, log=parameter.log, **step)


def family_search_space_path(family: str) -> Path:
    return PACKAGE_DIR / f"{family}.yaml"


def load_search_space(
    path: Path,
    family: str,
    architectures: Sequence[str],
    hyperparameters: Callable[[str], Iterable[str]],
    training_hyperparameters: Iterable[str],
) -> SearchSpace:
    """Read and validate ``path`` for ``family``; raise SearchSpaceError naming what is wrong."""
    document = read_yaml(path, "search space")
    return parse_search_space(document, str(path), family, architectures, hyperparameters, training_hyperparameters)


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when installed
    """YAML's safe loader, except that a key written twice in one mapping is an error: plain YAML
    keeps the last one silently, so a parameter defined twice would quietly lose its first range."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports unhashable keys itself
        if key in seen:
            problem = f"found the key {key!r} twice; keep one"
            raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: Path, what: str) -> Any:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise SearchSpaceError(f"cannot read {what} {path}: {error.strerror}; check the path") from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise SearchSpaceError(
            f"{path} is not UTF-8 text (byte {error.start}, line {line}); save it as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.reader.ReaderError as error:  # reported by position only: give the line
        line = text.count("\n", 0, error.position) + 1
        character = f"character #x{error.character:04x}"
        raise SearchSpaceError(
            f"{path} is not valid YAML: {character} on line {line}: {error.reason}; remove it"
        ) from None
    except yaml.YAMLError as error:
        raise SearchSpaceError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None


def parse_search_space(
    document: Any,
    source: str,
    family: str,
    architectures: Sequence[str],
    hyperparameters: Callable[[str], Iterable[str]],
    training_hyperparameters: Iterable[str],
) -> SearchSpace:
    def fail(key: str, problem: str) -> SearchSpaceError:
        return SearchSpaceError(_one_line(f"{source}: {key}: {problem}"))

    if not isinstance(document, dict):
        raise fail("top level", f"expected a mapping with keys {sorted(TOP_LEVEL_KEYS)}, got {type(document).__name__}")
    unknown = _first_unknown(document, TOP_LEVEL_KEYS)
    if unknown is not None:
        raise fail(unknown, f"unknown key; allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    if document.get("family", family) != family:
        raise fail("family", f"this file is for family {document['family']!r}, not {family!r}; pass the {family} space")
    raw = document.get("parameters")
    if not isinstance(raw, dict) or not raw:
        raise fail("parameters", "expected a non-empty mapping of parameter name to its definition")

    parameters: list[Parameter] = []
    names = [str(name) for name in raw]
    for index, (name, spec) in enumerate(raw.items()):
        parameters.append(_parse_parameter(str(name), spec, {p.name: p for p in parameters}, names[index + 1 :], fail))
        if name == "architecture":
            _check_architecture(parameters[-1], architectures, fail)
    if "architecture" not in raw:
        raise fail("parameters.architecture", f"missing; choose among {', '.join(architectures)}")
    _check_names(parameters, hyperparameters, set(training_hyperparameters), fail)
    return SearchSpace(source, family, tuple(parameters))


def _one_line(message: str) -> str:
    """Escape line breaks and other unprintable characters (from key names, say): one line for the CLI."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in message)


def _first_unknown(mapping: Mapping[Any, Any], allowed: set[str]) -> str | None:
    """The first key (in sorted order, whatever its YAML type) that is not allowed."""
    unknown = sorted(str(key) for key in mapping if not isinstance(key, str) or key not in allowed)
    return unknown[0] if unknown else None


def _parse_parameter(name: str, spec: Any, earlier: Mapping[str, Parameter], later: Sequence[str], fail) -> Parameter:
    key = f"parameters.{name}"
    if not isinstance(spec, dict):
        if isinstance(spec, (list, type(None))):
            raise fail(key, "a bare list or empty value is ambiguous; write {type: categorical, choices: [...]}")
        return Parameter(name, "fixed", value=spec)
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise fail(f"{key}.type", f"got {kind!r}; use one of {', '.join(TYPES)}")
    unknown = _first_unknown(spec, TYPES[kind] | COMMON_KEYS)
    if unknown is not None:
        allowed = ", ".join(sorted(TYPES[kind] | COMMON_KEYS))
        raise fail(f"{key}.{unknown}", f"unknown key for a {kind} parameter; allowed: {allowed}")
    when = _parse_when(key, spec.get("when", {}), earlier, later, fail)
    if kind == "fixed":
        if "value" not in spec:
            raise fail(f"{key}.value", "a fixed parameter needs a value")
        return Parameter(name, kind, value=spec["value"], when=when)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail(f"{key}.choices", "expected a non-empty list of values")
        _check_choices(f"{key}.choices", choices, fail)
        return Parameter(name, kind, choices=tuple(choices), when=when)
    return _parse_range(name, kind, spec, when, fail)


def _check_choices(key: str, choices: list, fail) -> None:
    if any(not isinstance(c, (str, int, float, bool, type(None))) for c in choices):
        raise fail(key, "choices must be strings, numbers, booleans or null")
    if any(isinstance(c, float) and math.isnan(c) for c in choices):
        raise fail(key, "NaN is not a usable choice (it equals nothing, so no condition can match it); remove it")
    # 1, 1.0 and true are equal in Python: conditions and results could not tell them apart.
    for index, choice in enumerate(choices):
        if choice in choices[:index]:
            raise fail(key, f"choices repeat the value {choice!r} (1, 1.0 and true count as equal); list each once")


def _parse_bound(key: str, kind: str, value: Any, fail) -> int | float:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > LARGEST_EXACT_INTEGER:
            raise fail(key, f"expected an integer between -2**53 and 2**53, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(key, f"expected a finite number, got {value!r}")
    return value


def _parse_range(name: str, kind: str, spec: dict, when, fail) -> Parameter:
    key = f"parameters.{name}"
    number = int if kind == "int" else (int, float)
    low, high = (_parse_bound(f"{key}.{bound}", kind, spec.get(bound), fail) for bound in ("low", "high"))
    if low > high:
        raise fail(key, f"low ({low}) > high ({high}); make low <= high")
    if not math.isfinite(float(high) - float(low)):
        raise fail(key, f"the range from {low} to {high} is too wide to sample; narrow it or use log: true")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"{key}.log", f"expected true or false, got {log!r}")
    if log and low <= 0:
        raise fail(f"{key}.low", f"a log-scale range needs low > 0, got {low}")
    if log and low < high < low * (1 + NARROWEST_LOG_RANGE):
        raise fail(key, f"the log-scale range from {low} to {high} is too narrow to sample; widen it or make it fixed")
    step = spec.get("step")
    if step is not None:
        if log:
            raise fail(f"{key}.step", "step and log cannot be combined; drop one")
        if isinstance(step, bool) or not isinstance(step, number) or not 0 < step < math.inf:
            expected = "a positive integer" if kind == "int" else "a positive finite number"
            raise fail(f"{key}.step", f"expected {expected}, got {step!r}")
        if (high - low) / step > LARGEST_EXACT_INTEGER:
            raise fail(f"{key}.step", f"{step} splits the range into more than 2**53 steps; use a larger step or none")
    return Parameter(name, kind, low=low, high=high, log=log, step=step, when=when)


def _parse_when(
    key: str, when: Any, earlier: Mapping[str, Parameter], later: Sequence[str], fail
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(when, dict):
        raise fail(f"{key}.when", "expected a mapping of an earlier parameter to its value(s)")
    conditions = []
    for other, values in when.items():
        if other in later:
            raise fail(f"{key}.when.{other}", f"{other} is defined below {key}; move {other} above it")
        if other not in earlier:
            raise fail(f"{key}.when.{other}", "condition on an unknown parameter; conditions may only name parameters defined above")
        allowed = tuple(values) if isinstance(values, list) else (values,)
        if not allowed:
            raise fail(f"{key}.when.{other}", f"an empty list never matches; give the value(s) of {other} it needs")
        reference = earlier[other]
        impossible = [v for v in allowed if not reference.contains(v)]
        if impossible:
            raise fail(f"{key}.when.{other}", f"{impossible[0]!r} is not a possible value of {other}")
        conditions.append((other, allowed))
    return tuple(conditions)


def _check_architecture(architecture: Parameter, architectures: Sequence[str], fail) -> None:
    if architecture.type not in ("categorical", "fixed") or architecture.when:
        raise fail("parameters.architecture", "must be an unconditional categorical or fixed parameter")
    for choice in architecture.choices or (architecture.value,):
        if choice not in architectures:
            raise fail("parameters.architecture", f"unknown architecture {choice!r}; known: {', '.join(architectures)}")


def _check_names(parameters: list[Parameter], hyperparameters, training: set[str], fail) -> None:
    by_name = {p.name: p for p in parameters}
    every_architecture = by_name["architecture"].choices or (by_name["architecture"].value,)
    for parameter in parameters:
        if parameter.name == "architecture" or parameter.name in training:
            continue
        condition = dict(parameter.when).get("architecture", every_architecture)
        applies_to = [a for a in every_architecture if a in condition]
        takes = [a for a in every_architecture if parameter.name in hyperparameters(a)]
        if not takes:
            known = sorted(training | {h for a in every_architecture for h in hyperparameters(a)})
            raise fail(f"parameters.{parameter.name}", f"unknown parameter; known: {', '.join(known)}")
        refusing = [a for a in applies_to if a not in takes]
        if refusing:
            raise fail(
                f"parameters.{parameter.name}",
                f"{', '.join(refusing)} does not take it; add `when: {{architecture: [{', '.join(takes)}]}}`",
            )
