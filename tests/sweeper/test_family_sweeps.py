"""A real smoke sweep of every family (localization has its own, deeper tests), through the Python
API in one Ray session."""
from __future__ import annotations

import signal

import pytest
from mlflow.tracking import MlflowClient

import sweeper
from mlflow_server.options import default_tracking_uri
from trainables.families import family_names, get_family

pytestmark = pytest.mark.slow
TRIALS = 3


@pytest.mark.parametrize("family", [name for name in family_names() if name != "localization"])
def test_smoke_sweep_logs_every_trial(ray_session, tmp_path, family):
    ctrl_c = signal.getsignal(signal.SIGINT)
    sweeper.launch(family, preset="smoke", trials=TRIALS, name="smoke", storage=str(tmp_path / "ray_results"),
                   tracking_uri=default_tracking_uri(tmp_path))  # fmt: skip
    assert signal.getsignal(signal.SIGINT) is ctrl_c, "Ray Tune's Ctrl-C handler is not left behind in the caller's process"
    client = MlflowClient(default_tracking_uri(tmp_path))
    experiment = client.get_experiment_by_name(family)
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.sweep` = 'smoke'")
    trials = [r for r in runs if r.data.tags["sweeper.kind"] == "trial"]
    assert len(trials) == TRIALS and len(runs) == TRIALS + 1
    metric = get_family(family).validation_metric
    for trial in trials:
        assert trial.data.tags["sweeper.architecture"] in get_family(family).architectures()
        assert trial.data.tags["sweeper.status"] in ("completed", "early_stopped")
        assert client.get_metric_history(trial.info.run_id, metric)
