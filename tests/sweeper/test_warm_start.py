"""Warm starts from the shared smoke sweep: its finished trials enter a new sweep's Optuna study."""
from __future__ import annotations

import shutil

import optuna
import pytest

from sweeper.objectives import resolve_objectives
from sweeper.sweeps import load_record, rank_trials, read_trials
from sweeper.warm_start import STUDY_NAME, warm_storage, warm_trials
from tests.cli import sweeper
from trainables.errors import ConfigError
from trainables.families import get_family

pytestmark = pytest.mark.slow  # reads the shared smoke sweep
FAMILY = get_family("localization")
MAIN = resolve_objectives(FAMILY, ())


def record(smoke_sweep):
    return load_record(smoke_sweep.name, str(smoke_sweep.workdir / "ray_results"))


def finished(smoke_sweep):
    return rank_trials(read_trials(record(smoke_sweep), FAMILY.validation_metric, FAMILY.mode), FAMILY.mode)


def test_every_finished_trial_enters_the_study(smoke_sweep):
    trials = warm_trials([record(smoke_sweep)], FAMILY, FAMILY.search_space(), MAIN)
    assert len(trials) == len(finished(smoke_sweep)) > 0
    study = optuna.load_study(study_name=STUDY_NAME, storage=warm_storage(trials, [FAMILY.mode]))
    assert len(study.trials) == len(trials) and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_multi_objective_study_gets_every_objectives_value(smoke_sweep):
    objectives = resolve_objectives(FAMILY, ("default",))
    trials = warm_trials([record(smoke_sweep)], FAMILY, FAMILY.search_space(), objectives)
    study = optuna.load_study(study_name=STUDY_NAME, storage=warm_storage(trials, ["min", "min"]))
    assert len(study.directions) == 2 and all(len(t.values) == 2 and t.values[1] > 0 for t in study.trials)


def test_trials_that_no_longer_fit_the_space_are_left_out(smoke_sweep, tmp_path):
    space = tmp_path / "narrow.yaml"
    space.write_text("family: localization\nparameters:\n  architecture: heimdall_net\n  dropout: {type: float, low: 0.0, high: 0.001}\n"
                     "  learning_rate: 1.0e-3\n  weight_decay: 1.0e-4\n  batch_size: 32\n")  # fmt: skip
    trials = warm_trials([record(smoke_sweep)], FAMILY, FAMILY.search_space(space), MAIN)
    assert len(trials) < len(finished(smoke_sweep))


def test_another_familys_sweep_is_refused(smoke_sweep):
    segmentation = get_family("segmentation")
    with pytest.raises(ConfigError, match="a sweep of localization, not of segmentation"):
        warm_trials([record(smoke_sweep)], segmentation, segmentation.search_space(), MAIN)


def test_a_warm_started_sweep_runs(smoke_sweep, tmp_path):
    # A copy of the shared sweep's results, so the new sweep leaves the shared folder and MLflow store as they were.
    shutil.copytree(smoke_sweep.workdir / "ray_results" / smoke_sweep.name, tmp_path / "ray_results" / smoke_sweep.name)
    completed = sweeper(tmp_path, "launch", "localization", "--preset", "smoke", "--trials", "1", "--epochs", "1",
                        "--name", "warm", "--warm-start", smoke_sweep.name)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"warm start: {len(finished(smoke_sweep))} of the" in completed.stderr
