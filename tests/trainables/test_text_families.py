"""The segmentation and language-model families: data as the models see it, metrics, training."""
from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from trainables.data.char_sequences import VOCAB_SIZE
from trainables.families import get_family
from trainables.models.ngram import KneserNey
from trainables.train_loop import TrainSettings, train

FAMILIES = ("segmentation", "language_model")
CONFIGS = {
    "segmentation": {"architecture": "localized", "window_size": 5, "heads": 4},
    "language_model": {"architecture": "tiled", "tile_size": 16, "heads": 2},
}


@pytest.fixture(scope="module", params=FAMILIES)
def family_data(request, tmp_path_factory):
    family = get_family(request.param)
    return family, family.load_data(family.presets["smoke"].data, None, 0)


def test_splits_hold_only_model_columns(family_data):
    family, splits = family_data
    for arrays in (splits.train, splits.validation, splits.test):
        assert set(arrays) == set(family.schema.names) and all(a.dtype != object for a in arrays.values())


def test_trains_and_reports_the_family_metric(family_data):
    family, splits = family_data
    config = {**CONFIGS[family.name], "dropout": 0.0, "learning_rate": 1e-3, "weight_decay": 0.0, "batch_size": 16}
    reports = []
    train(config, splits.without_test(), family.context(splits.train), TrainSettings(family.name, epochs=1, latency_repeats=2),
          lambda metrics, state: reports.append(metrics))  # fmt: skip
    assert math.isfinite(reports[-1][family.validation_metric]) and set(f"val_{m}" for m in family.metrics) <= set(reports[-1])


def test_uniform_predictions_cost_log2_of_the_vocabulary():
    family = get_family("language_model")
    targets = np.random.default_rng(0).integers(0, VOCAB_SIZE, (3, 5))
    metrics = family.evaluate([np.zeros((3, 5, VOCAB_SIZE), dtype=np.float32)], {"targets": targets})
    assert metrics["bits_per_character"] == pytest.approx(math.log2(VOCAB_SIZE))


def test_the_kneser_ney_reference_beats_a_trigram_and_never_reads_the_test_split():
    family = get_family("language_model")
    splits = family.load_data(family.presets["smoke"].data, None, 0)
    without_test = family.reference(splits.without_test())(splits.test)
    np.testing.assert_array_equal(family.reference(splits)(splits.test), without_test)
    bits = family.evaluate(without_test, splits.test)["bits_per_character"]
    trigram = family.evaluate([KneserNey(splits.train["inputs"], VOCAB_SIZE, 3).log_probabilities(splits.test["inputs"], 3)], splits.test)
    assert bits < trigram["bits_per_character"] < math.log2(VOCAB_SIZE)


def test_perfect_boundaries_score_perfectly():
    family = get_family("segmentation")
    boundary = np.array([[0, 0, 1, 0, 0, 1, 0, 0, 0]], dtype=np.float32)
    mask = np.ones_like(boundary, dtype=bool)
    metrics = family.evaluate([np.where(boundary > 0, 5.0, -5.0)], {"boundary": boundary, "sentence_mask": mask})
    assert metrics["pk"] == metrics["window_diff"] == 0 and metrics["f1"] == 1


@pytest.mark.parametrize("name, conditional, owner", [("segmentation", "window_size", "localized_cohesion"), ("language_model", "tile_size", ("tiled", "local_tiled")),
                                                      ("language_model", "curvature", ("hyperbolic", "local_hyperbolic"))])  # fmt: skip
def test_conditional_parameters_appear_only_with_their_architecture(name, conditional, owner):
    space = get_family(name).search_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        constants = space(trial)
        config = {**trial.params, **constants}
        owners = (owner,) if isinstance(owner, str) else owner
        assert space.contains(config) and (conditional in config) == (config["architecture"] in owners)
        study.tell(trial, 1.0)
