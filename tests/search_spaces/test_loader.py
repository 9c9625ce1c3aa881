from __future__ import annotations

import optuna
import pytest
import yaml

from search_spaces import SearchSpaceError, family_search_space_path
from trainables.families import get_family

FAMILY = get_family("localization")
VALID = yaml.safe_load(family_search_space_path("localization").read_text())


def load(tmp_path, document=None, text=None):
    path = tmp_path / "space.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(document, sort_keys=False))
    return FAMILY.search_space(path)


def with_parameter(name, spec):
    return {**VALID, "parameters": {**VALID["parameters"], name: spec}}


def test_the_family_space_loads_and_samples_conditionally():
    space = FAMILY.search_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        constants = space(trial)
        config = {**trial.params, **constants}
        assert space.contains(config), config
        assert ("pooling_fallback" in config) == (config["architecture"] == "heimdall_net_pro")
        assert ("nb_features" in config) == (config["architecture"] in ("heimdall_net_pro", "multilateration_transformer"))
        study.tell(trial, 1.0)
    assert {t.params["architecture"] for t in study.trials} == {"heimdall_net", "heimdall_net_pro", "multilateration_transformer"}


def test_fixed_values_are_returned_as_constants(tmp_path):
    space = load(tmp_path, with_parameter("batch_size", 32))
    trial = optuna.create_study().ask()
    assert space(trial) == {"batch_size": 32}


@pytest.mark.parametrize(
    "document, key, problem",
    [
        (with_parameter("nb_featurs", {"type": "int", "low": 1, "high": 2}), "parameters.nb_featurs", "unknown parameter; known:"),
        (with_parameter("architecture", {"type": "categorical", "choices": ["heimdall_net", "resnet"]}), "parameters.architecture", "unknown architecture 'resnet'"),
        (with_parameter("dropout", {"type": "float", "low": 0.5, "high": 0.1}), "parameters.dropout", "low (0.5) > high (0.1); make low <= high"),
        (with_parameter("dropout", {"type": "float", "low": "a lot", "high": 0.1}), "parameters.dropout.low", "expected a finite number"),
        (with_parameter("nb_features", {"type": "int", "low": 1.5, "high": 8, "when": {"architecture": "heimdall_net_pro"}}), "parameters.nb_features.low", "expected an integer"),
        (with_parameter("batch_size", {"type": "categorical", "choices": []}), "parameters.batch_size.choices", "non-empty list"),
        (with_parameter("learning_rate", {"type": "float", "low": 0.0, "high": 0.1, "log": True}), "parameters.learning_rate.low", "log-scale range needs low > 0"),
        (with_parameter("heads", {"type": "categorical", "choices": [2], "when": {"mixer": "x"}}), "parameters.heads.when.mixer", "condition on an unknown parameter"),
        (with_parameter("heads", {"type": "categorical", "choices": [2]}), "parameters.heads", "heimdall_net does not take it; add `when: {architecture: [heimdall_net_pro, multilateration_transformer]}`"),
        (with_parameter("dropout", {"type": "uniform", "low": 0, "high": 1}), "parameters.dropout.type", "use one of float, int, categorical, fixed"),
        (with_parameter("dropout", {"type": "float", "low": 0, "high": 1, "scale": "log"}), "parameters.dropout.scale", "unknown key for a float parameter"),
        (with_parameter("dropout", [0.1, 0.2]), "parameters.dropout", "ambiguous"),
        ({"family": "localization", "parameters": {"dropout": 0.1}}, "parameters.architecture", "missing"),
        ({**VALID, "family": "segmentation"}, "family", "this file is for family 'segmentation'"),
        ({**VALID, "budget": 3}, "budget", "unknown key"),
        ({"family": "localization"}, "parameters", "non-empty mapping"),
    ],
)
def test_each_invalid_space_names_file_key_and_fix(tmp_path, document, key, problem):
    with pytest.raises(SearchSpaceError) as error:
        load(tmp_path, document)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'space.yaml'}: {key}: ") and problem in message


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(SearchSpaceError, match="is not valid YAML"):
        load(tmp_path, text="parameters: [unclosed")
    with pytest.raises(SearchSpaceError, match="cannot read search space"):
        FAMILY.search_space(tmp_path / "absent.yaml")
