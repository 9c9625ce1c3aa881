"""Sweep files: `sweeper launch --config FILE`, flags overriding it, and bad files named in one line."""
from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml

from sweeper.cli import run


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "sweep.yaml").write_text(
        "family: localization\npreset: smoke\ntrials: 3\nobjectives: [val_mean_error_m, latency_ms_p95]\n"
        "sampler: nsga2\nmax-concurrent: 2\nsearch_space: spaces/mine.yaml\ntime_budget_s: 600\n"
    )
    return tmp_path


def test_print_config_shows_the_file_with_the_flags_over_it(workdir, capsys):
    assert run(["launch", "--config", "sweeps/sweep.yaml", "--trials", "5", "--scheduler", "asha", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["family"] == "localization" and printed["trials"] == 5 and printed["scheduler"] == "asha"
    assert printed["objectives"] == ["val_mean_error_m", "latency_ms_p95"] and printed["max_concurrent"] == 2
    assert printed["search_space"] == str(workdir / "sweeps" / "spaces" / "mine.yaml")  # relative to the file
    assert printed["seed"] == 0 and printed["time_budget_s"] == 600.0  # defaults filled in, numbers as their type
    assert not ray.is_initialized() and not (workdir / "ray_results").exists()


def stop_at_launch(monkeypatch) -> dict:
    """What `sweeper.launch` would receive, without running anything."""
    received = {}

    def fake_launch(family, **options):
        received.update(options, family=family)
        raise KeyboardInterrupt  # stop before anything would run

    monkeypatch.setattr("sweeper.api.launch", fake_launch)
    monkeypatch.setattr("sweeper.cli._how_to_continue", lambda args, interrupt: "")
    return received


def test_the_file_and_the_flags_reach_launch(workdir, monkeypatch):
    received = stop_at_launch(monkeypatch)
    run(["launch", "--config", "sweeps/sweep.yaml", "--seed", "7"])
    assert received["family"] == "localization" and received["seed"] == 7 and received["sampler"] == "nsga2"
    assert received["objectives"] == ("val_mean_error_m", "latency_ms_p95") and received["search_space"] == workdir / "sweeps" / "spaces" / "mine.yaml"


INLINE = """family: localization
preset: smoke
plugins: [my_models]
search_space:
  family: localization
  parameters:
    architecture: heimdall_net
    dropout: 0.1
    learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    weight_decay: 1.0e-4
    batch_size: 16
"""


def test_an_inline_search_space_and_plugins_reach_launch_and_print_config(workdir, monkeypatch, capsys):
    Path("inline.yaml").write_text(INLINE)
    assert run(["launch", "--config", "inline.yaml", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["plugins"] == ["my_models"] and printed["search_space"] == yaml.safe_load(INLINE)["search_space"]
    received = stop_at_launch(monkeypatch)
    run(["launch", "--config", "inline.yaml", "--plugin", "other_models"])
    assert received["plugins"] == ("other_models",), "the flag overrides the file"
    space = received["search_space"]
    assert space.source == "inline.yaml: search_space" and space.document["parameters"]["batch_size"] == 16


def test_a_bad_inline_search_space_is_named_by_file_and_key(workdir, capsys):
    Path("inline.yaml").write_text(INLINE.replace("batch_size: 16", "batch_size: {type: categorical, choices: []}"))
    assert run(["launch", "--config", "inline.yaml", "--plugin", ""]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "sweeper: error: inline.yaml: search_space: parameters.batch_size.choices: expected a non-empty list of values"
    assert not ray.is_initialized() and not (workdir / "ray_results").exists() and not (workdir / "mlflow.db").exists()


@pytest.mark.parametrize("content, message", [
    ("trails: 3\n", "sweep file bad.yaml: unknown key 'trails'; known keys: address,"),
    ("family: localization\ntrials: many\n", "sweep file bad.yaml: trials: expected an integer or null, got 'many'"),
    ("family: localization\nobjectives: 3\n", "sweep file bad.yaml: objectives: expected a list of names, got 3"),
    ("family: localization\nseed: true\n", "sweep file bad.yaml: seed: expected an integer, got True"),
    ("- localization\n", "sweep file bad.yaml: expected a mapping of launch settings, got list"),
    ("family: [localization\n", "sweep file bad.yaml: not valid YAML"),
    ("preset: smoke\n", "name the family to sweep: sweeper launch FAMILY, or family: in the --config file"),
    ("family: localization\nplugins: [no_such_plugin]\n", "plugin 'no_such_plugin' does not import (ModuleNotFoundError"),
    ("family: localization\nplugins: 3\n", "sweep file bad.yaml: plugins: expected a list of names, got 3"),
    ("family: localization\nsearch_space: [a, b]\n", "sweep file bad.yaml: search_space: expected a path or a search space (a mapping) or null"),
])  # fmt: skip
def test_bad_sweep_files_are_one_line_errors_with_nothing_started(workdir, capsys, content, message):
    Path("bad.yaml").write_text(content)
    assert run(["launch", "--config", "bad.yaml"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("sweeper: error: ") and message in error and "\n" not in error
    assert not ray.is_initialized() and not (workdir / "ray_results").exists() and not (workdir / "mlflow.db").exists()


def test_a_missing_sweep_file_is_named(workdir, capsys):
    assert run(["launch", "--config", "nowhere.yaml"]) == 2
    assert "sweep file nowhere.yaml: cannot be read" in capsys.readouterr().err
