"""One real smoke sweep (local Ray, MLflow on SQLite) shared by the tests that read it back."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.cli import sweeper

SMOKE_TRIALS = 4


@dataclass(frozen=True)
class Sweep:
    workdir: Path
    name: str
    stdout: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.workdir}/mlflow.db"


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Sweep:
    workdir = tmp_path_factory.mktemp("sweep")
    completed = sweeper(workdir, "launch", "localization", "--preset", "smoke", "--trials", str(SMOKE_TRIALS),
                        "--name", "smoke-sweep", "--seed", "1")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return Sweep(workdir, "smoke-sweep", completed.stdout)


@dataclass(frozen=True)
class Promotion:
    stdout: str
    run: Any  # the MLflow promotion run
    parent: Any  # the sweep's parent run


@pytest.fixture(scope="session")
def promoted(smoke_sweep) -> Promotion:
    completed = sweeper(smoke_sweep.workdir, "promote", smoke_sweep.name, "--seeds", "3", "--epochs", "1")
    assert completed.returncode == 0, completed.stderr[-3000:]
    client = MlflowClient(smoke_sweep.tracking_uri)
    experiment = client.get_experiment_by_name("localization")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'promotion'")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'sweep'")
    return Promotion(completed.stdout, run, parent)


@pytest.fixture(scope="session")
def pareto_sweep(tmp_path_factory) -> Sweep:
    """A smoke sweep of two objectives (response_time's default pair: error and parameter count) with NSGA-II."""
    workdir = tmp_path_factory.mktemp("pareto")
    completed = sweeper(workdir, "launch", "response_time", "--preset", "smoke", "--trials", "5", "--objectives",
                        "--sampler", "nsga2", "--name", "pareto-sweep")  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return Sweep(workdir, "pareto-sweep", completed.stdout)
