"""`sweeper promote` on a real smoke sweep, then the verdict read back from MLflow."""
from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from sweeper.journal import Journal
from tests.cli import sweeper
from tests.sweeper.conftest import REGISTERED

pytestmark = pytest.mark.slow
ALIASES = {"promote": "champion", "keep_experimental": "challenger", "demote": None}


@pytest.fixture(scope="module")
def client(smoke_sweep):
    return MlflowClient(smoke_sweep.tracking_uri)


def test_prints_the_verdict_and_every_criterion(promoted):
    run, stdout = promoted.run, promoted.stdout
    verdict = run.data.tags["sweeper.verdict"]
    assert f"Promotion of sweep smoke-sweep: {verdict.upper()}" in stdout
    for criterion in ("no divergence", "stability probe", "clearly better", "beats the non-learned reference", "enough seeds",
                      "latency budget", "generalization gap"):  # fmt: skip
        assert criterion in stdout
    assert "non-learned reference    test mean_error_m" in stdout and "the non-learned reference: gain" in stdout


def test_promotion_run_is_nested_under_the_sweep_with_per_seed_metrics(promoted, client):
    run, parent = promoted.run, promoted.parent
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["sweeper.verdict"] in ALIASES and run.data.tags["sweeper.baseline"] == "heimdall_net"
    for model in ("candidate", "heimdall_net"):
        history = client.get_metric_history(run.info.run_id, f"{model}_test_mean_error_m")
        assert sorted(m.step for m in history) == [0, 1, 2]
    expected = {"gain_vs_heimdall_net", "gain_vs_heimdall_net_low", "reference_test_mean_error_m", "gain_vs_reference_low",
                "gain_vs_heimdall_net_holm_p", "improvement_probability_vs_heimdall_net", "effect_size_vs_heimdall_net", "seeds_per_model"}
    assert expected <= set(run.data.metrics)
    assert any(key.startswith("slice/") and key.endswith("/reference_test_mean_error_m") for key in run.data.metrics)  # by receivers
    assert run.data.tags["sweeper.criterion.clearly_better"] in ("pass", "fail")


def test_the_promotion_is_recorded_through_the_sweeps_journal(promoted, smoke_sweep):
    """One write path to MLflow: the promotion's records went through the journal launch uses
    (which keeps them while MLflow is unreachable), were all sent, and their files then removed."""
    journal = Journal(smoke_sweep.workdir / "ray_results" / smoke_sweep.name / "mlflow")
    promotions = [record for record in journal.records if record["key"].startswith("promotion:")]
    assert {record["op"] for record in promotions} == {"start", "inputs", "log", "artifacts", "finish"} and not journal.pending()
    (key,) = {record["key"] for record in promotions}
    assert journal.runs[key] == promoted.run.info.run_id
    assert not any((journal.path.parent / "promotions").iterdir()), "sent artifacts are not kept twice"


def test_report_and_exported_candidate_are_artifacts(promoted, client):
    run = promoted.run
    report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    expected = {"report.md", "report.html", "comparison.png", "learning_curves.png", "error_cdf.png", "calibration.png"}
    assert {f"report/{name}" for name in expected} <= report
    folder = {a.path for a in client.list_artifacts(run.info.run_id, "exported_model")}
    assert {"exported_model/weights.safetensors", "exported_model/manifest.json"} <= folder


def test_candidate_is_registered_with_the_verdict_as_alias(promoted, client):
    run = promoted.run
    (version,) = client.search_model_versions(f"name = '{REGISTERED}'")
    assert version.run_id == run.info.run_id and version.tags["sweeper.verdict"] == run.data.tags["sweeper.verdict"]
    alias = ALIASES[run.data.tags["sweeper.verdict"]]
    if alias:
        assert client.get_model_version_by_alias(REGISTERED, alias).version == version.version
    assert f"Registered model '{REGISTERED}' version 1" in promoted.stdout
    assert client.search_model_versions("name = 'localization'") == [], "--registered-model replaces the family's name"


def test_the_promotion_run_logs_every_split_it_used(promoted, client):
    inputs = client.get_run(promoted.run.info.run_id).inputs.dataset_inputs
    splits = {tag.value: dataset_input.dataset for dataset_input in inputs for tag in dataset_input.tags if tag.key == "mlflow.data.context"}
    assert set(splits) == {"train", "validation", "test"}
    rows = {split: json.loads(dataset.profile)["features_shape"]["mask"][0] for split, dataset in splits.items()}
    assert rows["test"] > 0 and {dataset.name for dataset in splits.values()} == {f"localization-{s}" for s in splits}


def test_unknown_sweep_is_a_user_error(smoke_sweep):
    completed = sweeper(smoke_sweep.workdir, "promote", "no-such-sweep")
    assert completed.returncode == 2
    assert "no sweep named 'no-such-sweep'" in completed.stderr and "sweeps there: smoke-sweep" in completed.stderr


def test_a_sweep_whose_trials_all_diverged_has_nothing_to_promote(tmp_path):
    space = tmp_path / "diverging.yaml"
    space.write_text(
        "family: localization\nparameters:\n  architecture: heimdall_net\n  learning_rate: 1.0e+30\n"
        "  weight_decay: 0.0\n  batch_size: 16\n"
    )
    launched = sweeper(tmp_path, "launch", "localization", "--preset", "smoke", "--trials", "2", "--name", "nan", "--search-space", str(space))
    assert launched.returncode == 2 and "every trial of sweep 'nan' diverged" in launched.stderr
    completed = sweeper(tmp_path, "promote", "nan")
    assert completed.returncode == 2 and "every trial of sweep 'nan' diverged" in completed.stderr
