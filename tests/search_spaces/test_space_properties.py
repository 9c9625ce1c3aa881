"""Property-based checks of the search-space contract.

Malformed files, made by damaging the real family spaces, are refused with a one-line
SearchSpaceError naming the file, the key and what is expected. Valid spaces, built at random,
yield through the sweep's own sampling path (Ray's OptunaSearch with the sweep's TPE sampler)
only configurations that lie inside them.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ray.tune.search.optuna import OptunaSearch

from search_spaces import TYPES, SearchSpace, SearchSpaceError, family_search_space_path, load_search_space
from sweeper.strategies import Budget, tpe
from trainables.families import family_names, get_family
from trainables.models import model_hyperparameters

FAMILIES = family_names()
FILES = {family: yaml.safe_load(family_search_space_path(family).read_text()) for family in FAMILIES}
# The families' spaces with their bare constants (e.g. `schedule: cosine`) left out: the strategies
# below damage a parameter's mapping, and a space without an optional constant is still valid.
REAL_SPACES = {
    family: {**document, "parameters": {name: spec for name, spec in document["parameters"].items() if isinstance(spec, dict)}}
    for family, document in FILES.items()
}
RANGE_PARAMETERS = [
    (family, name)
    for family, document in REAL_SPACES.items()
    for name, spec in document["parameters"].items()
    if isinstance(spec, dict) and spec["type"] in ("float", "int")
]
CATEGORICAL_PARAMETERS = [
    (family, name)
    for family, document in REAL_SPACES.items()
    for name, spec in document["parameters"].items()
    if isinstance(spec, dict) and spec["type"] == "categorical"
]
# Each parameter after the first, with the parameters defined above it.
LATER_PARAMETERS = [
    (family, name, list(document["parameters"])[:index])
    for family, document in REAL_SPACES.items()
    for index, name in enumerate(document["parameters"])
    if index > 0
]

malformed = settings(max_examples=60, deadline=None)
SUGGESTIONS = 12  # the sweep's TPE samples at random for 10 trials, then models the results
SCALARS = st.one_of(st.text(max_size=8), st.integers(-100, 100), st.floats(allow_nan=False), st.booleans(), st.none())
MAPPINGS = st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
NOT_NUMBERS = st.one_of(st.text(max_size=8), st.booleans(), st.none(), st.lists(st.integers(), max_size=2), MAPPINGS)
KEY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=10)


@dataclass(frozen=True)
class Malformed:
    """A damaged space: the file's content, the key its error must name and what it must expect."""

    family: str
    content: str | bytes
    key: str | None  # None: the file as a whole (not YAML, not UTF-8), named by its line
    expected: str


def shown(key: str) -> str:
    """How a key appears in a one-line message: unprintable characters escaped."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in key)


def changed(family: str, name: str, change: Callable[[Any], Any]) -> dict:
    """The family's real space with parameter ``name`` replaced by ``change(its spec)``, in place."""
    document = copy.deepcopy(REAL_SPACES[family])
    document["parameters"][name] = change(document["parameters"][name])
    return document


def dumped(document: Any) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, when installed: faster
    return yaml.dump(document, Dumper=dumper, sort_keys=False, allow_unicode=True)


# --- malformed spaces, one strategy per kind of damage -----------------------------------------


@st.composite
def bound_of_wrong_type(draw) -> Malformed:
    family, name = draw(st.sampled_from(RANGE_PARAMETERS))
    kind = REAL_SPACES[family]["parameters"][name]["type"]
    bound = draw(st.sampled_from(["low", "high"]))
    if kind == "int":
        too_large = st.integers(min_value=2**53 + 1) | st.integers(max_value=-(2**53) - 1)
        value = draw(st.one_of(NOT_NUMBERS, st.floats(), too_large))
        expected = "expected an integer between -2**53 and 2**53"
    else:
        value = draw(st.one_of(NOT_NUMBERS, st.sampled_from([math.nan, math.inf, -math.inf])))
        expected = "expected a finite number"
    document = changed(family, name, lambda spec: {**spec, bound: value})
    return Malformed(family, dumped(document), f"parameters.{name}.{bound}", expected)


@st.composite
def unknown_type(draw) -> Malformed:
    family = draw(st.sampled_from(FAMILIES))
    name = draw(st.sampled_from(list(REAL_SPACES[family]["parameters"])))
    other_text = st.text(max_size=10).filter(lambda text: text not in TYPES)
    kind = draw(st.one_of(other_text, NOT_NUMBERS.filter(lambda value: not isinstance(value, str))))
    document = changed(family, name, lambda spec: {**spec, "type": kind})
    return Malformed(family, dumped(document), f"parameters.{name}.type", "use one of float, int, categorical, fixed")


@st.composite
def unknown_parameter_key(draw) -> Malformed:
    family = draw(st.sampled_from(FAMILIES))
    name = draw(st.sampled_from(list(REAL_SPACES[family]["parameters"])))
    kind = REAL_SPACES[family]["parameters"][name]["type"]
    allowed = TYPES[kind] | {"type", "when"}
    key = draw(st.one_of(KEY_TEXT, st.integers(), st.booleans()).filter(lambda k: k not in allowed))
    value = draw(SCALARS)
    document = changed(family, name, lambda spec: {**spec, key: value})
    expected = f"unknown key for a {kind} parameter; allowed:"
    return Malformed(family, dumped(document), f"parameters.{name}.{shown(str(key))}", expected)


@st.composite
def unknown_top_level_key(draw) -> Malformed:
    family = draw(st.sampled_from(FAMILIES))
    key = draw(st.one_of(KEY_TEXT, st.integers()).filter(lambda k: k not in ("family", "parameters")))
    document = {**REAL_SPACES[family], key: draw(SCALARS)}
    return Malformed(family, dumped(document), shown(str(key)), "unknown key; allowed: family, parameters")


@st.composite
def bad_choices(draw) -> Malformed:
    family, name = draw(st.sampled_from(CATEGORICAL_PARAMETERS))
    not_a_list = st.one_of(st.just([]), st.none(), st.text(max_size=5), st.integers(), MAPPINGS)
    nested = st.lists(st.lists(st.integers(), max_size=2), min_size=1, max_size=3)
    repeated = st.sampled_from([[1, True], [0, False, 2], [1, 1.0], ["a", "b", "a"]])
    choices, expected = draw(
        st.one_of(
            st.tuples(not_a_list, st.just("expected a non-empty list")),
            st.tuples(nested, st.just("must be strings, numbers")),
            st.tuples(repeated, st.just("choices repeat the value")),
            st.tuples(st.just([1, math.nan]), st.just("NaN is not a usable choice")),
        )
    )
    document = changed(family, name, lambda spec: {**spec, "choices": choices})
    return Malformed(family, dumped(document), f"parameters.{name}.choices", expected)


@st.composite
def low_above_high(draw) -> Malformed:
    family, name = draw(st.sampled_from(RANGE_PARAMETERS))
    if REAL_SPACES[family]["parameters"][name]["type"] == "int":
        high = draw(st.integers(-(2**53), 2**53 - 1))
        low = draw(st.integers(high + 1, 2**53))
    else:
        high = draw(st.floats(allow_nan=False, allow_infinity=False, max_value=1e300))
        low = draw(st.floats(min_value=high, allow_infinity=False).filter(lambda value: value > high))
    document = changed(family, name, lambda spec: {**spec, "low": low, "high": high})
    return Malformed(family, dumped(document), f"parameters.{name}", "make low <= high")


@st.composite
def log_without_positive_low(draw) -> Malformed:
    family, name = draw(st.sampled_from(RANGE_PARAMETERS))
    integer = REAL_SPACES[family]["parameters"][name]["type"] == "int"
    low = draw(st.integers(-1000, 0) if integer else st.floats(-1e6, 0.0))
    high = draw(st.integers(low, 1000) if integer else st.floats(low, 1e6))
    document = changed(family, name, lambda spec: {"type": spec["type"], "low": low, "high": high, "log": True})
    return Malformed(family, dumped(document), f"parameters.{name}.low", "a log-scale range needs low > 0")


@st.composite
def bad_step_or_log(draw) -> Malformed:
    family, name = draw(st.sampled_from(RANGE_PARAMETERS))
    spec = {k: v for k, v in REAL_SPACES[family]["parameters"][name].items() if k not in ("step", "log")}
    integer = spec["type"] == "int"
    problem = draw(st.sampled_from(["log", "step value", "step with log"]))
    if problem == "log":
        log = draw(NOT_NUMBERS.filter(lambda value: not isinstance(value, bool)) | st.integers())
        change, key, expected = {"log": log}, "log", "expected true or false"
    elif problem == "step value":
        not_positive = st.integers(max_value=0) | st.floats(max_value=0.0) | st.sampled_from([math.nan, math.inf])
        step = draw(not_positive | NOT_NUMBERS.filter(lambda value: value is not None))
        if integer and isinstance(step, float) and step > 0:
            step = -1  # a positive float step on an int range is wrong for another reason; keep one problem
        change, key, expected = {"step": step}, "step", "expected a positive"
    else:
        change, key, expected = {"low": 1, "high": 10, "log": True, "step": 1}, "step", "cannot be combined"
    document = changed(family, name, lambda _: {**spec, **change})
    return Malformed(family, dumped(document), f"parameters.{name}.{key}", expected)


@st.composite
def condition_on_unknown_parameter(draw) -> Malformed:
    family = draw(st.sampled_from(FAMILIES))
    names = list(REAL_SPACES[family]["parameters"])
    index = draw(st.integers(0, len(names) - 1))
    if draw(st.booleans()):  # not a mapping at all
        when = draw(st.one_of(SCALARS, st.lists(st.sampled_from(names), min_size=1, max_size=2)))
        document = changed(family, names[index], lambda spec: {**spec, "when": when})
        return Malformed(family, dumped(document), f"parameters.{names[index]}.when", "expected a mapping")
    if index + 1 < len(names) and draw(st.booleans()):
        other, expected = draw(st.sampled_from(names[index + 1 :])), "move"  # defined below, not above
    else:
        other, expected = draw(KEY_TEXT.filter(lambda text: text not in names)), "condition on an unknown parameter"
    value = draw(SCALARS)
    document = changed(family, names[index], lambda spec: {**spec, "when": {other: value}})
    return Malformed(family, dumped(document), f"parameters.{names[index]}.when.{shown(other)}", expected)


@st.composite
def condition_on_impossible_value(draw) -> Malformed:
    family, name, earlier = draw(st.sampled_from(LATER_PARAMETERS))
    other = draw(st.sampled_from(earlier))
    reference = REAL_SPACES[family]["parameters"][other]
    if reference["type"] == "categorical":
        impossible = SCALARS.filter(lambda value: value not in reference["choices"])
    else:
        outside = st.floats(allow_nan=False).filter(lambda value: not reference["low"] <= value <= reference["high"])
        texts = st.lists(st.text(max_size=3), min_size=1, max_size=2)
        impossible = st.one_of(outside, st.text(max_size=5), st.none(), texts)
    value = draw(impossible)
    document = changed(family, name, lambda spec: {**spec, "when": {other: value}})
    return Malformed(family, dumped(document), f"parameters.{name}.when.{other}", f"is not a possible value of {other}")


@st.composite
def not_a_mapping(draw) -> Malformed:
    family = draw(st.sampled_from(FAMILIES))
    if draw(st.booleans()):
        document = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3)))
        return Malformed(family, dumped(document), "top level", "expected a mapping with keys ['family', 'parameters']")
    parameters = draw(st.one_of(st.just({}), SCALARS, st.lists(SCALARS, max_size=3)))
    document = {"family": family, "parameters": parameters}
    return Malformed(family, dumped(document), "parameters", "expected a non-empty mapping")


@st.composite
def wrong_family_or_architecture(draw) -> Malformed:
    family = draw(st.sampled_from(FAMILIES))
    architectures = get_family(family).architectures()
    problem = draw(st.sampled_from(["family", "architecture", "missing architecture"]))
    if problem == "family":
        other = draw(st.one_of(st.sampled_from(FAMILIES), KEY_TEXT, st.integers()).filter(lambda name: name != family))
        document = {**REAL_SPACES[family], "family": other}
        return Malformed(family, dumped(document), "family", f"not {family!r}; pass the {family} space")
    if problem == "architecture":
        unknown = draw(st.one_of(KEY_TEXT, st.integers()).filter(lambda name: name not in architectures))
        document = changed(family, "architecture", lambda spec: {**spec, "choices": [*spec["choices"], unknown]})
        return Malformed(family, dumped(document), "parameters.architecture", f"unknown architecture {unknown!r}")
    parameters = REAL_SPACES[family]["parameters"]
    unconditional = {k: v for k, v in parameters.items() if k != "architecture" and "when" not in v}
    document = {"family": family, "parameters": unconditional}
    return Malformed(family, dumped(document), "parameters.architecture", "missing; choose among")


def known_names(family: str) -> set[str]:
    definition = get_family(family)
    taken = {name for a in definition.architectures() for name in model_hyperparameters(family, a)}
    return set(definition.training_settings) | taken


KNOWN_NAMES = {family: known_names(family) for family in FAMILIES}


@st.composite
def unknown_or_misplaced_parameter(draw) -> Malformed:
    family = draw(st.sampled_from(FAMILIES))
    parameters = REAL_SPACES[family]["parameters"]
    if draw(st.booleans()):
        name = draw(KEY_TEXT.filter(lambda text: text not in KNOWN_NAMES[family] and text != "architecture"))
        constant = draw(SCALARS.filter(lambda value: value is not None))
        document = {**REAL_SPACES[family], "parameters": {**parameters, name: constant}}
        return Malformed(family, dumped(document), f"parameters.{shown(name)}", "unknown parameter; known:")
    name = draw(st.sampled_from([n for n, spec in parameters.items() if "when" not in spec and n != "architecture"]))
    spec, key, expected = draw(
        st.sampled_from(
            [
                ([1, 2], f"parameters.{name}", "ambiguous"),
                (None, f"parameters.{name}", "ambiguous"),
                ({"type": "fixed"}, f"parameters.{name}.value", "needs a value"),
            ]
        )
    )
    return Malformed(family, dumped(changed(family, name, lambda _: spec)), key, expected)


BREAKING_LINES = ["key: [unclosed", "\tindented: 1", "quote: 'unterminated", "a: b: c", "}", "  - {x: 1", "nul: \x00"]


@st.composite
def broken_file(draw) -> Malformed:
    """Damage below the level of keys: YAML syntax, a duplicated key, bytes that are not UTF-8."""
    family = draw(st.sampled_from(FAMILIES))
    lines = dumped(REAL_SPACES[family]).splitlines(keepends=True)
    names = [line for line in lines if line.startswith("  ") and not line.startswith("   ")]  # "  dropout:"
    damage = draw(st.sampled_from(["syntax", "duplicate", "encoding"]))
    if damage == "duplicate":  # a parameter's name again, just before another parameter or at the end
        where = draw(st.sampled_from([index for index, line in enumerate(lines) if line in names] + [len(lines)]))
    else:
        where = draw(st.integers(0, len(lines)))
    if damage == "syntax":
        inserted, expected = draw(st.sampled_from(BREAKING_LINES)) + "\n", "is not valid YAML: "
    elif damage == "duplicate":
        inserted, expected = draw(st.sampled_from(names)), "twice; keep one"
    else:
        bad_bytes = draw(st.sampled_from([b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x82", b"\x80abc"]))
        text = "".join(lines[:where]).encode() + bad_bytes + "".join(lines[where:]).encode()
        return Malformed(family, text, None, "is not UTF-8 text")
    return Malformed(family, "".join(lines[:where]) + inserted + "".join(lines[where:]), None, expected)


MALFORMED = {
    "bound of wrong type": bound_of_wrong_type(),
    "unknown type": unknown_type(),
    "unknown key in a parameter": unknown_parameter_key(),
    "unknown top-level key": unknown_top_level_key(),
    "empty or bad choices": bad_choices(),
    "low > high": low_above_high(),
    "log scale with low <= 0": log_without_positive_low(),
    "bad step or log": bad_step_or_log(),
    "condition not a mapping, or on an unknown parameter": condition_on_unknown_parameter(),
    "condition on impossible value": condition_on_impossible_value(),
    "non-mapping document or parameters": not_a_mapping(),
    "wrong family or architecture": wrong_family_or_architecture(),
    "unknown parameter, bare list, fixed without value": unknown_or_misplaced_parameter(),
    "invalid YAML, duplicate key, not UTF-8": broken_file(),
}


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spaces") / "space.yaml"


@pytest.mark.parametrize("damage", MALFORMED)
@malformed
@given(data=st.data())
def test_malformed_spaces_are_refused_naming_file_key_and_expectation(space_file, damage, data):
    case = data.draw(MALFORMED[damage])
    if isinstance(case.content, bytes):
        space_file.write_bytes(case.content)
    else:
        space_file.write_text(case.content)
    with pytest.raises(SearchSpaceError) as error:
        get_family(case.family).search_space(space_file)
    message = str(error.value)
    assert len(message.splitlines()) == 1, message
    assert case.expected in message, message
    if case.key is None:
        assert message.startswith(f"{space_file} ") and "line " in message, message
    else:
        assert message.startswith(f"{space_file}: {case.key}: "), message


# --- valid random spaces, sampled as a sweep samples them --------------------------------------

ARCHITECTURES = ("alpha", "beta", "gamma")
FINITE = st.floats(allow_nan=False, allow_infinity=False)
CHOICE_VALUES = st.one_of(st.text(max_size=6), st.integers(-(2**53), 2**53), FINITE, st.booleans(), st.none())


@st.composite
def ranges(draw) -> dict:
    kind = draw(st.sampled_from(["float", "int", "log float", "log int"]))
    if kind == "int":
        low = draw(st.integers(-(2**40), 2**40))
        spec = {"type": "int", "low": low, "high": low + draw(st.integers(0, 2**40))}
        return {**spec, "step": draw(st.integers(1, 1000))} if draw(st.booleans()) else spec
    if kind == "log int":
        low = draw(st.integers(1, 2**40))
        return {"type": "int", "low": low, "high": low + draw(st.integers(0, 2**40)), "log": True}
    if kind == "log float":  # high == low, or wide enough to sample (the loader refuses narrower)
        low = draw(st.floats(min_value=1e-300, max_value=1e280))
        return {"type": "float", "low": low, "high": low * draw(st.just(1.0) | st.floats(1 + 1e-6, 1e12)), "log": True}
    low = draw(st.floats(-1e300, 1e300))
    spec = {"type": "float", "low": low, "high": draw(st.floats(min_value=low, max_value=1e300))}
    if draw(st.booleans()) and spec["high"] > low:
        return {**spec, "step": (spec["high"] - low) / draw(st.integers(1, 10**6))}
    return spec


def possible_values(spec: Any) -> list | None:
    """Values a condition may name: a categorical's choices, a fixed value, an int range's ends."""
    if not isinstance(spec, dict):
        return [spec]
    if spec["type"] == "categorical":
        return spec["choices"]
    if spec["type"] == "fixed":
        return [spec["value"]]
    if spec["type"] == "int" and "step" not in spec:
        return [spec["low"], spec["high"]]
    return None  # floats and stepped ints are never conditioned on


def categorical(choices: list) -> dict:
    return {"type": "categorical", "choices": choices}


@st.composite
def valid_spaces(draw) -> dict:
    architectures = draw(st.lists(st.sampled_from(ARCHITECTURES), min_size=1, unique=True))
    parameters: dict[str, Any] = {"architecture": categorical(architectures)}
    for index in range(draw(st.integers(1, 6))):
        spec = draw(
            st.one_of(
                ranges(),
                st.lists(CHOICE_VALUES, min_size=1, max_size=4, unique=True).map(categorical),
                (CHOICE_VALUES | st.lists(st.integers(), max_size=2)).map(lambda v: {"type": "fixed", "value": v}),
                CHOICE_VALUES.filter(lambda v: v is not None),  # a bare constant
            )
        )
        conditionable = {name: values for name, other in parameters.items() if (values := possible_values(other))}
        if conditionable and isinstance(spec, dict) and draw(st.booleans()):
            other = draw(st.sampled_from(sorted(conditionable)))
            spec["when"] = {other: draw(st.lists(st.sampled_from(conditionable[other]), min_size=1, max_size=3))}
        parameters[f"p{index}"] = spec
    return {"family": "random", "parameters": parameters}


def condition_holds(spec: Any, config: dict) -> bool:
    when = spec.get("when", {}) if isinstance(spec, dict) else {}
    for name, values in when.items():
        allowed = values if isinstance(values, list) else [values]
        if name not in config or not any(config[name] == v and type(config[name]) is type(v) for v in allowed):
            return False
    return True


def assert_inside(parameters: dict, config: dict) -> None:
    """Independent of the loader: exactly the parameters whose conditions hold, each within its definition."""
    applying = [name for name, spec in parameters.items() if condition_holds(spec, config)]
    assert sorted(config) == sorted(applying), config
    for name in applying:
        spec, value = parameters[name], config[name]
        if not isinstance(spec, dict) or spec["type"] == "fixed":
            constant = spec["value"] if isinstance(spec, dict) else spec
            assert value == constant and type(value) is type(constant), (name, value)
        elif spec["type"] == "categorical":
            assert any(value == choice and type(value) is type(choice) for choice in spec["choices"]), (name, value)
        else:
            assert type(value) is (int if spec["type"] == "int" else float), (name, value)
            assert spec["low"] <= value <= spec["high"], (name, value, spec)
            if spec["type"] == "int" and "step" in spec:
                assert (value - spec["low"]) % spec["step"] == 0, (name, value, spec)


def sample_like_a_sweep(space: SearchSpace, seed: int, trials: int) -> list[dict]:
    """Configurations from Ray's OptunaSearch driving the sweep's TPE sampler on ``space``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns when it rounds a range's high to its step
        search = OptunaSearch(space=space, metric="score", mode="min", sampler=tpe(Budget(trials=10, epochs=1, seed=seed)))
        configs = []
        for trial in range(trials):
            configs.append(search.suggest(str(trial)))
            search.on_trial_complete(str(trial), {"score": float(trial % 3)})
    return configs


@settings(max_examples=150, deadline=None)
@given(document=valid_spaces(), seed=st.integers(0, 2**16))
def test_valid_random_spaces_sample_only_configs_inside_them(space_file, document, seed):
    space_file.write_text(dumped(document))
    parameters = document["parameters"]
    space = load_search_space(space_file, "random", ARCHITECTURES, lambda architecture: list(parameters), ())
    for config in sample_like_a_sweep(space, seed, SUGGESTIONS):
        assert_inside(parameters, config)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_spaces_sample_only_configs_inside_them(family):
    space = get_family(family).search_space()
    for config in sample_like_a_sweep(space, seed=0, trials=30):
        assert_inside(FILES[family]["parameters"], config)
