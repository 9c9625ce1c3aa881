"""Users' own families, models and attention: the example plugin (examples/activity) is found by
its entry points once installed and by --plugin when not; it is swept, promoted, exported and
served on local Ray here (on the 2-node cluster in tests/cluster); its mistakes are one-line errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import ray
import torch
import yaml

from sweeper.cli import run
from tests.cli import sweeper
from tests.conftest import EXAMPLE
from trainables.attention import attention_kinds, create_attention
from trainables.families import get_family
from trainables.models import create_model


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def nothing_written(workdir: Path) -> bool:
    return not ray.is_initialized() and not (workdir / "ray_results").exists() and not (workdir / "mlflow.db").exists()


def test_the_plugin_registers_its_family_models_attention_and_files(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    family = get_family("activity", ["activity_family"])
    assert family.architectures() == ("attention_net", "conv_net") and "alibi" in attention_kinds()
    assert family.search_space().source == str(EXAMPLE / "activity_family" / "search_space.yaml")
    assert set(family.promotion().baselines) == {"conv_net"}
    context = {"classes": 4, "signal_mean": [0.0] * 3, "signal_std": [1.0] * 3}
    for architecture, options in [("conv_net", {}), ("attention_net", {"attention": "alibi"}), ("attention_net", {"attention": "performer"})]:
        logits = create_model("activity", architecture, context, **options).eval()(torch.randn(2, 3, 256))
        assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_the_plugins_attention_keeps_the_contract_of_every_mechanism(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    get_family("activity", ["activity_family"])
    attention = create_attention("alibi", 16, heads=2).eval()
    x, mask = torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool)
    mask[0, 5:] = False
    garbage = torch.where(mask[..., None], x, 1e3 * torch.randn_like(x))
    torch.testing.assert_close(attention(x, mask)[mask], attention(garbage, mask)[mask], rtol=1e-4, atol=1e-5)


def test_families_lists_the_plugins_family(tmp_path):
    listed = sweeper(tmp_path, "families", "--plugin", "activity_family", env={"PYTHONPATH": str(EXAMPLE)})
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names[0] == "activity" and {"language_model", "localization", "response_time", "segmentation"} < set(names), listed.stderr


def test_an_installed_plugin_is_found_by_its_entry_points(activity_installed, tmp_path):
    listed = sweeper(tmp_path, "families", env={"PYTHONPATH": str(activity_installed)})
    assert listed.returncode == 0 and "activity " in listed.stdout, listed.stderr
    assert "activity" not in sweeper(tmp_path, "families").stdout


def test_a_broken_installed_plugin_is_named_with_its_package(tmp_path):
    """What an installed package whose entry point cannot import looks like: its dist-info."""
    info = tmp_path / "site" / "weather_tools-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: weather-tools\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[attention_sweeper.families]\nweather = weather_tools.family\n")
    failed = sweeper(tmp_path, "launch", "weather", "--preset", "smoke", env={"PYTHONPATH": str(tmp_path / "site")})
    error = failed.stderr.strip()
    assert failed.returncode == 2 and "\n" not in error, error
    assert error == ("sweeper: error: entry point 'weather' in group 'attention_sweeper.families' of the installed package "
                     "'weather-tools' does not import (ModuleNotFoundError: No module named 'weather_tools'); fix or uninstall that package")  # fmt: skip
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("plugin, message", [
    ("no_such_plugin", "plugin 'no_such_plugin' does not import (ModuleNotFoundError: No module named 'no_such_plugin'); give a dotted module name"),
    ("broken_plugin", "plugin 'broken_plugin' does not import (ZeroDivisionError: division by zero)"),
])  # fmt: skip
def test_a_plugin_that_does_not_import_is_one_line_and_starts_nothing(workdir, capsys, plugin, message):
    (workdir / "broken_plugin.py").write_text("from trainables.families import register_family\n\n1 / 0\n")
    assert run(["launch", "localization", "--preset", "smoke", "--plugin", plugin]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"sweeper: error: {message}") and "\n" not in error
    assert nothing_written(workdir)
    sys.modules.pop("broken_plugin", None)


def test_a_space_naming_what_the_plugins_model_lacks_is_refused(workdir, capsys, monkeypatch, activity_data):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    space = (EXAMPLE / "activity_family" / "search_space.yaml").read_text() + "  kernel_size: {type: int, low: 3, high: 9}\n"
    (workdir / "space.yaml").write_text(space)
    code = run(["launch", "activity", "--plugin", "activity_family", "--data", str(activity_data), "--search-space", "space.yaml"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error
    assert error.startswith("sweeper: error: space.yaml: parameters.kernel_size: unknown parameter; known: attention, batch_size, depth, dropout")
    assert nothing_written(workdir)


def test_the_plugin_family_asks_for_the_users_data(workdir, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    assert run(["launch", "activity", "--plugin", "activity_family", "--preset", "smoke"]) == 2
    assert "the activity family trains on your own recordings: pass --data FILE.parquet" in capsys.readouterr().err
    assert nothing_written(workdir)


@pytest.mark.slow
def test_an_installed_plugin_family_is_swept_promoted_exported_and_served(activity_installed, activity_data, tmp_path):
    """On local Ray, as a user with the example installed runs it: no --plugin anywhere. The sweep's
    only config is the family's baseline, so its promotion is an A/A run: a model judged against
    itself, retrained on seeds of its own, must never be promoted."""
    env = {"PYTHONPATH": str(activity_installed)}
    baseline = yaml.safe_load((EXAMPLE / "activity_family" / "promotion.yaml").read_text())["baselines"]["conv_net"]
    (tmp_path / "baseline.yaml").write_text(yaml.safe_dump({"family": "activity", "parameters": baseline}))
    launched = sweeper(tmp_path, "launch", "activity", "--data", str(activity_data), "--preset", "smoke", "--trials", "1", "--epochs", "1",
                       "--search-space", "baseline.yaml", "--name", "aa", env=env)  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "Best trial" in launched.stdout and "Non-learned reference" in launched.stdout
    assert "Checkpoint successfully created" not in launched.stdout + launched.stderr, "no line per checkpoint"
    promoted = sweeper(tmp_path, "promote", "aa", "--seeds", "3", "--epochs", "1", "--json", "--fail-on", "keep_experimental", env=env)
    assert promoted.returncode == 1, promoted.stderr[-3000:]  # --fail-on: keep_experimental or demote exits 1
    outcome = json.loads(promoted.stdout)
    assert outcome["family"] == "activity" and outcome["decision"] != "promote" and outcome["seeds_per_model"] == 3
    (comparison,) = outcome["comparisons"]
    assert comparison["baseline"] == "conv_net" and comparison["gain"]["low"] < 0
    assert {c["name"]: c["passed"] for c in outcome["criteria"]}["clearly better"] is False
    exported = sweeper(tmp_path, "export", "aa", "--out", "exported", env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    (folder,) = (tmp_path / "exported").iterdir()
    assert json.loads((folder / "config.json").read_text())["plugins"] == []  # an installed plugin needs no naming
    served = sweeper(tmp_path, "predict", str(folder), "--input", str(activity_data), "--out", "predictions.parquet", env=env)
    assert served.returncode == 0, served.stderr[-3000:]
