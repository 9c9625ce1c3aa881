"""Ctrl-C (SIGINT to the command's process group, as a terminal sends it) during launch, promote and
export: one line and exit code 130, no process left behind, and a state that `sweeper resume` or a
rerun completes, with no duplicate MLflow run and no half-written export folder."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import psutil
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis
from ray.tune.search.optuna import OptunaSearch

from sweeper import load
from tests.cli import start_sweeper, sweeper

pytestmark = pytest.mark.slow

NAME, TRIALS, EPOCHS = "ctrl-c", 4, 2
INTERRUPTED = 130


@dataclass(frozen=True)
class Interrupted:
    returncode: int | None
    output: str
    leftovers: list[str]  # processes of the command still alive after it exited


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the command ended (exit code {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def ctrl_c(process: subprocess.Popen, log: Path) -> Interrupted:
    """SIGINT to the whole foreground group, as Ctrl-C in a terminal; then wait for the command to end."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    os.killpg(process.pid, signal.SIGINT)
    try:
        returncode = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        returncode = None
    _, alive = psutil.wait_procs(tree, timeout=15)
    leftovers = [_describe(p) for p in alive]
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()  # psutil refuses a pid that was reused meanwhile
    return Interrupted(returncode, log.read_text(), [p for p in leftovers if p])


def _describe(process: psutil.Process) -> str | None:
    """Its command line, or None if it is gone or a zombie (exited, not yet reaped)."""
    try:
        return None if process.status() == psutil.STATUS_ZOMBIE else " ".join(process.cmdline()[:3])
    except psutil.NoSuchProcess:
        return None


def assert_one_line_and_130(interrupted: Interrupted, advice: str) -> None:
    assert interrupted.returncode == INTERRUPTED, interrupted.output[-3000:]
    assert "Traceback" not in interrupted.output, interrupted.output[-3000:]
    assert interrupted.output.rstrip().splitlines()[-1] == f"sweeper: interrupted; {advice}"
    assert not interrupted.leftovers, f"left running after Ctrl-C: {interrupted.leftovers}"


def mlflow_runs(workdir: Path, kind: str) -> list:
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("localization")
    return client.search_runs([experiment.experiment_id], f"tags.`sweeper.kind` = '{kind}'", run_view_type=ViewType.ACTIVE_ONLY)


def finished_trials(workdir: Path) -> int:
    """Trials whose last epoch is in Ray's result files (read without touching MLflow's database)."""
    count = 0
    for results in (workdir / "results" / NAME).glob("trial_*/result.json"):
        lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        count += bool(lines) and lines[-1]["epoch"] == EPOCHS
    return count


@dataclass(frozen=True)
class ResumedSweep:
    workdir: Path
    launch: Interrupted
    runs_after_ctrl_c: list
    resume: subprocess.CompletedProcess
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def resumed_sweep(tmp_path_factory) -> ResumedSweep:
    """A smoke sweep of two objectives interrupted once its first trial finished, then resumed."""
    workdir = tmp_path_factory.mktemp("interrupts")
    storage = str(workdir / "results")
    started = time.monotonic()
    process = start_sweeper(workdir, "launch", "localization", "--preset", "smoke", "--name", NAME, "--trials", str(TRIALS),
                            "--epochs", str(EPOCHS), "--max-concurrent", "1", "--storage", storage, "--objectives",
                            "--tracking-uri", f"sqlite:///{workdir}/mlflow.db", log=workdir / "launch.log")  # fmt: skip
    wait_until(lambda: finished_trials(workdir) >= 1, process, "the first finished trial")
    launch = ctrl_c(process, workdir / "launch.log")
    interrupted_at = time.monotonic()
    runs = mlflow_runs(workdir, "trial") + mlflow_runs(workdir, "sweep")
    resume = sweeper(workdir, "resume", NAME, "--storage", storage, timeout=600)
    seconds = {"launch": interrupted_at - started, "resume": time.monotonic() - interrupted_at}
    return ResumedSweep(workdir, launch, runs, resume, seconds)


def test_ctrl_c_during_launch_kills_the_runs_and_resume_finishes_them_without_duplicates(resumed_sweep):
    storage = resumed_sweep.workdir / "results"
    assert_one_line_and_130(resumed_sweep.launch, f"resume with: sweeper resume {NAME} --storage {storage}")
    stopped = {run.data.tags["sweeper.key"]: run.info.status for run in resumed_sweep.runs_after_ctrl_c}
    assert stopped["sweep"] == "KILLED" and "RUNNING" not in stopped.values(), stopped
    assert resumed_sweep.resume.returncode == 0, resumed_sweep.resume.stderr[-3000:]
    assert {trial.status for trial in ExperimentAnalysis(str(storage / NAME)).trials} == {"TERMINATED"}
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
    wait_until(lambda: any(workdir.glob(".best.*/rank1-*/weights.pt")), process, "the first exported file")
    assert_one_line_and_130(ctrl_c(process, workdir / "export.log"), "run the same command again")
    assert not out.exists() and not list(workdir.glob(".best.*")), "a half-written export folder"

    rerun = sweeper(workdir, *arguments)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    folders = sorted(out.iterdir())
    assert [folder.name.split("-")[0] for folder in folders] == ["rank1", "rank2"]
    for folder in folders:
        load(folder)  # checks every file against the manifest
