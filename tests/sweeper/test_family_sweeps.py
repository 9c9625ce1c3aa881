"""A real smoke sweep of every family through the CLI (localization has its own, deeper tests)."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.cli import sweeper
from trainables.families import family_names, get_family

pytestmark = pytest.mark.slow
TRIALS = 3


@pytest.mark.parametrize("family", [name for name in family_names() if name != "localization"])
def test_smoke_sweep_logs_every_trial(tmp_path, family):
    completed = sweeper(tmp_path, "launch", family, "--preset", "smoke", "--trials", str(TRIALS), "--name", "smoke")
    assert completed.returncode == 0, completed.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name(family)
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.sweep` = 'smoke'")
    trials = [r for r in runs if r.data.tags["sweeper.kind"] == "trial"]
    assert len(trials) == TRIALS and len(runs) == TRIALS + 1
    metric = get_family(family).validation_metric
    for trial in trials:
        assert trial.data.tags["sweeper.architecture"] in get_family(family).architectures()
        assert trial.data.tags["sweeper.status"] in ("completed", "early_stopped")
        assert client.get_metric_history(trial.info.run_id, metric)
