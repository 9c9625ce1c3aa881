"""Trials that diverge: the sweep finishes, they are marked in Ray's results and in MLflow, and
ranking, promotion and export never pick them, even when their numbers look best; when every trial
diverged, promote and export say so.

One real sweep of four one-epoch trials in which a huge learning rate makes some diverge. A sweep
whose every trial diverges for real is launched and promoted in test_promote.py; here the same
state is reached by keeping only this sweep's diverged trials.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeper import export as export_module
from sweeper import promotion
from sweeper.cli import run as run_cli
from sweeper import api
from sweeper.sweeps import TrialResult, load_record, rank_trials, read_trials
from sweeper.tracking import KIND_TAG, STATUS_TAG, TRIAL_TAG
from tests.cli import sweeper
from trainables.families import get_family

pytestmark = pytest.mark.slow
FAMILY = get_family("localization")
NAME = "diverging"
HUGE_LEARNING_RATE = 1.0e30  # the first optimizer step makes every weight enormous: the next loss is not finite
SPACE = f"""family: localization
parameters:
  architecture: heimdall_net
  learning_rate: {{type: categorical, choices: [1.0e-3, {HUGE_LEARNING_RATE:.1e}]}}
  weight_decay: 0.0
  batch_size: 16
"""


@dataclass(frozen=True)
class DivergingSweep:
    workdir: Path
    stdout: str
    trials: list[TrialResult]

    @property
    def storage(self) -> str:
        return str(self.workdir / "ray_results")

    def ids(self, diverged: bool) -> set[str]:
        return {t.trial_id for t in self.trials if (t.config["learning_rate"] == HUGE_LEARNING_RATE) == diverged}

    def diverged_looking_best(self) -> list[TrialResult]:
        """The trials, the diverged ones as if they had diverged after a best-of-all first epoch."""
        diverged = self.ids(diverged=True)
        return [dataclasses.replace(t, best_value=0.0, best_epoch=1) if t.trial_id in diverged else t for t in self.trials]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> DivergingSweep:
    workdir = tmp_path_factory.mktemp("diverging")
    (workdir / "space.yaml").write_text(SPACE)
    completed = sweeper(workdir, "launch", "localization", "--preset", "smoke", "--trials", "4", "--epochs", "1",
                        "--seed", "0", "--name", NAME, "--search-space", "space.yaml")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = load_record(NAME, str(workdir / "ray_results"))
    result = DivergingSweep(workdir, completed.stdout, read_trials(record, FAMILY.validation_metric, FAMILY.mode))
    assert result.ids(diverged=True) and result.ids(diverged=False), "the seeded sampler must draw both learning rates; change --seed"
    return result


def test_the_sweep_finishes_and_ray_results_mark_the_diverged_trials(sweep):
    diverged = sweep.ids(diverged=True)
    assert f"{len(diverged)} diverged" in sweep.stdout
    for trial in sweep.trials:
        rows = (Path(sweep.storage) / NAME / f"trial_{trial.trial_id}" / "result.json").read_text().splitlines()
        last = json.loads(rows[-1])
        assert last["diverged"] == (trial.trial_id in diverged)
        assert math.isfinite(last[FAMILY.validation_metric]) != (trial.trial_id in diverged)
        assert trial.status == ("diverged" if trial.trial_id in diverged else "completed")


def test_mlflow_marks_the_diverged_trial_runs(sweep):
    client = MlflowClient(f"sqlite:///{sweep.workdir}/mlflow.db")
    experiment = client.get_experiment_by_name(FAMILY.name)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{KIND_TAG}` = 'trial'")
    assert {run.data.tags[TRIAL_TAG] for run in runs} == {t.trial_id for t in sweep.trials}
    for run in runs:
        diverged = run.data.tags[TRIAL_TAG] in sweep.ids(diverged=True)
        assert run.data.tags[STATUS_TAG] == ("diverged" if diverged else "completed")
        assert run.data.metrics["diverged"] == diverged and run.info.status == "FINISHED"
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`{KIND_TAG}` = 'sweep'")
    assert parent.data.tags["sweeper.best_trial_id"] in sweep.ids(diverged=False)


def test_ranking_never_picks_a_diverged_trial_even_when_it_looks_best(sweep):
    ranked = rank_trials(sweep.diverged_looking_best(), FAMILY.mode)
    assert {t.trial_id for t in ranked} == sweep.ids(diverged=False)


def test_promotion_never_picks_a_diverged_candidate(sweep, monkeypatch):
    monkeypatch.setattr(promotion, "read_trials", lambda *args: sweep.diverged_looking_best())
    opened = api.open(NAME, sweep.storage)
    plan = promotion._plan(opened.record, opened.family, promotion.PromoteOptions())
    assert plan.candidate.trial_id in sweep.ids(diverged=False)


def test_export_never_picks_a_diverged_trial(sweep, monkeypatch, tmp_path):
    every = len(sweep.trials)
    assert run_cli(["export", NAME, "--storage", sweep.storage, "--top-k", str(every), "--out", str(tmp_path / "all")]) == 0
    assert {folder.name.split("-")[1] for folder in (tmp_path / "all").iterdir()} == sweep.ids(diverged=False)
    monkeypatch.setattr(export_module, "read_trials", lambda *args: sweep.diverged_looking_best())
    exported = api.open(NAME, sweep.storage).export(tmp_path / "looking-best", top_k=every)
    assert {item.trial_id for item in exported} == sweep.ids(diverged=False)


@pytest.mark.parametrize("command", [["promote", NAME], ["export", NAME, "--out", "never-written"]])
def test_when_every_trial_diverged_promote_and_export_say_so(sweep, monkeypatch, capsys, command):
    only_diverged = [t for t in sweep.trials if t.trial_id in sweep.ids(diverged=True)]
    for module in (promotion, export_module):
        monkeypatch.setattr(module, "read_trials", lambda *args: only_diverged)
    monkeypatch.chdir(sweep.workdir)
    assert run_cli([*command, "--storage", sweep.storage]) == 2
    assert f"every trial of sweep {NAME!r} diverged" in capsys.readouterr().err
    assert not (sweep.workdir / "never-written").exists()
