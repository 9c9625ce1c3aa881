"""Sweeps on a real 2-node Ray cluster (loopback): both nodes used by a plugin family, a worker node lost, the driver lost."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis

from tests.cli import start_sweeper, sweeper
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.slow


def launch_arguments(cluster, tmp_path, name, trials, epochs, *extra) -> list[str]:
    return ["launch", "localization", "--preset", "smoke", "--name", name, "--trials", str(trials), "--epochs", str(epochs),
            "--address", cluster.address, "--storage", str(tmp_path / "results"), "--scheduler", "fifo", *extra]  # fmt: skip


def trial_histories(tmp_path: Path, name: str) -> dict[str, list[dict]]:
    """Each trial's reported results so far (Ray's result.json, one line per epoch)."""
    histories = {}
    for results in (tmp_path / "results" / name).glob("trial_*/result.json"):
        lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        histories[results.parent.name.removeprefix("trial_")] = lines
    return histories


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.5)


def mlflow_trial_runs(tmp_path: Path, name: str, family: str = "localization") -> tuple[list, object]:
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name(family)
    runs = client.search_runs([experiment.experiment_id], f"tags.`sweeper.sweep` = '{name}'")
    (parent,) = [r for r in runs if r.data.tags["sweeper.kind"] == "sweep"]
    return [r for r in runs if r.data.tags["sweeper.kind"] == "trial"], parent


def test_a_plugin_family_is_swept_on_both_nodes_promoted_and_exported(cluster, tmp_path, activity_data):
    """The example plugin, installed nowhere: only the driver finds it (PYTHONPATH), so the trials
    on the other node run only if --plugin shipped its package to the workers."""
    started = time.monotonic()
    driver = {**cluster.env, "PYTHONPATH": str(EXAMPLE)}
    storage = ["--storage", str(tmp_path / "results")]
    completed = sweeper(tmp_path, "launch", "activity", "--plugin", "activity_family", "--data", str(activity_data), "--preset", "smoke",
                        "--name", "both", "--trials", "4", "--scheduler", "fifo", "--address", cluster.address, *storage, env=driver)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    trials, _ = mlflow_trial_runs(tmp_path, "both", "activity")
    nodes = {run.data.tags["sweeper.node"] for run in trials}
    assert len(trials) == 4 and len(nodes) == 2, nodes
    status = sweeper(tmp_path, "status", "both", *storage, env=driver)
    assert "4 completed" in status.stdout and all(node in status.stdout for node in nodes)
    promoted = sweeper(tmp_path, "promote", "both", "--seeds", "3", "--epochs", "1", "--json", "--address", cluster.address, *storage, env=driver)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert json.loads(promoted.stdout)["family"] == "activity"
    exported = sweeper(tmp_path, "export", "both", "--out", "exported", *storage, env=driver)
    assert exported.returncode == 0 and len(list((tmp_path / "exported").iterdir())) == 1, exported.stderr[-3000:]
    print(f"plugin family on 2 nodes: 4-trial sweep, promotion and export in {time.monotonic() - started:.1f} s")


def test_losing_a_worker_node_loses_no_trial(cluster, tmp_path):
    started = time.monotonic()
    # HeimdallNet only: its epochs take seconds, so the worker's trial is mid-run when the node dies
    # (the least-squares network finishes a smoke trial in about as long as it takes to look).
    space = tmp_path / "slow.yaml"
    space.write_text("family: localization\nparameters:\n  architecture: heimdall_net\n  dropout: 0.1\n"
                     "  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n  weight_decay: 1.0e-4\n  batch_size: 16\n")  # fmt: skip
    arguments = launch_arguments(cluster, tmp_path, "loss", 4, 6, "--max-failures", "3", "--search-space", str(space))
    driver = start_sweeper(tmp_path, *arguments, env=cluster.env, log=tmp_path / "driver.log")
    # Wait until both nodes run a trial that has checkpointed at least one epoch and not finished, then kill the worker.
    running = lambda: {h[-1]["node"] for h in trial_histories(tmp_path, "loss").values() if h and h[-1]["epoch"] < 6}  # noqa: E731
    wait_until(lambda: len(running()) == 2, 300, "unfinished trials on both nodes")
    cluster.kill_node("worker")
    killed_at = {trial: len(history) for trial, history in trial_histories(tmp_path, "loss").items()}
    assert driver.wait(timeout=900) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    analysis = ExperimentAnalysis(str(tmp_path / "results" / "loss"))
    retried = {t.trial_id: t.run_metadata.num_failures for t in analysis.trials if t.run_metadata.num_failures}
    assert len(analysis.trials) == 4 and all(t.status == "TERMINATED" for t in analysis.trials)
    assert retried, "the trial on the lost node was retried"
    for trial_id in retried:
        epochs = [r["epoch"] for r in trial_histories(tmp_path, "loss")[trial_id]]
        assert epochs[-1] == 6 and epochs.count(1) == 1, f"resumed from its checkpoint, not from scratch: {epochs}"
        assert killed_at[trial_id] >= 1
    trials, _ = mlflow_trial_runs(tmp_path, "loss")
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    print(f"worker lost: {len(retried)} trials retried {retried}, sweep took {time.monotonic() - started:.1f} s")


def test_a_killed_driver_resumes_the_same_search_and_runs(cluster, tmp_path):
    started = time.monotonic()
    arguments = launch_arguments(cluster, tmp_path, "phoenix", 6, 3, "--max-concurrent", "2")
    driver = start_sweeper(tmp_path, *arguments, env=cluster.env, log=tmp_path / "driver.log")
    finished = lambda: sum(1 for h in trial_histories(tmp_path, "phoenix").values() if h and h[-1]["epoch"] == 3)  # noqa: E731
    wait_until(lambda: finished() >= 2, 600, "two finished trials")
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    before = len(ExperimentAnalysis(str(tmp_path / "results" / "phoenix")).trials)
    resumed = sweeper(tmp_path, "resume", "phoenix", "--storage", str(tmp_path / "results"), "--address", cluster.address, env=cluster.env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    analysis = ExperimentAnalysis(str(tmp_path / "results" / "phoenix"))
    configs = [json.dumps(trial.config, sort_keys=True) for trial in analysis.trials]
    assert len(configs) == 6 and {t.status for t in analysis.trials} == {"TERMINATED"}, "the planned number of trials, no more"
    assert len(set(configs)) == 6, "the restored searcher did not start over"
    assert before < 6
    trials, parent = mlflow_trial_runs(tmp_path, "phoenix")
    assert len(trials) == 6 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert {r.info.status for r in trials} == {"FINISHED"} and parent.info.status == "FINISHED"
    for run in trials:
        steps = [m.step for m in MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(run.info.run_id, "val_mean_error_m")]
        assert sorted(set(steps)) == [1, 2, 3]
    print(f"driver killed with {before} trials in Ray's saved state; resumed to 6 in {time.monotonic() - started:.1f} s total")
