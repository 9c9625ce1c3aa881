"""A sweep of two objectives, end to end: its Pareto front in the console, MLflow, the trial table
and a plot; exporting the front; choosing the promotion candidate from it. The sweep is the shared
interrupted-and-resumed one (localization's error against latency, NSGA-II): the front is
computed when the resumed sweep ends."""
from __future__ import annotations

from dataclasses import replace

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from sweeper.objectives import pareto_mask, resolve_objectives
from sweeper.promotion import choose_candidate
from sweeper.sweeps import load_record, rank_trials, read_trials
from tests.cli import sweeper
from tests.sweeper.conftest import INTERRUPTED_NAME as NAME
from tests.sweeper.conftest import mlflow_runs
from trainables.errors import ConfigError
from trainables.families import get_family

pytestmark = pytest.mark.slow  # reads the shared two-objective smoke sweep
FAMILY = get_family("localization")
METRIC, COST = FAMILY.objectives


def table(resumed_sweep):
    return pq.read_table(resumed_sweep.workdir / "results" / NAME / "mlflow" / "summary" / "trials.parquet").to_pandas()


def ranked(resumed_sweep):
    record = load_record(NAME, str(resumed_sweep.workdir / "results"))
    return record, rank_trials(read_trials(record, FAMILY.validation_metric, FAMILY.mode), FAMILY.mode)


def test_the_front_is_the_undominated_trials_and_is_marked_everywhere(resumed_sweep):
    rows = table(resumed_sweep)
    usable = rows[rows["status"].isin(["completed", "early_stopped"])]
    values = usable[[f"best_{METRIC}", COST]].to_numpy()
    expected = set(usable["trial_id"][pareto_mask(values, resolve_objectives(FAMILY, ("default",)))])
    assert set(rows["trial_id"][rows["pareto_front"]]) == expected and expected
    (parent,) = mlflow_runs(resumed_sweep.workdir, "sweep")
    assert parent.data.tags["sweeper.objectives"] == f"{METRIC},{COST}"
    assert set(parent.data.tags["sweeper.pareto_front"].split(",")) == expected
    assert parent.data.metrics["pareto_hypervolume"] > 0 and parent.data.metrics["pareto_front_size"] == len(expected)
    assert f"{METRIC}=" in parent.data.tags["sweeper.hypervolume_reference"]
    trials = mlflow_runs(resumed_sweep.workdir, "trial")
    assert {run.data.tags["sweeper.trial_id"] for run in trials if run.data.tags.get("sweeper.pareto_front") == "true"} == expected
    client = MlflowClient(f"sqlite:///{resumed_sweep.workdir}/mlflow.db")
    assert "summary/pareto_front.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "summary")}
    assert f"Pareto front of {METRIC}, {COST}: {len(expected)} trial" in resumed_sweep.resume.stdout


def test_export_pareto_writes_every_member_best_first(resumed_sweep, tmp_path):
    completed = sweeper(resumed_sweep.workdir, "export", NAME, "--storage", "results", "--pareto", "--out", str(tmp_path / "front"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = table(resumed_sweep)
    front = rows[rows["pareto_front"]].sort_values(f"best_{METRIC}")
    assert sorted(p.name for p in (tmp_path / "front").iterdir()) == [f"pareto{rank}-{trial}" for rank, trial in enumerate(front["trial_id"], 1)]


def test_a_single_objective_sweep_has_no_front_to_export(smoke_sweep, tmp_path):
    completed = sweeper(smoke_sweep.workdir, "export", smoke_sweep.name, "--pareto", "--out", str(tmp_path / "front"))
    assert completed.returncode == 2 and "searched one objective and has no Pareto front" in completed.stderr
    assert not (tmp_path / "front").exists()


def test_the_default_candidate_is_the_most_accurate_member_inside_the_latency_budget(resumed_sweep):
    record, trials = ranked(resumed_sweep)
    front = set(table(resumed_sweep).query("pareto_front")["trial_id"])
    policy = FAMILY.promotion().policy
    chosen = choose_candidate(trials, record, FAMILY, policy, None)
    inside = [t for t in trials if t.trial_id in front and float(t.history["latency_ms_p95"].iloc[-1]) <= policy.latency_budget_ms]
    assert chosen.trial_id in front and chosen.best_value == min(t.best_value for t in inside)
    # none inside a tiny budget: the most accurate member
    assert choose_candidate(trials, record, FAMILY, replace(policy, latency_budget_ms=1e-9), None) is trials[0]
    assert choose_candidate(trials, record, FAMILY, policy, trials[-1].trial_id) is trials[-1]
    with pytest.raises(ConfigError, match="--candidate nope: not a finished, non-diverged trial"):
        choose_candidate(trials, record, FAMILY, policy, "nope")


def test_promote_refuses_an_unknown_candidate_before_retraining(resumed_sweep):
    before = len(mlflow_runs(resumed_sweep.workdir, "promotion"))
    completed = sweeper(resumed_sweep.workdir, "promote", NAME, "--storage", "results", "--candidate", "nope")
    assert completed.returncode == 2 and "--candidate nope: not a finished, non-diverged trial" in completed.stderr
    assert len(mlflow_runs(resumed_sweep.workdir, "promotion")) == before
