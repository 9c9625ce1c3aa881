"""A real smoke sweep through the CLI (local Ray, MLflow on SQLite), then MLflow read back."""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

import sweeper

from sweeper.sweeps import UnknownSweepError, load_record
from tests.sweeper.conftest import SMOKE_TRIALS
from trainables.families import get_family

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(smoke_sweep):
    return smoke_sweep.workdir, smoke_sweep.stdout


def test_prints_the_best_trial_and_where_to_look(sweep):
    workdir, stdout = sweep
    assert "Best trial" in stdout and "val_mean_error_m" in stdout
    assert "Browse it: sweeper ui  (experiment 'localization', run 'smoke-sweep')" in stdout  # the sweep wrote ./mlflow.db
    assert (workdir / "ray_results" / "smoke-sweep").is_dir()


def test_the_console_is_a_status_line_and_a_line_per_trial(sweep):
    """Not Ray's tables and boxes (about 50 lines a trial): one line per trial as it ends, a status
    line at most every 30 s, and the summary."""
    _, stdout = sweep
    lines = stdout.splitlines()
    ended = [line for line in lines if line.startswith("trial ")]
    assert len(ended) == SMOKE_TRIALS and all("val_mean_error_m" in line and " | " in line for line in ended), ended
    assert any(line.startswith("[") and f"{SMOKE_TRIALS} trials: 0 running, 0 pending, {SMOKE_TRIALS} ended" in line for line in lines)
    assert len(lines) < SMOKE_TRIALS + 20, stdout


def test_mlflow_has_one_parent_and_one_nested_run_per_trial(sweep):
    workdir, _ = sweep
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("localization")
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.sweep` = 'smoke-sweep'")
    parents = [r for r in runs if r.data.tags["sweeper.kind"] == "sweep"]
    trials = [r for r in runs if r.data.tags["sweeper.kind"] == "trial"]
    assert len(parents) == 1 and len(trials) == SMOKE_TRIALS
    parent = parents[0]
    assert parent.info.run_name == "smoke-sweep" and parent.info.status == "FINISHED"
    assert parent.data.params["preset"] == "smoke" and "best_val_mean_error_m" in parent.data.metrics
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert {t.data.tags["sweeper.architecture"] == t.data.params["architecture"] for t in trials} == {True}
    assert {t.data.params["architecture"] for t in trials} <= set(get_family("localization").architectures())
    for trial in trials:
        assert trial.info.status == "FINISHED" and trial.data.tags["sweeper.status"] in ("completed", "early_stopped")
        assert {"architecture", "learning_rate", "batch_size"} <= set(trial.data.params)
        history = client.get_metric_history(trial.info.run_id, "val_mean_error_m")
        assert sorted(m.step for m in history) == list(range(1, len(history) + 1))
        assert "train_loss" in trial.data.metrics and "latency_ms_p50" in trial.data.metrics


def test_parent_run_holds_the_sweep_summary(sweep):
    workdir, _ = sweep
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("localization")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'sweep'")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "summary")}
    assert {"summary/trials.parquet", "summary/optimization_history.png", "summary/parallel_coordinate.png"} <= artifacts
    table = pq.read_table(client.download_artifacts(parent.info.run_id, "summary/trials.parquet", str(workdir)))
    assert table.num_rows == SMOKE_TRIALS and {"trial_id", "status", "node", "best_val_mean_error_m", "config.architecture"} <= set(table.column_names)
    trials = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'trial'")
    assert all(t.data.tags["sweeper.node"].startswith(socket.gethostname() + "/") for t in trials)


def test_the_sweep_can_be_found_again_by_name(sweep):
    workdir, _ = sweep
    record = load_record("smoke-sweep", str(workdir / "ray_results"))
    assert record.family == "localization" and record.trials == SMOKE_TRIALS and record.preset == "smoke"
    with pytest.raises(UnknownSweepError, match=r"no sweep named .other. in .* \(sweeps there: smoke-sweep\)"):
        load_record("other", str(workdir / "ray_results"))


def test_mlflow_knows_the_data_the_code_and_the_machine(sweep):
    """The sweep's run: its splits as MLflow inputs, who ran which code with which libraries, and
    (--system-metrics) the machine's use while it ran."""
    workdir, _ = sweep
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name("localization")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'sweep'")
    inputs = client.get_run(parent.info.run_id).inputs.dataset_inputs
    splits = {tag.value: dataset_input.dataset for dataset_input in inputs for tag in dataset_input.tags if tag.key == "mlflow.data.context"}
    assert set(splits) == {"train", "validation"}, "a sweep never sees the test split"
    for split, dataset in splits.items():
        assert dataset.name == f"localization-{split}" and dataset.digest and dataset.source_type == "local"
        assert json.loads(dataset.profile)["features_shape"]["mask"][0] == int(parent.data.params[f"data_{split}_rows"])
        columns = {column["name"] for column in json.loads(json.loads(dataset.schema)["mlflow_tensorspec"]["features"])}
        assert {"iq", "features", "mask", "transmitter_xy"} <= columns
    tags = parent.data.tags
    assert tags["mlflow.user"] and tags["sweeper.version.torch"] == torch.__version__ and tags["sweeper.version.mlflow"] == mlflow.__version__
    assert {"sweeper.version.ray", "sweeper.version.optuna"} <= set(tags)
    commit = subprocess.run(["git", "-C", str(Path(sweeper.__file__).parent), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        assert tags["mlflow.source.git.commit"] == commit.stdout.strip()
    assert any(key.startswith("system/cpu_utilization") for key in parent.data.metrics), sorted(parent.data.metrics)
