"""The Python API on the shared smoke sweep, used the way the README shows it."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

import sweeper
from sweeper.cli import run
from sweeper.sweeps import UnknownSweepError
from trainables.errors import ConfigError

pytestmark = pytest.mark.slow  # reads the shared smoke sweep


@pytest.fixture(scope="module")
def sweep(smoke_sweep) -> sweeper.Sweep:
    return sweeper.open(smoke_sweep.name, str(smoke_sweep.workdir / "ray_results"))


def test_open_resolves_the_family_once_and_reads_the_trials(sweep, smoke_sweep):
    assert isinstance(sweep, sweeper.Sweep) and sweep.family.name == "localization" and sweep.name == smoke_sweep.name
    table = sweep.trials
    logged = pq.read_table(smoke_sweep.workdir / "ray_results" / smoke_sweep.name / "mlflow" / "summary" / "trials.parquet").to_pandas()
    assert list(table.columns) == list(logged.columns) and sorted(table["trial_id"]) == sorted(logged["trial_id"])
    best = sweep.best(2)
    assert len(best) == 2 and best[0].best_value <= best[1].best_value
    assert best[0].best_value == table["best_val_mean_error_m"].min()


def test_status_counts_the_trials_and_names_the_best(sweep):
    status = sweep.status()
    assert status.started == status.trials == sum(status.by_status.values()) and status.best.trial_id == sweep.best()[0].trial_id
    assert status.unsent_records == 0 and status.nodes


def test_list_and_status_as_json_for_machines(sweep, smoke_sweep, capsys):
    storage = str(smoke_sweep.workdir / "ray_results")
    assert sweeper.list_sweeps(storage) == [smoke_sweep.name]
    assert run(["status", smoke_sweep.name, "--storage", storage, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["best"]["trial"] == sweep.best()[0].trial_id and status["metric"] == "val_mean_error_m"
    assert run(["list", "--storage", storage, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [status]
    assert run(["list", "--storage", storage]) == 0
    assert capsys.readouterr().out.startswith(f"{smoke_sweep.name}  localization  {status['started']}/{status['trials']} trials  best")


def test_data_and_reference_are_the_sweeps_own(sweep, smoke_sweep):
    test = sweep.load_data("test")
    assert len(next(iter(test.values()))) > 0 and set(sweep.family.targets) <= set(test)
    client = MlflowClient(smoke_sweep.tracking_uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("localization").experiment_id], "tags.`sweeper.kind` = 'sweep'")
    logged = {key.removeprefix("reference_val_"): value for key, value in parent.data.metrics.items() if key.startswith("reference_val_")}
    assert sweep.reference("validation") == pytest.approx(logged) and logged
    with pytest.raises(ConfigError, match="unknown split 'tests'"):
        sweep.load_data("tests")


def test_export_through_the_handle(sweep, tmp_path):
    (item,) = sweep.export(tmp_path / "best")
    assert item.trial_id == sweep.best()[0].trial_id
    assert sweeper.load(item.path) is not None


def test_export_as_json_for_machines(sweep, smoke_sweep, tmp_path, capsys):
    assert run(["export", smoke_sweep.name, "--storage", str(smoke_sweep.workdir / "ray_results"), "--out", str(tmp_path / "x"), "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["trial"] == sweep.best()[0].trial_id and (tmp_path / "x" / Path(item["path"]).name / "config.json").is_file()


def test_an_unknown_sweep_lists_the_known_ones(smoke_sweep):
    with pytest.raises(UnknownSweepError, match=f"no sweep named 'nope'.*{smoke_sweep.name}"):
        sweeper.open("nope", str(smoke_sweep.workdir / "ray_results"))
