from __future__ import annotations

import math

import pytest

from trainables.data import split_random
from trainables.errors import UserError
from trainables.families import get_family
from trainables.train_loop import TrainSettings, retrain_and_test, stability_probe, train, warmup_cosine

FAMILY = get_family("localization")
CONFIG = {"architecture": "heimdall_net", "dropout": 0.1, "learning_rate": 1e-3, "weight_decay": 1e-4, "batch_size": 8}
SETTINGS = TrainSettings(family="localization", epochs=2, latency_repeats=3)


@pytest.fixture(scope="module")
def splits(rf_arrays):
    return split_random(rf_arrays, 0, "test data").without_test()


class Recorder:
    """A report callable that keeps every report and the checkpoint state of each epoch."""

    def __init__(self) -> None:
        self.reports, self.states = [], []

    def __call__(self, metrics, state) -> None:
        self.reports.append(metrics)
        self.states.append(state)


def test_reports_every_epoch_with_metrics_and_a_checkpoint(splits):
    recorder = Recorder()
    train(CONFIG, splits, FAMILY.model_context(splits.train), SETTINGS, recorder)
    assert [r["epoch"] for r in recorder.reports] == [1, 2]
    expected = {"train_loss", "grad_norm", "learning_rate", "nonfinite_count", "param_count", "latency_ms_p50",
                "latency_ms_p95", "val_mean_error_m", "val_p50_error_m", "val_p95_error_m", "diverged"}  # fmt: skip
    for report in recorder.reports:
        assert expected <= set(report) and report["diverged"] == 0
        assert all(math.isfinite(v) for v in report.values())
    assert recorder.states[-1]["epoch"] == 2 and recorder.states[-1]["config"] == CONFIG


def test_resumes_after_the_checkpointed_epoch(splits):
    context = FAMILY.model_context(splits.train)
    first = Recorder()
    train(CONFIG, splits, context, TrainSettings("localization", epochs=1, latency_repeats=3), first)
    resumed = Recorder()
    train(CONFIG, splits, context, SETTINGS, resumed, resume=first.states[0])
    assert [r["epoch"] for r in resumed.reports] == [2]


def test_non_finite_loss_ends_the_trial_as_diverged(splits):
    recorder = Recorder()
    train({**CONFIG, "learning_rate": 1e30}, splits, FAMILY.model_context(splits.train), SETTINGS, recorder)
    last = recorder.reports[-1]
    assert last["diverged"] == 1 and last["val_mean_error_m"] == math.inf
    assert recorder.states[-1] is None, "a diverged epoch leaves no checkpoint"


def test_retrain_tests_the_best_validation_epoch(rf_arrays):
    splits = split_random(rf_arrays, 0, "test data")
    context = FAMILY.model_context(splits.train)
    result = retrain_and_test(CONFIG, splits, context, TrainSettings("localization", epochs=3, latency_repeats=3), seed=5)
    values = [report["val_mean_error_m"] for report in result.history]
    assert result.best_epoch == 1 + values.index(min(values)) and not result.diverged
    assert result.validation["mean_error_m"] == min(values)
    assert set(result.test) >= {"mean_error_m", "p95_error_m"} and result.test_outputs[0].shape == (len(splits.test["mask"]), 2)
    again = retrain_and_test(CONFIG, splits, context, TrainSettings("localization", epochs=3, latency_repeats=3), seed=5)
    assert again.test == result.test, "a seed fixes the run"


def test_stability_probe_reports_each_batch_size(splits):
    context = FAMILY.model_context(splits.train)
    assert stability_probe(CONFIG, splits, context, SETTINGS, (1, 2, 40), steps=2) == {1: True, 2: True, 40: True}
    exploding = stability_probe({**CONFIG, "learning_rate": 1e30}, splits, context, SETTINGS, (2,), steps=3)
    assert exploding == {2: False}


def test_warmup_rises_linearly_then_the_cosine_decays_to_its_floor():
    factors = [warmup_cosine(step, warmup=4, total=20, floor=0.1) for step in range(21)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[4] == 1.0
    assert all(a >= b for a, b in zip(factors[4:], factors[5:])) and factors[20] == pytest.approx(0.1)
    assert warmup_cosine(0, warmup=0, total=10, floor=0.0) == 1.0


def test_cosine_schedule_steps_every_batch_and_resumes_where_it_stopped(splits):
    config = {**CONFIG, "schedule": "cosine", "warmup_fraction": 0.5}
    context = FAMILY.model_context(splits.train)
    settings = TrainSettings("localization", epochs=3, latency_repeats=3)
    whole = Recorder()
    train(config, splits, context, settings, whole)
    rates = [report["learning_rate"] for report in whole.reports]  # at the start of each epoch
    assert rates[0] < rates[1] and rates[2] < rates[1] <= CONFIG["learning_rate"], "warm-up over 1.5 epochs, then decay"
    resumed = Recorder()
    train(config, splits, context, settings, resumed, resume=whole.states[0])
    assert [report["learning_rate"] for report in resumed.reports] == rates[1:]


def test_without_a_schedule_the_rate_only_drops_on_a_plateau(splits):
    recorder = Recorder()
    train(CONFIG, splits, FAMILY.model_context(splits.train), SETTINGS, recorder)
    assert [report["learning_rate"] for report in recorder.reports] == [CONFIG["learning_rate"]] * 2


def test_an_unknown_schedule_is_a_user_error(splits):
    with pytest.raises(UserError, match="schedule must be"):
        train({**CONFIG, "schedule": "linear"}, splits, FAMILY.model_context(splits.train), SETTINGS, Recorder())
