from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from trainables.data.tables import write_table
from trainables.errors import DataError
from trainables.families import get_family
from trainables.data import split_by_group
from trainables.data.eeg_simulation import EEGSimulation, simulate
from trainables.families.response_time import MAX_SHIFT_SAMPLES, augment, erp_regression_reference
from trainables.train_loop import TrainSettings, train

FAMILY = get_family("response_time")
SMOKE = FAMILY.presets["smoke"].data


@pytest.fixture(scope="module")
def splits():
    return FAMILY.load_data(SMOKE, None, 0)


def test_subjects_never_cross_splits(splits):
    subjects = [set(part["subject"].tolist()) for part in (splits.train, splits.validation, splits.test)]
    assert all(subjects) and not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert splits.train["eeg"].shape[1:] == (129, 200)


def test_users_file_is_split_by_subject(tmp_path, splits):
    arrays = {name: np.concatenate([splits.train[name], splits.test[name]]) for name in FAMILY.schema.names}
    write_table(arrays, tmp_path / "mine.parquet")
    mine = FAMILY.load_data({}, tmp_path / "mine.parquet", 3)
    assert not set(mine.train["subject"]) & set(mine.test["subject"])
    write_table({**arrays, "eeg": arrays["eeg"][:, :64]}, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="column 'eeg' has rows of shape \\[64, 200\\], expected \\[129, 'T'\\]"):
        FAMILY.load_data({}, tmp_path / "bad.parquet", 3)


def test_metrics_by_hand():
    target = np.array([0.5, 0.7, 0.9, 1.1], dtype=np.float32)  # std = sqrt(0.05) = 0.2236
    prediction = np.array([0.6, 0.6, 1.0, 1.0])  # every error 0.1 -> RMSE 0.1
    metrics = FAMILY.evaluate([prediction], {"response_time": target})
    assert metrics["rmse_s"] == pytest.approx(0.1)
    assert metrics["nrmse"] == pytest.approx(0.1 / np.sqrt(0.05))
    assert metrics["pearson_r"] == pytest.approx(np.corrcoef(prediction, target)[0, 1])
    assert FAMILY.evaluate([np.full(4, target.mean())], {"response_time": target})["nrmse"] == pytest.approx(1.0)


def test_augmentations_keep_shapes_and_only_what_they_should_change():
    generator = torch.Generator().manual_seed(0)
    batch = {"eeg": torch.randn(8, 129, 200), "response_time": torch.rand(8) + 0.5, "subject": torch.arange(8)}
    assert augment(batch, {}, generator)["eeg"] is batch["eeg"]
    shifted = augment(batch, {"time_shift": True}, generator)["eeg"]
    for original, moved in zip(batch["eeg"], shifted):
        matches = [s for s in range(-MAX_SHIFT_SAMPLES, MAX_SHIFT_SAMPLES + 1)
                   if torch.equal(moved[:, max(s, 0): 200 + min(s, 0)], original[:, max(-s, 0): 200 - max(s, 0)])]  # fmt: skip
        assert matches, "each trial is a shifted copy"
    dropped = augment(batch, {"channel_dropout": True}, generator)["eeg"]
    assert 0 < (dropped.abs().sum(-1) == 0).float().mean() < 0.3
    mixed = augment(batch, {"mixup": True}, generator)
    rt = batch["response_time"]
    assert (mixed["response_time"] >= rt.min() - 1e-6).all() and (mixed["response_time"] <= rt.max() + 1e-6).all()


def test_trains_with_every_augmentation(splits):
    config = {"architecture": "response_time_cnn", "dropout": 0.1, "learning_rate": 1e-3, "weight_decay": 0.0, "batch_size": 8,
              "time_shift": True, "channel_dropout": True, "gaussian_noise": True, "mixup": True}  # fmt: skip
    reports = []
    train(config, splits.without_test(), FAMILY.context(splits.train), TrainSettings("response_time", epochs=2, latency_repeats=2),
          lambda metrics, state: reports.append(metrics))  # fmt: skip
    assert [r["epoch"] for r in reports] == [1, 2] and all(np.isfinite(r["val_nrmse"]) for r in reports)


def test_search_space_samples_every_swept_architecture_with_its_own_parameters():
    space = FAMILY.search_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(80):
        trial = study.ask()
        constants = space(trial)
        config = {**trial.params, **constants}
        assert space.contains(config)
        assert ("window_size" in config) == (config["architecture"] == "timing_localized_cnn")
        study.tell(trial, 1.0)
    swept = {t.params["architecture"] for t in study.trials}
    assert swept == set(FAMILY.architectures()) - {"lightweight_response_time_cnn_with_attention", "improved_response_time_cnn_with_attention"}


@pytest.fixture(scope="module")
def clear_erps():
    """Trials whose P300 stands out (quiet background, no blinks), split by subject like the family's."""
    arrays = simulate(EEGSimulation(n_subjects=12, trials_per_subject=20, background_uv=3.0, blinks_per_trial=0.0, seed=2), progress=False)
    return split_by_group(arrays, arrays["subject"], 0, "clear ERPs")


def test_reference_beats_predicting_the_mean_and_is_scored_like_a_network(clear_erps):
    predicted = erp_regression_reference(clear_erps)(clear_erps.test)
    assert len(predicted) == 1 and predicted[0].shape == clear_erps.test["response_time"].shape
    assert FAMILY.evaluate(predicted, clear_erps.test)["nrmse"] < 0.8


def test_reference_never_looks_at_the_test_split(clear_erps):
    blind = erp_regression_reference(clear_erps.without_test())
    np.testing.assert_array_equal(erp_regression_reference(clear_erps)(clear_erps.test)[0], blind(clear_erps.test)[0])
