"""Ctrl-C (SIGINT to the command's process group, as a terminal sends it) during launch, promote and
export: one line and exit code 130, no process left behind, and a state that `sweeper resume` or a
rerun completes, with no duplicate MLflow run and no half-written export folder."""
from __future__ import annotations

from collections import Counter

import optuna
import pytest
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis
from ray.tune.search.optuna import OptunaSearch

from sweeper import load
from tests.cli import start_sweeper, sweeper
from tests.ctrl_c import assert_one_line_and_130, ctrl_c, wait_until
from tests.sweeper.conftest import INTERRUPTED_NAME as NAME
from tests.sweeper.conftest import INTERRUPTED_TRIALS as TRIALS
from tests.sweeper.conftest import mlflow_runs

pytestmark = pytest.mark.slow


def test_ctrl_c_during_launch_kills_the_runs_and_resume_finishes_them_without_duplicates(resumed_sweep):
    storage = resumed_sweep.workdir / "results"
    assert_one_line_and_130(resumed_sweep.launch, f"resume with: sweeper resume {NAME} --storage {storage}")
    stopped = {run.data.tags["sweeper.key"]: run.info.status for run in resumed_sweep.runs_after_ctrl_c}
    assert stopped["sweep"] == "KILLED" and "RUNNING" not in stopped.values(), stopped
    assert resumed_sweep.resume.returncode == 0, resumed_sweep.resume.stderr[-3000:]
    assert {trial.status for trial in ExperimentAnalysis(str(storage / NAME)).trials} == {"TERMINATED"}
    assert not list((storage / NAME).rglob("events.out.tfevents*")), "neither launch nor resume writes TensorBoard files"
    trials = mlflow_runs(resumed_sweep.workdir, "trial")
    (parent,) = mlflow_runs(resumed_sweep.workdir, "sweep")
    keys = Counter(run.data.tags["sweeper.key"] for run in trials)
    assert len(keys) == TRIALS and set(keys.values()) == {1}, f"one run per trial: {keys}"
    assert {run.info.status for run in trials} == {"FINISHED"} and parent.info.status == "FINISHED"
    assert {run.data.tags["mlflow.parentRunId"] for run in trials} == {parent.info.run_id}
    # the restored searcher is the same two-objective study, told every trial once
    searcher = OptunaSearch()
    searcher.restore_from_dir(str(storage / NAME))
    study = searcher._ot_study
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.directions) == 2 and len(complete) == TRIALS and all(len(t.values) == 2 for t in complete)
    assert parent.data.tags["sweeper.objectives"] == "val_mean_error_m,latency_ms_p95" and "pareto_hypervolume" in parent.data.metrics
    print(f"launch interrupted after {resumed_sweep.seconds['launch']:.0f} s, resumed in {resumed_sweep.seconds['resume']:.0f} s")


def test_ctrl_c_while_promote_records_its_run_ends_it_killed_and_a_rerun_promotes(resumed_sweep):
    workdir = resumed_sweep.workdir
    arguments = ["promote", NAME, "--storage", str(workdir / "results"), "--seeds", "3", "--epochs", "1"]
    process = start_sweeper(workdir, *arguments, log=workdir / "promote.log")
    # The report is the promotion run's first artifact; the model is logged and registered after it.
    wait_until(lambda: any(workdir.glob("mlartifacts/*/artifacts/report/report.html")), process, "the promotion run's report")
    assert_one_line_and_130(ctrl_c(process, workdir / "promote.log"), "run the same command again")
    (killed,) = mlflow_runs(workdir, "promotion")
    assert killed.info.status == "KILLED" and killed.data.tags["sweeper.status"] == "interrupted"

    rerun = sweeper(workdir, *arguments, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    statuses = Counter(run.info.status for run in mlflow_runs(workdir, "promotion"))
    assert statuses == {"KILLED": 1, "FINISHED": 1}, statuses
    versions = MlflowClient(f"sqlite:///{workdir}/mlflow.db").search_model_versions("name = 'localization'")
    assert all("sweeper.verdict" in version.tags for version in versions), "a registered version without a verdict"


def test_ctrl_c_during_export_leaves_no_folder_and_a_rerun_exports(resumed_sweep):
    workdir, out = resumed_sweep.workdir, resumed_sweep.workdir / "best"
    arguments = ["export", NAME, "--storage", str(workdir / "results"), "--top-k", "2", "--out", str(out)]
    process = start_sweeper(workdir, *arguments, log=workdir / "export.log")
    wait_until(lambda: any(workdir.glob(".best.*/rank1-*/weights.safetensors")), process, "the first exported file")
    assert_one_line_and_130(ctrl_c(process, workdir / "export.log"), "run the same command again")
    assert not out.exists() and not list(workdir.glob(".best.*")), "a half-written export folder"

    rerun = sweeper(workdir, *arguments)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    folders = sorted(out.iterdir())
    assert [folder.name.split("-")[0] for folder in folders] == ["rank1", "rank2"]
    for folder in folders:
        load(folder)  # checks every file against the manifest
