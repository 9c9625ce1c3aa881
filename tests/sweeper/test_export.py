"""`sweeper export` / `sweeper.load` / `sweeper predict` on a real smoke sweep."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import sweeper
from sweeper import export as export_module
from sweeper.model_folder import IntegrityError
from tests.cli import sweeper as run_cli
from tests.sweeper.conftest import REGISTERED
from trainables.data.rf_simulation import RFSimulation, simulate
from trainables.data.tables import write_table
from trainables.families import get_family
from trainables.models import create_model
from trainables.train_loop import load_checkpoint

pytestmark = pytest.mark.slow
FAMILY = get_family("localization")


@pytest.fixture(scope="module")
def exported(smoke_sweep):
    completed = run_cli(smoke_sweep.workdir, "export", smoke_sweep.name, "--top-k", "2", "--out", "exports")
    assert completed.returncode == 0, completed.stderr[-3000:]
    folders = sorted((smoke_sweep.workdir / "exports").iterdir())
    assert [f.name.split("-")[0] for f in folders] == ["rank1", "rank2"]
    return folders


@pytest.fixture(scope="module")
def captures():
    """Fresh simulated inputs of the smoke preset's shapes, never seen in training."""
    settings = RFSimulation(**{**FAMILY.presets["smoke"].data, "n_samples": 6, "seed": 99})
    return simulate(settings, progress=False)


def trial_folder(smoke_sweep, folder):
    source = json.loads((folder / "config.json").read_text())["source"]
    return smoke_sweep.workdir / "ray_results" / smoke_sweep.name / f"trial_{source['trial']}", source


def inputs_of(arrays):
    return [torch.from_numpy(arrays[name]) for name in FAMILY.inputs]


def test_loaded_models_reproduce_the_trials_checkpoint(smoke_sweep, exported, captures):
    for folder in exported:
        model = sweeper.load(folder)
        assert not model.training
        directory, source = trial_folder(smoke_sweep, folder)
        state = load_checkpoint(directory / f"checkpoint_{source['epoch'] - 1:06d}")
        original = create_model("localization", state["config"]["architecture"], state["context"],
                                **{k: v for k, v in state["config"].items() if k not in ("architecture", "learning_rate", "weight_decay", "batch_size")})  # fmt: skip
        original.load_state_dict(state["model"])
        with torch.no_grad():
            for a, b in zip(model(*inputs_of(captures)), original.eval()(*inputs_of(captures))):
                torch.testing.assert_close(a, b)


def test_the_exported_epoch_is_the_best_reported_not_the_last(smoke_sweep, exported):
    values = []
    for folder in exported:
        directory, source = trial_folder(smoke_sweep, folder)
        progress = pd.read_csv(directory / "progress.csv")
        best = progress.loc[progress["val_mean_error_m"].idxmin()]
        assert source["epoch"] == int(best["epoch"])
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["validation"]["val_mean_error_m"] == pytest.approx(best["val_mean_error_m"])
        values.append(best["val_mean_error_m"])
    assert values == sorted(values), "rank 1 is the best trial"


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda f: (f / "weights.safetensors").write_bytes((f / "weights.safetensors").read_bytes()[:1000]), "weights.safetensors"),
        (lambda f: (f / "config.json").write_text((f / "config.json").read_text().replace("localization", "localisation")), "config.json"),
        (lambda f: (f / "metrics.json").unlink(), "metrics.json is missing"),
        (lambda f: (f / "manifest.json").unlink(), "no manifest.json"),
    ],
)
def test_tampered_truncated_or_missing_files_are_named(exported, tmp_path, damage, named):
    folder = tmp_path / "copy"
    shutil.copytree(exported[0], folder)
    damage(folder)
    with pytest.raises(IntegrityError, match=named):
        sweeper.load(folder)


def test_an_existing_folder_is_only_replaced_with_force(smoke_sweep, exported):
    again = run_cli(smoke_sweep.workdir, "export", smoke_sweep.name, "--out", "exports")
    assert again.returncode == 2 and "exists and is not empty" in again.stderr and "--force" in again.stderr
    forced = run_cli(smoke_sweep.workdir, "export", smoke_sweep.name, "--top-k", "2", "--out", "exports", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]


def test_a_failed_export_leaves_nothing_behind(smoke_sweep, monkeypatch, tmp_path):
    calls = []

    def fail_on_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(*args)

    original = export_module._from_checkpoint
    monkeypatch.setattr(export_module, "_from_checkpoint", fail_on_second)
    with pytest.raises(OSError):
        sweeper.open(smoke_sweep.name, str(smoke_sweep.workdir / "ray_results")).export(tmp_path / "out", top_k=2)
    assert list(tmp_path.iterdir()) == []


def test_unknown_sweep_and_metric_are_user_errors(smoke_sweep):
    unknown = run_cli(smoke_sweep.workdir, "export", "nope", "--out", "x")
    assert unknown.returncode == 2 and "no sweep named 'nope'" in unknown.stderr
    metric = run_cli(smoke_sweep.workdir, "export", smoke_sweep.name, "--out", "x", "--metric", "accuracy")
    assert metric.returncode == 2 and "unknown metric 'accuracy'" in metric.stderr


def test_predict_writes_the_models_outputs(smoke_sweep, exported, captures, tmp_path):
    write_table({name: captures[name] for name in FAMILY.inputs}, tmp_path / "in.parquet")
    completed = run_cli(smoke_sweep.workdir, "predict", str(exported[0]), "--input", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "out.parquet"))
    assert completed.returncode == 0, completed.stderr[-2000:]
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["position", "uncertainty"] and table.num_rows == 6
    with torch.no_grad():
        position, _ = sweeper.load(exported[0])(*inputs_of(captures))
    np.testing.assert_allclose(table.column("position").combine_chunks().to_numpy_ndarray(), position.numpy(), rtol=1e-5)


def test_predict_refuses_inputs_of_another_shape(smoke_sweep, exported, captures, tmp_path):
    wrong = {name: captures[name] for name in FAMILY.inputs}
    wrong["iq"] = np.concatenate([wrong["iq"], wrong["iq"]], axis=-1)
    write_table(wrong, tmp_path / "wrong.parquet")
    completed = run_cli(smoke_sweep.workdir, "predict", str(exported[0]), "--input", str(tmp_path / "wrong.parquet"), "--out", str(tmp_path / "o.parquet"))
    assert completed.returncode == 2 and "column 'iq' has rows of shape [10, 2, 256], but the model was trained on [10, 2, 128]" in completed.stderr


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda rows: rows["receiver_ids"].__setitem__((0, 0), 99), "column 'receiver_ids' must lie in [0, 10)"),
        (lambda rows: rows["mask"].__setitem__(1, False), "column 'mask' has rows with no active receiver"),
    ],
    ids=["receiver id out of range", "no active receiver"],
)
def test_predict_applies_the_checks_of_launch(smoke_sweep, exported, captures, tmp_path, spoil, message):
    rows = {name: captures[name].copy() for name in FAMILY.inputs}
    rows["mask"][0] = True  # receiver slot 0 active in row 0, so its id counts
    spoil(rows)
    write_table(rows, tmp_path / "bad.parquet")
    completed = run_cli(smoke_sweep.workdir, "predict", str(exported[0]), "--input", str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "o.parquet"))
    assert completed.returncode == 2 and message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.parquet").exists()


def test_a_registered_model_exports_the_promoted_candidate(smoke_sweep, promoted, tmp_path):
    completed = run_cli(smoke_sweep.workdir, "export", "--model", f"models:/{REGISTERED}/1", "--out", str(tmp_path / "registered"))
    assert completed.returncode == 0, completed.stderr[-2000:]
    config = json.loads((tmp_path / "registered" / "config.json").read_text())
    assert config["source"]["sweep"] == smoke_sweep.name and config["source"]["trial"] == promoted.run.data.params["candidate_trial"]
    assert sweeper.load(tmp_path / "registered") is not None
    missing = run_cli(smoke_sweep.workdir, "export", "--model", f"models:/{REGISTERED}@nonexistent", "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "not in the model registry" in missing.stderr
