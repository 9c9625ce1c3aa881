"""The real smoke sweeps (local Ray, MLflow on SQLite) shared by the tests that read them back: one
of one objective, and one of two that was interrupted with Ctrl-C and resumed."""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import ray
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from sweeper.cluster import start_ray
from tests.cli import start_sweeper, sweeper
from tests.ctrl_c import Interrupted, ctrl_c, wait_until

SMOKE_TRIALS = 4
INTERRUPTED_NAME, INTERRUPTED_TRIALS, INTERRUPTED_EPOCHS = "ctrl-c", 4, 2
REGISTERED = "smoke-localization"  # promote --registered-model: not the family's name


@dataclass(frozen=True)
class Sweep:
    workdir: Path
    name: str
    stdout: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.workdir}/mlflow.db"


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray for a module's sweeps, run in the test process through the Python API: a CLI
    process per sweep would start Python, torch and Ray again each time."""
    start_ray(None)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Sweep:
    workdir = tmp_path_factory.mktemp("sweep")
    completed = sweeper(workdir, "launch", "localization", "--preset", "smoke", "--trials", str(SMOKE_TRIALS),
                        "--name", "smoke-sweep", "--seed", "1", "--system-metrics",
                        env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})  # a sample a second: a smoke sweep is short; fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return Sweep(workdir, "smoke-sweep", completed.stdout)


@dataclass(frozen=True)
class Promotion:
    stdout: str
    run: Any  # the MLflow promotion run
    parent: Any  # the sweep's parent run


@pytest.fixture(scope="session")
def promoted(smoke_sweep) -> Promotion:
    completed = sweeper(smoke_sweep.workdir, "promote", smoke_sweep.name, "--seeds", "3", "--epochs", "1", "--registered-model", REGISTERED)
    assert completed.returncode == 0, completed.stderr[-3000:]
    client = MlflowClient(smoke_sweep.tracking_uri)
    experiment = client.get_experiment_by_name("localization")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'promotion'")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'sweep'")
    return Promotion(completed.stdout, run, parent)


def mlflow_runs(workdir: Path, kind: str) -> list:
    """The active runs of ``kind`` (sweep, trial, promotion) in the workdir's MLflow database."""
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("localization")
    return client.search_runs([experiment.experiment_id], f"tags.`sweeper.kind` = '{kind}'", run_view_type=ViewType.ACTIVE_ONLY)


def finished_trials(workdir: Path) -> int:
    """Trials whose last epoch is in Ray's result files (read without touching MLflow's database)."""
    count = 0
    for results in (workdir / "results" / INTERRUPTED_NAME).glob("trial_*/result.json"):
        lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        count += bool(lines) and lines[-1]["epoch"] == INTERRUPTED_EPOCHS
    return count


@dataclass(frozen=True)
class ResumedSweep:
    workdir: Path
    launch: Interrupted
    runs_after_ctrl_c: list
    resume: subprocess.CompletedProcess
    seconds: dict[str, float]


@pytest.fixture(scope="session")
def resumed_sweep(tmp_path_factory) -> ResumedSweep:
    """A smoke sweep of two objectives (localization's error and latency, NSGA-II) interrupted once
    its first trial finished, then resumed: the Ctrl-C tests and the Pareto-front tests read it."""
    workdir = tmp_path_factory.mktemp("interrupts")
    storage = str(workdir / "results")
    started = time.monotonic()
    process = start_sweeper(workdir, "launch", "localization", "--preset", "smoke", "--name", INTERRUPTED_NAME, "--trials", str(INTERRUPTED_TRIALS),
                            "--epochs", str(INTERRUPTED_EPOCHS), "--max-concurrent", "1", "--storage", storage, "--objectives",
                            "--tracking-uri", f"sqlite:///{workdir}/mlflow.db", "--sampler", "nsga2", log=workdir / "launch.log")  # fmt: skip
    wait_until(lambda: finished_trials(workdir) >= 1, process, "the first finished trial")
    launch = ctrl_c(process, workdir / "launch.log")
    interrupted_at = time.monotonic()
    runs = mlflow_runs(workdir, "trial") + mlflow_runs(workdir, "sweep")
    resume = sweeper(workdir, "resume", INTERRUPTED_NAME, "--storage", storage, timeout=600)
    seconds = {"launch": interrupted_at - started, "resume": time.monotonic() - interrupted_at}
    return ResumedSweep(workdir, launch, runs, resume, seconds)
