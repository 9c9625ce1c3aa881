from __future__ import annotations

import pytest
import yaml

from search_spaces import SearchSpaceError
from search_spaces.policy import family_promotion_path, load_promotion
from trainables.families import TRAINING_HYPERPARAMETERS, get_family
from trainables.models import model_hyperparameters

FAMILY = get_family("localization")
VALID = yaml.safe_load(family_promotion_path("localization").read_text())


def load(tmp_path, document):
    path = tmp_path / "promotion.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_promotion(path, "localization", FAMILY.architectures(), lambda a: model_hyperparameters("localization", a),
                          TRAINING_HYPERPARAMETERS, TRAINING_HYPERPARAMETERS, FAMILY.metrics)  # fmt: skip


def test_the_family_file_loads():
    promotion = FAMILY.promotion()
    assert promotion.baselines["heimdall_net"]["architecture"] == "heimdall_net"
    assert promotion.policy.min_relative_improvement == 0.20 and promotion.policy.probe_batch_sizes == (1, 2, 512)
    assert promotion.policy.latency_budget_ms == 70 and promotion.policy.min_seeds == 3


def changed(section, key, value):
    document = yaml.safe_load(yaml.safe_dump(VALID))
    if value is None:
        del document[section][key]
    else:
        document[section][key] = value
    return document


@pytest.mark.parametrize(
    "document, key, problem",
    [
        (changed("baselines", "heimdall_net", {"architecture": "resnet"}), "baselines.heimdall_net.architecture", "unknown architecture 'resnet'"),
        (changed("baselines", "heimdall_net", {**VALID["baselines"]["heimdall_net"], "heads": 4}), "baselines.heimdall_net.heads", "heimdall_net does not take it"),
        (changed("baselines", "heimdall_net", {"architecture": "heimdall_net", "dropout": 0.1}), "baselines.heimdall_net", "missing learning_rate, weight_decay, batch_size"),
        (changed("policy", "metric", "accuracy"), "policy.metric", "unknown metric 'accuracy'; known: mean_error_m"),
        (changed("policy", "mode", "lower"), "policy.mode", "expected min or max"),
        (changed("policy", "min_relative_improvement", None), "policy", "missing min_relative_improvement"),
        (changed("policy", "latency_budget", 70), "policy.latency_budget", "unknown key"),
        (changed("policy", "confidence", 1.5), "policy.confidence", "expected a level in [0.5, 1)"),
        (changed("policy", "min_seeds", 0), "policy.min_seeds", "expected a positive integer"),
        (changed("policy", "probe_batch_sizes", [1, -2]), "policy.probe_batch_sizes", "positive integers"),
        ({**VALID, "family": "segmentation"}, "family", "expected 'localization'"),
    ],
)
def test_each_invalid_file_names_the_key_and_the_fix(tmp_path, document, key, problem):
    with pytest.raises(SearchSpaceError) as error:
        load(tmp_path, document)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'promotion.yaml'}: {key}: ") and problem in message
