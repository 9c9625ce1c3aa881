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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from trainables.errors import UserError

PACKAGE_DIR = Path(__file__).parent
TYPES = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
    "fixed": {"value"},
}
COMMON_KEYS = {"type", "when"}
TOP_LEVEL_KEYS = {"family", "parameters"}


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
        if self.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            return False
        return self.low <= value <= self.high


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


def read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as error:
        raise SearchSpaceError(f"cannot read {what} {path}: {error.strerror}; check the path") from None
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
        return SearchSpaceError(f"{source}: {key}: {problem}")

    if not isinstance(document, dict):
        raise fail("top level", f"expected a mapping with keys {sorted(TOP_LEVEL_KEYS)}, got {type(document).__name__}")
    unknown = set(document) - TOP_LEVEL_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key; allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    if document.get("family", family) != family:
        raise fail("family", f"this file is for family {document['family']!r}, not {family!r}; pass the {family} space")
    raw = document.get("parameters")
    if not isinstance(raw, dict) or not raw:
        raise fail("parameters", "expected a non-empty mapping of parameter name to its definition")

    parameters: list[Parameter] = []
    for name, spec in raw.items():
        parameters.append(_parse_parameter(str(name), spec, {p.name: p for p in parameters}, fail))
        if name == "architecture":
            _check_architecture(parameters[-1], architectures, fail)
    if "architecture" not in raw:
        raise fail("parameters.architecture", f"missing; choose among {', '.join(architectures)}")
    _check_names(parameters, hyperparameters, set(training_hyperparameters), fail)
    return SearchSpace(source, family, tuple(parameters))


def _parse_parameter(name: str, spec: Any, earlier: Mapping[str, Parameter], fail) -> Parameter:
    key = f"parameters.{name}"
    if not isinstance(spec, dict):
        if isinstance(spec, (list, type(None))):
            raise fail(key, "a bare list or empty value is ambiguous; write {type: categorical, choices: [...]}")
        return Parameter(name, "fixed", value=spec)
    kind = spec.get("type")
    if kind not in TYPES:
        raise fail(f"{key}.type", f"got {kind!r}; use one of {', '.join(TYPES)}")
    unknown = set(spec) - TYPES[kind] - COMMON_KEYS
    if unknown:
        allowed = ", ".join(sorted(TYPES[kind] | COMMON_KEYS))
        raise fail(f"{key}.{sorted(unknown)[0]}", f"unknown key for a {kind} parameter; allowed: {allowed}")
    when = _parse_when(key, spec.get("when", {}), earlier, fail)
    if kind == "fixed":
        if "value" not in spec:
            raise fail(f"{key}.value", "a fixed parameter needs a value")
        return Parameter(name, kind, value=spec["value"], when=when)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail(f"{key}.choices", "expected a non-empty list of values")
        if any(not isinstance(c, (str, int, float, bool, type(None))) for c in choices):
            raise fail(f"{key}.choices", "choices must be strings, numbers, booleans or null")
        if len(set(map(repr, choices))) != len(choices):
            raise fail(f"{key}.choices", "choices repeat a value; list each once")
        return Parameter(name, kind, choices=tuple(choices), when=when)
    return _parse_range(name, kind, spec, when, fail)


def _parse_range(name: str, kind: str, spec: dict, when, fail) -> Parameter:
    key = f"parameters.{name}"
    number = int if kind == "int" else (int, float)
    bounds = {}
    for bound in ("low", "high"):
        value = spec.get(bound)
        if isinstance(value, bool) or not isinstance(value, number) or (kind == "float" and not math.isfinite(value)):
            expected = "an integer" if kind == "int" else "a finite number"
            raise fail(f"{key}.{bound}", f"expected {expected}, got {value!r}")
        bounds[bound] = value
    low, high = bounds["low"], bounds["high"]
    if low > high:
        raise fail(key, f"low ({low}) > high ({high}); make low <= high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"{key}.log", f"expected true or false, got {log!r}")
    if log and low <= 0:
        raise fail(f"{key}.low", f"a log-scale range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        if log:
            raise fail(f"{key}.step", "step and log cannot be combined; drop one")
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            raise fail(f"{key}.step", f"expected a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
    return Parameter(name, kind, low=low, high=high, log=log, step=step, when=when)


def _parse_when(key: str, when: Any, earlier: Mapping[str, Parameter], fail) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(when, dict):
        raise fail(f"{key}.when", "expected a mapping of an earlier parameter to its value(s)")
    conditions = []
    for other, values in when.items():
        if other not in earlier:
            raise fail(f"{key}.when.{other}", "condition on an unknown parameter; conditions may only name parameters defined above")
        allowed = tuple(values) if isinstance(values, list) else (values,)
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
