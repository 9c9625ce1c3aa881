"""The tracking server dies in the middle of a sweep: the sweep finishes anyway, keeps the records
it could not send, and `sweeper sync` brings MLflow to exactly one run per trial, idempotently."""
from __future__ import annotations

import time

import pytest

from tests.cli import start_sweeper, sweeper
from tests.mlflow_server.conftest import rest, tags
from tests.servers import kill_tree, start_mlflow_server

pytestmark = pytest.mark.slow
TRIALS, EPOCHS = 4, 3


def runs_of(url: str) -> tuple[list[dict], list[dict]]:
    """(parent runs, trial runs) of the sweep, through the REST API."""
    experiment = rest(url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=localization")["experiment"]
    search = {"experiment_ids": [experiment["experiment_id"]], "filter": "tags.`sweeper.sweep` = 'outage'", "max_results": 100}
    runs = rest(url, "/api/2.0/mlflow/runs/search", search).get("runs", [])
    return [r for r in runs if tags(r)["sweeper.kind"] == "sweep"], [r for r in runs if tags(r)["sweeper.kind"] == "trial"]


def trial_runs(url: str) -> int:
    try:
        return len(runs_of(url)[1])
    except OSError:  # the experiment does not exist yet (404), or the server is starting
        return 0


def test_records_survive_a_dead_server_and_sync_sends_them_once(tmp_path):
    servers = [start_mlflow_server(tmp_path)]
    try:
        run_through_an_outage(tmp_path, servers)
    finally:
        for server in servers:  # whatever failed, nothing is left running
            server.kill()


def run_through_an_outage(tmp_path, servers: list) -> None:
    server = servers[0]
    arguments = ["launch", "localization", "--preset", "smoke", "--name", "outage", "--trials", str(TRIALS),
                 "--epochs", str(EPOCHS), "--scheduler", "fifo", "--tracking-uri", server.url]  # fmt: skip
    driver = start_sweeper(tmp_path, *arguments, log=tmp_path / "driver.log")
    try:
        deadline = time.monotonic() + 300
        while trial_runs(server.url) < 1:  # the server has seen part of the sweep, not all of it
            assert time.monotonic() < deadline and driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.2)
        server.kill()
        assert driver.wait(timeout=900) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        kill_tree(driver.pid)
    assert "sweeper sync outage" in (tmp_path / "driver.log").read_text()

    server = start_mlflow_server(tmp_path, port=server.port)  # the same database, back again
    servers.append(server)
    synced = sweeper(tmp_path, "sync", "outage")
    assert synced.returncode == 0, synced.stderr[-3000:]
    (parent,), trials = runs_of(server.url)
    assert len(trials) == TRIALS and parent["info"]["status"] == "FINISHED"
    for trial in trials:
        assert trial["info"]["status"] == "FINISHED"
        history = rest(server.url, f"/api/2.0/mlflow/metrics/get-history?run_id={trial['info']['run_id']}&metric_key=val_mean_error_m")
        assert sorted(point["step"] for point in history["metrics"]) == list(range(1, EPOCHS + 1))
    again = sweeper(tmp_path, "sync", "outage")
    assert again.returncode == 0 and "sent 0 pending records" in again.stdout
    assert len(runs_of(server.url)[1]) == TRIALS
    assert "up to date" in sweeper(tmp_path, "status", "outage").stdout
