"""A sweep of two objectives, end to end: its Pareto front in the console, MLflow, the trial table
and a plot; exporting the front; choosing the promotion candidate from it."""
from __future__ import annotations

from dataclasses import replace

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from sweeper.objectives import pareto_mask, resolve_objectives
from sweeper.promotion import choose_candidate
from sweeper.sweeps import load_record, rank_trials, summarise_trials
from tests.cli import sweeper
from trainables.errors import ConfigError
from trainables.families import get_family

pytestmark = pytest.mark.slow  # reads the shared two-objective smoke sweep
FAMILY = get_family("response_time")


def runs(pareto_sweep, kind: str) -> list:
    client = MlflowClient(pareto_sweep.tracking_uri)
    experiment = client.get_experiment_by_name(FAMILY.name)
    return client.search_runs([experiment.experiment_id], f"tags.`sweeper.kind` = '{kind}'")


def table(pareto_sweep):
    return pq.read_table(pareto_sweep.workdir / "ray_results" / pareto_sweep.name / "mlflow" / "summary" / "trials.parquet").to_pandas()


def ranked(pareto_sweep):
    record = load_record(pareto_sweep.name, str(pareto_sweep.workdir / "ray_results"))
    return record, rank_trials(summarise_trials(record, FAMILY.validation_metric, FAMILY.mode), FAMILY.mode)


def test_the_front_is_the_undominated_trials_and_is_marked_everywhere(pareto_sweep):
    rows = table(pareto_sweep)
    usable = rows[rows["status"].isin(["completed", "early_stopped"])]
    values = usable[["best_val_nrmse", "param_count"]].to_numpy()
    expected = set(usable["trial_id"][pareto_mask(values, resolve_objectives(FAMILY, ("default",)))])
    assert set(rows["trial_id"][rows["pareto_front"]]) == expected and expected
    (parent,) = runs(pareto_sweep, "sweep")
    assert parent.data.tags["sweeper.objectives"] == "val_nrmse,param_count"
    assert set(parent.data.tags["sweeper.pareto_front"].split(",")) == expected
    assert parent.data.metrics["pareto_hypervolume"] > 0 and parent.data.metrics["pareto_front_size"] == len(expected)
    assert "val_nrmse=" in parent.data.tags["sweeper.hypervolume_reference"]
    tagged = {run.data.tags["sweeper.trial_id"] for run in runs(pareto_sweep, "trial") if run.data.tags.get("sweeper.pareto_front") == "true"}
    assert tagged == expected
    artifacts = {a.path for a in MlflowClient(pareto_sweep.tracking_uri).list_artifacts(parent.info.run_id, "summary")}
    assert "summary/pareto_front.png" in artifacts
    assert f"Pareto front of val_nrmse, param_count: {len(expected)} trial" in pareto_sweep.stdout


def test_export_pareto_writes_every_member_best_first(pareto_sweep, tmp_path):
    completed = sweeper(pareto_sweep.workdir, "export", pareto_sweep.name, "--pareto", "--out", str(tmp_path / "front"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = table(pareto_sweep)
    front = rows[rows["pareto_front"]].sort_values("best_val_nrmse")
    assert sorted(p.name for p in (tmp_path / "front").iterdir()) == [f"pareto{rank}-{trial}" for rank, trial in enumerate(front["trial_id"], 1)]


def test_a_single_objective_sweep_has_no_front_to_export(smoke_sweep, tmp_path):
    completed = sweeper(smoke_sweep.workdir, "export", smoke_sweep.name, "--pareto", "--out", str(tmp_path / "front"))
    assert completed.returncode == 2 and "searched one objective and has no Pareto front" in completed.stderr
    assert not (tmp_path / "front").exists()


def test_the_default_candidate_is_the_most_accurate_member_inside_the_latency_budget(pareto_sweep):
    record, trials = ranked(pareto_sweep)
    front = set(table(pareto_sweep).query("pareto_front")["trial_id"])
    policy = FAMILY.promotion().policy
    chosen = choose_candidate(trials, record, FAMILY, policy, None)
    inside = [t for t in trials if t.trial_id in front and float(t.history["latency_ms_p95"].iloc[-1]) <= policy.latency_budget_ms]
    assert chosen.trial_id in front and chosen.best_value == min(t.best_value for t in inside)
    # none inside a tiny budget: the most accurate member
    assert choose_candidate(trials, record, FAMILY, replace(policy, latency_budget_ms=1e-9), None) is trials[0]
    assert choose_candidate(trials, record, FAMILY, policy, trials[-1].trial_id) is trials[-1]
    with pytest.raises(ConfigError, match="--candidate nope: not a finished, non-diverged trial"):
        choose_candidate(trials, record, FAMILY, policy, "nope")


def test_promote_refuses_an_unknown_candidate_before_retraining(pareto_sweep):
    completed = sweeper(pareto_sweep.workdir, "promote", pareto_sweep.name, "--candidate", "nope")
    assert completed.returncode == 2 and "--candidate nope: not a finished, non-diverged trial" in completed.stderr
    assert not runs(pareto_sweep, "promotion")
