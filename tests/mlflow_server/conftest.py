"""A smoke sweep logged over HTTP to a real server, and reading sweeps back through the REST API."""
from __future__ import annotations

import base64
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.cli import sweeper
from tests.servers import MlflowServer, mlflow_server, postgres_binaries, postgresql

SERVED_TRIALS = 3


@dataclass(frozen=True)
class ServedSweep:
    server: MlflowServer
    workdir: Path
    name: str
    stdout: str


def launch_over_http(workdir: Path, server: MlflowServer, name: str, password: str | None = None) -> str:
    """`sweeper launch` of a smoke sweep that logs to ``server`` (as admin with ``password``); its stdout."""
    login = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password} if password else None
    completed = sweeper(workdir, "launch", "localization", "--preset", "smoke", "--trials", str(SERVED_TRIALS),
                        "--name", name, "--seed", "1", "--tracking-uri", server.url, env=login)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:] + server.output()[-2000:]
    return completed.stdout


def rest(url: str, path: str, body: dict | None = None, password: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode() if body else None, headers={"Content-Type": "application/json"})
    if password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{password}".encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def tags(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}


def read_sweep(url: str, sweep: str, password: str | None = None) -> tuple[dict, list[dict]]:
    """The sweep's parent run and its trial runs, checked: one parent, one nested run per trial with metrics."""
    experiment = rest(url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=localization", password=password)["experiment"]
    search = {"experiment_ids": [experiment["experiment_id"]], "filter": f"tags.`sweeper.sweep` = '{sweep}'", "max_results": 100}
    runs = rest(url, "/api/2.0/mlflow/runs/search", search, password)["runs"]
    parents = [run for run in runs if tags(run)["sweeper.kind"] == "sweep"]
    trials = [run for run in runs if tags(run)["sweeper.kind"] == "trial"]
    assert len(parents) == 1 and len(trials) == SERVED_TRIALS, [tags(run) for run in runs]
    (parent,) = parents
    assert parent["info"]["run_name"] == sweep and parent["info"]["status"] == "FINISHED"
    for trial in trials:
        assert tags(trial)["mlflow.parentRunId"] == parent["info"]["run_id"]
        assert {"val_mean_error_m", "train_loss"} <= {metric["key"] for metric in trial["data"]["metrics"]}
    return parent, trials


@pytest.fixture(scope="session")
def served_sweep(tmp_path_factory) -> Iterator[ServedSweep]:
    """The server with its defaults in the sweep's folder, as a user's `sweeper ui` would run it."""
    workdir = tmp_path_factory.mktemp("served")
    with mlflow_server(workdir) as server:
        print(f"MLflow server on SQLite answered after {server.started_in_s:.1f} s")
        yield ServedSweep(server, workdir, "served-sweep", launch_over_http(workdir, server, "served-sweep"))


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    if postgres_binaries() is None:
        pytest.skip("PostgreSQL is not installed (initdb/postgres not on PATH nor in /usr/lib/postgresql): apt-get install postgresql")
    with postgresql() as uri:
        yield uri
